//! The client library: what applications, `kvctl`, its bench and console, and the tests use to
//! talk to a kvd cluster.
//!
//! A [`Client`] is given several endpoints (any mix of the master and its replicas). It finds
//! the master with the highest epoch, keeps its connections, follows it across a failover, and
//! retries only what is safe to retry:
//!
//! ```text
//!  Client::builder([a, b, c]).build()
//!    reads  (get, mget, scan, status): the endpoints in order, the first that answers;
//!           one that cannot be reached (or is copying the shard) is skipped for the next.
//!           ReadFrom::Master sends them to the master instead.
//!    writes (put, mput, delete, failover, forget): the master
//!           ┌─► cached master? ── no ──► discovery (status of every endpoint, and of the
//!           │       │                    masters they name): writable, highest epoch
//!           │       ▼                    none yet: back off and ask again, until the timeout
//!           │   send the write
//!           │     ├─ answered ─────────────────────────────────────────► Ok / the node's error
//!           │     ├─ NotMaster{master, epoch} / ShuttingDown: not done ─┐
//!           │     ├─ connect failed, connection closed: never sent ─────┤ forget the master
//!           └─────┴───────────────────────────────────────────────────◄─┘ (follow the hint)
//!                 └─ sent, then the connection broke or the deadline passed
//!                      ─► Error::OutcomeUnknown: never retried, never "failed"
//! ```
//!
//! Every call has one time limit ([`Builder::timeout`], plus what the request itself asks
//! the node to wait: `acks_timeout_ms`, a failover's `timeout_ms`), which covers finding the
//! master, connecting, following it and the answer.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use shared::{
//!     PutRequest,
//!     client::{Client, Error, parse_endpoints},
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoints = parse_endpoints("10.0.0.1:3000,10.0.0.2:3000,10.0.0.3:3000")?;
//! let client = Client::builder(endpoints)
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! // Writes go to the master, wherever it is now.
//! match client.put(PutRequest::new("greeting", "hello")).await {
//!     Ok(version) => println!("written at version {version}"),
//!     // Sent, but no answer came: it may or may not be there. Look before writing again.
//!     Err(Error::OutcomeUnknown { .. }) => {
//!         let now = client.reading_from_master().get(b"greeting").await?;
//!         println!("after an unknown outcome the key holds {now:?}");
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//!
//! // Reads go to the first endpoint that answers (a replica may lag behind the master).
//! if let Some(found) = client.get(b"greeting").await? {
//!     println!("{:?} at version {}", found.value, found.version);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Layout:
//!
//! ```text
//! client.rs            Client, Builder, ReadFrom: reads in order, writes on the master
//! client/node.rs       Node: one connection, deadlines, failures classified (sent or not)
//! client/pool.rs       connections per node, reconnects, nodes recently unreachable
//! client/discovery.rs  asking every endpoint, choosing the master (pure, unit-tested)
//! client/error.rs      Error (KvError wrapped), and Lost: why a write's outcome is unknown
//! client/testing.rs    a fake node on loopback (tests, and the `testing` feature)
//! ```

use std::{
    future::Future,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};
use tokio::time::Instant;

use serde_bytes::ByteBuf;

use crate::{
    ClusterStatus, KvError, MputRequest, NodeStatus, PutRequest, ScanPage, ScanRequest, Version,
    Versioned,
    addr::{AddrError, Endpoint, parse_endpoint},
    cluster::{Epoch, FailoverReply, FailoverRequest, Member},
};

mod discovery;
mod error;
mod node;
mod pool;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use discovery::Want;
pub use discovery::{Discovery, Seen};
pub use error::{Error, Lost};
pub use node::{MAX_IN_FLIGHT, Node};
use pool::{Peer, Pool};

/// Port assumed when an address names none (kvd's default port).
pub const DEFAULT_PORT: u16 = 3000;

/// Multiplexed connections per node by default, opened on first use (so a client that sends
/// one request opens one): on this project's 2-core machine 50 clients over 4 connections did
/// about 3.4x the requests of 50 over 1 (docs/performance.md, DESIGN.md).
pub const DEFAULT_CONNECTIONS_PER_NODE: usize = 4;

/// Default time of a call: finding the master, connecting, and the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Values above this size may not fit the node's largest frame: with default limits a node
/// accepts frames of `max(2 × (key + value limits), 16 MiB) + 64 KiB` and closes the connection
/// on anything larger, without an answer.
pub const FRAME_SAFE_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// First pause before asking the nodes again while no master qualifies (a switchover pauses
/// writes for about a second at most; a short first pause keeps that wait short).
const BACKOFF_FIRST: Duration = Duration::from_millis(20);

