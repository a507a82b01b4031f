//! What the console remembers between refreshes: write rates, replica lag over time, and the
//! catch-up estimates derived from them.
//!
//! Every figure comes from the master's `cluster_status`, sampled once per refresh:
//!
//! - a node's write rate is the change of the sum of its shards' sequences over the time
//!   between two samples: the master's `last_seq` (writes it took), a replica's `acked_seq`
//!   (writes it applied); its read rate is the change of the `reads` counter each node reports
//!   in its own status (keys read by get, mget and scan);
//! - a replica's lag on a shard is the master's `ops_behind`, kept for [`LAG_WINDOW`];
//! - the time to catch up is the lag divided by how fast the lag shrank over the last
//!   [`DRAIN_WINDOW`] (the observed drain rate); no estimate when it is not shrinking.
//!
//! Times are the `Instant`s the samples carry, never the clock, so tests are deterministic.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use shared::ClusterStatus;

/// How long lag samples are kept (the chart's span).
pub const LAG_WINDOW: Duration = Duration::from_secs(300);
/// The span over which the drain rate is measured.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(15);
/// Write-rate samples kept per node and shard (wider than any sparkline).
const RATE_SAMPLES: usize = 300;

/// The sequences of one sample, to difference with the next.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    /// Sum of sequences per node id.
    nodes: BTreeMap<String, u64>,
    /// The master's `last_seq` per shard.
    shards: Vec<u64>,
}

/// When a lagging replica should be caught up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CatchUp {
    /// Not behind.
    CaughtUp,
    /// Behind, and the lag shrinks: this long at the observed rate.
    In(Duration),
    /// Behind and not shrinking (the replica is stalled, or the master writes faster).
    NotDraining,
    /// Behind, with too few samples yet to tell.
    Measuring,
}

/// Samples over time.
#[derive(Debug, Clone, Default)]
pub struct History {
    last: Option<Sample>,
    /// Writes per second per node id, oldest first.
    node_rates: BTreeMap<String, VecDeque<f64>>,
    /// The master's writes per second per shard, oldest first.
    shard_rates: Vec<VecDeque<f64>>,
    /// Operations behind per (replica node id, shard), oldest first.
    lag: BTreeMap<(String, u32), VecDeque<(Instant, u64)>>,
    /// The last `reads` counter seen per node id, and when.
    last_reads: BTreeMap<String, (Instant, u64)>,
    /// Reads per second per node id, oldest first.
    read_rates: BTreeMap<String, VecDeque<f64>>,
}

fn push_capped<T>(series: &mut VecDeque<T>, value: T, cap: usize) {
    series.push_back(value);
    while series.len() > cap {
        series.pop_front();
    }
}

/// Change per second from `before` to `after` over `secs`; a sequence that went back (a new
/// data directory) counts as no writes.
fn rate(before: u64, after: u64, secs: f64) -> f64 {
    // Precision loss is irrelevant for a rate on screen.
    #[allow(clippy::cast_precision_loss)]
    let delta = after.saturating_sub(before) as f64;
    if secs > 0.0 { delta / secs } else { 0.0 }
}

impl History {
    /// Records the cluster as seen at `at`.
    pub fn record(&mut self, at: Instant, cluster: &ClusterStatus) {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            cluster.master.node_id.clone(),
            cluster.master.shards.iter().map(|s| s.last_seq).sum(),
        );
        for r in &cluster.replicas {
            nodes.insert(
                r.node_id.clone(),
                r.shards.iter().map(|s| s.acked_seq).sum(),
            );
        }
        let shards: Vec<u64> = cluster.master.shards.iter().map(|s| s.last_seq).collect();
        let sample = Sample { at, nodes, shards };

