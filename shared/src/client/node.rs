//! [`Node`]: one connection to one node, with a connect timeout, a deadline on every request,
//! and the classification of failures that lets the client know whether a write happened.
//!
//! ```text
//!  Node::connect(endpoint, timeout) ──tcp──► kvd          dispatch task (tarpc) ─► closed flag
//!     │  every call: ctx.deadline = (now + timeout, or the handle's deadline) + extra
//!     │     put/mput:  extra = acks_timeout_ms (the master holds the write for acknowledgements)
//!     │     digest:    extra = wait_ms         (a replica holds the call until the sequence)
//!     │     failover/promote: extra = timeout_ms (the node's own time for the operation)
//!     ▼
//!  Result<Result<T, KvError>, RpcError>  ──►  Result<T, Error>
//!     closed before sending ─► ConnectionLost   (read or write: nothing was sent)
//!     Send (not buffered)   ─► ConnectionLost   (nothing was sent)
//!     Shutdown / Channel    ─► read: ConnectionLost      write: OutcomeUnknown
//!     DeadlineExceeded      ─► read: TimedOut            write: OutcomeUnknown
//!     Server (throttled)    ─► Aborted                   (the service never saw it)
//! ```
//!
//! The dispatch task is spawned here rather than by tarpc's `spawn()`, so the node knows when
//! its connection is gone: the flag is set *before* the dispatch (and the queue of requests it
//! reads) is dropped, so a request that finds the flag unset was handed to a live dispatch, and
//! one that finds it set was never sent. A request queued just as the connection dies is
//! classified as in doubt: never the other way round.

use std::{pin::pin, sync::Arc, time::Duration};
use tokio::time::Instant;

use serde_bytes::ByteBuf;
use tarpc::client::RpcError;
use tokio::sync::watch;

use crate::transport::Credentials;
use tokio_util::codec::Framed;

use super::{
    FRAME_SAFE_VALUE_BYTES,
    error::{Error, Lost, chain, seconds},
};
use crate::{
    ClusterStatus, Digest, KvClient, KvError, MputRequest, NodeStatus, PutRequest, ScanPage,
    ScanRequest, Version, Versioned,
    addr::Endpoint,
    cluster::{FailoverReply, FailoverRequest, Member, PromoteReply, PromoteRequest},
    limits::CLIENT_MAX_FRAME_BYTES,
    transport::{ClientCodec, length_codec},
};

/// Requests one connection may have in flight (tarpc's client refuses more).
pub const MAX_IN_FLIGHT: usize = 10_000;

/// A connected node. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Node {
    conn: Arc<Conn>,
    /// The default time of a request (and of the connection, when it was opened).
    timeout: Duration,
    /// When set, every request ends by then (plus its own extra time) instead of `timeout`
    /// from its start: the client gives one deadline to all the attempts of one call.
    deadline: Option<Instant>,
}

struct Conn {
    endpoint: Endpoint,
    client: KvClient,
    /// Becomes true once the dispatch task ended: the connection is gone.
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("endpoint", &self.conn.endpoint)
            .field("timeout", &self.timeout)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Whether a request changes data (or the cluster): its failures after sending are in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write(&'static str),
}

impl Node {
    /// Connects to `endpoint`, giving up after `timeout`, which is also each request's time.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the name does not resolve, the connection is refused or it
    /// does not complete in time.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Self, Error> {
        Self::connect_with(endpoint, timeout, timeout, &Credentials::default()).await
    }

    /// As [`Node::connect`], with TLS and a token (a node with `--auth-file` requires one).
    ///
    /// # Errors
    /// As [`Node::connect`]; the node's refusal of the token as [`Error::Kv`]
    /// ([`KvError::Unauthenticated`]).
    pub async fn connect_with_credentials(
        endpoint: &Endpoint,
        timeout: Duration,
        creds: &Credentials,
    ) -> Result<Self, Error> {
        Self::connect_with(endpoint, timeout, timeout, creds).await
    }

