//! Replication: pull-based log shipping with offsets, like Redis's PSYNC and Kafka's follower
//! fetch. The master keeps the cluster's metadata (who joined, each replica's position).
//!
//! ```text
//!   replica                                   master
//!   ───────                                   ──────
//!   join(node_id, address, shards) ─────────> registry (refuses shard mismatch, duplicate id)
//!   per shard, forever:
//!     pull(shard, from_seq = applied) ──────> records acked = from_seq, last seen = now
//!                                             log after from_seq? answer at once
//!                                             nothing new? hold up to wait_ms (long poll)
//!                                             trimmed / replica ahead? FullResyncNeeded
//!     apply entries + applied seq  <──────── Entries
//!     (one atomic, synced commit)
//!   full resync:
//!     reset shard (durable marker), snapshot pages at sequence S, finish at S, pull from S
//! ```
//!
//! `from_seq` doubles as the acknowledgement: a put asking for `acks = k` waits until k replicas
//! have pulled past its sequence. See `docs/replication.md`.

pub mod master;
pub mod replica;
pub mod rollback;

pub use master::MasterState;
pub use replica::ReplicaState;

use std::time::{SystemTime, UNIX_EPOCH};

/// Most bytes of log records one pull returns.
pub const PULL_MAX_BYTES: u32 = 4 * 1024 * 1024;
/// Most records one pull returns.
pub const PULL_MAX_ENTRIES: usize = 8192;
/// Most bytes of keys and values one snapshot page carries.
pub const SNAPSHOT_PAGE_BYTES: u32 = 4 * 1024 * 1024;
/// Longest a master holds a pull with nothing to send.
pub const MAX_PULL_WAIT_MS: u32 = 10_000;

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
