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
use shared::net::{Conn as _, Listener, Stream};
use shared::{
    ClusterStatus, Digest, JoinReply, JoinRequest, Kv, KvError, MputRequest, NodeStatus, PullReply,
    PullRequest, PutRequest, ScanPage, ScanRequest, SnapshotPage, SnapshotRequest, Version,
    Versioned,
    cluster::{
        FailoverReply, FailoverRequest, HelloReply, HelloRequest, Member, PromoteReply,
        PromoteRequest, TakeOverRequest,
    },
    limits::server_max_frame_bytes,
    transport::{
        HANDSHAKE_TIMEOUT, HANDSHAKE_VERSION, Welcome, read_hello, send_welcome, server_transport,
    },
};
use tarpc::{
    context::Context,
    server::{BaseChannel, Channel},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    auth::{Call, Refusal, Role},
    cluster::{election, failover, runtime},
    metrics::Op,
    node::Node,
};

/// Most requests of one connection handled at once; beyond it the connection is read no further
/// until one finishes (backpressure on that client only).
const MAX_CONCURRENT_PER_CONNECTION: usize = 1024;
/// Longest a digest request may wait for a replica to reach its sequence.
const MAX_DIGEST_WAIT_MS: u32 = 60_000;

/// The service implementation: a thin layer over [`Node`], for one authenticated connection.
#[derive(Clone)]
pub struct RpcServer {
    node: Node,
    /// The connection's role (admin without `--auth-file`).
    role: Role,
    /// Its token's name in the file.
    name: std::sync::Arc<str>,
}

/// The kind of call each operation is, for the roles.
fn call_of(op: Op) -> Call {
    match op {
        Op::Get | Op::Mget | Op::Scan => Call::Read,
        Op::Status | Op::ClusterStatus => Call::Status,
        Op::Put | Op::Delete | Op::Mput => Call::Write,
        Op::Digest | Op::Join | Op::Pull | Op::Snapshot | Op::Hello | Op::TakeOver | Op::Vote => {
            Call::Replication
        }
        Op::Failover | Op::Promote | Op::Forget => Call::Admin,
    }
}

