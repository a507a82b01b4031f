//! The result of a run: throughput and latency percentiles computed from the recorded
//! histograms, for people (a table) and for programs (the JSON document described in
//! `bench.rs`).

use std::{collections::BTreeMap, io, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{
    args::Plan,
    load::{Recorder, StopReason},
};
use crate::output::write_table;

/// Latency of successful calls, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Fastest.
    pub min: u64,
    /// Mean, to a tenth of a microsecond.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Slowest.
    pub max: u64,
}

impl LatencySummary {
    /// The summary of `h` (all zero when it is empty). Percentiles are HDR values: within 0.1%
    /// of the true sample (3 significant digits).
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                count: 0,
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                max: 0,
            };
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: tenth(h.mean()),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// `x` rounded to one decimal, so the JSON carries no false precision.
fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `count` per second over `elapsed`, to one decimal; 0 for an empty interval.
#[must_use]
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        // Counts stay far below 2^52, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        let count = count as f64;
        tenth(count / secs)
    } else {
        0.0
    }
}

/// The node measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// `master` or `replica`.
    pub role: &'static str,
    /// `always` or `none`.
    pub sync: &'static str,
    /// The kvd version.
    pub version: String,
}

/// The load that ran, as the flags asked for it (with defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigJson {
    clients: u32,
    connections: u32,
    pipeline: u32,
    batch: u32,
    ratio: RatioJson,
    value_size: usize,
    keyspace: u64,
    acks: u32,
    /// The bound on calls in effect (`--requests`, or the maximum).
    requests: u64,
    /// The bound on time in effect (`--duration`, the 10 s default, or the maximum).
    duration_secs: f64,
    prefill: bool,
    threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct RatioJson {
    put: u32,
    get: u32,
}

/// The prefill, when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrefillJson {
    /// Keys written.
    pub keys: u64,
    /// How long it took.
    pub secs: f64,
}

/// Puts of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PutJson {
    ops: u64,
    ops_per_sec: f64,
    latency_us: LatencySummary,
}

/// Gets of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GetJson {
    ops: u64,
    ops_per_sec: f64,
    keys_found: u64,
    keys_missing: u64,
    latency_us: LatencySummary,
}

/// Failed calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorsJson {
    total: u64,
    by_kind: BTreeMap<String, u64>,
}

/// Everything a run reports; serialised as is for `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    endpoint: String,
    node: NodeInfo,
    config: ConfigJson,
    prefill: Option<PrefillJson>,
    elapsed_secs: f64,
    stopped_by: &'static str,
    ops: u64,
    keys: u64,
    ops_per_sec: f64,
    keys_per_sec: f64,
    latency_us: LatencySummary,
    put: PutJson,
    get: GetJson,
    errors: ErrorsJson,
    /// Not serialised: the first message of each error kind, for the text output.
    #[serde(skip)]
    examples: BTreeMap<String, String>,
}

/// What [`Report::new`] summarises.
pub struct Inputs<'a> {
    /// The node as the user named it.
    pub endpoint: String,
    /// Its role, sync policy and version.
    pub node: NodeInfo,
    /// The plan that ran.
    pub plan: &'a Plan,
    /// Keys written and time taken by the prefill, if any.
    pub prefill: Option<(u64, Duration)>,
    /// Samples and counts.
    pub recorder: &'a Recorder,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Why the run stopped.
    pub stop: StopReason,
}

