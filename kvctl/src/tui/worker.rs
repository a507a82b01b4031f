//! Runs the console's RPC calls in spawned tasks and reports each answer as an event.
//!
//! ```text
//!  Command ──► Worker::run ──spawn──► task: Client call ─► Event::Reply ──► loop
//!                                        │
//!                          the client library keeps the connections: it opens them on
//!                          first use, drops one that broke or went silent, and opens
//!                          a new one on the next call
//! ```
//!
//! Every call goes through one [`Client`] of the endpoints (`-e a,b,c`), so reconnection needs
//! no logic here and no key press: the next tick's refresh connects again.
//!
//! - A refresh is one discovery: every endpoint's status at once (the first that answers is
//!   "the endpoint" the console shows), and the cluster as the master of the highest epoch
//!   sees it, wherever it is now (it follows a failover by itself). When no master answers,
//!   the members known from earlier views are asked too, so the replicas' own view (epoch,
//!   the master they name, their link) is there even for a console given only the master.
//! - Reads (scan, get) go to the first endpoint that answers; writes to the master, as
//!   `kvctl put` and `kvctl delete` do.
//! - A replica's own status (uptime, keys, disk) is asked of it directly, at most
//!   [`PEER_WAIT`], so a replica that does not answer never holds up the rest.
//! - A switchover (and its plan) goes to the master, as `kvctl failover` sends it; a
//!   promotion (and its plan) to the candidate itself, as `kvctl promote` sends it.

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, KvError, PutCondition, PutRequest, ScanRequest,
    addr::{Endpoint, parse_endpoint},
    client::{self, Client, Node},
    cluster::{FailoverRequest, Member, PromoteRequest},
};
use tokio::sync::mpsc;