impl RpcServer {
    /// Runs one request: its role check, admission (refused during shutdown), a span with its
    /// operation and shard (at debug level, so it costs nothing unless asked for), and its
    /// metrics.
    fn handle<'a, T: 'a>(
        &'a self,
        op: Op,
        shard: Option<u32>,
        work: impl Future<Output = Result<T, KvError>> + 'a,
    ) -> impl Future<Output = Result<T, KvError>> + 'a {
        self.handle_as(call_of(op), op, shard, work)
    }

    /// As [`RpcServer::handle`], for a call whose kind is not its operation's.
    ///
    /// Not an `async fn`: one would hold `work` twice (its argument and the future it awaits),
    /// and every request's state is as large as its largest call's.
    fn handle_as<'a, T: 'a>(
        &'a self,
        call: Call,
        op: Op,
        shard: Option<u32>,
        work: impl Future<Output = Result<T, KvError>> + 'a,
    ) -> impl Future<Output = Result<T, KvError>> + 'a {
        use futures::future::{Either, FutureExt as _, ready};
        if !self.role.allows(call) {
            return Either::Left(ready(Err(self.refuse(call, op))));
        }
        let started = Instant::now();
        let guard = match self.node.admit() {
            Ok(guard) => guard,
            Err(e) => {
                self.node
                    .metrics()
                    .requests
                    .observe(op, false, started.elapsed());
                return Either::Left(ready(Err(e)));
            }
        };
        // Combinators, not an `async` block: a block would hold `work` as it was captured and
        // again as it is awaited.
        let work = work.instrument(tracing::debug_span!("request", op = op.as_str(), shard));
        Either::Right(work.map(move |result| {
            drop(guard);
            self.node
                .metrics()
                .requests
                .observe(op, result.is_ok(), started.elapsed());
            result
        }))
    }

    /// Counts and logs a call the connection's role does not allow, and says why.
    fn refuse(&self, call: Call, op: Op) -> KvError {
        self.node
            .metrics()
            .auth_refused
            .with_label_values(&["role"])
            .inc();
        tracing::warn!(
            call = op.as_str(),
            role = %self.role,
            token = %self.name,
            "call refused: the connection's role does not allow it"
        );
        KvError::PermissionDenied {
            call: op.as_str().to_string(),
            needs: call.needs().to_string(),
            role: self.role.to_string(),
            name: self.name.to_string(),
        }
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
        Box::pin(self.handle(Op::Scan, None, self.node.scan(req))).await
    }

    async fn mget(self, _: Context, keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, KvError> {
        self.handle(Op::Mget, None, self.node.mget(&keys)).await
    }

    async fn master_get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        let shard = self.node.shard_of(&key);
        let read = self.node.as_master(self.node.get(&key));
        Box::pin(self.handle(Op::Get, Some(shard), read)).await
    }

    async fn master_mget(
        self,
        _: Context,
        keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        let read = self.node.as_master(self.node.mget(&keys));
        Box::pin(self.handle(Op::Mget, None, read)).await
    }

    async fn restore_mget(
        self,
        _: Context,
        keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        let read = self
            .node
            .as_master(async { self.node.mget_unleased(&keys) });
        Box::pin(self.handle_as(Call::Replication, Op::Mget, None, read)).await
    }

    async fn master_scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        let read = self.node.as_master(self.node.scan(req));
        Box::pin(self.handle(Op::Scan, None, read)).await
    }

    async fn mput(self, _: Context, req: MputRequest) -> Result<Vec<Version>, KvError> {
        Box::pin(self.handle(Op::Mput, None, self.node.mput(req))).await
    }

    async fn status(self, _: Context) -> Result<NodeStatus, KvError> {
        Box::pin(self.handle(Op::Status, None, async { Ok(self.node.status()) })).await
    }

    async fn cluster_status(self, _: Context) -> Result<ClusterStatus, KvError> {
        Box::pin(self.handle(Op::ClusterStatus, None, async {
            self.node.cluster_status()
        }))
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
        Box::pin(self.handle(
            Op::Digest,
            Some(shard),
            self.node.digest(shard, at_seq, wait),
        ))
        .await
    }

    async fn join(self, _: Context, req: JoinRequest) -> Result<JoinReply, KvError> {
        Box::pin(self.handle(Op::Join, None, self.node.join(&req))).await
    }

    async fn pull(self, _: Context, req: PullRequest) -> Result<PullReply, KvError> {
        let shard = req.shard;
        Box::pin(self.handle(Op::Pull, Some(shard), self.node.pull(req))).await
    }

    async fn snapshot(self, _: Context, req: SnapshotRequest) -> Result<SnapshotPage, KvError> {
        let shard = req.shard;
        Box::pin(self.handle(Op::Snapshot, Some(shard), self.node.snapshot(req))).await
    }

    async fn hello(self, _: Context, req: HelloRequest) -> Result<HelloReply, KvError> {
        Box::pin(self.handle(Op::Hello, None, runtime::on_hello(&self.node, req))).await
    }

    async fn take_over(self, _: Context, req: TakeOverRequest) -> Result<(), KvError> {
        Box::pin(self.handle(Op::TakeOver, None, failover::take_over(&self.node, req))).await
    }

    async fn vote(
        self,
        _: Context,
        req: shared::cluster::VoteRequest,
    ) -> Result<shared::cluster::VoteReply, KvError> {
        Box::pin(self.handle(Op::Vote, None, election::on_vote(&self.node, req))).await
    }

    async fn failover(self, _: Context, req: FailoverRequest) -> Result<FailoverReply, KvError> {
        Box::pin(self.handle(Op::Failover, None, failover::failover(&self.node, req))).await
    }

    async fn promote(self, _: Context, req: PromoteRequest) -> Result<PromoteReply, KvError> {
        Box::pin(self.handle(Op::Promote, None, failover::promote(&self.node, req))).await
    }

    async fn forget(self, _: Context, node: String) -> Result<Member, KvError> {
        Box::pin(self.handle(Op::Forget, None, failover::forget(&self.node, &node))).await
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
///
/// Connections are accepted and admitted on the admission runtime ([`Admission`]): the
/// listener, every new socket and its timer belong to that runtime's driver until the
/// connection has sent its first whole request, and only then move to the runtime that called
/// this, which serves the requests. An attack of new, idle or stalled connections then never
/// wakes the serving workers.
pub async fn accept_loop(
    listener: Listener,
    node: Node,
    stop: CancellationToken,
    close_connections: CancellationToken,
    tracker: TaskTracker,
) {
    let admission = Admission::start();
    let main = tokio::runtime::Handle::current();
    let accepting = admission.handle().spawn(accept_on_admission(
        listener,
        node,
        stop,
        close_connections,
        tracker,
        main,
    ));
    if let Err(e) = accepting.await {
        tracing::error!(error = %e, "the accept loop ended: no new connections are taken");
    }
}

/// The accept loop, on the admission runtime; connections are served on `main`.
async fn accept_on_admission(
    mut listener: Listener,
    node: Node,
    stop: CancellationToken,
    close_connections: CancellationToken,
    tracker: TaskTracker,
    main: tokio::runtime::Handle,
) {
    if let Err(e) = listener.rehome() {
        tracing::error!(error = %e, "the listener could not move to the admission runtime: no new connections are taken");
        return;
    }
    let cfg = node.config();
    let max_frame = server_max_frame_bytes(cfg.max_key_bytes, cfg.max_value_bytes);
    let max_per_ip = cfg.max_connections_per_ip;
    let max_total = cfg.max_connections;
    let cap = ConnectionCap::default();
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let budget = shared::guard::Budget::new(cfg.max_partial_frame_bytes);
    let dropper = crate::blocking::Dropper::start();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                use std::sync::atomic::Ordering;
                if total.load(Ordering::Acquire) >= max_total {
                    tracing::warn!(%peer, max_total, "connection refused: too many connections (--max-connections)");
                    continue;
                }
                let Some(slot) = cap.acquire(peer.ip(), max_per_ip) else {
                    tracing::warn!(%peer, max_per_ip, "connection refused: too many unauthenticated connections from this address (--max-connections-per-ip)");
                    continue;
                };
                let open = OpenConnection::new(node.metrics().connections.clone(), &total);
                let server = RpcServer {
                    node: node.clone(),
                    role: Role::Admin,
                    name: "".into(),
                };
                let limits = ConnectionLimits {
                    max_frame,
                    budget: budget.clone(),
                    dropper: dropper.clone(),
                    main: main.clone(),
                    tracker: tracker.clone(),
                    close: close_connections.clone(),
                };
                tracker.spawn(admit(stream, peer, server, limits, slot, open));
            }
            Err(e) => {
                // Out of file descriptors and the like: log, back off a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The handshake: reads the client's token within the handshake timeout (a small frame only),
/// and answers with its role, or refuses and returns `None` (the connection is then closed).
async fn authenticate(
    stream: &mut Stream,
    peer: SocketAddr,
    server: RpcServer,
) -> Option<RpcServer> {
    let node = &server.node;
    let refused = |reason: &str| {
        node.metrics()
            .auth_refused
            .with_label_values(&[reason])
            .inc();
    };
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_hello(stream)).await {
        Ok(Ok(hello)) if hello.version == HANDSHAKE_VERSION => hello,
        Ok(Ok(hello)) => {
            refused("handshake");
            let e = KvError::Unauthenticated {
                reason: format!(
                    "handshake version {} is not this node's ({HANDSHAKE_VERSION}): use a kvctl \
                     or client library of the same release",
                    hello.version
                ),
            };
            let _ = send_welcome(stream, &Welcome::Refused(e)).await;
            return None;
        }
        Ok(Err(e)) => {
            refused("handshake");
            tracing::warn!(%peer, error = %e, "connection closed: no valid handshake");
            return None;
        }
        Err(_) => {
            refused("handshake");
            tracing::warn!(
                %peer,
                timeout_secs = HANDSHAKE_TIMEOUT.as_secs(),
                "connection closed: no handshake in time"
            );
            return None;
        }
    };
    match node.auth().authenticate(peer.ip(), hello.token.as_deref()) {
        Ok((role, name)) => {
            let welcome = Welcome::Accepted {
                role: role.to_string(),
            };
            send_welcome(stream, &welcome).await.ok()?;
            Some(RpcServer {
                role,
                name: name.into(),
                ..server
            })
        }
        Err(why) => {
            let (label, reason) = match why {
                Refusal::Missing => (
                    "missing",
                    "this node requires a token (kvd --auth-file): give kvctl --token-file, \
                     --token or KVCTL_TOKEN; a replica, --master-token-file"
                        .to_string(),
                ),
                Refusal::Wrong => (
                    "wrong",
                    "the token is not in this node's --auth-file (mistyped, or removed): check \
                     kvctl --token-file / KVCTL_TOKEN, or a replica's --master-token-file"
                        .to_string(),
                ),
                Refusal::Throttled => (
                    "throttled",
                    format!(
                        "too many failed tokens from this address: refused for up to {} s",
                        crate::auth::FAILURE_WINDOW.as_secs()
                    ),
                ),
            };
            refused(label);
            tracing::warn!(%peer, reason = label, "connection refused: authentication failed");
            let e = KvError::Unauthenticated { reason };
            let _ = send_welcome(stream, &Welcome::Refused(e)).await;
            None
        }
    }
}

/// What one connection is served under, shared by all: the largest frame, the node's budget
/// for unfinished frames, and the thread that closed connections are dropped on.
struct ConnectionLimits {
    max_frame: usize,
    budget: shared::guard::Budget,
    dropper: crate::blocking::Dropper,
    /// The runtime requests are served on, once a connection has sent its first whole one.
    main: tokio::runtime::Handle,
    tracker: TaskTracker,
    close: CancellationToken,
}

/// Counts a connection as open, in the gauge and against `--max-connections`, until dropped.
struct OpenConnection {
    gauge: prometheus::IntGauge,
    total: Arc<std::sync::atomic::AtomicUsize>,
}

impl OpenConnection {
    fn new(gauge: prometheus::IntGauge, total: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        gauge.inc();
        total.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self {
            gauge,
            total: Arc::clone(total),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
        self.total.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Where connections are admitted: the accept loop, TLS, the token handshake, and the wait for
/// a first whole request run on a runtime of their own, one thread at a lower priority
/// (`blocking::lower_priority`), apart from the runtime that serves requests. The sockets and
/// timers of connections in admission belong to this runtime's driver, so their events never
/// wake a serving worker; a connection moves to the serving runtime (`Conn::rehome`) with its
/// first whole request. A burst of
/// new, stalled or timed-out connections (an attack, or a thousand clients reconnecting at
/// once) then waits behind the requests of connections already serving, instead of queueing
/// in front of every request on the serving workers. In the simulation (one runtime per
/// host), the current runtime.
struct Admission {
    handle: tokio::runtime::Handle,
    /// Ends the admission thread when the accept loop ends (connections in admission are
    /// dropped with it; those being served are on the main runtime).
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Admission {
    fn start() -> Self {
        let current = || Self {
            handle: tokio::runtime::Handle::current(),
            _stop: None,
        };
        if crate::blocking::inline() {
            return current();
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("kvd-admission".into())
            .spawn(move || {
                crate::blocking::lower_priority();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async move {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        let handle = match started {
            Ok(_) => rx
                .recv()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r),
            Err(e) => Err(e),
        };
        match handle {
            Ok(handle) => Self {
                handle,
                _stop: Some(stop),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no thread for admitting connections: they are admitted on the serving runtime");
                current()
            }
        }
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// Admits one connection (on the admission runtime): TLS, the token, the first whole request;
/// then hands it to the main runtime to be served.
async fn admit(
    stream: Stream,
    peer: SocketAddr,
    server: RpcServer,
    limits: ConnectionLimits,
    unauthenticated: Slot,
    open: OpenConnection,
) {
    let ConnectionLimits {
        max_frame,
        budget,
        dropper,
        main,
        tracker,
        close,
    } = limits;
    let tls = server.node.config().server_tls.clone();
    let mut stream = match tls {
        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                server
                    .node
                    .metrics()
                    .auth_refused
                    .with_label_values(&["tls"])
                    .inc();
                tracing::warn!(%peer, error = %e, "connection closed: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "connection closed: no TLS handshake in time");
                return;
            }
        },
        None => stream,
    };
    let Some(server) = authenticate(&mut stream, peer, server).await else {
        return;
    };
    // Authenticated: it no longer counts against its address's cap.
    drop(unauthenticated);
    let cfg = server.node.config();
    let mut guarded = shared::guard::Guarded::new(
        stream,
        max_frame,
        cfg.frame_timeout,
        cfg.idle_timeout,
        budget,
    );
    tracing::debug!(%peer, "connection opened");
    // What serves requests (tarpc's buffers, its response channel, the codec) is built, on the
    // heap, only once the first request has arrived whole: until then an idle connection
    // holds its socket, its timer and the guard, a few hundred bytes.
    let first = tokio::select! {
        first = guarded.first_frame() => first,
        () = close.cancelled() => {
            tracing::debug!(%peer, "connection closed at shutdown");
            return;
        }
    };
    match first {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(%peer, "connection closed before a request");
            dropper.drop_later(guarded);
            return;
        }
        Err(e) if guarded.between_frames() => {
            tracing::debug!(%peer, error = %e, "connection closed before a request");
            dropper.drop_later(guarded);
            return;
        }
        Err(e) => {
            // A stalled or oversized first frame.
            tracing::warn!(%peer, error = %e, "connection closed");
            dropper.drop_later(guarded);
            return;
        }
    }
    // Its socket and timer to the serving runtime's driver, then the connection itself.
    let moved = {
        let _main = main.enter();
        guarded.rehome()
    };
    if let Err(e) = moved {
        tracing::warn!(%peer, error = %e, "connection closed: it could not move to the serving runtime");
        dropper.drop_later(guarded);
        return;
    }
    tracker.spawn_on(
        serve_requests(guarded, peer, server, max_frame, dropper, close, open),
        &main,
    );
}

/// Serves the requests of an admitted connection (on the main runtime) until it closes.
async fn serve_requests(
    guarded: shared::guard::Guarded<Stream>,
    peer: SocketAddr,
    server: RpcServer,
    max_frame: usize,
    dropper: crate::blocking::Dropper,
    close: CancellationToken,
    open: OpenConnection,
) {
    let transport = server_transport(Box::new(guarded), max_frame);
    let mut requests = Box::pin(
        BaseChannel::with_defaults(transport)
            .execute(server.serve())
            .for_each_concurrent(MAX_CONCURRENT_PER_CONNECTION, |handle| handle),
    );
    tokio::select! {
        () = &mut requests => tracing::debug!(%peer, "connection closed"),
        () = close.cancelled() => tracing::debug!(%peer, "connection closed at shutdown"),
    }
    dropper.drop_later((requests, open));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use tarpc::server::Serve as _;

    /// Every request's future is as large as the largest handler's, and it is moved (copied)
    /// several times on its way into the connection's task: rare calls keep their state on the
    /// heap so the hot path does not pay for them, and the wrapper every call goes through holds
    /// its work once. 13,952 bytes before, 1,328 after; a `memmove` of it was 10% of the CPU
    /// with 16 puts in flight.
    #[tokio::test]
    async fn a_request_future_stays_small() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let args = crate::config::Args::try_parse_from([
            "kvd",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--port",
            "0",
        ])
        .expect("args");
        let cfg = args.validate().expect("config");
        let metrics = Arc::new(crate::metrics::Metrics::new().expect("metrics"));
        let node = Node::open(cfg, metrics, "127.0.0.1:1".into()).expect("node");
        let server = RpcServer {
            node,
            role: Role::Admin,
            name: "".into(),
        };
        let request = shared::proto::KvRequest::Get {
            key: ByteBuf::from(b"k".to_vec()),
        };
        let future = server.serve().serve(tarpc::context::current(), request);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "a request's future takes {size} bytes");
    }
}
