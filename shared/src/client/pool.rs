//! The client's connections: a few multiplexed TCP connections per node, opened on first use,
//! replaced when they break, and a short memory of nodes that could not be reached.
//!
//! ```text
//!  Pool ── peers (by endpoint) ──► Peer ── slots[0..n]: Option<Node>   (round robin per request)
//!                                 ├── connecting: one connect at a time per node
//!                                 └── down_since: last failed connect (reads try it last)
//! ```
//!
//! Locks: the map and each peer's slots are std locks held for a lookup or an assignment,
//! never across an `.await`; poisoning is ignored (the data is a cache of handles, valid
//! whatever a panicking holder was doing). Connecting happens under the peer's tokio mutex,
//! so concurrent requests to a node share one attempt instead of opening a connection each.

use std::{
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use super::{Error, Node, error::seconds};
use crate::addr::Endpoint;

/// How long a node whose connection failed is tried after the others by reads.
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(1);

/// Connections to every node the client talked to.
pub(crate) struct Pool {
    /// Longest wait for a TCP connection.
    connect_timeout: Duration,
    /// The default time of a request on the connections opened.
    timeout: Duration,
    /// Connections per node.
    per_node: usize,
    /// TLS and the token, on every connection.
    creds: crate::transport::Credentials,
    /// One per node ever asked; a handful, so a list.
    peers: Mutex<Vec<Arc<Peer>>>,
}

/// One node's connections.
pub(crate) struct Peer {
    pub(crate) endpoint: Endpoint,
    slots: RwLock<Vec<Option<Node>>>,
    next: AtomicUsize,
    connecting: tokio::sync::Mutex<()>,
    down_since: Mutex<Option<Instant>>,
}

impl Pool {
    pub(crate) fn new(
        connect_timeout: Duration,
        timeout: Duration,
        per_node: usize,
        creds: crate::transport::Credentials,
    ) -> Self {
        Self {
            connect_timeout,
            timeout,
            per_node: per_node.max(1),
            creds,
            peers: Mutex::new(Vec::new()),
        }
    }

    /// The peer for `endpoint`, made on first use.
    pub(crate) fn peer(&self, endpoint: &Endpoint) -> Arc<Peer> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.iter().find(|p| p.endpoint == *endpoint) {
            return Arc::clone(peer);
        }
        let peer = Arc::new(Peer {
            endpoint: endpoint.clone(),
            slots: RwLock::new(vec![None; self.per_node]),
            next: AtomicUsize::new(0),
            connecting: tokio::sync::Mutex::new(()),
            down_since: Mutex::new(None),
        });
        peers.push(Arc::clone(&peer));
        peer
    }

    /// A connection to `endpoint`, connecting by `deadline` at the latest.
    pub(crate) async fn node(&self, endpoint: &Endpoint, deadline: Instant) -> Result<Node, Error> {
        self.peer(endpoint).node(self, deadline).await
    }

    /// Whether `endpoint` failed to connect within [`DOWN_FOR`].
    pub(crate) fn is_down(&self, endpoint: &Endpoint) -> bool {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .find(|p| p.endpoint == *endpoint)
            .is_some_and(|p| p.is_down())
    }
}

impl Peer {
    /// The next slot's connection, connecting it if it has none or its connection is gone.
    pub(crate) async fn node(&self, pool: &Pool, deadline: Instant) -> Result<Node, Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.per_node;
        if let Some(node) = self.open(i) {
            return Ok(node);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(node) = self.open(i) {
            return Ok(node);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = pool.connect_timeout.min(left);
        if wait.is_zero() {
            return Err(Error::Unreachable {
                endpoint: self.endpoint.clone(),
                cause: format!(
                    "no time left to connect (the request's {} ran out)",
                    seconds(pool.timeout)
                ),
            });
        }
        match Node::connect_with(&self.endpoint, wait, pool.timeout, &pool.creds).await {
            Ok(node) => {
                self.slots_mut()[i] = Some(node.clone());
                *self.down() = None;
                Ok(node)
            }
            Err(e) => {
                *self.down() = Some(Instant::now());
                Err(e)
            }
        }
    }

    fn open(&self, i: usize) -> Option<Node> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots.get(i)?.as_ref().filter(|n| !n.is_closed()).cloned()
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<Node>>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn down(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `node`'s connection from its slot (it timed out, or broke), so the next request
    /// opens a new one; a half-open connection would otherwise time out for ever.
    pub(crate) fn discard(&self, node: &Node) {
        for slot in self.slots_mut().iter_mut() {
            if slot.as_ref().is_some_and(|n| n.same_connection(node)) {
                *slot = None;
            }
        }
    }

    fn is_down(&self) -> bool {
        self.down().is_some_and(|t| t.elapsed() < DOWN_FOR)
    }
}