use crate::{
    client::{DEFAULT_PORT, Error},
    output::now_unix_ms,
    tui::{
        app::{Command, FailoverAction, Plan, PlanRequest, WriteAction},
        browser::ScanPlan,
        event::{Event, FailoverDone, Failure, KeyPage, Probe, Reply, Snapshot},
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
    /// The endpoints; each call takes at most the client's timeout.
    client: Client,
    events: mpsc::UnboundedSender<Event>,
}

impl Worker {
    /// A worker that runs commands with `client` and reports on `events`.
    pub fn new(client: Client, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            inner: Arc::new(Inner { client, events }),
        }
    }

    /// Starts `command` in its own task; its answer arrives as an [`Event::Reply`].
    ///
    /// The task is local to the console's thread (kvctl runs a single-threaded runtime, and
    /// the loop runs inside a `LocalSet`).
    pub fn run(&self, command: Command) {
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let reply = worker.execute(command).await;
            // The loop has ended when this fails: nobody is left to tell.
            let _ = worker.inner.events.send(Event::Reply(reply));
        });
    }

    async fn execute(&self, command: Command) -> Reply {
        let client = &self.inner.client;
        match command {
            Command::Refresh { members } => {
                let result = self.refresh(&members).await.map(Box::new).map_err(|e| {
                    tracing::debug!(error = %e, "refresh failed");
                    Failure::from(e)
                });
                Reply::Refreshed {
                    at: std::time::Instant::now(),
                    result,
                }
            }
            Command::PeerStatus { node_id, address } => {
                let result = self
                    .peer_status(&address)
                    .await
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                Reply::PeerStatus { node_id, result }
            }
            Command::Scan(plan) => Reply::Scanned {
                generation: plan.generation,
                result: client
                    .read(|n| scan_page(n, plan.clone()))
                    .await
                    .map_err(|e| Failure::from(Error::from(e))),
            },
            Command::Get { key, purpose } => {
                let result = client.get(&key).await.map_err(Error::from);
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
            Command::Plan {
                generation,
                request,
                timeout,
            } => Reply::Planned {
                generation,
                result: self.plan(request, timeout).await.map_err(|e| {
                    tracing::info!(error = %e, "no failover plan");
                    Failure::from(e)
                }),
            },
            Command::Failover(action) => {
                tracing::warn!(command = ?action, "failover from the console");
                let result = match self.failover(&action).await {
                    Ok(done) => {
                        tracing::warn!(outcome = ?done, "failover done");
                        Ok(Box::new(done))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "failover failed");
                        Err(Failure::from(e))
                    }
                };
                Reply::FailedOver { action, result }
            }
        }
    }

    /// A switchover plan from the master, or a promotion plan from the candidate.
    async fn plan(&self, request: PlanRequest, timeout: Duration) -> Result<Plan, Error> {
        let timeout_ms = millis(timeout);
        match request {
            PlanRequest::Switchover { to } => {
                let req = FailoverRequest {
                    to,
                    plan_only: true,
                    timeout_ms,
                };
                let reply = self.inner.client.failover(req).await;
                Ok(Plan::Switchover(not_followed(reply)?.plan))
            }
            PlanRequest::Promotion { candidate, force } => {
                let req = PromoteRequest {
                    force,
                    plan_only: true,
                    timeout_ms,
                };
                let reply = self.candidate(&candidate).await?.promote(req).await?;
                Ok(Plan::Promotion(reply.plan))
            }
        }
    }

    /// Runs a switchover (on the master) or a promotion (on the candidate).
    async fn failover(&self, action: &FailoverAction) -> Result<FailoverDone, Error> {
        match action {
            FailoverAction::Switchover { to, timeout } => {
                let req = FailoverRequest {
                    to: Some(to.node_id.clone()),
                    plan_only: false,
                    timeout_ms: millis(*timeout),
                };
                let reply = self.inner.client.failover(req).await;
                Ok(FailoverDone::Switchover(not_followed(reply)?))
            }
            FailoverAction::Promotion {
                candidate,
                force,
                timeout,
            } => {
                let req = PromoteRequest {
                    force: *force,
                    plan_only: false,
                    timeout_ms: millis(*timeout),
                };
                let reply = self.candidate(candidate).await?.promote(req).await?;
                Ok(FailoverDone::Promotion(reply))
            }
        }
    }

    /// A connection to a candidate for promotion, at its advertised address.
    async fn candidate(&self, candidate: &Member) -> Result<Node, Error> {
        let endpoint = parse_endpoint(&candidate.address, DEFAULT_PORT)
            .map_err(|e| Error::Usage(e.to_string()))?;
        Ok(self.inner.client.node(&endpoint).await?)
    }

    /// A node's own status, by its advertised address, within [`PEER_WAIT`].
    async fn peer_status(&self, address: &str) -> Result<shared::NodeStatus, Error> {
        let endpoint =
            parse_endpoint(address, DEFAULT_PORT).map_err(|e| Error::Usage(e.to_string()))?;
        self.status_at(&endpoint).await
    }

    /// One discovery, the master's view, and with no master the `members` known before.
    async fn refresh(&self, members: &[String]) -> Result<Snapshot, Error> {
        let client = &self.inner.client;
        let found = client.discover().await;
        let mut asked: Vec<Endpoint> = found.nodes.iter().map(|n| n.endpoint.clone()).collect();
        let mut nodes: Vec<Probe> = found
            .nodes
            .iter()
            .map(|n| Probe {
                address: n.endpoint.to_string(),
                status: n.answer.clone().map_err(|e| e.to_string()),
            })
            .collect();
        let cluster = match found.master() {
            Some((at, _)) => self.cluster_of(at).await.map_err(|e| e.to_string()),
            None => Err(format!(
                "no master answers: {}",
                found.describe().join("; ")
            )),
        };
        if cluster.is_err() {
            let extra: Vec<Endpoint> = members
                .iter()
                .filter_map(|m| parse_endpoint(m, DEFAULT_PORT).ok())
                .filter(|e| {
                    let new = !asked.contains(e);
                    if new {
                        asked.push(e.clone());
                    }
                    new
                })
                .collect();
            let answers = join_all(extra.iter().map(|e| self.status_at(e))).await;
            nodes.extend(extra.iter().zip(answers).map(|(e, a)| Probe {
                address: e.to_string(),
                status: a.map_err(|e| e.to_string()),
            }));
        }
        let endpoints_answered = found.first_answer().is_ok();
        let endpoint = match found.first_answer() {
            Ok((_, s)) => s.clone(),
            Err(e) => match nodes.iter().find_map(|p| p.status.as_ref().ok()) {
                Some(s) => s.clone(),
                None => return Err(e.into()),
            },
        };
        Ok(Snapshot {
            endpoint,
            cluster,
            nodes,
            endpoints_answered,
            at_unix_ms: now_unix_ms(),
        })
    }

    /// A node's status within [`PEER_WAIT`].
    async fn status_at(&self, endpoint: &Endpoint) -> Result<shared::NodeStatus, Error> {
        let client = &self.inner.client;
        let wait = client.timeout().min(PEER_WAIT);
        let node = client.node(endpoint).await?;
        Ok(node
            .until(tokio::time::Instant::now() + wait)
            .status()
            .await?)
    }

    /// The cluster as the master at `at` sees it.
    async fn cluster_of(&self, at: &shared::addr::Endpoint) -> Result<ClusterStatus, Error> {
        Ok(self.inner.client.node(at).await?.cluster_status().await?)
    }

    async fn write(&self, action: &WriteAction) -> Result<Option<u64>, Error> {
        let client = &self.inner.client;
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
                client.put(req).await.map(Some)
            }
            WriteAction::Delete { key } => client.delete(key).await,
        };
        Ok(result?)
    }
}

