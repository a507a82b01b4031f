//! Request and reply types of the `Kv` service. Keys and values are bytes on the wire
//! (`serde_bytes`), never a sequence of numbers.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

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
}
