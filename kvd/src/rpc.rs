//! The tarpc adapter and the accept loop.
//!
//! ```text
//!  accept ──> per-IP cap ──> one task per connection:
//!                              BaseChannel.execute(serve) ─ for_each_concurrent ─> handlers
//! ```
//!
//! Each connection's requests run concurrently *inside* that connection's task instead of one
//! `tokio::spawn` per request: on this kind of machine spawning cost 2.5–3x the server CPU per
//! operation and one `writev` per response instead of one per dozen. Concurrency is kept, so a put
//! waiting for its group commit does not hold up the requests behind it.
//!
//! A connection whose bytes are not valid frames ends that connection and nothing else.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_bytes::ByteBuf;
use shared::net::{Listener, Stream};
use shared::{
    ClusterStatus, Digest, JoinReply, JoinRequest, Kv, KvError, MputRequest, NodeStatus, PullReply,
    PullRequest, PutRequest, ScanPage, ScanRequest, SnapshotPage, SnapshotRequest, Version,
    Versioned,
    cluster::{
        FailoverReply, FailoverRequest, HelloReply, HelloRequest, Member, PromoteReply,
        PromoteRequest, TakeOverRequest,
    },
    limits::server_max_frame_bytes,
    transport::server_transport,
};
use tarpc::{
    context::Context,
    server::{BaseChannel, Channel},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    cluster::{election, failover, runtime},
    metrics::Op,
    node::Node,
};

/// Most requests of one connection handled at once; beyond it the connection is read no further
/// until one finishes (backpressure on that client only).
const MAX_CONCURRENT_PER_CONNECTION: usize = 1024;
/// Longest a digest request may wait for a replica to reach its sequence.
const MAX_DIGEST_WAIT_MS: u32 = 60_000;

/// The service implementation: a thin layer over [`Node`].
#[derive(Clone)]
pub struct RpcServer {
    node: Node,
}

impl RpcServer {
    /// Runs one request: admission (refused during shutdown), a span with its operation and
    /// shard (at debug level, so it costs nothing unless asked for), and its metrics.
    async fn handle<T>(
        &self,
        op: Op,
        shard: Option<u32>,
        work: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        let started = Instant::now();
        let result = match self.node.admit() {
            Ok(_guard) => {
                work.instrument(tracing::debug_span!("request", op = op.as_str(), shard))
                    .await
            }
            Err(e) => Err(e),
        };
        self.node
            .metrics()
            .requests
            .observe(op, result.is_ok(), started.elapsed());
        result
    }
}

