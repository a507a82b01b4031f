//! The master's side: the registry of replicas with their position per shard, acknowledgement
//! waits, and the consistent copies served during full resyncs.
//!
//! The registry starts from the persisted membership (`cluster.json`) when the node becomes
//! master, so a replica that is down at that moment is listed down, with when it was last seen,
//! instead of forgotten; `forget` removes one for good.
//!
//! Everything here sits behind one `std::sync::Mutex`, held only for map updates and never across
//! an `.await`. Waiters for acknowledgements watch a counter that every advancing pull bumps.

use std::{collections::HashMap, sync::Mutex, time::Duration};
use tokio::time::Instant;

use shared::{JoinRequest, KvError, LinkState, ReplicaShardLag, ReplicaStatus, cluster::Member};
use tokio::sync::watch;

use super::unix_ms;
use crate::cluster::persist::MemberRecord;

/// Idle time after which a full-resync copy is dropped.
const SESSION_IDLE: Duration = Duration::from_secs(120);

/// One replica's position on one shard.
#[derive(Debug, Clone, Default)]
struct ShardPos {
    acked: u64,
    caught_up_at: Option<Instant>,
    partial_resyncs: u64,
    full_resyncs: u64,
    /// The next pull is the first since the replica joined.
    first_pull: bool,
}

#[derive(Debug)]
struct Replica {
    address: String,
    /// When this master last heard from it; `None`: not since it became master.
    last_seen: Option<Instant>,
    /// The same, across restarts (milliseconds since the Unix epoch).
    last_seen_unix_ms: Option<u64>,
    /// Whether the sweep has reported it down (so the transition is logged once).
    marked_down: bool,
    /// When this master last sent it a `hello` (the sweep asks silent replicas their epoch).
    asked_at: Option<Instant>,
    /// The latest send time of an answer it confirmed receiving (the master's clock, ns): its
    /// promise not to vote, on which the lease rests (auto failover).
    confirmed: u64,
    shards: Vec<ShardPos>,
}

impl Replica {
    fn new(address: String, last_seen_unix_ms: Option<u64>, shards: u32) -> Self {
        Self {
            address,
            last_seen: None,
            last_seen_unix_ms,
            marked_down: true,
            asked_at: None,
            confirmed: 0,
            shards: vec![
                ShardPos {
                    first_pull: true,
                    ..ShardPos::default()
                };
                shards as usize
            ],
        }
    }

    fn silent_for(&self, since_start: Duration) -> Duration {
        self.last_seen.map_or(since_start, |t| t.elapsed())
    }
}

/// A consistent copy of a shard being sent to one replica.
pub struct CopySession {
    /// The read view.
    pub snapshot: fjall::Snapshot,
    /// The sequence it shows.
    pub seq: u64,
    last_used: Instant,
}

/// The master's replication state.
pub struct MasterState {
    shards: u32,
    replica_timeout: Duration,
    /// When this node last became master (replicas not heard from since are silent since then).
    since: Mutex<Instant>,
    replicas: Mutex<HashMap<String, Replica>>,
    copies: Mutex<HashMap<(String, u32), CopySession>>,
    acks: watch::Sender<u64>,
}

/// What a pull did to the registry.
pub struct PullNote {
    /// The first pull of this shard since the replica joined.
    pub first_since_join: bool,
}

/// Notes that `node_id` was heard from now (logging its return if it had been marked down).
fn heard_from<'a>(
    registry: &'a mut HashMap<String, Replica>,
    node_id: &str,
) -> Result<&'a mut Replica, KvError> {
    let replica = registry
        .get_mut(node_id)
        .ok_or_else(|| KvError::NotJoined {
            node_id: node_id.to_string(),
        })?;
    replica.last_seen = Some(Instant::now());
    replica.last_seen_unix_ms = Some(unix_ms());
    if replica.marked_down {
        replica.marked_down = false;
        tracing::info!(node_id, address = %replica.address, "replica link up");
    }
    Ok(replica)
}

