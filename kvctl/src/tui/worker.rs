//! Runs the console's RPC calls in spawned tasks and reports each answer as an event.
//!
//! ```text
//!  Command ──► Worker::run ──spawn──► task: node() ─► call ─► Event::Reply ──► loop
//!                                        │
//!                              connect if there is no connection;
//!                              drop it when a call could not reach the node
//! ```
//!
//! The worker keeps one connection to the endpoint and one per peer (the master when the
//! endpoint is a replica, and every replica, whose own status shows uptime, keys and disk). A
//! call that fails to reach its node drops that connection, so the next tick connects again:
//! that is the whole reconnection logic, and it needs no key press.
//!
//! Reads (status, scan, get) go to the endpoint; writes follow a replica's redirect to its
//! master, as `kvctl put` and `kvctl delete` do.

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, NodeStatus, PutCondition, PutRequest, Role, ScanRequest,
    addr::{Endpoint, parse_endpoint},
};
use tokio::sync::{Mutex, mpsc};

use crate::{
    client::{DEFAULT_PORT, Error, Exit, Node, follow_master},
    tui::{
        app::{Command, WriteAction},
        browser::ScanPlan,
        event::{Event, Failure, KeyPage, Reply, Snapshot},
    },
};

/// Longest wait for a replica's own status (asked in a task of its own, so a replica that does
/// not answer never holds up the refresh of the rest of the cluster).
const PEER_WAIT: Duration = Duration::from_secs(2);

/// Most scan calls for one page when filtering by shard (keys of other shards are skipped):
/// a page may come back short, with a cursor to go on from.
const MAX_SCANS_PER_PAGE: usize = 20;

/// Runs commands; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    timeout: Duration,
    events: mpsc::UnboundedSender<Event>,
    /// The endpoint's connection; a tokio mutex because it is held while connecting, so that
    /// concurrent calls share one connection attempt.
    node: Mutex<Option<Node>>,
    /// Connections to other nodes, by advertised address.
    peers: Mutex<HashMap<String, Node>>,
}

impl Worker {
    /// A worker for `endpoint` that waits `timeout` for each connection and answer and reports
    /// on `events`.
    pub fn new(
        endpoint: Endpoint,
        timeout: Duration,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                timeout,
                events,
                node: Mutex::new(None),
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts `command` in its own task; its answer arrives as an [`Event::Reply`].
    ///
    /// The task is local to the console's thread (kvctl runs a single-threaded runtime, and
    /// the loop runs inside a `LocalSet`): the client's redirect helpers take async closures,
    /// whose futures rustc cannot yet prove `Send` for every lifetime.
    pub fn run(&self, command: Command) {
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let reply = worker.execute(command).await;
            // The loop has ended when this fails: nobody is left to tell.
            let _ = worker.inner.events.send(Event::Reply(reply));
        });
    }

    async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::Refresh => {
                let result = self.refresh().await.map(Box::new).map_err(|e| {
                    tracing::debug!(error = %e, "refresh failed");
                    Failure::from(e)
                });
                Reply::Refreshed {
                    at: std::time::Instant::now(),
                    result,
                }
            }
            Command::PeerStatus { node_id, address } => {
                let wait = self.inner.timeout.min(PEER_WAIT);
                let result = self
                    .peer_call(&address, wait, async |n| n.status().await)
                    .await
                    .map_err(|e| e.to_string());
                Reply::PeerStatus { node_id, result }
            }
            Command::Scan(plan) => Reply::Scanned {
                generation: plan.generation,
                result: self.scan(plan).await.map_err(Failure::from),
            },
            Command::Get { key, purpose } => {
                let result = match self.node().await {
                    Ok(node) => self.checked(node.get(&key).await).await,
                    Err(e) => Err(e),
                };
                Reply::Fetched {
                    key,
                    purpose,
                    result: result.map_err(Failure::from),
                }
            }
            Command::Write(action) => {
                let result = self.write(&action).await.map_err(|e| {
                    tracing::warn!(error = %e, "write failed");
                    Failure::from(e)
                });
                Reply::Written { action, result }
            }
        }
    }

    /// The endpoint's connection, connecting if there is none.
    async fn node(&self) -> Result<Node, Error> {
        let mut guard = self.inner.node.lock().await;
        if let Some(node) = guard.as_ref() {
            return Ok(node.clone());
        }
        let node = Node::connect(&self.inner.endpoint, self.inner.timeout).await?;
        tracing::debug!(endpoint = %self.inner.endpoint, "connected");
        *guard = Some(node.clone());
        Ok(node)
    }

    /// Passes `result` on; when it says the endpoint is unreachable, drops the connection so
    /// the next call connects again.
    async fn checked<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result
            && e.exit() == Exit::Unreachable
        {
            self.inner.node.lock().await.take();
        }
        result
    }

    /// A connection to another node, by its advertised address.
    async fn peer(&self, address: &str, timeout: Duration) -> Result<Node, Error> {
        if let Some(node) = self.inner.peers.lock().await.get(address) {
            return Ok(node.clone());
        }
        let endpoint =
            parse_endpoint(address, DEFAULT_PORT).map_err(|e| Error::Usage(e.to_string()))?;
        let node = Node::connect(&endpoint, timeout).await?;
        self.inner
            .peers
            .lock()
            .await
            .insert(address.to_string(), node.clone());
        Ok(node)
    }

    async fn peer_call<T>(
        &self,
        address: &str,
        timeout: Duration,
        call: impl AsyncFnOnce(Node) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let node = self.peer(address, timeout).await?;
        let result = call(node).await;
        if matches!(&result, Err(e) if e.exit() == Exit::Unreachable) {
            self.inner.peers.lock().await.remove(address);
        }
        result
    }

    async fn refresh(&self) -> Result<Snapshot, Error> {
        let node = self.node().await?;
        let endpoint = self.checked(node.status().await).await?;
        let cluster = match endpoint.role {
            Role::Master => self.checked(node.cluster_status().await).await,
            Role::Replica => self.master_cluster(&endpoint).await,
        }
        .map_err(|e| e.to_string());
        Ok(Snapshot { endpoint, cluster })
    }

    /// The cluster as the master a replica names sees it.
    async fn master_cluster(&self, replica: &NodeStatus) -> Result<ClusterStatus, Error> {
        let Some(link) = &replica.master_link else {
            return Err(Error::Usage(
                "the endpoint is a replica that reports no master".into(),
            ));
        };
        self.peer_call(&link.master, self.inner.timeout, async |n| {
            n.cluster_status().await
        })
        .await
    }

    async fn scan(&self, plan: ScanPlan) -> Result<KeyPage, Error> {
        let node = self.node().await?;
        self.checked(scan_page(node, plan).await).await
    }

    async fn write(&self, action: &WriteAction) -> Result<Option<u64>, Error> {
        let node = self.node().await?;
        let result = match action {
            WriteAction::Put {
                key,
                value,
                if_version,
            } => {
                let mut req = PutRequest::new(key.clone(), value.clone());
                if let Some(v) = if_version {
                    req.condition = PutCondition::IfVersion(*v);
                }
                follow_master(&node, async |n| n.put(req.clone()).await)
                    .await
                    .map(Some)
            }
            WriteAction::Delete { key } => {
                follow_master(&node, async |n| n.delete(key).await).await
            }
        };
        self.checked(result).await
    }
}