    /// Connects within `connect_timeout` (TLS and the token handshake included); requests
    /// take `timeout` by default.
    pub(crate) async fn connect_with(
        endpoint: &Endpoint,
        connect_timeout: Duration,
        timeout: Duration,
        creds: &Credentials,
    ) -> Result<Self, Error> {
        let unreachable = |cause: String| Error::Unreachable {
            endpoint: endpoint.clone(),
            cause,
        };
        let opened = async {
            match crate::transport::open(&endpoint.host, endpoint.port, creds).await {
                Ok(stream) => Ok(stream),
                Err(crate::transport::HandshakeError::Refused(e)) => Err(Error::Kv(e)),
                Err(crate::transport::HandshakeError::Io(e)) => Err(unreachable(e.to_string())),
            }
        };
        let stream = match tokio::time::timeout(connect_timeout, opened).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(unreachable(format!(
                    "timed out after {}",
                    seconds(connect_timeout)
                )));
            }
        };
        let framed = Framed::new(stream, length_codec(CLIENT_MAX_FRAME_BYTES));
        let transport = tarpc::serde_transport::new(framed, ClientCodec::default());
        let mut config = tarpc::client::Config::default();
        config.max_in_flight_requests = MAX_IN_FLIGHT;
        let tarpc::client::NewClient { client, dispatch } = KvClient::new(config, transport);
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(async move {
            let mut dispatch = pin!(dispatch);
            // A transport error ends the dispatch like a clean close; either way it is gone.
            let _ = dispatch.as_mut().await;
            // Before the dispatch (and its request queue) is dropped: see the module docs.
            closed_tx.send_replace(true);
        });
        Ok(Self {
            conn: Arc::new(Conn {
                endpoint: endpoint.clone(),
                client,
                closed,
            }),
            timeout,
            deadline: None,
        })
    }

    /// Connects to another node with the same timeout.
    ///
    /// # Errors
    /// As [`Node::connect`].
    pub async fn connect_to(&self, endpoint: &Endpoint) -> Result<Self, Error> {
        Self::connect(endpoint, self.timeout).await
    }

    /// The node's address.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.conn.endpoint
    }

    /// The default time of a request.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle on the same connection whose requests end by `deadline` (plus their own extra
    /// time: an acks wait, a digest wait), whenever they start.
    #[must_use]
    pub fn until(&self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// Whether the connection is gone (the node closed it, or it broke). A closed node stays
    /// closed: connect again.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        *self.conn.closed.borrow()
    }

    /// Waits until the connection is gone.
    pub async fn closed(&self) {
        let mut closed = self.conn.closed.clone();
        // An error means the flag's sender is gone, which happens only once it was set.
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Whether two handles share one connection.
    #[must_use]
    pub fn same_connection(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.conn, &other.conn)
    }

    /// The raw tarpc client, for callers that build their own contexts; its failures are not
    /// classified.
    #[must_use]
    pub fn raw(&self) -> &KvClient {
        &self.conn.client
    }

    /// When a request that may take `extra` beyond the default must end.
    fn deadline(&self, extra: Duration) -> Instant {
        let now = Instant::now();
        let base = self
            .deadline
            .unwrap_or_else(|| now.checked_add(self.timeout).unwrap_or(now));
        base.checked_add(extra).unwrap_or(base)
    }

    /// A context whose deadline is [`Node::deadline`]; `Err` when the connection is already
    /// gone, so the request is not sent.
    fn context(&self, extra: Duration) -> Result<tarpc::context::Context, Error> {
        if self.is_closed() {
            return Err(Error::ConnectionLost {
                endpoint: self.conn.endpoint.clone(),
                cause: "the connection had closed before the request was sent".to_string(),
            });
        }
        let mut ctx = tarpc::context::current();
        // tarpc's deadline is on the std clock; ours on tokio's (simulated time in the tests).
        ctx.deadline = std::time::Instant::now()
            + self
                .deadline(extra)
                .saturating_duration_since(Instant::now());
        Ok(ctx)
    }

    /// Turns a reply into a result, classifying transport failures by `kind`.
    fn settle<T>(
        &self,
        kind: Kind,
        extra: Duration,
        reply: Result<Result<T, KvError>, RpcError>,
    ) -> Result<T, Error> {
        let endpoint = || self.conn.endpoint.clone();
        let after = self.timeout.saturating_add(extra);
        let err = match reply {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => return Err(Error::Kv(e)),
            Err(RpcError::Server(e)) => {
                return Err(Error::Aborted {
                    endpoint: endpoint(),
                    detail: e.detail,
                });
            }
            // The request could not even be buffered: it never left.
            Err(RpcError::Send(e)) => {
                return Err(Error::ConnectionLost {
                    endpoint: endpoint(),
                    cause: chain(e.as_ref()),
                });
            }
            Err(RpcError::DeadlineExceeded) => Lost::NoAnswer(after),
            Err(RpcError::Shutdown) => Lost::ConnectionBroke("the connection was closed".into()),
            Err(RpcError::Channel(e)) => Lost::ConnectionBroke(chain(&e)),
        };
        Err(match (kind, err) {
            (Kind::Write(request), cause) => Error::OutcomeUnknown {
                endpoint: endpoint(),
                request,
                cause,
            },
            (Kind::Read, Lost::NoAnswer(after)) => Error::TimedOut {
                endpoint: endpoint(),
                after,
            },
            (Kind::Read, Lost::ConnectionBroke(cause)) => Error::ConnectionLost {
                endpoint: endpoint(),
                cause,
            },
        })
    }

    /// Reads a key; `None` when it is absent.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.get(ctx, ByteBuf::from(key)).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// Reads many keys; answers in the order asked.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn mget(&self, keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.mget(ctx, keys).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// `get` that only the master answers (`NotMaster` from any other node).
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn master_get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.master_get(ctx, ByteBuf::from(key)).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// `mget` that only the master answers.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn master_mget(&self, keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.master_mget(ctx, keys).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// `scan` that only the master answers.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn master_scan(&self, req: ScanRequest) -> Result<ScanPage, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.master_scan(ctx, req).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// Writes a key. The deadline is the request's time plus its `acks_timeout_ms`, so a master
    /// waiting for replicas to acknowledge answers before the client gives up.
    ///
    /// # Errors
    /// The node's refusal (including [`KvError::AcksTimeout`]: committed, under-replicated),
    /// [`Error::OutcomeUnknown`] when it was sent and no answer came, or
    /// [`Error::ValueOverFrameLimit`] when the connection drops on a value too large for one
    /// frame.
    pub async fn put(&self, req: PutRequest) -> Result<Version, Error> {
        let len = req.value.len();
        let extra = Duration::from_millis(u64::from(req.acks_timeout_ms));
        let ctx = self.context(extra)?;
        let reply = self.conn.client.put(ctx, req).await;
        over_frame(len, self.settle(Kind::Write("put"), extra, reply))
    }

    /// Writes many keys (each its own write); the versions come back in order.
    ///
    /// # Errors
    /// As [`Node::put`].
    pub async fn mput(&self, req: MputRequest) -> Result<Vec<Version>, Error> {
        let len = req
            .entries
            .iter()
            .map(|e| e.key.len() + e.value.len())
            .sum();
        let extra = Duration::from_millis(u64::from(req.acks_timeout_ms));
        let ctx = self.context(extra)?;
        let reply = self.conn.client.mput(ctx, req).await;
        over_frame(len, self.settle(Kind::Write("mput"), extra, reply))
    }

    /// Deletes a key; `None` when it was absent.
    ///
    /// # Errors
    /// The node's refusal, or [`Error::OutcomeUnknown`].
    pub async fn delete(&self, key: &[u8]) -> Result<Option<Version>, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.delete(ctx, ByteBuf::from(key)).await;
        self.settle(Kind::Write("delete"), Duration::ZERO, reply)
    }

    /// Reads one page of a scan.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanPage, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.scan(ctx, req).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// The node's status.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.status(ctx).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// The master's view of the cluster; a replica refuses with [`KvError::NotMaster`].
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.cluster_status(ctx).await;
        self.settle(Kind::Read, Duration::ZERO, reply)
    }

    /// A digest of `shard`: now (`at_seq: None`), or exactly at `at_seq`, the node waiting up to
    /// `wait` (whole milliseconds, at most `u32::MAX`) to get there. The deadline is the
    /// request's time plus `wait`.
    ///
    /// # Errors
    /// The node's refusal ([`KvError::SequenceUnavailable`] when it is past `at_seq` or did not
    /// get there in time) or a transport failure.
    pub async fn digest(
        &self,
        shard: u32,
        at_seq: Option<u64>,
        wait: Duration,
    ) -> Result<Digest, Error> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let extra = Duration::from_millis(u64::from(wait_ms));
        let ctx = self.context(extra)?;
        let reply = self.conn.client.digest(ctx, shard, at_seq, wait_ms).await;
        self.settle(Kind::Read, extra, reply)
    }

    /// On the master: hand over to a replica (switchover), or only plan it. The deadline is the
    /// request's time plus the switchover's own `timeout_ms`.
    ///
    /// # Errors
    /// The node's refusal ([`KvError::FailoverRefused`], [`KvError::FailoverAborted`],
    /// [`KvError::UnknownNode`], …), or [`Error::OutcomeUnknown`].
    pub async fn failover(&self, req: FailoverRequest) -> Result<FailoverReply, Error> {
        let extra = Duration::from_millis(req.timeout_ms);
        let kind = if req.plan_only {
            Kind::Read
        } else {
            Kind::Write("failover")
        };
        let ctx = self.context(extra)?;
        let reply = self.conn.client.failover(ctx, req).await;
        self.settle(kind, extra, reply)
    }

    /// On a replica: make it the master while the master is gone, or only plan it. The deadline
    /// is the request's time plus the catch-up's `timeout_ms`.
    ///
    /// # Errors
    /// The node's refusal ([`KvError::FailoverRefused`], …), or [`Error::OutcomeUnknown`].
    pub async fn promote(&self, req: PromoteRequest) -> Result<PromoteReply, Error> {
        let extra = Duration::from_millis(req.timeout_ms);
        let kind = if req.plan_only {
            Kind::Read
        } else {
            Kind::Write("promote")
        };
        let ctx = self.context(extra)?;
        let reply = self.conn.client.promote(ctx, req).await;
        self.settle(kind, extra, reply)
    }

    /// On the master: remove a replica from the membership for good.
    ///
    /// # Errors
    /// The node's refusal ([`KvError::UnknownNode`], [`KvError::AmbiguousNode`],
    /// [`KvError::NotMaster`]), or [`Error::OutcomeUnknown`].
    pub async fn forget(&self, node: &str) -> Result<Member, Error> {
        let ctx = self.context(Duration::ZERO)?;
        let reply = self.conn.client.forget(ctx, node.to_string()).await;
        self.settle(Kind::Write("forget"), Duration::ZERO, reply)
    }
}

