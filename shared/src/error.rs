//! `KvError`, the one error type that crosses the wire.
//!
//! Every variant is something a caller can act on: a program matches on it, and a person reads
//! its message, which names the limit that was hit or what to do next.

use serde::{Deserialize, Serialize};

/// The error every RPC of the `Kv` service can return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvError {
    /// The key is empty; a key needs at least one byte.
    #[error("the key is empty: a key must have at least 1 byte")]
    EmptyKey,
    /// The key is longer than the node accepts.
    #[error("the key is {len} bytes, over the limit of {max} bytes (kvd --max-key-bytes)")]
    KeyTooLarge {
        /// Length of the key that was sent.
        len: u64,
        /// The node's limit.
        max: u64,
    },
    /// The value is longer than the node accepts.
    #[error("the value is {len} bytes, over the limit of {max} bytes (kvd --max-value-bytes)")]
    ValueTooLarge {
        /// Length of the value that was sent.
        len: u64,
        /// The node's limit.
        max: u64,
    },
    /// A `put --if-version` found the key at another version (or absent).
    #[error("version mismatch: expected version {expected}, the key is {}", match .actual { Some(v) => format!("at version {v}"), None => "absent".to_string() })]
    VersionMismatch {
        /// The version the caller expected.
        expected: u64,
        /// The version the key has now, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// A `put --if-absent` found the key present.
    #[error("the key already exists (version {version})")]
    AlreadyExists {
        /// The version of the existing value.
        version: u64,
    },
    /// This node does not take writes; send them to its master. Nothing was written.
    #[error("this node is not the master (epoch {epoch}) and took no write; {}", match .master { Some(m) => format!("send writes to the master at {m}"), None => "its master is not known yet; retry shortly".to_string() })]
    NotMaster {
        /// The master's advertised address, when known.
        master: Option<String>,
        /// The epoch this node knows; the master named is that epoch's.
        epoch: u64,
    },
    /// A master of another history: its cluster id is not the one this replica belongs to.
    #[error(
        "the master at {master} belongs to cluster {master_cluster}, but this replica's data belongs to cluster {replica_cluster}: \
         the master's data directory is not the one this replica followed (a new or wrong --data-dir, a failed mount?). \
         The replica keeps its data and does not follow it. Point the master at its real data directory; \
         or, to discard this replica's data and copy that master's on purpose, restart the replica with --reseed"
    )]
    ClusterMismatch {
        /// The master's address.
        master: String,
        /// The master's cluster id.
        master_cluster: String,
        /// The replica's cluster id.
        replica_cluster: String,
    },
    /// A switchover or promotion that cannot go ahead; nothing was changed.
    #[error("{reason}")]
    FailoverRefused {
        /// The cause and what to do.
        reason: String,
    },
    /// A switchover that started and was called off; writes resumed on the master.
    #[error("the switchover was called off and writes resumed on this master: {reason}")]
    FailoverAborted {
        /// What went wrong.
        reason: String,
    },
    /// A node named that is not a member of the cluster.
    #[error("{node:?} is not a member of this cluster{}; `kvctl status` lists the members", if .known.is_empty() { String::new() } else { format!(" (members: {})", .known.join(", ")) })]
    UnknownNode {
        /// What was asked for.
        node: String,
        /// The members (node id at address).
        known: Vec<String>,
    },
    /// A node name that matches several members.
    #[error("{node:?} matches several members ({}); give more of the node id", .matches.join(", "))]
    AmbiguousNode {
        /// What was asked for.
        node: String,
        /// The members it matches.
        matches: Vec<String>,
    },
    /// A master in automatic failover whose lease ran out: a majority has not confirmed it
    /// recently, so another node may be elected. It takes no writes and serves no reads.
    #[error(
        "this master (epoch {epoch}) has not been confirmed by a majority for {since_ms} ms (its \
         lease ran out): it takes no writes and serves no reads until its replicas confirm it \
         again, or another node is elected; retry on the others"
    )]
    NoLease {
        /// Its epoch.
        epoch: u64,
        /// Since when its lease ended.
        since_ms: u64,
    },
    /// The node cannot serve this yet (a new master catching up from its majority); retry.
    #[error("not ready: {reason}; retry shortly")]
    NotReady {
        /// Why.
        reason: String,
    },
    /// A request from a node of an older epoch; the sender must catch up with `epoch`.
    #[error("stale epoch {got}: this node is at epoch {epoch}{}", match .master { Some(m) => format!(", whose master is {m}"), None => String::new() })]
    StaleEpoch {
        /// The sender's epoch.
        got: u64,
        /// This node's epoch.
        epoch: u64,
        /// The master of that epoch.
        master: Option<String>,
    },
    /// A shard number out of range.
    #[error("shard {shard} does not exist: this node has {shards} shards (0..{shards})")]
    NoSuchShard {
        /// The shard asked for.
        shard: u32,
        /// How many shards the node has.
        shards: u32,
    },
    /// A request argument is out of its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The storage engine failed; the write was not acknowledged.
    #[error("storage error on shard {shard}: {message}")]
    Storage {
        /// The shard whose store failed.
        shard: u32,
        /// What the engine said.
        message: String,
    },
    /// The disk of the node's data directory is (nearly) full: the write was not made. Writes
    /// resume by themselves once space is freed.
    #[error("shard {shard} did not take the write: {message}")]
    DiskFull {
        /// The shard.
        shard: u32,
        /// Why, with how much is free and what to do.
        message: String,
    },
    /// The node's commit of the write failed half-way: it may or may not be durable. Read the
    /// key to find out.
    #[error(
        "the outcome of the write on shard {shard} is unknown: {message}; read the key to find out"
    )]
    WriteOutcomeUnknown {
        /// The shard.
        shard: u32,
        /// What failed.
        message: String,
    },
    /// The node is shutting down and takes no new requests; retry against it once restarted.
    #[error("the node is shutting down; retry once it is back")]
    ShuttingDown,
    /// A replica's shard count differs from the master's.
    #[error(
        "shard count mismatch: the master has {master} shards, the replica has {replica}; start the replica with --shard={master} and an empty --data-dir"
    )]
    ShardCountMismatch {
        /// The master's count.
        master: u32,
        /// The replica's count.
        replica: u32,
    },
    /// Another live node already uses this node id.
    #[error(
        "node id {node_id} is already used by the replica at {existing}, which is up; a copied data directory? give this replica its own --data-dir"
    )]
    DuplicateNode {
        /// The contested id.
        node_id: String,
        /// The address of the node that has it.
        existing: String,
    },
    /// A replica call from a node that has not joined (for example after a master restart).
    #[error("node {node_id} has not joined this master; join first")]
    NotJoined {
        /// The node id.
        node_id: String,
    },
    /// The write is committed on the master but fewer replicas than asked acknowledged it in time.
    #[error(
        "the write is committed on the master at version {version}, but only {acked} of {required} replicas acknowledged it within {timeout_ms} ms"
    )]
    AcksTimeout {
        /// The version written.
        version: u64,
        /// Replicas that did acknowledge.
        acked: u32,
        /// Replicas asked for.
        required: u32,
        /// The wait.
        timeout_ms: u64,
    },
    /// The shard cannot serve reads now (a full resync is copying it).
    #[error("shard {shard} is unavailable on this node: {reason}; read from the master meanwhile")]
    ShardUnavailable {
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// A digest was asked at a sequence this node cannot provide.
    #[error(
        "shard {shard} is at sequence {current}, so no digest at {requested} can be taken; retry"
    )]
    SequenceUnavailable {
        /// The shard.
        shard: u32,
        /// Where the node is.
        current: u64,
        /// What was asked.
        requested: u64,
    },
    /// A full-resync copy expired on the master (idle too long, or the master restarted).
    #[error("the resync copy of shard {shard} expired on the master; start the copy again")]
    ResyncExpired {
        /// The shard.
        shard: u32,
    },
    /// The operation exists in the protocol but this node does not offer it yet.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The node requires a token (`kvd --auth-file`) and none, or an unknown one, was given, or
    /// this address failed too often lately. Nothing was done.
    #[error("{reason}")]
    Unauthenticated {
        /// What is wrong and what to do, in words.
        reason: String,
    },
    /// The connection's token has a role that may not make this call. Nothing was done.
    #[error(
        "permission denied: {call} needs a token with the {needs} role (or admin); this \
         connection's token {name:?} has the {role} role"
    )]
    PermissionDenied {
        /// The call refused.
        call: String,
        /// The least role that may make it.
        needs: String,
        /// The connection's role.
        role: String,
        /// The token's name in the node's `--auth-file`.
        name: String,
    },
}

impl KvError {
    /// Whether this error means the key was absent or a compare-and-swap condition did not hold:
    /// the request was fine and the node answered, the answer was "no".
    #[must_use]
    pub fn is_condition_failed(&self) -> bool {
        matches!(
            self,
            Self::VersionMismatch { .. } | Self::AlreadyExists { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit() {
        let e = KvError::KeyTooLarge {
            len: 5120,
            max: 4096,
        };
        assert_eq!(
            e.to_string(),
            "the key is 5120 bytes, over the limit of 4096 bytes (kvd --max-key-bytes)"
        );
        let e = KvError::VersionMismatch {
            expected: 3,
            actual: Some(7),
        };
        assert_eq!(
            e.to_string(),
            "version mismatch: expected version 3, the key is at version 7"
        );
        let e = KvError::VersionMismatch {
            expected: 3,
            actual: None,
        };
        assert!(e.to_string().ends_with("the key is absent"));
        assert!(e.is_condition_failed());
        let e = KvError::NotMaster {
            master: Some("localhost:3000".into()),
            epoch: 2,
        };
        assert!(
            e.to_string().ends_with("to the master at localhost:3000"),
            "{e}"
        );
        assert!(e.to_string().contains("epoch 2"), "{e}");
    }
}