impl MasterState {
    /// An empty registry for a master with `shards` shards.
    #[must_use]
    pub fn new(shards: u32, replica_timeout: Duration) -> Self {
        Self {
            shards,
            replica_timeout,
            since: Mutex::new(Instant::now()),
            replicas: Mutex::new(HashMap::new()),
            copies: Mutex::new(HashMap::new()),
            acks: watch::Sender::new(0),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Replica>> {
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts over from the membership (this node excluded): every member is listed, down
    /// until it pulls.
    pub fn reset(&self, members: &[MemberRecord], me: &str) {
        *self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        let mut registry = self.registry();
        registry.clear();
        for m in members.iter().filter(|m| m.node_id != me) {
            registry.insert(
                m.node_id.clone(),
                Replica::new(m.address.clone(), m.last_seen_unix_ms, self.shards),
            );
        }
        drop(registry);
        self.copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn since_start(&self) -> Duration {
        self.since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Checks a join before it is taken: the shard count, and an id held by the master itself.
    /// Returns the address another registration of the id is at, if it is live and elsewhere:
    /// the caller asks that address who it is before it takes the join (a replica restarted on a
    /// new address is taken back; a copied data directory is refused).
    ///
    /// # Errors
    /// `ShardCountMismatch` when the counts differ; `DuplicateNode` for the master's own id.
    pub fn check_join(
        &self,
        req: &JoinRequest,
        master_id: &str,
        master_address: &str,
    ) -> Result<Option<String>, KvError> {
        if req.shards != self.shards {
            return Err(KvError::ShardCountMismatch {
                master: self.shards,
                replica: req.shards,
            });
        }
        if req.node_id == master_id {
            return Err(KvError::DuplicateNode {
                node_id: req.node_id.clone(),
                existing: master_address.to_string(),
            });
        }
        let registry = self.registry();
        Ok(registry.get(&req.node_id).and_then(|existing| {
            (existing.address != req.address
                && existing
                    .last_seen
                    .is_some_and(|t| t.elapsed() < self.replica_timeout))
            .then(|| existing.address.clone())
        }))
    }

    /// Registers (or re-registers) a replica, keeping the counters of one that comes back.
    pub fn join(&self, req: &JoinRequest) {
        let mut registry = self.registry();
        let replica = match registry.remove(&req.node_id) {
            Some(old) => Replica {
                address: req.address.clone(),
                last_seen: Some(Instant::now()),
                last_seen_unix_ms: Some(unix_ms()),
                marked_down: false,
                asked_at: None,
                confirmed: old.confirmed,
                shards: old
                    .shards
                    .into_iter()
                    .map(|p| ShardPos {
                        first_pull: true,
                        ..p
                    })
                    .collect(),
            },
            None => Replica {
                last_seen: Some(Instant::now()),
                last_seen_unix_ms: Some(unix_ms()),
                marked_down: false,
                ..Replica::new(req.address.clone(), None, self.shards)
            },
        };
        registry.insert(req.node_id.clone(), replica);
        drop(registry);
        tracing::info!(node_id = %req.node_id, address = %req.address, "replica joined");
    }

    /// Removes a replica from the registry.
    pub fn forget(&self, node_id: &str) {
        self.registry().remove(node_id);
    }

    /// Whether the replica was heard from within the replica timeout.
    #[must_use]
    pub fn is_up(&self, node_id: &str) -> bool {
        self.registry().get(node_id).is_some_and(|r| {
            r.last_seen
                .is_some_and(|t| t.elapsed() < self.replica_timeout)
        })
    }

    /// The replica's acknowledged sequence on `shard` (0 when unknown).
    #[must_use]
    pub fn acked_by(&self, node_id: &str, shard: u32) -> u64 {
        self.registry()
            .get(node_id)
            .and_then(|r| r.shards.get(shard as usize))
            .map_or(0, |p| p.acked)
    }

    /// Whether a full-resync copy for the replica is in progress.
    #[must_use]
    pub fn is_copying(&self, node_id: &str) -> bool {
        self.copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .any(|(n, _)| n == node_id)
    }

    /// A change of any replica's acknowledgements (for waits).
    #[must_use]
    pub fn ack_changes(&self) -> watch::Receiver<u64> {
        self.acks.subscribe()
    }

    /// The last time each replica was heard from (for `cluster.json`).
    #[must_use]
    pub fn last_seen(&self) -> Vec<(String, Option<u64>)> {
        self.registry()
            .iter()
            .map(|(id, r)| (id.clone(), r.last_seen_unix_ms))
            .collect()
    }

    /// Records a pull: `from_seq` is the replica's durable position on `shard`.
    ///
    /// # Errors
    /// `NotJoined` for an unknown node.
    pub fn record_pull(
        &self,
        node_id: &str,
        shard: u32,
        from_seq: u64,
        master_seq: u64,
    ) -> Result<PullNote, KvError> {
        let mut registry = self.registry();
        let replica = heard_from(&mut registry, node_id)?;
        let pos = replica
            .shards
            .get_mut(shard as usize)
            .ok_or(KvError::NoSuchShard {
                shard,
                shards: self.shards,
            })?;
        // A replica ahead of this master has a history the master does not (writes lost by a
        // master restarted under --sync=none): it acknowledges nothing until its full resync,
        // or the master's next writes at those sequences would count as acknowledged.
        let acked = if from_seq > master_seq { 0 } else { from_seq };
        let advanced = acked != pos.acked;
        pos.acked = acked;
        if acked == master_seq {
            pos.caught_up_at = Some(Instant::now());
        }
        let first_since_join = std::mem::take(&mut pos.first_pull);
        drop(registry);
        if advanced {
            self.acks.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(PullNote { first_since_join })
    }

    /// Records a pull whose position is not on this master's history: the replica is heard
    /// from, acknowledges nothing, and its next pull (after it truncated) still counts as the
    /// first since it joined.
    ///
    /// # Errors
    /// `NotJoined` for an unknown node.
    pub fn record_diverged(&self, node_id: &str, shard: u32) -> Result<(), KvError> {
        let mut registry = self.registry();
        let replica = heard_from(&mut registry, node_id)?;
        if let Some(pos) = replica.shards.get_mut(shard as usize) {
            pos.acked = 0;
        }
        Ok(())
    }

    /// Records a replica's confirmation: it received the answer this master sent at `sent_at`.
    pub fn confirm(&self, node_id: &str, sent_at: u64) {
        if let Some(r) = self.registry().get_mut(node_id) {
            r.confirmed = r.confirmed.max(sent_at);
        }
    }

    /// Every replica's latest confirmation (0: none).
    #[must_use]
    pub fn confirmations(&self) -> Vec<u64> {
        self.registry().values().map(|r| r.confirmed).collect()
    }

    /// Counts a partial resync (a replica resumed from its own position).
    pub fn count_partial(&self, node_id: &str, shard: u32) {
        if let Some(pos) = self
            .registry()
            .get_mut(node_id)
            .and_then(|r| r.shards.get_mut(shard as usize))
        {
            pos.partial_resyncs += 1;
        }
    }

    /// How many replicas have acknowledged `seq` on `shard`.
    #[must_use]
    pub fn acked(&self, shard: u32, seq: u64) -> u32 {
        let n = self
            .registry()
            .values()
            .filter(|r| r.shards.get(shard as usize).is_some_and(|p| p.acked >= seq))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Waits until `required` replicas acknowledged `seq` on `shard`, or `timeout` passes.
    ///
    /// # Errors
    /// `AcksTimeout` naming how many did.
    pub async fn wait_acks(
        &self,
        shard: u32,
        seq: u64,
        required: u32,
        timeout: Duration,
    ) -> Result<(), KvError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.acks.subscribe();
        loop {
            changes.borrow_and_update();
            let acked = self.acked(shard, seq);
            if acked >= required {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let acked = self.acked(shard, seq);
                    if acked >= required {
                        return Ok(());
                    }
                    return Err(KvError::AcksTimeout {
                        version: seq,
                        acked,
                        required,
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
    }

    /// Starts a consistent copy of `shard` for `node_id` (a full resync), replacing any earlier
    /// one; counts the full resync.
    ///
    /// # Errors
    /// `NotJoined` for an unknown node.
    pub fn start_copy(
        &self,
        node_id: &str,
        shard: u32,
        snapshot: fjall::Snapshot,
        seq: u64,
    ) -> Result<(), KvError> {
        {
            let mut registry = self.registry();
            let replica = heard_from(&mut registry, node_id)?;
            if let Some(pos) = replica.shards.get_mut(shard as usize) {
                pos.full_resyncs += 1;
            }
        }
        let mut copies = self
            .copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        copies.retain(|_, c| c.last_used.elapsed() < SESSION_IDLE);
        copies.insert(
            (node_id.to_string(), shard),
            CopySession {
                snapshot,
                seq,
                last_used: Instant::now(),
            },
        );
        tracing::info!(
            node_id,
            shard,
            seq,
            "full resync started: sending a copy of the shard"
        );
        Ok(())
    }

    /// The read view and sequence of a copy in progress.
    ///
    /// # Errors
    /// `ResyncExpired` when there is none.
    pub fn copy(&self, node_id: &str, shard: u32) -> Result<(fjall::Snapshot, u64), KvError> {
        let mut copies = self
            .copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = copies
            .get_mut(&(node_id.to_string(), shard))
            .ok_or(KvError::ResyncExpired { shard })?;
        session.last_used = Instant::now();
        if let Some(r) = self.registry().get_mut(node_id) {
            r.last_seen = Some(Instant::now());
        }
        Ok((session.snapshot.clone(), session.seq))
    }

    /// Drops a finished copy.
    pub fn end_copy(&self, node_id: &str, shard: u32) {
        let mut copies = self
            .copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = copies.remove(&(node_id.to_string(), shard)) {
            tracing::info!(node_id, shard, seq = c.seq, "full resync copy sent");
        }
    }

    /// Logs replicas that went silent past the timeout (once per transition), and returns the
    /// silent ones not asked within `ask_every`: the master asks them for their epoch, so it
    /// learns of a promotion even when nobody calls it.
    pub fn sweep(&self, ask_every: Duration) -> Vec<Member> {
        let since_start = self.since_start();
        let mut registry = self.registry();
        let mut ask = Vec::new();
        for (node_id, r) in registry.iter_mut() {
            let silent = r.silent_for(since_start);
            if silent < self.replica_timeout {
                continue;
            }
            if !r.marked_down {
                r.marked_down = true;
                tracing::warn!(
                    node_id = %node_id,
                    address = %r.address,
                    silent_secs = silent.as_secs(),
                    "replica marked down: no pull within the replica timeout"
                );
            }
            if r.asked_at.is_none_or(|t| t.elapsed() >= ask_every) {
                r.asked_at = Some(Instant::now());
                ask.push(Member {
                    node_id: node_id.clone(),
                    address: r.address.clone(),
                });
            }
        }
        ask
    }

    /// Every replica with its lag; `master_seq(shard)` and `bytes_after(shard, seq)` come from
    /// the shard writers.
    pub fn status(
        &self,
        master_seq: impl Fn(u32) -> u64,
        bytes_after: impl Fn(u32, u64) -> u64,
    ) -> Vec<ReplicaStatus> {
        let since_start = self.since_start();
        let registry = self.registry();
        let mut out: Vec<ReplicaStatus> = registry
            .iter()
            .map(|(node_id, r)| {
                let last_seen = r.silent_for(since_start);
                let shards = r
                    .shards
                    .iter()
                    .zip(0u32..)
                    .map(|(p, shard)| {
                        let master = master_seq(shard);
                        let behind = master.saturating_sub(p.acked);
                        ReplicaShardLag {
                            shard,
                            acked_seq: p.acked,
                            master_seq: master,
                            ops_behind: behind,
                            bytes_behind: if behind == 0 {
                                0
                            } else {
                                bytes_after(shard, p.acked)
                            },
                            secs_since_caught_up: if behind == 0 {
                                0.0
                            } else {
                                p.caught_up_at
                                    .map_or(last_seen.as_secs_f64(), |t| t.elapsed().as_secs_f64())
                            },
                            partial_resyncs: p.partial_resyncs,
                            full_resyncs: p.full_resyncs,
                        }
                    })
                    .collect();
                ReplicaStatus {
                    node_id: node_id.clone(),
                    address: r.address.clone(),
                    link: if r.last_seen.is_some() && last_seen < self.replica_timeout {
                        LinkState::Up
                    } else {
                        LinkState::Down
                    },
                    last_seen_secs: last_seen.as_secs_f64(),
                    last_seen_unix_ms: r.last_seen_unix_ms,
                    shards,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, addr: &str, shards: u32) -> JoinRequest {
        JoinRequest {
            node_id: id.into(),
            address: addr.into(),
            shards,
            cluster_id: None,
            epoch: 1,
        }
    }

    fn join(m: &MasterState, id: &str, addr: &str, shards: u32) -> Result<Option<String>, KvError> {
        let r = req(id, addr, shards);
        let conflict = m.check_join(&r, "master-id", "m:1")?;
        if conflict.is_none() {
            m.join(&r);
        }
        Ok(conflict)
    }

    #[test]
    fn join_refusals_name_what_differs() {
        let m = MasterState::new(2, Duration::from_secs(5));
        assert_eq!(
            join(&m, "r1", "a:1", 3),
            Err(KvError::ShardCountMismatch {
                master: 2,
                replica: 3
            })
        );
        assert_eq!(join(&m, "r1", "a:1", 2), Ok(None));
        // The same node coming back at the same address is fine; another address while the
        // first is live must be checked by asking the first.
        assert_eq!(join(&m, "r1", "a:1", 2), Ok(None));
        assert_eq!(join(&m, "r1", "b:2", 2), Ok(Some("a:1".into())));
        assert!(matches!(
            join(&m, "master-id", "c:3", 2),
            Err(KvError::DuplicateNode { .. })
        ));
    }

    #[test]
    fn members_are_listed_down_until_they_pull_and_forgotten_on_request() {
        let m = MasterState::new(1, Duration::from_millis(100));
        m.reset(
            &[
                MemberRecord {
                    node_id: "me".into(),
                    address: "m:1".into(),
                    last_seen_unix_ms: None,
                },
                MemberRecord {
                    node_id: "r1".into(),
                    address: "a:1".into(),
                    last_seen_unix_ms: Some(1234),
                },
            ],
            "me",
        );
        let status = m.status(|_| 5, |_, _| 0);
        assert_eq!(status.len(), 1, "the master itself is not a replica");
        assert_eq!(status[0].link, LinkState::Down);
        assert_eq!(status[0].last_seen_unix_ms, Some(1234));
        // Silent past the timeout: the sweep asks it for its epoch, once per period.
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(m.sweep(Duration::from_secs(60)).len(), 1);
        assert!(m.sweep(Duration::from_secs(60)).is_empty());
        m.join(&req("r1", "a:1", 1));
        assert!(m.is_up("r1"));
        m.forget("r1");
        assert!(m.status(|_| 5, |_, _| 0).is_empty());
    }

    #[test]
    fn acks_count_replicas_past_the_sequence() {
        let m = MasterState::new(2, Duration::from_secs(5));
        assert!(matches!(
            m.record_pull("ghost", 0, 1, 1),
            Err(KvError::NotJoined { .. })
        ));
        join(&m, "r1", "a:1", 2).expect("join");
        join(&m, "r2", "b:1", 2).expect("join");
        assert!(m.record_pull("r1", 0, 0, 5).expect("pull").first_since_join);
        assert!(!m.record_pull("r1", 0, 5, 5).expect("pull").first_since_join);
        m.record_pull("r2", 0, 3, 5).expect("pull");
        assert_eq!(m.acked(0, 5), 1);
        assert_eq!(m.acked(0, 3), 2);
        assert_eq!(m.acked(1, 1), 0);
        assert_eq!(m.acked_by("r2", 0), 3);
        let status = m.status(|_| 5, |_, seq| (5 - seq) * 10);
        let r2 = status.iter().find(|r| r.node_id == "r2").expect("r2");
        assert_eq!(
            (r2.shards[0].ops_behind, r2.shards[0].bytes_behind),
            (2, 20)
        );
        assert_eq!(r2.link, LinkState::Up);
        let r1 = status.iter().find(|r| r.node_id == "r1").expect("r1");
        assert_eq!(r1.shards[0].ops_behind, 0);
        assert!(r1.shards[0].secs_since_caught_up.abs() < f64::EPSILON);
    }

    #[test]
    fn a_replica_ahead_of_the_master_acknowledges_nothing() {
        let m = MasterState::new(1, Duration::from_secs(5));
        join(&m, "r1", "a:1", 1).expect("join");
        // The master restarted at sequence 900; the replica had applied up to 1000.
        m.record_pull("r1", 0, 1000, 900).expect("pull");
        assert_eq!(
            m.acked(0, 950),
            0,
            "sequences 901..=1000 are new writes the replica lacks"
        );
        assert_eq!(m.acked(0, 1), 0);
        let status = m.status(|_| 900, |_, _| 0);
        assert_eq!(status[0].shards[0].ops_behind, 900);
    }

    #[tokio::test]
    async fn wait_acks_wakes_on_a_pull_and_times_out_with_the_count() {
        let m = std::sync::Arc::new(MasterState::new(1, Duration::from_secs(5)));
        join(&m, "r1", "a:1", 1).expect("join");
        let e = m
            .wait_acks(0, 3, 1, Duration::from_millis(50))
            .await
            .expect_err("timeout");
        assert_eq!(
            e,
            KvError::AcksTimeout {
                version: 3,
                acked: 0,
                required: 1,
                timeout_ms: 50
            }
        );
        let waiter = {
            let m = std::sync::Arc::clone(&m);
            tokio::spawn(async move { m.wait_acks(0, 3, 1, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        m.record_pull("r1", 0, 3, 3).expect("pull");
        assert_eq!(waiter.await.expect("join"), Ok(()));
    }
}
