//! Request and reply types of the `Kv` service. Keys and values are bytes on the wire
//! (`serde_bytes`), never a sequence of numbers.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::cluster::{Epoch, EpochStart, FailoverRecord, FailoverStatus, Member};

/// A version: the sequence number of the shard's replication log entry that wrote the value.
pub type Version = u64;

/// The role a node runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Owns the shards and takes every write.
    Master,
    /// Holds a copy of every shard and serves reads.
    Replica,
}

impl Role {
    /// Lower-case name used in logs, CLI output and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Replica => "replica",
        }
    }
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncPolicy {
    /// After the group commit that holds it is fsynced: survives power loss.
    Always,
    /// After it reached the OS: survives a process crash, not a power loss.
    None,
}

impl SyncPolicy {
    /// Lower-case name used in flags, logs and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::None => "none",
        }
    }
}

/// A value with the version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The value's bytes.
    pub value: ByteBuf,
    /// The log sequence number that wrote it.
    pub version: Version,
}

/// A condition a put must meet to be applied (compare-and-swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PutCondition {
    /// Always write.
    #[default]
    None,
    /// Write only if the key is at exactly this version.
    IfVersion(Version),
    /// Write only if the key does not exist.
    IfAbsent,
}

/// A put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key (1 byte up to the node's key limit).
    pub key: ByteBuf,
    /// The value (up to the node's value limit; may be empty).
    pub value: ByteBuf,
    /// Compare-and-swap condition.
    pub condition: PutCondition,
    /// Replicas that must have applied the write before it is acknowledged (0: the master's
    /// `--min-acks`).
    pub acks: u32,
    /// How long to wait for those acknowledgements (milliseconds; 0: the master's default).
    pub acks_timeout_ms: u32,
}

/// A scan over the keys in order, optionally limited to a prefix, one page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScanRequest {
    /// Only keys starting with these bytes (empty: every key).
    pub prefix: ByteBuf,
    /// Continue after this key: the `next` of the previous page.
    pub start_after: Option<ByteBuf>,
    /// Most entries to return (0 means the default page size; capped by the node).
    pub limit: u32,
    /// Leave values out (their versions are still returned).
    pub keys_only: bool,
}

/// One key of a scan page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: ByteBuf,
    /// The value, empty when the scan asked for keys only.
    pub value: ByteBuf,
    /// The version that wrote the value.
    pub version: Version,
}

/// A page of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPage {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// Set when more keys may follow: pass it as `start_after` to get the next page.
    pub next: Option<ByteBuf>,
}

/// One shard of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Shard number, `0..shards`.
    pub shard: u32,
    /// Keys stored.
    pub keys: u64,
    /// Sequence number of the last write applied (0 when none).
    pub last_seq: u64,
    /// Bytes the shard's store takes on disk.
    pub disk_bytes: u64,
    /// On a replica: a full resync is copying this shard and its reads are refused.
    pub resyncing: bool,
    /// On a replica: times it resumed from its own position.
    pub partial_resyncs: u64,
    /// On a replica: times it copied the whole shard.
    pub full_resyncs: u64,
    /// The epoch of the last entry applied (0 when none).
    pub last_epoch: Epoch,
    /// On a replica: the master's last sequence as of the last pull (on a master, `last_seq`).
    pub master_seq: u64,
}

/// A node's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Stable identifier kept in the data directory.
    pub node_id: String,
    /// Master or replica.
    pub role: Role,
    /// The address the node advertises (`host:port`).
    pub address: String,
    /// The kvd version.
    pub version: String,
    /// Seconds since the process started.
    pub uptime_secs: u64,
    /// The sync policy writes are acknowledged under.
    pub sync: SyncPolicy,
    /// Largest key the node accepts, in bytes.
    pub max_key_bytes: u64,
    /// Largest value the node accepts, in bytes.
    pub max_value_bytes: u64,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardStatus>,
    /// On a replica: its link to the master.
    pub master_link: Option<MasterLink>,
    /// Keys read (by get, mget and scan) since the process started; its change over time is
    /// the node's read rate.
    pub reads: u64,
    /// The cluster this node belongs to (made by the first master, shared by its replicas).
    pub cluster_id: String,
    /// The cluster-wide epoch this node knows.
    pub epoch: Epoch,
    /// The master of that epoch, as this node knows it.
    pub master: Option<Member>,
    /// On a master: whether it admits writes now (false while a switchover pauses them, while
    /// it asks its replicas for their epoch at start, or once it learned of a newer master).
    pub writable: bool,
    /// The last failover this node took part in.
    pub last_failover: Option<FailoverRecord>,
    /// The failover mode, the lease and any election in progress.
    pub failover: FailoverStatus,
    /// The node's log and what keeps it from taking writes.
    pub storage: StorageStatus,
}