/// A node closes the connection, unread, on a frame over its limit: for a value of that size,
/// a write whose connection broke was refused, not lost in flight.
fn over_frame<T>(len: usize, result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Err(
            Error::ConnectionLost { .. }
            | Error::OutcomeUnknown {
                cause: Lost::ConnectionBroke(_),
                ..
            },
        ) if len > FRAME_SAFE_VALUE_BYTES => Err(Error::ValueOverFrameLimit { len }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::client::testing::{Fake, MASTER_VERSION, serve};

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let port = crate::client::testing::closed_port();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let e = Node::connect(&endpoint, Duration::from_secs(5))
            .await
            .expect_err("connected to a closed port");
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach the node at 127.0.0.1:{port}: ")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_slow_read_times_out_and_a_slow_write_is_in_doubt() {
        let fake = Fake {
            delay: Duration::from_secs(5),
            ..Fake::default()
        };
        let endpoint = serve(fake).await;
        let node = Node::connect(&endpoint, Duration::from_millis(200))
            .await
            .expect("connect");
        let e = node.get(b"k").await.expect_err("times out");
        assert!(matches!(e, Error::TimedOut { .. }), "{e:?}");
        assert!(e.to_string().contains("timed out after 0.2s"), "{e}");
        let e = node
            .put(PutRequest::new("k", "v"))
            .await
            .expect_err("no answer");
        assert!(
            matches!(
                e,
                Error::OutcomeUnknown {
                    request: "put",
                    cause: Lost::NoAnswer(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_write_lost_in_flight_is_in_doubt_and_one_never_sent_is_not() {
        let fake = Fake::default();
        let live = fake.live.clone();
        live.hang_up_on_writes(1);
        let endpoint = serve(fake).await;
        let node = Node::connect(&endpoint, Duration::from_secs(5))
            .await
            .expect("connect");
        let e = node
            .put(PutRequest::new("k", "v"))
            .await
            .expect_err("hung up");
        assert!(
            matches!(
                e,
                Error::OutcomeUnknown {
                    cause: Lost::ConnectionBroke(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(live.writes.load(Ordering::SeqCst), 1, "it was applied");
        tokio::time::timeout(Duration::from_secs(5), node.closed())
            .await
            .expect("the connection closes");
        assert!(node.is_closed());
        // Now the connection is known gone: the next write is not sent at all.
        let e = node
            .delete(b"k")
            .await
            .expect_err("not sent on a closed connection");
        assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
        assert!(e.to_string().contains("before the request was sent"), "{e}");
        assert_eq!(live.writes.load(Ordering::SeqCst), 1);
        let fresh = node.connect_to(&endpoint).await.expect("reconnect");
        assert_eq!(
            fresh.put(PutRequest::new("k", "v")).await.expect("put"),
            MASTER_VERSION
        );
    }

    #[tokio::test]
    async fn a_value_over_the_frame_limit_is_explained() {
        let endpoint = serve(Fake::default()).await;
        let node = Node::connect(&endpoint, Duration::from_secs(30))
            .await
            .expect("connect");
        let len = FRAME_SAFE_VALUE_BYTES + 128 * 1024;
        let e = node
            .put(PutRequest::new(b"big".to_vec(), vec![7u8; len]))
            .await
            .expect_err("frame too large");
        assert!(
            matches!(e, Error::ValueOverFrameLimit { len: l } if l == len),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_handle_with_a_deadline_ends_by_it() {
        let endpoint = serve(Fake {
            delay: Duration::from_secs(5),
            ..Fake::default()
        })
        .await;
        let node = Node::connect(&endpoint, Duration::from_secs(30))
            .await
            .expect("connect");
        let started = Instant::now();
        let e = node
            .until(Instant::now() + Duration::from_millis(200))
            .status()
            .await
            .expect_err("deadline");
        assert!(matches!(e, Error::TimedOut { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
