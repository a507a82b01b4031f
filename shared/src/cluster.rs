//! Wire types of the cluster's control plane: epochs, log positions, members, the epoch
//! exchange between nodes (`hello`), and the plans and outcomes of switchover and promotion.
//!
//! An **epoch** is cluster-wide: epoch 1 is the first master's; each switchover or promotion
//! takes the next one. Every log record carries the epoch of the master that wrote it, so a
//! position in a shard's log is a [`LogPos`] (epoch, sequence), and two nodes that hold the
//! same position hold the same history up to it. See `docs/failover.md`.

use serde::{Deserialize, Serialize};

use crate::Role;

/// A cluster-wide epoch.
pub type Epoch = u64;

/// The epoch of data written before epochs existed, and of a new cluster's first master.
pub const FIRST_EPOCH: Epoch = 1;

/// A position in a shard's log: the epoch of the entry at `seq`, and `seq` (0, 0 when empty).
///
/// Positions order by epoch first: a log whose last entry is of a later epoch is further along
/// than one with more entries of an earlier epoch (those may be entries a later master never had).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPos {
    /// The epoch of the master that wrote the entry at `seq`.
    pub epoch: Epoch,
    /// The sequence number.
    pub seq: u64,
}

impl std::fmt::Display for LogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// Where an epoch begins in a shard's log (like Kafka's leader-epoch checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    /// The epoch.
    pub epoch: Epoch,
    /// The sequence of its first entry on the shard.
    pub first_seq: u64,
}

/// A node of the cluster: its id and the address it advertises (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node id (kept in its data directory).
    pub node_id: String,
    /// The address it advertises.
    pub address: String,
}

/// One shard of a node, as another node needs to know it to decide a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPosition {
    /// The shard.
    pub shard: u32,
    /// The node's last applied entry.
    pub pos: LogPos,
    /// The last sequence of the master that this node heard of (on a master, its own last).
    pub master_seq: u64,
    /// A full resync is copying the shard on this node.
    pub resyncing: bool,
}

/// The epoch exchange between nodes: sent by a master that starts (before it takes a write), by
/// a master whose replicas stopped pulling, and by a new master announcing itself. The receiver
/// adopts a higher epoch (persisting it first) and answers with its own view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who asks.
    pub from: Member,
    /// The cluster the sender belongs to.
    pub cluster_id: String,
    /// The sender's epoch.
    pub epoch: Epoch,
    /// The master of that epoch, as the sender knows it.
    pub master: Option<Member>,
}

/// A node's answer to `hello` (and its view for a failover plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// Who answers.
    pub node: Member,
    /// Its cluster.
    pub cluster_id: String,
    /// Its epoch (after adopting the sender's, if that was higher).
    pub epoch: Epoch,
    /// The master of its epoch, as it knows it.
    pub master: Option<Member>,
    /// Its role now.
    pub role: Role,
    /// Its position on every shard.
    pub shards: Vec<ShardPosition>,
    /// Whether its link to its master is up (a master: always true).
    pub link_up: bool,
}

/// `kvctl failover`: a switchover from the live master to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// The replica to hand over to (node id, a unique prefix of one, or its address); `None`:
    /// the best candidate (most caught up, link up, not resyncing).
    pub to: Option<String>,
    /// Only say what would happen.
    pub plan_only: bool,
    /// How long writes may wait, and the switchover may take, in milliseconds.
    pub timeout_ms: u64,
}

/// One replica's position as a candidate for a switchover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The replica.
    pub node: Member,
    /// Whether its link is up.
    pub link_up: bool,
    /// Whether any shard is being copied by a full resync.
    pub resyncing: bool,
    /// Operations behind the master, summed over shards.
    pub ops_behind: u64,
    /// Why it can or cannot take over.
    pub verdict: String,
}

/// What a switchover would do (`--plan`) or did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverPlan {
    /// The master now.
    pub master: Member,
    /// Its epoch; the new master takes `epoch + 1`.
    pub epoch: Epoch,
    /// The chosen replica, `None` when none can take over.
    pub target: Option<Member>,
    /// Why that one.
    pub reason: String,
    /// Every replica considered, best first.
    pub candidates: Vec<Candidate>,
}

/// The outcome of a switchover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReply {
    /// What was planned.
    pub plan: FailoverPlan,
    /// Whether it was carried out (false for `--plan`).
    pub done: bool,
    /// The new master's epoch, once done.
    pub epoch: Epoch,
    /// How long writes were paused, in milliseconds.
    pub pause_ms: u64,
    /// Each shard's last sequence at the switch, which the new master had applied.
    pub positions: Vec<u64>,
}

/// `kvctl promote`: make a replica the master while the master is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// Promote even if the plan says writes would be lost.
    pub force: bool,
    /// Only say what would happen.
    pub plan_only: bool,
    /// How long the catch-up from other replicas may take, in milliseconds.
    pub timeout_ms: u64,
}

/// One node's position on one shard, in a promotion plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePosition {
    /// The node.
    pub node_id: String,
    /// Its address.
    pub address: String,
    /// Its last applied entry.
    pub pos: LogPos,
    /// The last master sequence it heard of.
    pub master_seq: u64,
}