/// Reads one page of keys for `plan`: one scan call, or with a shard filter as many as it
/// takes to fill the page (at most [`MAX_SCANS_PER_PAGE`]), skipping other shards' keys.
async fn scan_page(node: Node, plan: ScanPlan) -> Result<KeyPage, Error> {
    let limit = usize::try_from(plan.limit).unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    let mut cursor = plan.start_after.clone();
    for _ in 0..MAX_SCANS_PER_PAGE {
        let page = node
            .scan(ScanRequest {
                prefix: ByteBuf::from(plan.prefix.clone()),
                start_after: cursor.clone().map(ByteBuf::from),
                limit: plan.limit,
                keys_only: true,
            })
            .await?;
        for entry in page.entries {
            let key = entry.key.into_vec();
            cursor = Some(key.clone());
            let wanted = plan
                .shard
                .is_none_or(|(shard, shards)| shared::routing::shard_for(&key, shards) == shard);
            if wanted {
                rows.push((key, entry.version));
                if rows.len() == limit {
                    return Ok(KeyPage { rows, next: cursor });
                }
            }
        }
        match page.next {
            None => return Ok(KeyPage { rows, next: None }),
            Some(next) if plan.shard.is_some() => cursor = Some(next.into_vec()),
            Some(next) => {
                return Ok(KeyPage {
                    rows,
                    next: Some(next.into_vec()),
                });
            }
        }
    }
    Ok(KeyPage { rows, next: cursor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::testing::{Fake, serve};

    fn plan(shard: Option<(u32, u32)>, limit: u32, start_after: Option<&str>) -> ScanPlan {
        ScanPlan {
            generation: 1,
            prefix: Vec::new(),
            start_after: start_after.map(|s| s.as_bytes().to_vec()),
            shard,
            limit,
        }
    }

    fn keys(page: &KeyPage) -> Vec<String> {
        page.rows
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn pages_of_one_shard_skip_the_other_shards_keys() {
        let mut fake = Fake::default();
        for i in 0..20 {
            fake = fake.with(format!("k{i:02}"), "v");
        }
        let endpoint = serve(fake).await;
        let node = Node::connect(&endpoint, Duration::from_secs(5))
            .await
            .expect("connect");
        // The fake answers at most 3 keys per call: an unfiltered page is one call.
        let page = scan_page(node.clone(), plan(None, 100, None))
            .await
            .expect("scan");
        assert_eq!(keys(&page), ["k00", "k01", "k02"]);
        assert_eq!(page.next.as_deref(), Some(&b"k02"[..]));

        let want: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}"))
            .filter(|k| shared::routing::shard_for(k.as_bytes(), 2) == 1)
            .collect();
        let page = scan_page(node.clone(), plan(Some((1, 2)), 100, None))
            .await
            .expect("scan");
        assert_eq!(keys(&page), want);
        assert_eq!(page.next, None);
        // A full page stops at its last key, to go on from there.
        let page = scan_page(node.clone(), plan(Some((1, 2)), 2, None))
            .await
            .expect("scan");
        assert_eq!(keys(&page), want[..2]);
        assert_eq!(page.next.as_deref(), Some(want[1].as_bytes()));
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_failed_refresh_not_an_error() {
        tokio::task::LocalSet::new()
            .run_until(failed_then_answered_refresh())
            .await;
    }

    async fn failed_then_answered_refresh() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: closed,
        };
        let worker = Worker::new(endpoint, Duration::from_secs(2), tx.clone());
        worker.run(Command::Refresh);
        match rx.recv().await {
            Some(Event::Reply(Reply::Refreshed { result: Err(f), .. })) => {
                assert!(f.unreachable, "{f:?}");
                assert!(f.message.contains("cannot reach"), "{f:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let served = serve(Fake::default()).await;
        let worker = Worker::new(served, Duration::from_secs(2), tx);
        worker.run(Command::Refresh);
        match rx.recv().await {
            Some(Event::Reply(Reply::Refreshed { result: Ok(s), .. })) => {
                assert_eq!(s.endpoint.role, Role::Master);
                assert!(s.cluster.is_ok());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