impl Report {
    /// Computes the summary.
    ///
    /// # Errors
    /// Only if the put and get histograms cannot be added together.
    pub fn new(inputs: &Inputs<'_>) -> Result<Self, hdrhistogram::AdditionError> {
        let Inputs {
            plan,
            recorder,
            elapsed,
            ..
        } = *inputs;
        let mut all = recorder.put.clone();
        all.add(&recorder.get)?;
        let ops = recorder.ops();
        let keys = ops * u64::from(plan.batch);
        Ok(Self {
            endpoint: inputs.endpoint.clone(),
            node: inputs.node.clone(),
            config: ConfigJson {
                clients: plan.clients,
                connections: plan.connections,
                pipeline: plan.pipeline,
                batch: plan.batch,
                ratio: RatioJson {
                    put: plan.ratio.put,
                    get: plan.ratio.get,
                },
                value_size: plan.value_size,
                keyspace: plan.keyspace,
                acks: plan.acks,
                requests: plan.requests,
                duration_secs: plan.duration.as_secs_f64(),
                prefill: plan.prefill,
                threads: plan.threads,
            },
            prefill: inputs.prefill.map(|(keys, took)| PrefillJson {
                keys,
                secs: (took.as_secs_f64() * 1000.0).round() / 1000.0,
            }),
            elapsed_secs: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            stopped_by: inputs.stop.as_str(),
            ops,
            keys,
            ops_per_sec: rate(ops, elapsed),
            keys_per_sec: rate(keys, elapsed),
            latency_us: LatencySummary::of(&all),
            put: PutJson {
                ops: recorder.put.len(),
                ops_per_sec: rate(recorder.put.len(), elapsed),
                latency_us: LatencySummary::of(&recorder.put),
            },
            get: GetJson {
                ops: recorder.get.len(),
                ops_per_sec: rate(recorder.get.len(), elapsed),
                keys_found: recorder.keys_found,
                keys_missing: recorder.keys_missing,
                latency_us: LatencySummary::of(&recorder.get),
            },
            errors: ErrorsJson {
                total: recorder.error_total(),
                by_kind: recorder
                    .errors
                    .iter()
                    .map(|(k, e)| (k.clone(), e.count))
                    .collect(),
            },
            examples: recorder
                .errors
                .iter()
                .map(|(k, e)| (k.clone(), e.example.clone()))
                .collect(),
        })
    }

    /// Writes the report for people.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_text(&self, out: &mut impl io::Write) -> io::Result<()> {
        let c = &self.config;
        writeln!(
            out,
            "node:     {} ({}, sync {}, kvd {})",
            self.endpoint, self.node.role, self.node.sync, self.node.version
        )?;
        writeln!(
            out,
            "load:     {} clients over {} connections, pipeline {}, batch {}, ratio {}:{} \
             (put:get), {}-byte values, {} keys, acks {}, {} thread{}",
            c.clients,
            c.connections,
            c.pipeline,
            c.batch,
            c.ratio.put,
            c.ratio.get,
            c.value_size,
            c.keyspace,
            c.acks,
            c.threads,
            if c.threads == 1 { "" } else { "s" }
        )?;
        if let Some(p) = self.prefill {
            writeln!(out, "prefill:  {} keys in {:.2} s", p.keys, p.secs)?;
        }
        writeln!(
            out,
            "ran:      {:.2} s, stopped by {}; {} calls ok, {} failed",
            self.elapsed_secs, self.stopped_by, self.ops, self.errors.total
        )?;
        let batch = c.batch > 1;
        let mut header = vec!["", "calls", "calls/s"];
        if batch {
            header.push("keys/s");
        }
        header.extend(["p50", "p90", "p99", "p99.9", "max"]);
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        let mut row = |name: &str, ops: u64, per_sec: f64, lat: &LatencySummary| {
            let mut r = vec![name.to_string(), ops.to_string(), format!("{per_sec:.0}")];
            if batch {
                r.push(format!("{:.0}", per_sec * f64::from(c.batch)));
            }
            r.extend(
                [lat.p50, lat.p90, lat.p99, lat.p99_9, lat.max]
                    .into_iter()
                    .map(human_micros),
            );
            rows.push(r);
        };
        row("all", self.ops, self.ops_per_sec, &self.latency_us);
        if c.ratio.put > 0 && c.ratio.get > 0 {
            row(
                "put",
                self.put.ops,
                self.put.ops_per_sec,
                &self.put.latency_us,
            );
            row(
                "get",
                self.get.ops,
                self.get.ops_per_sec,
                &self.get.latency_us,
            );
        }
        let mut right = vec![false, true, true];
        if batch {
            right.push(true);
        }
        right.extend([true; 5]);
        write_table(out, &rows, &right)?;
        if self.errors.total > 0 {
            writeln!(out, "errors by kind:")?;
            for (kind, count) in &self.errors.by_kind {
                let example = self.examples.get(kind).map_or("", String::as_str);
                writeln!(out, "  {kind}: {count} (first: {example})")?;
            }
        }
        if self.get.keys_missing > 0 {
            writeln!(
                out,
                "note: {} of {} keys read were absent (cheap reads that flatter the figures); \
                 run with --prefill, or put the keys first",
                self.get.keys_missing,
                self.get.keys_found + self.get.keys_missing
            )?;
        }
        Ok(())
    }
}