/// Longest pause between two discoveries.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Parses a comma-separated list of addresses (`a:3000,http://b:3001,c`); a missing port is
/// [`DEFAULT_PORT`]. Spaces around the commas are ignored.
///
/// # Errors
/// The first address that does not parse, or an empty list.
pub fn parse_endpoints(list: &str) -> Result<Vec<Endpoint>, AddrError> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_endpoint(s, DEFAULT_PORT))
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        // Gives the parser's own "the host is empty" message for the whole input.
        parse_endpoint("", DEFAULT_PORT)?;
    }
    Ok(endpoints)
}

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// The endpoints in the order given: the first that answers. A replica answers with what
    /// it has applied, which may be behind the master.
    #[default]
    Endpoints,
    /// The master, found and followed as writes are: reads see every acknowledged write.
    Master,
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct Builder {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    connections: usize,
    read_from: ReadFrom,
    creds: crate::transport::Credentials,
}

impl Builder {
    /// The token to present (a node with `kvd --auth-file` requires one; its role decides what
    /// the client may do).
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> Self {
        self.creds.token = token;
        self
    }

    /// TLS: the CA the nodes' certificates must come from, and a certificate for mutual TLS
    /// (see [`crate::tls::ClientTls::from_files`]).
    #[must_use]
    pub fn tls(mut self, tls: Option<crate::tls::ClientTls>) -> Self {
        self.creds.tls = tls;
        self
    }

    /// The time of each call (default [`DEFAULT_TIMEOUT`]), covering the search for the master,
    /// connecting, following it across a failover, and the answer.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest wait for one TCP connection (default: the call's timeout).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Multiplexed TCP connections per node (default [`DEFAULT_CONNECTIONS_PER_NODE`]; requests
    /// take them in turn, each opened on first use).
    #[must_use]
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Where reads go (default [`ReadFrom::Endpoints`]).
    #[must_use]
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// The client. Nothing is connected until the first call.
    ///
    /// # Errors
    /// [`Error::NoEndpoints`] when no endpoint was given.
    pub fn build(self) -> Result<Client, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let connect_timeout = self.connect_timeout.unwrap_or(self.timeout);
        Ok(Client {
            inner: Arc::new(Inner {
                pool: Pool::new(connect_timeout, self.timeout, self.connections, self.creds),
                endpoints: self.endpoints,
                timeout: self.timeout,
                master: RwLock::new(None),
                discovering: tokio::sync::Mutex::new(()),
            }),
            read_from: self.read_from,
        })
    }
}

/// A client of a kvd cluster. Cheap to clone: clones share the connections and what is known
/// of the master.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    read_from: ReadFrom,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    pool: Pool,
    /// The master last found or followed, until a call shows it is not (any more).
    master: RwLock<Option<Cached>>,
    /// One discovery at a time: after a failover, the many calls that lost the master wait for
    /// one search instead of each asking every node.
    discovering: tokio::sync::Mutex<()>,
}

/// What to do with a node's answer that it took nothing (`NotMaster`, `ShuttingDown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Go to the master it names (or search again), within the call's time.
    Yes,
    /// Return it: the request only makes sense on the node it was meant for.
    No,
}

#[derive(Clone)]
struct Cached {
    peer: Arc<Peer>,
    epoch: Epoch,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .field("read_from", &self.read_from)
            .finish_non_exhaustive()
    }
}

/// Pauses that double from [`BACKOFF_FIRST`] to [`BACKOFF_MAX`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF_FIRST)
    }

    /// Waits the next pause, never past `deadline`; `false` when no time is left.
    async fn wait(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.0.min(left)).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        true
    }
}