/// A duration as a request's `timeout_ms`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A failover answer, where a `NotMaster` from the master found (the mastership moved while
/// the request was on its way) is said as `kvctl failover` says it: nothing was done.
fn not_followed<T>(reply: Result<T, client::Error>) -> Result<T, Error> {
    match reply {
        Err(e @ client::Error::Kv(KvError::NotMaster { .. })) => Err(Error::Usage(format!(
            "the master changed while the failover was on its way, so nothing was done: {e}; \
             see the Cluster screen, and try again if it is still wanted"
        ))),
        other => Ok(other?),
    }
}

/// Reads one page of keys for `plan`: one scan call, or with a shard filter as many as it
/// takes to fill the page (at most [`MAX_SCANS_PER_PAGE`]), skipping other shards' keys.
async fn scan_page(node: Node, plan: ScanPlan) -> Result<KeyPage, shared::client::Error> {
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
    use shared::Role;

    use super::*;
    use crate::client::testing::{Fake, closed_endpoint, serve};

    fn client(endpoints: Vec<shared::addr::Endpoint>) -> Client {
        Client::builder(endpoints)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client")
    }

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
        let (tx, mut rx) = mpsc::unbounded_channel();
        let worker = Worker::new(client(vec![closed_endpoint()]), tx.clone());
        worker.run(Command::Refresh {
            members: Vec::new(),
        });
        match rx.recv().await {
            Some(Event::Reply(Reply::Refreshed { result: Err(f), .. })) => {
                assert!(f.unreachable, "{f:?}");
                assert!(f.message.contains("cannot reach"), "{f:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let served = serve(Fake::default()).await;
        let worker = Worker::new(client(vec![served]), tx);
        worker.run(Command::Refresh {
            members: Vec::new(),
        });
        match rx.recv().await {
            Some(Event::Reply(Reply::Refreshed { result: Ok(s), .. })) => {
                assert_eq!(s.endpoint.role, Role::Master);
                assert!(s.cluster.is_ok());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The one reply `command` gets from a worker of `endpoints`.
    async fn one_reply(endpoints: Vec<shared::addr::Endpoint>, command: Command) -> Reply {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let worker = Worker::new(client(endpoints), tx);
        tokio::task::LocalSet::new()
            .run_until(async move {
                worker.run(command);
                match rx.recv().await {
                    Some(Event::Reply(reply)) => reply,
                    other => panic!("unexpected {other:?}"),
                }
            })
            .await
    }

    fn member_at(id: &str, at: &shared::addr::Endpoint) -> Member {
        Member {
            node_id: id.into(),
            address: at.to_string(),
        }
    }

    fn switchover_plan(master: Member, target: Member) -> shared::cluster::FailoverPlan {
        shared::cluster::FailoverPlan {
            master,
            epoch: 1,
            target: Some(target),
            reason: "best".into(),
            candidates: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_switchover_plan_is_asked_of_the_master_and_changes_nothing() {
        let m = closed_endpoint();
        let reply = shared::cluster::FailoverReply {
            plan: switchover_plan(member_at("m1", &m), member_at("r1", &m)),
            done: false,
            epoch: 1,
            pause_ms: 0,
            positions: Vec::new(),
        };
        let fake = Fake {
            failover: Some(Ok(reply.clone())),
            ..Fake::master("m1")
        };
        let live = fake.live.clone();
        let master = serve(fake).await;
        let replica = serve(Fake::replica("r1", &master)).await;
        let command = Command::Plan {
            generation: 7,
            request: PlanRequest::Switchover {
                to: Some("r1".into()),
            },
            timeout: Duration::from_secs(3),
        };
        // Through the replica: the worker finds the master, as kvctl failover does.
        match one_reply(vec![replica], command).await {
            Reply::Planned {
                generation: 7,
                result: Ok(Plan::Switchover(p)),
            } => assert_eq!(p, reply.plan),
            other => panic!("unexpected {other:?}"),
        }
        let asked = live.failovers.lock().expect("lock").clone();
        assert_eq!(
            asked.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
            vec![FailoverRequest {
                to: Some("r1".into()),
                plan_only: true,
                timeout_ms: 3000
            }]
        );
    }

    #[tokio::test]
    async fn a_switchover_runs_on_the_master_and_a_moved_mastership_does_nothing() {
        let m = closed_endpoint();
        let done = shared::cluster::FailoverReply {
            plan: switchover_plan(member_at("m1", &m), member_at("r1", &m)),
            done: true,
            epoch: 2,
            pause_ms: 87,
            positions: vec![1, 2],
        };
        let fake = Fake {
            failover: Some(Ok(done.clone())),
            ..Fake::master("m1")
        };
        let live = fake.live.clone();
        let master = serve(fake).await;
        let action = FailoverAction::Switchover {
            to: member_at("r1-full-id", &m),
            timeout: Duration::from_secs(4),
        };
        match one_reply(vec![master], Command::Failover(action.clone())).await {
            Reply::FailedOver {
                action: a,
                result: Ok(d),
            } => {
                assert_eq!(a, action);
                assert_eq!(*d, FailoverDone::Switchover(done));
            }
            other => panic!("unexpected {other:?}"),
        }
        let asked = live.failovers.lock().expect("lock").clone();
        assert_eq!(asked[0].0.to.as_deref(), Some("r1-full-id"));
        assert!(!asked[0].0.plan_only);
        assert_eq!(asked[0].0.timeout_ms, 4000);

        // Found as the master, it answers that it is not any more: said, not followed.
        let moved = Fake {
            failover: Some(Err(KvError::NotMaster {
                master: Some("127.0.0.1:1".into()),
                epoch: 2,
            })),
            ..Fake::master("m1")
        };
        let at = serve(moved).await;
        match one_reply(vec![at], Command::Failover(action)).await {
            Reply::FailedOver { result: Err(f), .. } => {
                assert!(
                    f.message
                        .starts_with("the master changed while the failover was on its way"),
                    "{f:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_promotion_is_asked_of_the_candidate_itself() {
        let gone = closed_endpoint();
        let plan = shared::cluster::PromotionPlan {
            candidate: member_at("r1", &gone),
            epoch: 1,
            old_master: Some(member_at("m1", &gone)),
            old_master_answers: false,
            shards: Vec::new(),
            lost: 0,
            unreachable: Vec::new(),
            refusal: None,
        };
        let fake = Fake {
            promote: Some(Ok(shared::cluster::PromoteReply {
                plan: plan.clone(),
                done: true,
                epoch: 2,
                caught_up: 3,
            })),
            ..Fake::replica("r1", &gone)
        };
        let live = fake.live.clone();
        let candidate = serve(fake).await;
        // The console's endpoints are the dead master only: the candidate is reached at the
        // address its member record gives.
        let action = FailoverAction::Promotion {
            candidate: member_at("r1", &candidate),
            force: true,
            timeout: Duration::from_secs(2),
        };
        match one_reply(vec![gone.clone()], Command::Failover(action)).await {
            Reply::FailedOver { result: Ok(d), .. } => {
                assert!(matches!(*d, FailoverDone::Promotion(r) if r.caught_up == 3));
            }
            other => panic!("unexpected {other:?}"),
        }
        let command = Command::Plan {
            generation: 1,
            request: PlanRequest::Promotion {
                candidate: member_at("r1", &candidate),
                force: false,
            },
            timeout: Duration::from_secs(2),
        };
        assert!(matches!(
            one_reply(vec![gone], command).await,
            Reply::Planned {
                result: Ok(Plan::Promotion(_)),
                ..
            }
        ));
        let asked: Vec<PromoteRequest> = live
            .promotes
            .lock()
            .expect("lock")
            .iter()
            .map(|(r, _)| r.clone())
            .collect();
        assert_eq!(
            asked,
            vec![
                PromoteRequest {
                    force: true,
                    plan_only: false,
                    timeout_ms: 2000
                },
                PromoteRequest {
                    force: false,
                    plan_only: true,
                    timeout_ms: 2000
                }
            ]
        );
    }

    #[tokio::test]
    async fn with_no_master_the_known_members_are_asked_too() {
        let gone = closed_endpoint();
        let replica = serve(Fake::replica("r1", &gone)).await;
        // The console was given the master only; it knows the replica from before.
        let command = Command::Refresh {
            members: vec![gone.to_string(), replica.to_string()],
        };
        match one_reply(vec![gone.clone()], command).await {
            Reply::Refreshed { result: Ok(s), .. } => {
                assert!(!s.endpoints_answered);
                assert_eq!(s.endpoint.node_id, "r1");
                assert!(s.cluster.is_err());
                let answered: Vec<&str> = s
                    .nodes
                    .iter()
                    .filter_map(|p| p.status.as_ref().ok().map(|s| s.node_id.as_str()))
                    .collect();
                assert_eq!(answered, ["r1"]);
                // The master was asked once, not again as a member.
                let asked_gone = s
                    .nodes
                    .iter()
                    .filter(|p| p.address == gone.to_string())
                    .count();
                assert_eq!(asked_gone, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Nobody at all: a failed refresh.
        let command = Command::Refresh {
            members: vec![gone.to_string()],
        };
        assert!(matches!(
            one_reply(vec![gone], command).await,
            Reply::Refreshed { result: Err(_), .. }
        ));
    }

    #[tokio::test]
    async fn a_replica_endpoint_shows_the_cluster_of_the_master_it_names() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let master = serve(Fake::master("m1")).await;
                let replica = serve(Fake::replica("r1", &master)).await;
                let (tx, mut rx) = mpsc::unbounded_channel();
                let worker = Worker::new(client(vec![closed_endpoint(), replica]), tx);
                worker.run(Command::Refresh {
                    members: Vec::new(),
                });
                match rx.recv().await {
                    Some(Event::Reply(Reply::Refreshed { result: Ok(s), .. })) => {
                        assert_eq!(s.endpoint.node_id, "r1");
                        let cluster = s.cluster.expect("cluster");
                        assert_eq!(cluster.master.node_id, "m1");
                    }
                    other => panic!("unexpected {other:?}"),
                }
            })
            .await;
    }
}