/// One shard of a promotion plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// The shard.
    pub shard: u32,
    /// The candidate's last applied entry.
    pub candidate: LogPos,
    /// Every other reachable replica's position.
    pub replicas: Vec<NodePosition>,
    /// The last master sequence any reachable node heard of.
    pub master_seq_heard: u64,
    /// The replica the candidate fetches missing entries from first, if one is ahead.
    pub catch_up_from: Option<NodePosition>,
    /// Where the candidate will be after that catch-up.
    pub after_catch_up: LogPos,
    /// Writes the master had that no live node has: `master_seq_heard - after_catch_up.seq`
    /// (at least these; the master may have had more that nobody heard of).
    pub lost: u64,
}

/// What a promotion would do (`--plan`) or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionPlan {
    /// The node to promote.
    pub candidate: Member,
    /// The epoch now; the candidate takes `epoch + 1`.
    pub epoch: Epoch,
    /// The master of the epoch now.
    pub old_master: Option<Member>,
    /// Whether the old master answered (then promotion is refused: use `failover`).
    pub old_master_answers: bool,
    /// Per shard.
    pub shards: Vec<ShardPlan>,
    /// Writes lost in all, summed over shards.
    pub lost: u64,
    /// Members that did not answer.
    pub unreachable: Vec<Member>,
    /// Why the promotion cannot go ahead (without `--force` when only writes would be lost),
    /// `None` when it can.
    pub refusal: Option<String>,
}

/// The outcome of a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteReply {
    /// What was planned.
    pub plan: PromotionPlan,
    /// Whether it was carried out.
    pub done: bool,
    /// The epoch the candidate took.
    pub epoch: Epoch,
    /// Entries fetched from other replicas before the promotion, summed over shards.
    pub caught_up: u64,
}

/// The old master asking its chosen replica to take over (the last step of a switchover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeOverRequest {
    /// The master handing over.
    pub from: Member,
    /// The cluster.
    pub cluster_id: String,
    /// The epoch the replica takes (the old master's + 1).
    pub epoch: Epoch,
    /// Each shard's last sequence, which the replica must have applied.
    pub positions: Vec<u64>,
}

/// A candidate asking for a node's vote in an automatic failover (`docs/auto-failover.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// The candidate.
    pub from: Member,
    /// Its cluster.
    pub cluster_id: String,
    /// The epoch it stands for (one above the highest it knows).
    pub epoch: Epoch,
    /// A pre-vote: the voter only says whether it would grant, persisting nothing.
    pub pre: bool,
    /// The candidate's last position on every shard, in shard order.
    pub positions: Vec<LogPos>,
}

/// A node's answer to a vote request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReply {
    /// Who answers.
    pub node: Member,
    /// Whether it grants (for a real vote: it accepted the candidate for the epoch, persisted).
    pub granted: bool,
    /// Why not, in words (empty when granted).
    pub reason: String,
    /// Its epoch after the request.
    pub epoch: Epoch,
    /// The master of that epoch, as it knows it.
    pub master: Option<Member>,
    /// Its last position on every shard, in shard order (the winner catches up from the most
    /// advanced voter).
    pub positions: Vec<LogPos>,
}

/// An election in progress, as the candidate sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionStatus {
    /// The epoch stood for.
    pub epoch: Epoch,
    /// The candidate (this node).
    pub candidate: Member,
    /// Node ids that granted their vote so far (the candidate included).
    pub votes: Vec<String>,
    /// Votes needed (a majority of the membership).
    pub needed: u32,
    /// When it started (milliseconds since the Unix epoch).
    pub started_unix_ms: u64,
}

/// How a node fails over, for status and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// `manual` or `auto`.
    pub mode: String,
    /// `--failover-timeout-ms` (auto).
    pub timeout_ms: u64,
    /// On a master in auto mode: how long its lease still runs (0: ended), in milliseconds;
    /// `None` where there is no lease (manual mode, a replica, a master without replicas).
    pub lease_ms: Option<u64>,
    /// An election this node is running.
    pub election: Option<ElectionStatus>,
    /// Why this node cannot fail over on its own, when it cannot (two members, manual mode).
    pub note: Option<String>,
}

impl FailoverStatus {
    /// Manual failover with the default timeout: what a node reports that has no lease and no
    /// election (also what test fakes report).
    #[must_use]
    pub fn manual() -> Self {
        Self {
            mode: "manual".into(),
            timeout_ms: 5000,
            lease_ms: None,
            election: None,
            note: None,
        }
    }
}

/// The last failover a node took part in, for status and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// The epoch it started.
    pub epoch: Epoch,
    /// `switchover`, `promote` or `promote --force`.
    pub kind: String,
    /// The master before.
    pub from: Option<Member>,
    /// The master after.
    pub to: Member,
    /// When (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// How long it took (milliseconds).
    pub duration_ms: u64,
    /// Why, in words.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_epoch_first() {
        let a = LogPos { epoch: 1, seq: 900 };
        let b = LogPos { epoch: 2, seq: 10 };
        assert!(a < b);
        assert!(LogPos { epoch: 2, seq: 11 } > b);
        assert_eq!(b.to_string(), "2:10");
    }
}