impl Kv for RpcServer {
    async fn get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        let shard = self.node.shard_of(&key);
        self.handle(Op::Get, Some(shard), self.node.get(&key)).await
    }

    async fn put(self, _: Context, req: PutRequest) -> Result<Version, KvError> {
        let shard = self.node.shard_of(&req.key);
        self.handle(Op::Put, Some(shard), self.node.put(req)).await
    }

    async fn delete(self, _: Context, key: ByteBuf) -> Result<Option<Version>, KvError> {
        let shard = self.node.shard_of(&key);
        self.handle(Op::Delete, Some(shard), self.node.delete(key.into_vec()))
            .await
    }

    async fn scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        self.handle(Op::Scan, None, self.node.scan(req)).await
    }

    async fn mget(self, _: Context, keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, KvError> {
        self.handle(Op::Mget, None, self.node.mget(&keys)).await
    }

    async fn master_get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        let shard = self.node.shard_of(&key);
        let read = self.node.as_master(self.node.get(&key));
        self.handle(Op::Get, Some(shard), read).await
    }

    async fn master_mget(
        self,
        _: Context,
        keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        let read = self.node.as_master(self.node.mget(&keys));
        self.handle(Op::Mget, None, read).await
    }

    async fn restore_mget(
        self,
        _: Context,
        keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        let read = self
            .node
            .as_master(async { self.node.mget_unleased(&keys) });
        self.handle(Op::Mget, None, read).await
    }

    async fn master_scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        let read = self.node.as_master(self.node.scan(req));
        self.handle(Op::Scan, None, read).await
    }

    async fn mput(self, _: Context, req: MputRequest) -> Result<Vec<Version>, KvError> {
        self.handle(Op::Mput, None, self.node.mput(req)).await
    }

    async fn status(self, _: Context) -> Result<NodeStatus, KvError> {
        self.handle(Op::Status, None, async { Ok(self.node.status()) })
            .await
    }

    async fn cluster_status(self, _: Context) -> Result<ClusterStatus, KvError> {
        self.handle(Op::ClusterStatus, None, async {
            self.node.cluster_status()
        })
        .await
    }

    async fn digest(
        self,
        _: Context,
        shard: u32,
        at_seq: Option<u64>,
        wait_ms: u32,
    ) -> Result<Digest, KvError> {
        let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_DIGEST_WAIT_MS)));
        self.handle(
            Op::Digest,
            Some(shard),
            self.node.digest(shard, at_seq, wait),
        )
        .await
    }

    async fn join(self, _: Context, req: JoinRequest) -> Result<JoinReply, KvError> {
        self.handle(Op::Join, None, self.node.join(&req)).await
    }

    async fn pull(self, _: Context, req: PullRequest) -> Result<PullReply, KvError> {
        let shard = req.shard;
        self.handle(Op::Pull, Some(shard), self.node.pull(req))
            .await
    }

    async fn snapshot(self, _: Context, req: SnapshotRequest) -> Result<SnapshotPage, KvError> {
        let shard = req.shard;
        self.handle(Op::Snapshot, Some(shard), self.node.snapshot(req))
            .await
    }

    async fn hello(self, _: Context, req: HelloRequest) -> Result<HelloReply, KvError> {
        self.handle(Op::Hello, None, runtime::on_hello(&self.node, req))
            .await
    }

    async fn take_over(self, _: Context, req: TakeOverRequest) -> Result<(), KvError> {
        self.handle(Op::TakeOver, None, failover::take_over(&self.node, req))
            .await
    }

    async fn vote(
        self,
        _: Context,
        req: shared::cluster::VoteRequest,
    ) -> Result<shared::cluster::VoteReply, KvError> {
        self.handle(Op::Vote, None, election::on_vote(&self.node, req))
            .await
    }

    async fn failover(self, _: Context, req: FailoverRequest) -> Result<FailoverReply, KvError> {
        self.handle(Op::Failover, None, failover::failover(&self.node, req))
            .await
    }

    async fn promote(self, _: Context, req: PromoteRequest) -> Result<PromoteReply, KvError> {
        self.handle(Op::Promote, None, failover::promote(&self.node, req))
            .await
    }

    async fn forget(self, _: Context, node: String) -> Result<Member, KvError> {
        self.handle(Op::Forget, None, failover::forget(&self.node, &node))
            .await
    }
}

/// Counts open connections per client address.
#[derive(Clone, Default)]
struct ConnectionCap {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Releases a connection slot when dropped.
struct Slot {
    cap: ConnectionCap,
    ip: IpAddr,
}

impl ConnectionCap {
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            cap: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.cap.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `stop` is cancelled; each runs in a task of `tracker` until it
/// ends or `close_connections` is cancelled.
pub async fn accept_loop(
    listener: Listener,
    node: Node,
    stop: CancellationToken,
    close_connections: CancellationToken,
    tracker: TaskTracker,
) {
    let cfg = node.config();
    let max_frame = server_max_frame_bytes(cfg.max_key_bytes, cfg.max_value_bytes);
    let max_per_ip = cfg.max_connections_per_ip;
    let cap = ConnectionCap::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = cap.acquire(peer.ip(), max_per_ip) else {
                    tracing::warn!(%peer, max_per_ip, "connection refused: too many connections from this address (--max-connections-per-ip)");
                    continue;
                };
                let server = RpcServer { node: node.clone() };
                let close = close_connections.clone();
                let open = node.metrics().connections.clone();
                open.inc();
                tracker.spawn(async move {
                    serve_connection(stream, peer, server, max_frame, close).await;
                    open.dec();
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: log, back off a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: Stream,
    peer: SocketAddr,
    server: RpcServer,
    max_frame: usize,
    close: CancellationToken,
) {
    let transport = server_transport(stream, max_frame);
    tracing::debug!(%peer, "connection opened");
    let requests = BaseChannel::with_defaults(transport)
        .execute(server.serve())
        .for_each_concurrent(MAX_CONCURRENT_PER_CONNECTION, |handle| handle);
    tokio::select! {
        () = requests => tracing::debug!(%peer, "connection closed"),
        () = close.cancelled() => tracing::debug!(%peer, "connection closed at shutdown"),
    }
}