/// The node's log (the journal and replication log of every shard), apart from the shards' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StorageStatus {
    /// Bytes the log's segments take on disk.
    pub log_disk_bytes: u64,
    /// `--log-retention`, in bytes.
    pub log_retention_bytes: u64,
    /// The size of one segment.
    pub log_segment_bytes: u64,
    /// Bytes the data store's own journal takes on disk (fjall's; bounded near 64 MB).
    pub store_journal_bytes: u64,
    /// Why the node takes no writes now (a nearly full disk, a failed log), if it takes none.
    pub problem: Option<String>,
}

/// Many unconditional puts in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MputRequest {
    /// Keys and values, written in this order (a key given twice ends with its last value).
    pub entries: Vec<KeyValue>,
    /// Replicas that must have applied every entry before the call returns (0: the master's
    /// `--min-acks`).
    pub acks: u32,
    /// How long to wait for them (milliseconds; 0: the master's default).
    pub acks_timeout_ms: u32,
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: ByteBuf,
    /// The value.
    pub value: ByteBuf,
}

impl PutRequest {
    /// An unconditional put that waits for no replica.
    #[must_use]
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: ByteBuf::from(key.into()),
            value: ByteBuf::from(value.into()),
            condition: PutCondition::None,
            acks: 0,
            acks_timeout_ms: 0,
        }
    }
}

/// A replica asking to join the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The replica's node id (kept in its data directory).
    pub node_id: String,
    /// The address the replica advertises (`host:port`).
    pub address: String,
    /// The replica's shard count; must equal the master's.
    pub shards: u32,
    /// The replica's cluster, `None` for a new, empty replica (it adopts the master's).
    pub cluster_id: Option<String>,
    /// The replica's epoch.
    pub epoch: Epoch,
}

/// The master's answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The master's node id.
    pub master_id: String,
    /// The master's advertised address.
    pub master_address: String,
    /// The master's cluster.
    pub cluster_id: String,
    /// The master's epoch.
    pub epoch: Epoch,
    /// Every member the master knows (itself included).
    pub members: Vec<Member>,
}

/// A follower's long poll for a shard's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The replica asking.
    pub node_id: String,
    /// The shard.
    pub shard: u32,
    /// The last sequence the replica has durably applied; it is also its acknowledgement.
    pub from_seq: u64,
    /// Most bytes of records to return.
    pub max_bytes: u32,
    /// How long the master may hold the call when it has nothing newer (milliseconds).
    pub wait_ms: u32,
    /// The epoch of the replica's entry at `from_seq`: the master checks that its own entry
    /// there is of the same epoch (same history), never trusting the sequence alone.
    pub from_epoch: Epoch,
    /// The replica's epoch (fencing: a master that hears of a higher one steps down).
    pub epoch: Epoch,
    /// The membership version the replica has; the master sends the members when it changed.
    pub members_version: u64,
    /// A candidate catching up from another replica before a promotion (served by replicas,
    /// not counted as an acknowledgement).
    pub catch_up: bool,
    /// The master's send time (`sent_at`) of the last answer this replica received from it:
    /// its confirmation, on which the master's lease rests (0: none yet).
    pub confirms: u64,
}

/// One replication log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The record as stored in the master's log (see `docs/storage-format.md`).
    pub record: ByteBuf,
}