impl Client {
    /// Settings for a client of these endpoints.
    pub fn builder(endpoints: impl IntoIterator<Item = Endpoint>) -> Builder {
        Builder {
            endpoints: endpoints.into_iter().collect(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: None,
            connections: DEFAULT_CONNECTIONS_PER_NODE,
            read_from: ReadFrom::Endpoints,
            creds: crate::transport::Credentials::default(),
        }
    }

    /// The endpoints, in the order reads try them.
    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// The time of each call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// This client with reads going to `read_from` (sharing connections and the master).
    #[must_use]
    pub fn reading_from(&self, read_from: ReadFrom) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            read_from,
        }
    }

    /// This client with reads going to the master.
    #[must_use]
    pub fn reading_from_master(&self) -> Self {
        self.reading_from(ReadFrom::Master)
    }

    fn deadline(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.inner.timeout).unwrap_or(now)
    }

    // --- reads -------------------------------------------------------------------------------

    /// Reads a key; `None` when it is absent.
    ///
    /// # Errors
    /// The node's refusal, or every endpoint's failure ([`Error::NoEndpointAnswered`]).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        if self.read_from == ReadFrom::Master {
            return self
                .on_master(|n| async move { n.master_get(key).await })
                .await;
        }
        self.read(|n| async move { n.get(key).await }).await
    }

    /// Reads many keys; answers in the order asked.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn mget(&self, keys: Vec<ByteBuf>) -> Result<Vec<Option<Versioned>>, Error> {
        if self.read_from == ReadFrom::Master {
            return self
                .on_master(|n| {
                    let keys = keys.clone();
                    async move { n.master_mget(keys).await }
                })
                .await;
        }
        self.read(|n| {
            let keys = keys.clone();
            async move { n.mget(keys).await }
        })
        .await
    }

    /// Reads one page of a scan.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanPage, Error> {
        if self.read_from == ReadFrom::Master {
            return self
                .on_master(|n| {
                    let req = req.clone();
                    async move { n.master_scan(req).await }
                })
                .await;
        }
        self.read(|n| {
            let req = req.clone();
            async move { n.scan(req).await }
        })
        .await
    }

    /// The status of the first endpoint that answers (of the master, reading from it).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        self.read(|n| async move { n.status().await }).await
    }

    /// The master's view of the cluster: itself and every replica with its lag.
    ///
    /// # Errors
    /// As [`Client::on_master`].
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        self.on_master(|n| async move { n.cluster_status().await })
            .await
    }

    /// Runs `call` on the endpoints in order (or on the master, reading from it) until one
    /// answers: a node that cannot be reached, or that lost the connection, gave no answer in
    /// time, is shutting down or is copying the shard, is followed by the next. `call` gets a
    /// node whose requests end by the call's deadline, and may run once per endpoint: give it
    /// reads only.
    ///
    /// # Errors
    /// The first answer that is an error of another kind (the node said no), or every
    /// endpoint's failure.
    pub async fn read<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: Fn(Node) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if self.read_from == ReadFrom::Master {
            return self.on_master(call).await;
        }
        let deadline = self.deadline();
        let pool = &self.inner.pool;
        // In order, but endpoints that just failed to connect go last.
        let (up, down): (Vec<&Endpoint>, Vec<&Endpoint>) =
            self.inner.endpoints.iter().partition(|e| !pool.is_down(e));
        let mut failures = Vec::new();
        for endpoint in up.into_iter().chain(down) {
            if !failures.is_empty() && Instant::now() >= deadline {
                break;
            }
            let peer = pool.peer(endpoint);
            let node = match peer.node(pool, deadline).await {
                Ok(node) => node,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            match call(node.until(deadline)).await {
                Ok(v) => return Ok(v),
                Err(e) if e.read_elsewhere() => {
                    discard_if_broken(&peer, &node, &e);
                    failures.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::from_failures(failures))
    }

    // --- writes ------------------------------------------------------------------------------

    /// Writes a key on the master; the master is found, and followed across a failover, within
    /// the call's time (plus `acks_timeout_ms` for the answer).
    ///
    /// # Errors
    /// The node's refusal (a failed condition, [`KvError::AcksTimeout`]: committed but
    /// under-replicated), [`Error::OutcomeUnknown`] when it was sent and no answer came,
    /// [`Error::NoMaster`] when no master took it in time, or why no node could be reached.
    pub async fn put(&self, req: PutRequest) -> Result<Version, Error> {
        self.with_master(Want::Writable, Follow::Yes, |n| {
            let req = req.clone();
            async move { n.put(req).await }
        })
        .await
    }

    /// Writes many keys on the master (each its own write).
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn mput(&self, req: MputRequest) -> Result<Vec<Version>, Error> {
        self.with_master(Want::Writable, Follow::Yes, |n| {
            let req = req.clone();
            async move { n.mput(req).await }
        })
        .await
    }

    /// Deletes a key on the master; `None` when it was absent.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn delete(&self, key: &[u8]) -> Result<Option<Version>, Error> {
        self.with_master(Want::Writable, Follow::Yes, |n| async move {
            n.delete(key).await
        })
        .await
    }

    /// Asks the master to hand over to a replica (a switchover), or only to plan it. The answer
    /// may take the switchover's `timeout_ms` beyond the call's time.
    ///
    /// The master is found as for writes, but a `NotMaster` answer to the request itself is
    /// returned, not followed: the mastership moved while it was sent, and handing over from
    /// the new master is not what was asked.
    ///
    /// # Errors
    /// The master's refusal ([`KvError::FailoverRefused`], [`KvError::FailoverAborted`],
    /// [`KvError::NotMaster`], …), [`Error::OutcomeUnknown`], or why no master could be reached.
    pub async fn failover(&self, req: FailoverRequest) -> Result<FailoverReply, Error> {
        self.with_master(Want::Master, Follow::No, |n| {
            let req = req.clone();
            async move { n.failover(req).await }
        })
        .await
    }

    /// Asks the master to remove a replica from the membership for good.
    ///
    /// # Errors
    /// As [`Client::failover`] ([`KvError::UnknownNode`], [`KvError::AmbiguousNode`]).
    pub async fn forget(&self, node: &str) -> Result<Member, Error> {
        self.with_master(Want::Master, Follow::Yes, |n| async move {
            n.forget(node).await
        })
        .await
    }

    /// Runs `call` on the master of the highest epoch (writable or not), found and followed as
    /// writes are. `call` runs again, on the master it moved to, after a failure that proves
    /// its request was not carried out (not sent; `NotMaster`; `ShuttingDown`; a read with no
    /// answer); the [`Node`] methods report a write in doubt as [`Error::OutcomeUnknown`],
    /// which is never retried. So give `call` one write, or reads.
    ///
    /// # Errors
    /// What `call` failed with, [`Error::NoMaster`] when no master was found in time, or why
    /// no node could be reached.
    pub async fn on_master<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: Fn(Node) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.with_master(Want::Master, Follow::Yes, call).await
    }

    /// A connection to the master that takes writes (found as writes find it).
    ///
    /// # Errors
    /// As [`Client::on_master`].
    pub async fn master(&self) -> Result<Node, Error> {
        self.with_master(Want::Writable, Follow::Yes, |n| async move { Ok(n) })
            .await
    }

    /// A connection to any node (a replica the master lists, a candidate to promote), from the
    /// client's pool.
    ///
    /// # Errors
    /// [`Error::Unreachable`].
    pub async fn node(&self, endpoint: &Endpoint) -> Result<Node, Error> {
        self.inner.pool.node(endpoint, self.deadline()).await
    }

    /// Asks every endpoint (and the masters they name) for its status, once, without waiting
    /// for a master to appear; remembers the master if there is one.
    pub async fn discover(&self) -> Discovery {
        let found = Discovery::run(&self.inner.pool, &self.inner.endpoints, self.deadline()).await;
        self.remember(&found, Want::Master);
        found
    }

    /// Caches the master `found` names for `want`, if any.
    fn remember(&self, found: &Discovery, want: Want) -> Option<Cached> {
        let i = found.choose(want)?;
        let seen = found.nodes.get(i)?;
        let epoch = seen.answer.as_ref().map(|s| s.epoch).ok()?;
        let cached = Cached {
            peer: self.inner.pool.peer(&seen.endpoint),
            epoch,
        };
        self.cache(cached.clone());
        Some(cached)
    }

    fn cached(&self) -> Option<Cached> {
        self.inner
            .master
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers `new` unless a master of a higher epoch is remembered already.
    fn cache(&self, new: Cached) {
        let mut master = self
            .inner
            .master
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if master.as_ref().is_none_or(|m| m.epoch <= new.epoch) {
            *master = Some(new);
        }
    }

    /// Forgets the master if it is still `peer`.
    fn uncache(&self, peer: &Arc<Peer>) {
        let mut master = self
            .inner
            .master
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if master.as_ref().is_some_and(|m| Arc::ptr_eq(&m.peer, peer)) {
            *master = None;
        }
    }

    /// Finds a master for `want`, asking the nodes again with a back-off while none qualifies,
    /// until `deadline`. Returns at once when no node answers at all: nobody to wait for.
    async fn find_master(&self, want: Want, deadline: Instant) -> Result<Cached, Error> {
        let no_master = |seen: Vec<String>| Error::NoMaster {
            after: self.inner.timeout,
            seen,
        };
        let Ok(_one_search) =
            tokio::time::timeout_at(deadline, self.inner.discovering.lock()).await
        else {
            return Err(no_master(vec![
                "another call of this client was still looking for it".to_string(),
            ]));
        };
        // Found by the search this call waited for?
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let mut backoff = Backoff::new();
        // What the last round in which some node answered saw.
        let mut seen: Option<Vec<String>> = None;
        loop {
            let found = Discovery::run(&self.inner.pool, &self.inner.endpoints, deadline).await;
            if let Some(cached) = self.remember(&found, want) {
                return Ok(cached);
            }
            if found.nobody_answered() {
                match seen {
                    // Nobody to wait for.
                    None => return Err(Error::from_failures(found.failures())),
                    // Nodes answered before: this round ran out of time, or they went away.
                    Some(_) if Instant::now() >= deadline => break,
                    Some(_) => {}
                }
            } else if seen.is_none() || Instant::now() < deadline {
                // A round the deadline cut short says less than the whole one before it
                // (only "no answer within" for the node it was asking when time ran out).
                seen = Some(found.describe());
            }
            if !backoff.wait(deadline).await {
                break;
            }
        }
        Err(no_master(seen.unwrap_or_default()))
    }

    /// Runs `call` on the master (see [`Client::on_master`]), following `NotMaster` answers.
    async fn with_master<T, F, Fut>(&self, want: Want, follow: Follow, call: F) -> Result<T, Error>
    where
        F: Fn(Node) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let deadline = self.deadline();
        let pool = &self.inner.pool;
        let mut backoff = Backoff::new();
        // The master a `NotMaster` answer named, tried once before searching.
        let mut hint: Option<Cached> = None;
        let mut followed = false;
        loop {
            let (master, hinted) = match (self.cached(), hint.take()) {
                (Some(cached), _) => (cached, false),
                (None, Some(hinted)) => (hinted, true),
                (None, None) => (self.find_master(want, deadline).await?, false),
            };
            let result = match master.peer.node(pool, deadline).await {
                Ok(node) => {
                    let result = call(node.until(deadline)).await;
                    if let Err(e) = &result {
                        discard_if_broken(&master.peer, &node, e);
                    }
                    result
                }
                Err(e) => Err(e),
            };
            let e = match result {
                Ok(v) => {
                    if hinted {
                        // The master a node named answered: it is the one now.
                        self.cache(master);
                    }
                    return Ok(v);
                }
                Err(e) if e.may_retry() && (follow == Follow::Yes || e.kv().is_none()) => e,
                Err(e) => {
                    if e.may_retry() || e.is_outcome_unknown() {
                        // It answered that it is not (or soon not) the master, or it did not
                        // answer at all (dead, frozen, cut off): the next call looks for the
                        // master again instead of waiting on this one once more.
                        self.uncache(&master.peer);
                    }
                    return Err(e);
                }
            };
            self.uncache(&master.peer);
            match &e {
                // Follow the named master at once, once in a row; after that, search (a node
                // may name one that has moved on again).
                Error::Kv(KvError::NotMaster {
                    master: Some(address),
                    epoch,
                }) if !followed && *epoch >= master.epoch => {
                    if let Ok(endpoint) = parse_endpoint(address, DEFAULT_PORT) {
                        hint = Some(Cached {
                            peer: pool.peer(&endpoint),
                            epoch: *epoch,
                        });
                        followed = true;
                        continue;
                    }
                }
                _ => {}
            }
            followed = false;
            if !backoff.wait(deadline).await {
                return Err(match e {
                    Error::Kv(
                        KvError::NotMaster { .. } | KvError::ShuttingDown | KvError::NoLease { .. },
                    ) => Error::NoMaster {
                        after: self.inner.timeout,
                        seen: vec![format!("{}: {e}", master.peer.endpoint)],
                    },
                    other => other,
                });
            }
        }
    }
}

/// After `e` on `node`: drops the connection when it broke or went silent, so the next call
/// opens a fresh one (a half-open connection would otherwise time out for ever).
fn discard_if_broken(peer: &Peer, node: &Node, e: &Error) {
    let broken = matches!(
        e,
        Error::ConnectionLost { .. }
            | Error::TimedOut { .. }
            | Error::OutcomeUnknown { .. }
            | Error::Kv(KvError::ShuttingDown)
    );
    if broken {
        peer.discard(node);
    }
}

#[cfg(test)]
mod tests;
