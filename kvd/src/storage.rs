//! Durable storage: one fjall database per shard, a writer thread per shard that group-commits,
//! and the node's metadata file.
//!
//! ```text
//!  <data-dir>/
//!    node.json        format, node id, shard count (fixed for the life of the directory)
//!    LOCK             held while a kvd runs on this directory
//!    shard-0/ ...     one fjall database per shard: keyspaces `data`, `log`, `meta`
//!
//!  RPC task --WriteOp--> mpsc --> writer thread (shard i) --one WriteBatch + fsync--> fjall
//!      ^                                 |
//!      +------- oneshot reply -----------+   (after the batch is durable)
//! ```
//!
//! Invariants: the data and its log record are in one atomic batch; a write is answered only
//! after the batch holding it is durable under the sync policy; a value's version is the
//! sequence number of the log record that wrote it. See `docs/storage-format.md`.

pub mod error;
pub mod format;
pub mod log;
pub mod meta;
pub mod shard;
pub mod writer;

pub use error::StorageError;
pub use meta::NodeMeta;
pub use shard::ShardStore;
pub use writer::{ShardMetrics, WriteKind, WriterHandle, WriterStats};