/// The answer to a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullReply {
    /// Records after `from_seq`, in order (empty when the wait ran out).
    Entries {
        /// The records.
        entries: Vec<LogEntry>,
        /// The master's last sequence on the shard when it answered.
        master_seq: u64,
        /// The master's epoch.
        epoch: Epoch,
        /// The members and their version, when the replica's version is not the latest.
        members: Option<(u64, Vec<Member>)>,
        /// The master's clock when it answered (nanoseconds since it started); the replica sends
        /// it back as its confirmation.
        sent_at: u64,
    },
    /// The replica's entry at `from_seq` is not the master's (another epoch wrote it, or the
    /// master has no entry there): the histories diverged. The replica finds the last position
    /// both share from the master's epoch history, moves its own entries past it to its
    /// rollback file, and pulls again from there.
    Diverged {
        /// The master's epoch history of the shard.
        history: Vec<EpochStart>,
        /// The master's last sequence on the shard.
        master_seq: u64,
        /// The master's epoch.
        epoch: Epoch,
    },
    /// The master no longer has the records after `from_seq` (trimmed), or the replica is ahead
    /// of the master (diverged history): copy the shard with `snapshot` pages.
    FullResyncNeeded {
        /// The oldest record the master still has.
        first_seq: u64,
        /// The master's last sequence on the shard.
        master_seq: u64,
        /// The master's epoch.
        epoch: Epoch,
    },
}

/// A page of a shard copy for a full resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The replica asking.
    pub node_id: String,
    /// The shard.
    pub shard: u32,
    /// `None` starts a new copy (at the master's current sequence); otherwise the `next` of the
    /// previous page.
    pub start_after: Option<ByteBuf>,
    /// Most bytes of keys and values in the page.
    pub max_bytes: u32,
    /// The replica's epoch (fencing, as in every call between nodes).
    pub epoch: Epoch,
}

/// One page of a shard copy, all taken at sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPage {
    /// The sequence the copy was taken at: after the last page, pull from here.
    pub seq: u64,
    /// Keys with values and versions, in key order.
    pub entries: Vec<Entry>,
    /// Pass as `start_after` for the next page; `None` after the last page.
    pub next: Option<ByteBuf>,
    /// The master's epoch history up to `seq` (the replica adopts it with the copy).
    pub history: Vec<EpochStart>,
    /// The master's epoch.
    pub epoch: Epoch,
}

/// An order-independent digest of one shard's content at one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The shard.
    pub shard: u32,
    /// The sequence the digest was taken at.
    pub seq: u64,
    /// Keys in the shard.
    pub keys: u64,
    /// Wrapping sum of xxh3-128 over (key length, key, version, value) of every key, as 32 hex
    /// digits.
    pub hash: String,
}

/// Whether a replication link is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkState {
    /// Heard from within the timeout.
    Up,
    /// Not heard from within the timeout (or never connected).
    Down,
}

impl LinkState {
    /// Lower-case name for output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// One replica's position on one shard, as the master sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaShardLag {
    /// The shard.
    pub shard: u32,
    /// The last sequence the replica acknowledged (durably applied).
    pub acked_seq: u64,
    /// The master's last sequence.
    pub master_seq: u64,
    /// Operations behind: `master_seq - acked_seq`.
    pub ops_behind: u64,
    /// Bytes of log records behind (counted at group-commit granularity).
    pub bytes_behind: u64,
    /// Seconds since the replica was last caught up (0 when it is).
    pub secs_since_caught_up: f64,
    /// Times the replica resumed from its own position (after a restart or a lost link).
    pub partial_resyncs: u64,
    /// Times the replica had to copy the whole shard.
    pub full_resyncs: u64,
}

/// A replica as the master sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Node id.
    pub node_id: String,
    /// Advertised address.
    pub address: String,
    /// Link state.
    pub link: LinkState,
    /// Seconds since the master last heard from it (since the master started, for a member it
    /// has not heard from since).
    pub last_seen_secs: f64,
    /// When it was last heard from, across master restarts (milliseconds since the Unix
    /// epoch; `None`: never).
    pub last_seen_unix_ms: Option<u64>,
    /// Position and lag per shard.
    pub shards: Vec<ReplicaShardLag>,
}

/// The whole cluster as the master sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The master itself.
    pub master: NodeStatus,
    /// Every replica of the cluster's membership (persisted: a replica that is down is listed
    /// down until `kvctl replicas forget` removes it).
    pub replicas: Vec<ReplicaStatus>,
}

/// A replica's view of its link to the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterLink {
    /// The master's address.
    pub master: String,
    /// Whether the link works.
    pub state: LinkState,
    /// When the link entered this state (milliseconds since the Unix epoch).
    pub since_unix_ms: u64,
    /// The last error, when down.
    pub last_error: Option<String>,
    /// The master's node id, once joined.
    pub master_id: Option<String>,
}
