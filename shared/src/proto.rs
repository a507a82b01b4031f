//! The tarpc service.
//!
//! Every call returns `Result<_, KvError>`; transport failures arrive separately as tarpc's
//! `RpcError`, so a client writes `client.get(ctx, key).await??`.

use serde_bytes::ByteBuf;

use crate::{
    ClusterStatus, Digest, JoinReply, JoinRequest, KvError, MputRequest, NodeStatus, PullReply,
    PullRequest, PutRequest, ScanPage, ScanRequest, SnapshotPage, SnapshotRequest, Version,
    Versioned,
    cluster::{
        FailoverReply, FailoverRequest, HelloReply, HelloRequest, PromoteReply, PromoteRequest,
        TakeOverRequest,
    },
};

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
    /// Reads many keys in one call (like Redis MGET); answers in the order asked.
    async fn mget(keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, KvError>;
    /// Writes many keys in one call (like Redis MSET, but each key is its own write: keys on
    /// different shards are not one transaction). Every entry is checked before anything is
    /// written; the versions come back in the order given, once all are durable.
    async fn mput(req: MputRequest) -> Result<Vec<Version>, KvError>;
    /// The node's role, address and per-shard figures.
    async fn status() -> Result<NodeStatus, KvError>;
    /// The master's view of the cluster: itself and every replica with its lag per shard.
    /// A replica answers `NotMaster` naming its master.
    async fn cluster_status() -> Result<ClusterStatus, KvError>;
    /// An order-independent digest of a shard. `at_seq: None` takes it now; `Some(s)` takes it
    /// exactly at sequence `s`, waiting up to `wait_ms` for a replica to get there.
    async fn digest(shard: u32, at_seq: Option<u64>, wait_ms: u32) -> Result<Digest, KvError>;

    /// Replicas: register with the master (refused on a shard-count mismatch or a duplicate id).
    async fn join(req: JoinRequest) -> Result<JoinReply, KvError>;
    /// Replicas: long-poll a shard's log after `from_seq`, which also acknowledges it.
    async fn pull(req: PullRequest) -> Result<PullReply, KvError>;
    /// Replicas: one page of a consistent copy of a shard, for a full resync.
    async fn snapshot(req: SnapshotRequest) -> Result<SnapshotPage, KvError>;
    /// Nodes: exchange epochs (a higher one is adopted, persisted first) and positions.
    async fn hello(req: HelloRequest) -> Result<HelloReply, KvError>;
    /// The old master's last step of a switchover: the replica takes `epoch` and becomes the
    /// master, once it has applied every shard's `positions`.
    async fn take_over(req: TakeOverRequest) -> Result<(), KvError>;
    /// Automatic failover: a candidate asks for this node's vote (or pre-vote).
    async fn vote(req: crate::cluster::VoteRequest) -> Result<crate::cluster::VoteReply, KvError>;

    /// Admin, on the master: hand over to a replica (switchover), or only plan it.
    async fn failover(req: FailoverRequest) -> Result<FailoverReply, KvError>;
    /// Admin, on a replica: make it the master while the master is gone, or only plan it.
    async fn promote(req: PromoteRequest) -> Result<PromoteReply, KvError>;
    /// Admin, on the master: remove a replica from the membership for good (node id, a unique
    /// prefix of one, or its address); returns the member removed.
    async fn forget(node: String) -> Result<crate::cluster::Member, KvError>;

    /// `get` answered only by the master of its epoch: a node that is not (or stops being it
    /// before it answers) says `NotMaster`. What `ReadFrom::Master` sends.
    async fn master_get(key: ByteBuf) -> Result<Option<Versioned>, KvError>;
    /// `mget` answered only by the master, as `master_get`.
    async fn master_mget(keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, KvError>;
    /// `scan` answered only by the master, as `master_get`.
    async fn master_scan(req: ScanRequest) -> Result<ScanPage, KvError>;
    /// Replicas truncating a diverged history: the master's values of these keys, whether its
    /// lease runs or not (the replica's next pulls are what renew it).
    async fn restore_mget(keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, KvError>;
}