/// A latency for people: `812µs`, `1.20ms`, `2.50s`.
#[must_use]
pub fn human_micros(us: u64) -> String {
    // Latencies stay far below 2^52 µs, where f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let f = us as f64;
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", f / 1e3)
    } else {
        format!("{:.2}s", f / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::{
        args::{Args, MAX_REQUESTS},
        load::{Op, Recorder},
    };
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: Args,
    }

    fn plan(args: &[&str]) -> Plan {
        Wrap::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("flags")
            .args
            .plan()
            .expect("plan")
    }

    fn node() -> NodeInfo {
        NodeInfo {
            role: "master",
            sync: "always",
            version: "0.1.0".into(),
        }
    }

    /// 1 µs, 2 µs, … 1000 µs as puts.
    fn thousand_puts() -> Recorder {
        let mut r = Recorder::new().expect("recorder");
        for us in 1..=1000 {
            r.record(Op::Put, Duration::from_micros(us));
        }
        r
    }

    #[test]
    fn percentiles_of_known_values() {
        let r = thousand_puts();
        let s = LatencySummary::of(&r.put);
        assert_eq!(
            s,
            LatencySummary {
                count: 1000,
                min: 1,
                mean: 500.5,
                p50: 500,
                p90: 900,
                p99: 990,
                p99_9: 999,
                max: 1000,
            }
        );
        let empty = LatencySummary::of(&r.get);
        assert_eq!((empty.count, empty.p99, empty.max), (0, 0, 0));
    }

    #[test]
    fn percentiles_keep_three_digits_at_large_values() {
        let mut r = Recorder::new().expect("recorder");
        for _ in 0..999 {
            r.record(Op::Get, Duration::from_millis(1));
        }
        r.record(Op::Get, Duration::from_millis(250));
        let s = LatencySummary::of(&r.get);
        assert_eq!((s.p50, s.p99), (1000, 1000));
        // 250,000 µs is kept within 0.1%.
        assert!(s.max.abs_diff(250_000) <= 250, "{}", s.max);
        assert!(s.p99_9.abs_diff(1000) <= 1, "{}", s.p99_9);
    }

    #[test]
    fn throughput() {
        assert!((rate(1000, Duration::from_secs(2)) - 500.0).abs() < f64::EPSILON);
        assert!((rate(1, Duration::from_secs(3)) - 0.3).abs() < f64::EPSILON);
        assert!(rate(5, Duration::ZERO).abs() < f64::EPSILON);
        let p = plan(&["--batch", "16", "--ratio", "1:1"]);
        let mut r = thousand_puts();
        for _ in 0..1000 {
            r.record(Op::Get, Duration::from_micros(10));
        }
        r.keys_found = 15_000;
        r.keys_missing = 1_000;
        let report = Report::new(&Inputs {
            endpoint: "127.0.0.1:3000".into(),
            node: node(),
            plan: &p,
            prefill: None,
            recorder: &r,
            elapsed: Duration::from_secs(4),
            stop: StopReason::Duration,
        })
        .expect("report");
        assert_eq!((report.ops, report.keys), (2000, 32_000));
        assert!((report.ops_per_sec - 500.0).abs() < f64::EPSILON);
        assert!((report.keys_per_sec - 8000.0).abs() < f64::EPSILON);
        assert!((report.put.ops_per_sec - 250.0).abs() < f64::EPSILON);
        assert_eq!(report.latency_us.count, 2000);
        assert_eq!(report.latency_us.p50, 10);
        assert_eq!(report.latency_us.max, 1000);
    }

    #[test]
    fn json_shape() {
        let p = plan(&["--duration", "2"]);
        let mut r = thousand_puts();
        r.error("rpc_timeout".into(), || "no answer".into());
        r.error("rpc_timeout".into(), || "again".into());
        let report = Report::new(&Inputs {
            endpoint: "127.0.0.1:3000".into(),
            node: node(),
            plan: &p,
            prefill: Some((100_000, Duration::from_millis(1234))),
            recorder: &r,
            elapsed: Duration::from_secs(2),
            stop: StopReason::Duration,
        })
        .expect("report");
        let v = serde_json::to_value(&report).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "config",
                "elapsed_secs",
                "endpoint",
                "errors",
                "get",
                "keys",
                "keys_per_sec",
                "latency_us",
                "node",
                "ops",
                "ops_per_sec",
                "prefill",
                "put",
                "stopped_by"
            ]
        );
        assert_eq!(
            keys(&v["latency_us"]),
            ["count", "max", "mean", "min", "p50", "p90", "p99", "p99_9"]
        );
        assert_eq!(
            keys(&v["config"]),
            [
                "acks",
                "batch",
                "clients",
                "connections",
                "duration_secs",
                "keyspace",
                "pipeline",
                "prefill",
                "ratio",
                "requests",
                "threads",
                "value_size"
            ]
        );
        assert_eq!(keys(&v["put"]), ["latency_us", "ops", "ops_per_sec"]);
        assert_eq!(
            keys(&v["get"]),
            [
                "keys_found",
                "keys_missing",
                "latency_us",
                "ops",
                "ops_per_sec"
            ]
        );
        assert_eq!(
            v["node"],
            serde_json::json!({"role": "master", "sync": "always", "version": "0.1.0"})
        );
        assert_eq!(
            v["config"]["ratio"],
            serde_json::json!({"put": 1, "get": 0})
        );
        assert_eq!(v["config"]["requests"], MAX_REQUESTS);
        assert_eq!(v["config"]["duration_secs"], 2.0);
        assert_eq!(
            v["prefill"],
            serde_json::json!({"keys": 100_000, "secs": 1.234})
        );
        assert_eq!(v["stopped_by"], "duration");
        assert_eq!(v["ops"], 1000);
        assert_eq!(v["ops_per_sec"], 500.0);
        assert_eq!(v["latency_us"]["p99"], 990);
        assert_eq!(v["latency_us"]["p99_9"], 999);
        assert_eq!(v["put"]["latency_us"]["p50"], 500);
        assert_eq!(v["get"]["ops"], 0);
        assert_eq!(
            v["errors"],
            serde_json::json!({"total": 2, "by_kind": {"rpc_timeout": 2}})
        );
    }

    #[test]
    fn text_report() {
        let p = plan(&["--ratio", "1:1", "--batch", "4"]);
        let mut r = thousand_puts();
        r.record(Op::Get, Duration::from_millis(3));
        r.keys_missing = 4;
        r.error("not_master".into(), || "this node is a replica".into());
        let report = Report::new(&Inputs {
            endpoint: "h:1".into(),
            node: node(),
            plan: &p,
            prefill: None,
            recorder: &r,
            elapsed: Duration::from_secs(1),
            stop: StopReason::Requests,
        })
        .expect("report");
        let mut out = Vec::new();
        report.write_text(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("stopped by requests; 1001 calls ok, 1 failed"),
            "{text}"
        );
        assert!(text.contains("keys/s"), "{text}");
        assert!(text.contains("990µs"), "{text}");
        assert!(text.contains("3.00ms"), "{text}");
        assert!(
            text.contains("not_master: 1 (first: this node is a replica)"),
            "{text}"
        );
        assert!(text.contains("4 of 4 keys read were absent"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().any(|l| l.starts_with("put ")), "{text}");
        assert!(lines.iter().any(|l| l.starts_with("get ")), "{text}");
    }

    #[test]
    fn latencies_for_people() {
        assert_eq!(human_micros(812), "812µs");
        assert_eq!(human_micros(1_204), "1.20ms");
        assert_eq!(human_micros(2_500_000), "2.50s");
    }
}
