//! In-process clusters: real nodes (storage, RPC over loopback TCP on ports the OS picks) in one
//! test process, driven through the service. They check the failover logic end to end quickly;
//! the e2e suite (`tests/`) does the same with real processes, kill -9 and SIGSTOP.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use kvd::{Server, config::Args};
use serde_bytes::ByteBuf;
use shared::{
    KvClient, KvError, NodeStatus, PutRequest, Role,
    addr::parse_endpoint,
    cluster::{FailoverRequest, PromoteRequest},
    transport,
};
use tokio::{sync::oneshot, task::JoinHandle};

struct TestNode {
    addr: String,
    dir: PathBuf,
    args: Vec<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), kvd::KvdError>>>,
}

fn args(dir: &Path, port: u16, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        "kvd".to_string(),
        format!("--port={port}"),
        "--shard=2".into(),
        "--host=127.0.0.1".into(),
        format!("--data-dir={}", dir.display()),
        "--metrics-port=0".into(),
        "--replica-timeout-ms=1000".into(),
    ];
    a.extend(extra.iter().cloned());
    a
}

impl TestNode {
    async fn start(dir: &Path, port: u16, extra: &[String]) -> Self {
        let args = args(dir, port, extra);
        let cfg = <Args as clap::Parser>::try_parse_from(&args)
            .unwrap()
            .validate()
            .unwrap();
        let server = Server::bind(cfg).await.unwrap();
        let addr = server.local_addr().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            dir: dir.to_path_buf(),
            args,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn master(dir: &Path) -> Self {
        Self::start(dir, 0, &[]).await
    }

    async fn replica(dir: &Path, master: &str) -> Self {
        Self::start(
            dir,
            0,
            &["--replica=true".into(), format!("--master=http://{master}")],
        )
        .await
    }

    /// Stops the node (graceful: in-process nodes cannot be killed).
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Starts it again on the same port and directory, with the same flags.
    async fn restart(&mut self) {
        self.stop().await;
        let port: u16 = self.addr.rsplit(':').next().unwrap().parse().unwrap();
        let extra: Vec<String> = self.args[7..].to_vec();
        *self = Self::start(&self.dir.clone(), port, &extra).await;
    }

    async fn client(&self) -> KvClient {
        client(&self.addr).await
    }

    async fn status(&self) -> NodeStatus {
        self.client().await.status(ctx()).await.unwrap().unwrap()
    }
}

async fn client(addr: &str) -> KvClient {
    transport::connect(
        &parse_endpoint(addr, 3000).unwrap(),
        &shared::transport::Credentials::default(),
    )
    .await
    .unwrap()
}

fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(20);
    c
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(c: &KvClient, k: &str, v: &str) -> Result<u64, KvError> {
    c.put(
        ctx(),
        PutRequest::new(k.as_bytes().to_vec(), v.as_bytes().to_vec()),
    )
    .await
    .unwrap()
}

async fn get(c: &KvClient, k: &str) -> Option<Vec<u8>> {
    c.get(ctx(), ByteBuf::from(k.as_bytes().to_vec()))
        .await
        .unwrap()
        .unwrap()
        .map(|v| v.value.into_vec())
}

async fn caught_up(master: &TestNode, replicas: usize) {
    let c = master.client().await;
    wait_for("replicas to catch up", Duration::from_secs(20), || {
        let c = c.clone();
        async move {
            let Ok(Ok(s)) = c.cluster_status(ctx()).await else {
                return false;
            };
            s.replicas.len() == replicas
                && s.replicas.iter().all(|r| {
                    r.link == shared::LinkState::Up && r.shards.iter().all(|s| s.ops_behind == 0)
                })
        }
    })
    .await;
}

/// The digests of both shards, as the node has them now.
async fn digests(node: &TestNode) -> Vec<(u64, u64, String)> {
    let c = node.client().await;
    let mut out = Vec::new();
    for shard in 0..2 {
        let d = c.digest(ctx(), shard, None, 0).await.unwrap().unwrap();
        out.push((d.seq, d.keys, d.hash));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_then_writes_on_the_new_master_reach_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestNode::master(&dir.path().join("a")).await;
    let b = TestNode::replica(&dir.path().join("b"), &a.addr).await;
    let c = TestNode::replica(&dir.path().join("c"), &a.addr).await;
    let ca = a.client().await;
    for i in 0..200 {
        put(&ca, &format!("k{i}"), "v1").await.unwrap();
    }
    caught_up(&a, 2).await;
    let sa = a.status().await;
    let sb = b.status().await;
    assert_eq!((sa.epoch, sb.epoch), (1, 1));
    assert_eq!(sa.cluster_id, sb.cluster_id);
    assert!(sa.writable);

    let plan = ca
        .failover(
            ctx(),
            FailoverRequest {
                to: Some(sb.node_id.clone()),
                plan_only: true,
                timeout_ms: 5000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!plan.done);
    assert_eq!(plan.plan.target.as_ref().unwrap().node_id, sb.node_id);

    let reply = ca
        .failover(
            ctx(),
            FailoverRequest {
                to: Some(sb.node_id[..8].to_string()),
                plan_only: false,
                timeout_ms: 5000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(reply.done, "{reply:?}");
    assert_eq!(reply.epoch, 2);
    let sb = b.status().await;
    assert_eq!((sb.role, sb.epoch, sb.writable), (Role::Master, 2, true));
    // The old master refuses writes, naming the new one.
    match put(&ca, "late", "x").await {
        Err(KvError::NotMaster { master, epoch }) => {
            assert_eq!((master.as_deref(), epoch), (Some(b.addr.as_str()), 2));
        }
        other => panic!("expected NotMaster, got {other:?}"),
    }
    let cb = b.client().await;
    for i in 0..50 {
        put(&cb, &format!("new{i}"), "v2").await.unwrap();
    }
    caught_up(&b, 2).await;
    assert_eq!(get(&ca, "new49").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(
        get(&c.client().await, "new49").await.as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(digests(&a).await, digests(&b).await);
    assert_eq!(digests(&c).await, digests(&b).await);
    let sa = a.status().await;
    assert_eq!((sa.role, sa.epoch), (Role::Replica, 2));

    // And back: the old master (now a replica) takes over again at epoch 3.
    let back = cb
        .failover(
            ctx(),
            FailoverRequest {
                to: Some(sa.node_id.clone()),
                plan_only: false,
                timeout_ms: 5000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.epoch, 3);
    put(&ca, "after", "3").await.unwrap();
    caught_up(&a, 2).await;
    assert_eq!(digests(&a).await, digests(&b).await);
    // A restart keeps the role it has now, whatever its flags say.
    a.restart().await;
    let sa = a.status().await;
    assert_eq!((sa.role, sa.epoch), (Role::Master, 3));
    wait_for("writes after restart", Duration::from_secs(10), || async {
        a.status().await.writable
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promotion_catches_up_and_the_old_master_rolls_back_what_nobody_had() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestNode::master(&dir.path().join("a")).await;
    let mut b = TestNode::replica(&dir.path().join("b"), &a.addr).await;
    let mut c = TestNode::replica(&dir.path().join("c"), &a.addr).await;
    let ca = a.client().await;
    for i in 0..100 {
        put(&ca, &format!("k{i}"), "v1").await.unwrap();
    }
    caught_up(&a, 2).await;
    // b stops; more writes reach a and c only.
    b.stop().await;
    for i in 100..150 {
        put(&ca, &format!("k{i}"), "v1").await.unwrap();
    }
    wait_for("c to have everything", Duration::from_secs(10), || async {
        let s = c.status().await;
        let m = a.status().await;
        s.shards
            .iter()
            .zip(&m.shards)
            .all(|(x, y)| x.last_seq == y.last_seq)
    })
    .await;
    // c stops too; a takes 10 writes nobody else gets, then stops for good.
    c.stop().await;
    for i in 0..10 {
        put(&ca, &format!("only-a{i}"), "lost").await.unwrap();
    }
    a.stop().await;
    b.restart().await;
    c.restart().await;
    let cb = b.client().await;
    // Without a master answering, a plan shows what b would get from c.
    let plan = cb
        .promote(
            ctx(),
            PromoteRequest {
                force: false,
                plan_only: true,
                timeout_ms: 10_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!plan.plan.old_master_answers, "{plan:?}");
    assert_eq!(plan.plan.lost, 0, "{plan:?}");
    assert!(
        plan.plan.shards.iter().any(|s| s.catch_up_from.is_some()),
        "{plan:?}"
    );
    let reply = cb
        .promote(
            ctx(),
            PromoteRequest {
                force: false,
                plan_only: false,
                timeout_ms: 10_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(reply.done);
    assert_eq!(reply.epoch, 2);
    assert_eq!(reply.caught_up, 50);
    for i in 0..150 {
        assert_eq!(
            get(&cb, &format!("k{i}")).await.as_deref(),
            Some(&b"v1"[..]),
            "k{i} on the promoted node"
        );
    }
    let sb = b.status().await;
    assert_eq!((sb.role, sb.writable), (Role::Master, true));
    put(&cb, "after", "promotion").await.unwrap();
    // The old master comes back: it learns of epoch 2 before taking a write, gives up its 10
    // writes into the rollback files, and follows b.
    a.restart().await;
    caught_up(&b, 2).await;
    let sa = a.status().await;
    assert_eq!((sa.role, sa.epoch), (Role::Replica, 2));
    assert_eq!(digests(&a).await, digests(&b).await);
    assert_eq!(get(&a.client().await, "only-a3").await, None);
    let mut given = 0;
    for shard in 0..2 {
        let p = kvd::replication::rollback::path(&a.dir, 2, shard);
        if p.exists() {
            given += kvd::replication::rollback::read(&p).unwrap().len();
        }
    }
    assert_eq!(
        given, 10,
        "every write only the old master had is in its rollback files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_on_an_empty_directory_is_refused_and_the_replica_keeps_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestNode::master(&dir.path().join("a")).await;
    let r = TestNode::replica(&dir.path().join("r"), &a.addr).await;
    let ca = a.client().await;
    for i in 0..300 {
        put(&ca, &format!("k{i}"), "real").await.unwrap();
    }
    caught_up(&a, 1).await;
    let real = digests(&r).await;
    // The master comes back on the same port but an empty directory (a mount that failed).
    a.stop().await;
    let port: u16 = a.addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut impostor = TestNode::start(&dir.path().join("empty"), port, &[]).await;
    let ci = impostor.client().await;
    put(&ci, "foreign", "x").await.unwrap();
    wait_for(
        "the replica to refuse it",
        Duration::from_secs(10),
        || async {
            r.status()
                .await
                .master_link
                .and_then(|l| l.last_error)
                .is_some_and(|e| e.contains("belongs to cluster"))
        },
    )
    .await;
    let link = r.status().await.master_link.unwrap();
    let err = link.last_error.unwrap();
    assert!(err.contains("--reseed"), "{err}");
    assert_eq!(digests(&r).await, real, "the replica kept every key");
    assert_eq!(get(&r.client().await, "foreign").await, None);
    // The master does not count the refused replica as a member.
    let cs = ci.cluster_status(ctx()).await.unwrap().unwrap();
    assert!(cs.replicas.is_empty(), "{cs:?}");
    // The real master comes back: the replica follows it again.
    impostor.stop().await;
    a.restart().await;
    caught_up(&a, 1).await;
    assert_eq!(digests(&r).await, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_replica_is_remembered_across_a_master_restart_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestNode::master(&dir.path().join("a")).await;
    let mut r = TestNode::replica(&dir.path().join("r"), &a.addr).await;
    put(&a.client().await, "k", "v").await.unwrap();
    caught_up(&a, 1).await;
    let rid = r.status().await.node_id;
    r.stop().await;
    a.restart().await;
    let ca = a.client().await;
    let cs = ca.cluster_status(ctx()).await.unwrap().unwrap();
    assert_eq!(cs.replicas.len(), 1, "{cs:?}");
    assert_eq!(cs.replicas[0].node_id, rid);
    assert_eq!(cs.replicas[0].link, shared::LinkState::Down);
    assert!(
        cs.replicas[0].last_seen_unix_ms.is_some(),
        "down since when"
    );
    // A restarted master with a member that does not answer still takes writes, after asking.
    wait_for(
        "writes after the probe",
        Duration::from_secs(10),
        || async { a.status().await.writable },
    )
    .await;
    // Failover to it is refused, naming why.
    let e = ca
        .failover(
            ctx(),
            FailoverRequest {
                to: Some(rid.clone()),
                plan_only: false,
                timeout_ms: 2000,
            },
        )
        .await
        .unwrap()
        .expect_err("down");
    assert!(e.to_string().contains("down"), "{e}");
    let gone = ca
        .forget(ctx(), rid[..6].to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.node_id, rid);
    let cs = ca.cluster_status(ctx()).await.unwrap().unwrap();
    assert!(cs.replicas.is_empty());
    let e = ca
        .failover(
            ctx(),
            FailoverRequest {
                to: None,
                plan_only: false,
                timeout_ms: 2000,
            },
        )
        .await
        .unwrap()
        .expect_err("no replica");
    assert!(e.to_string().contains("no replica"), "{e}");
    // Forgotten for good: not listed after another restart either.
    a.restart().await;
    let cs = a
        .client()
        .await
        .cluster_status(ctx())
        .await
        .unwrap()
        .unwrap();
    assert!(cs.replicas.is_empty());
    // Promote on a master is refused; an unknown node is named.
    let e = a
        .client()
        .await
        .promote(
            ctx(),
            PromoteRequest {
                force: false,
                plan_only: false,
                timeout_ms: 1000,
            },
        )
        .await
        .unwrap()
        .expect_err("a master");
    assert!(e.to_string().contains("already the master"), "{e}");
    let e = a
        .client()
        .await
        .forget(ctx(), "nobody".into())
        .await
        .unwrap()
        .expect_err("unknown");
    assert!(matches!(e, KvError::UnknownNode { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_restarted_on_another_address_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestNode::master(&dir.path().join("a")).await;
    let mut r = TestNode::replica(&dir.path().join("r"), &a.addr).await;
    put(&a.client().await, "k", "v").await.unwrap();
    caught_up(&a, 1).await;
    let rid = r.status().await.node_id;
    r.stop().await;
    // Same data directory, a new port, right away (its old registration is still fresh).
    let extra = vec![
        "--replica=true".to_string(),
        format!("--master=http://{}", a.addr),
    ];
    let r2 = TestNode::start(&dir.path().join("r"), 0, &extra).await;
    let ca = a.client().await;
    wait_for(
        "the replica under its new address",
        Duration::from_secs(10),
        || {
            let ca = ca.clone();
            let addr = r2.addr.clone();
            async move {
                let cs = ca.cluster_status(ctx()).await.unwrap().unwrap();
                cs.replicas.iter().any(|r| r.address == addr)
            }
        },
    )
    .await;
    caught_up(&a, 1).await;
    let cs = a
        .client()
        .await
        .cluster_status(ctx())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cs.replicas.len(), 1);
    assert_eq!(
        (
            cs.replicas[0].node_id.as_str(),
            cs.replicas[0].address.as_str()
        ),
        (rid.as_str(), r2.addr.as_str())
    );
}

fn auto() -> Vec<String> {
    vec![
        "--failover=auto".into(),
        "--failover-timeout-ms=1000".into(),
    ]
}

async fn auto_replica(dir: &Path, master: &str) -> TestNode {
    let mut extra = vec![
        "--replica=true".to_string(),
        format!("--master=http://{master}"),
    ];
    extra.extend(auto());
    TestNode::start(dir, 0, &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_failover_elects_a_replica_when_the_master_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestNode::start(&dir.path().join("a"), 0, &auto()).await;
    let mut b = auto_replica(&dir.path().join("b"), &a.addr).await;
    let mut c = auto_replica(&dir.path().join("c"), &a.addr).await;
    let ca = a.client().await;
    wait_for("the master's lease", Duration::from_secs(10), || async {
        let s = a.status().await;
        s.writable && s.failover.lease_ms.is_some_and(|l| l > 0)
    })
    .await;
    for i in 0..100 {
        put(&ca, &format!("k{i}"), "v").await.unwrap();
    }
    caught_up(&a, 2).await;
    let sa = a.status().await;
    assert_eq!(sa.failover.mode, "auto");
    assert!(
        sa.failover.lease_ms.is_some_and(|l| l > 0),
        "{:?}",
        sa.failover
    );
    a.stop().await;
    let stopped = Instant::now();
    // One of the replicas is elected at epoch 2, the other follows it.
    let elected = std::sync::Mutex::new(None);
    wait_for("an election", Duration::from_secs(15), || {
        let (b, c, elected) = (&b, &c, &elected);
        async move {
            for n in [b, c] {
                let s = n.status().await;
                if s.role == Role::Master && s.writable && s.epoch == 2 {
                    *elected.lock().unwrap() = Some(n.addr.clone());
                    return true;
                }
            }
            false
        }
    })
    .await;
    let took = stopped.elapsed();
    let new = elected.into_inner().unwrap().unwrap();
    eprintln!("elected {new} {took:?} after the master stopped (failover timeout 1 s)");
    let (master, other) = if new == b.addr { (&b, &c) } else { (&c, &b) };
    let cm = master.client().await;
    for i in 0..100 {
        assert_eq!(get(&cm, &format!("k{i}")).await.as_deref(), Some(&b"v"[..]));
    }
    put(&cm, "after", "election").await.unwrap();
    let s = master.status().await;
    assert_eq!(
        s.last_failover.as_ref().map(|f| f.kind.as_str()),
        Some("election")
    );
    wait_for(
        "the other replica to follow",
        Duration::from_secs(10),
        || async {
            let s = other.status().await;
            s.epoch == 2
                && s.master_link
                    .is_some_and(|l| l.state == shared::LinkState::Up)
        },
    )
    .await;
    // The old master comes back as a replica of the new one.
    a.restart().await;
    wait_for(
        "the old master to follow",
        Duration::from_secs(10),
        || async {
            let s = a.status().await;
            s.role == Role::Replica && s.epoch == 2
        },
    )
    .await;
    caught_up(master, 2).await;
    assert_eq!(digests(&a).await, digests(master).await);
    // With both replicas gone, the master's lease ends: no writes, no reads.
    let (m, o) = if new == b.addr {
        (&mut b, &mut c)
    } else {
        (&mut c, &mut b)
    };
    o.stop().await;
    a.stop().await;
    wait_for("the lease to end", Duration::from_secs(10), || async {
        m.status().await.failover.lease_ms == Some(0)
    })
    .await;
    let e = put(&m.client().await, "no", "lease")
        .await
        .expect_err("no lease");
    assert!(matches!(e, KvError::NoLease { epoch: 2, .. }), "{e}");
    let e = m
        .client()
        .await
        .get(ctx(), ByteBuf::from(b"after".to_vec()))
        .await
        .unwrap()
        .expect_err("no read either");
    assert!(matches!(e, KvError::NoLease { .. }), "{e}");
}