        if let Some(last) = &self.last {
            let secs = at.saturating_duration_since(last.at).as_secs_f64();
            if secs > 0.0 {
                for (id, &seq) in &sample.nodes {
                    if let Some(&before) = last.nodes.get(id) {
                        let series = self.node_rates.entry(id.clone()).or_default();
                        push_capped(series, rate(before, seq, secs), RATE_SAMPLES);
                    }
                }
                if self.shard_rates.len() != sample.shards.len() {
                    self.shard_rates = vec![VecDeque::new(); sample.shards.len()];
                }
                for ((series, &seq), &before) in self
                    .shard_rates
                    .iter_mut()
                    .zip(&sample.shards)
                    .zip(&last.shards)
                {
                    push_capped(series, rate(before, seq, secs), RATE_SAMPLES);
                }
            }
        }
        if self.last.as_ref().is_none_or(|l| at > l.at) {
            self.last = Some(sample);
        }

        for r in &cluster.replicas {
            for s in &r.shards {
                let series = self.lag.entry((r.node_id.clone(), s.shard)).or_default();
                series.push_back((at, s.ops_behind));
            }
        }
        for series in self.lag.values_mut() {
            while series
                .front()
                .is_some_and(|&(t, _)| at.saturating_duration_since(t) > LAG_WINDOW)
            {
                series.pop_front();
            }
        }
        self.lag.retain(|_, series| !series.is_empty());
    }

    /// Records a node's `reads` counter as seen at `at` (from its own status).
    pub fn record_reads(&mut self, at: Instant, node_id: &str, reads: u64) {
        if let Some(&(before_at, before)) = self.last_reads.get(node_id) {
            let secs = at.saturating_duration_since(before_at).as_secs_f64();
            if secs <= 0.0 {
                return;
            }
            let series = self.read_rates.entry(node_id.to_string()).or_default();
            push_capped(series, rate(before, reads, secs), RATE_SAMPLES);
        }
        self.last_reads.insert(node_id.to_string(), (at, reads));
    }

    /// A node's reads per second, oldest first (empty before two samples).
    pub fn read_rates(&self, node_id: &str) -> Vec<f64> {
        self.read_rates
            .get(node_id)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// The latest read rate of a node.
    pub fn read_rate(&self, node_id: &str) -> Option<f64> {
        self.read_rates.get(node_id).and_then(|s| s.back().copied())
    }

    /// A node's writes per second, oldest first (empty before two samples).
    pub fn node_rates(&self, node_id: &str) -> Vec<f64> {
        self.node_rates
            .get(node_id)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// The latest write rate of a node.
    pub fn node_rate(&self, node_id: &str) -> Option<f64> {
        self.node_rates.get(node_id).and_then(|s| s.back().copied())
    }

    /// A shard's writes per second on the master, oldest first.
    pub fn shard_rates(&self, shard: usize) -> Vec<f64> {
        self.shard_rates
            .get(shard)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// The latest write rate of a shard.
    pub fn shard_rate(&self, shard: usize) -> Option<f64> {
        self.shard_rates.get(shard).and_then(|s| s.back().copied())
    }

    /// A replica's total operations behind (all shards) over the window, as (seconds before
    /// `now`, negative; operations) points for a chart.
    pub fn lag_points(&self, node_id: &str, now: Instant) -> Vec<(f64, f64)> {
        let mut total: BTreeMap<Instant, u64> = BTreeMap::new();
        for ((id, _), series) in &self.lag {
            if id == node_id {
                for &(t, ops) in series {
                    *total.entry(t).or_default() += ops;
                }
            }
        }
        total
            .into_iter()
            .map(|(t, ops)| {
                // Precision loss is irrelevant for a chart.
                #[allow(clippy::cast_precision_loss)]
                let y = ops as f64;
                (-now.saturating_duration_since(t).as_secs_f64(), y)
            })
            .collect()
    }

    /// When the replica should have caught up on the shard, at the rate its lag shrank over
    /// the last [`DRAIN_WINDOW`].
    pub fn catch_up(&self, node_id: &str, shard: u32) -> CatchUp {
        let Some(series) = self.lag.get(&(node_id.to_string(), shard)) else {
            return CatchUp::Measuring;
        };
        let Some(&(last_at, last_ops)) = series.back() else {
            return CatchUp::Measuring;
        };
        if last_ops == 0 {
            return CatchUp::CaughtUp;
        }
        let Some(&(first_at, first_ops)) = series
            .iter()
            .find(|&&(t, _)| last_at.saturating_duration_since(t) <= DRAIN_WINDOW)
        else {
            return CatchUp::Measuring;
        };
        let secs = last_at.saturating_duration_since(first_at).as_secs_f64();
        if secs <= 0.0 {
            return CatchUp::Measuring;
        }
        let drained = rate(last_ops, first_ops, secs);
        if drained <= 0.0 {
            return CatchUp::NotDraining;
        }
        // Precision loss is irrelevant for an estimate.
        #[allow(clippy::cast_precision_loss)]
        let left = last_ops as f64 / drained;
        Duration::try_from_secs_f64(left).map_or(CatchUp::NotDraining, CatchUp::In)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fake;

    #[test]
    fn read_rates_from_the_reads_counter() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record_reads(t0, "n", 100);
        assert_eq!(h.read_rate("n"), None);
        h.record_reads(t0 + Duration::from_secs(2), "n", 500);
        assert_eq!(h.read_rate("n"), Some(200.0));
        // A sample at the same instant is ignored; a counter that went back counts as no reads.
        h.record_reads(t0 + Duration::from_secs(2), "n", 900);
        h.record_reads(t0 + Duration::from_secs(3), "n", 10);
        assert_eq!(h.read_rates("n"), vec![200.0, 0.0]);
    }

    #[test]
    fn rates_from_sequence_changes() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(t0, &fake::cluster(100, &[(10, 0)]));
        assert_eq!(h.node_rate("m1"), None);
        // 2 shards, +20 each in 2 s: 20 writes/s on the master, 10 per shard.
        h.record(t0 + Duration::from_secs(2), &fake::cluster(120, &[(30, 0)]));
        assert_eq!(h.node_rate("m1"), Some(20.0));
        assert_eq!(h.shard_rate(0), Some(10.0));
        assert_eq!(h.shard_rates(1), vec![10.0]);
        // The replica acknowledged 20 more per shard.
        assert_eq!(h.node_rate("r1"), Some(20.0));
        assert_eq!(h.node_rates("m1"), vec![20.0]);
        // A sequence that goes back is no writes, not a negative rate.
        h.record(t0 + Duration::from_secs(3), &fake::cluster(5, &[(5, 0)]));
        assert_eq!(h.node_rate("m1"), Some(0.0));
    }

    #[test]
    fn catch_up_from_the_drain_rate() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(t0, &fake::cluster(100, &[(0, 40)]));
        assert_eq!(h.catch_up("r1", 0), CatchUp::Measuring);
        assert_eq!(h.catch_up("nobody", 0), CatchUp::Measuring);
        // 40 -> 30 in 2 s: 5 ops/s, 30 left: 6 s.
        h.record(t0 + Duration::from_secs(2), &fake::cluster(100, &[(0, 30)]));
        assert_eq!(h.catch_up("r1", 0), CatchUp::In(Duration::from_secs(6)));
        h.record(t0 + Duration::from_secs(4), &fake::cluster(100, &[(0, 45)]));
        assert_eq!(h.catch_up("r1", 0), CatchUp::NotDraining);
        h.record(t0 + Duration::from_secs(5), &fake::cluster(100, &[(0, 0)]));
        assert_eq!(h.catch_up("r1", 0), CatchUp::CaughtUp);
        let points = h.lag_points("r1", t0 + Duration::from_secs(5));
        // Two shards with the same lag each.
        assert_eq!(
            points,
            vec![(-5.0, 80.0), (-3.0, 60.0), (-1.0, 90.0), (0.0, 0.0)]
        );
    }

    #[test]
    fn lag_is_kept_for_the_window_only() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(t0, &fake::cluster(1, &[(0, 7)]));
        h.record(
            t0 + LAG_WINDOW + Duration::from_secs(1),
            &fake::cluster(1, &[(0, 3)]),
        );
        let now = t0 + LAG_WINDOW + Duration::from_secs(1);
        assert_eq!(h.lag_points("r1", now), vec![(0.0, 6.0)]);
    }
}
