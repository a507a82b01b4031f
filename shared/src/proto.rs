//! The tarpc service.
//!
//! Every call returns `Result<_, KvError>`; transport failures arrive separately as tarpc's
//! `RpcError`, so a client writes `client.get(ctx, key).await??`.

use serde_bytes::ByteBuf;

use crate::{KvError, NodeStatus, PutRequest, ScanPage, ScanRequest, Version, Versioned};

/// The key-value service a `kvd` node serves.
#[tarpc::service]
pub trait Kv {
    /// Reads a key: its value and version, or `None` when absent.
    async fn get(key: ByteBuf) -> Result<Option<Versioned>, KvError>;
    /// Writes a key (subject to its condition) and returns the new version once durable under the
    /// node's sync policy.
    async fn put(req: PutRequest) -> Result<Version, KvError>;
    /// Deletes a key; returns the sequence number of the delete, or `None` when it was absent.
    async fn delete(key: ByteBuf) -> Result<Option<Version>, KvError>;
    /// Lists keys in order, by prefix, one page at a time.
    async fn scan(req: ScanRequest) -> Result<ScanPage, KvError>;
    /// The node's role, address and per-shard figures.
    async fn status() -> Result<NodeStatus, KvError>;
}
