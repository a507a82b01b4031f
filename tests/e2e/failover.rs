//! Failover with real processes: switchover under load, promotion after kill -9, the old master's
//! return and rollback, a frozen master fenced after a forced promotion, failovers in a row,
//! membership across restarts, a master on an empty directory, and the refusals.
//!
//! Every write the tests count as acknowledged got an `Ok` from the client library; a write
//! whose outcome is unknown is counted apart and never assumed either way.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use harness::{
    NodeProcess, client, cluster, cluster_client, ctx, eventually, kvctl, replica_args, status,
    wait_caught_up,
};
use serde_bytes::ByteBuf;
use shared::{KvError, PutRequest, Role, client::Client};

const TIMEOUT: &str = "--replica-timeout-ms=1000";

fn dirs(root: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let d = root.join(n);
            std::fs::create_dir_all(&d).unwrap();
            d
        })
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "kvctl failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn verify(endpoint: &str) {
    ok(&kvctl(endpoint, &["verify"], None));
}

/// What a load run saw.
#[derive(Default)]
struct Seen {
    /// Key -> the value acknowledged for it.
    acked: HashMap<String, String>,
    /// Writes whose outcome is unknown.
    unknown: Vec<String>,
    /// Other errors, by message.
    errors: Vec<String>,
    /// Latency of every acknowledged write, with when it started.
    latencies: Vec<(Instant, Duration)>,
}

/// `writers` tasks writing unique keys through `client` until `stop` (at most `max` each).
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, prefix: &str, writers: usize, acks: u32, max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let tasks = (0..writers)
            .map(|w| {
                let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    for i in 0..max {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let key = format!("{prefix}{w}-{i}");
                        let mut req =
                            PutRequest::new(key.clone().into_bytes(), key.clone().into_bytes());
                        req.acks = acks;
                        req.acks_timeout_ms = 2000;
                        let started = Instant::now();
                        let result = client.put(req).await;
                        let mut s = seen.lock().unwrap();
                        match result {
                            Ok(_) => {
                                s.latencies.push((started, started.elapsed()));
                                s.acked.insert(key.clone(), key);
                            }
                            Err(e) if e.is_outcome_unknown() => s.unknown.push(key),
                            Err(e) => s.errors.push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self { stop, seen, tasks }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .expect("writers done")
            .into_inner()
            .unwrap()
    }

    fn acked(&self) -> usize {
        self.seen.lock().unwrap().acked.len()
    }

    async fn until_acked(&self, n: usize) {
        assert!(
            harness::eventually(Duration::from_secs(60), || async { self.acked() >= n }).await,
            "load did not reach {n} writes"
        );
    }
}

/// Every acknowledged key reads back its value on `endpoint`; returns how many were checked.
async fn assert_present(endpoint: &str, acked: &HashMap<String, String>) -> usize {
    let c = client(endpoint).await;
    let keys: Vec<&String> = acked.keys().collect();
    let mut missing = Vec::new();
    for chunk in keys.chunks(1000) {
        let ask = chunk
            .iter()
            .map(|k| ByteBuf::from(k.as_bytes().to_vec()))
            .collect();
        let got = c.mget(ctx(), ask).await.unwrap().unwrap();
        for (k, v) in chunk.iter().zip(got) {
            if v.map(|v| v.value.into_vec()) != Some(acked[*k].clone().into_bytes()) {
                missing.push((*k).clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on {endpoint}, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    acked.len()
}

async fn node_id(endpoint: &str) -> String {
    status(endpoint).await.node_id
}

/// The p99 and the maximum latency of the writes that started within `window` of `at`.
fn latency_around(seen: &Seen, at: Instant, window: Duration) -> (Duration, Duration) {
    let mut around: Vec<Duration> = seen
        .latencies
        .iter()
        .filter(|(t, _)| *t + window >= at && *t <= at + window)
        .map(|(_, d)| *d)
        .collect();
    around.sort();
    let p99 = around
        .get((around.len() * 99 / 100).min(around.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    (p99, around.last().copied().unwrap_or_default())
}

/// Acceptance 1: a switchover under 50 concurrent writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_fifty_writers_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b", "c"]);
    let a = NodeProcess::master(&d[0], 2, &[TIMEOUT]);
    let b = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    let c = NodeProcess::replica(&d[2], 2, &a.endpoint(), &[TIMEOUT]);
    let eps = vec![a.endpoint(), b.endpoint(), c.endpoint()];
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let client = cluster_client(&eps, Duration::from_secs(10));
    let load = Load::start(&client, "s", 50, 0, 100_000);
    load.until_acked(2000).await;
    let target = node_id(&b.endpoint()).await;
    let at = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (e, t) = (a.endpoint(), target.clone());
        move || kvctl(&e, &["failover", "--to", &t], None)
    })
    .await
    .unwrap();
    let text = ok(&out);
    eprintln!("kvctl failover took {:?}: {text}", at.elapsed());
    assert!(text.contains("writes paused for"), "{text}");
    let before = load.acked();
    load.until_acked(before + 2000).await;
    let seen = load.finish().await;
    assert!(
        seen.errors.is_empty(),
        "errors: {:?}",
        &seen.errors[..seen.errors.len().min(5)]
    );
    let (p99, max) = latency_around(&seen, at, Duration::from_secs(2));
    eprintln!(
        "switchover under 50 writers: {} acknowledged, {} unknown; write latency around the switch p99 {p99:?}, max {max:?}",
        seen.acked.len(),
        seen.unknown.len()
    );
    let sb = status(&b.endpoint()).await;
    assert_eq!((sb.role, sb.epoch, sb.writable), (Role::Master, 2, true));
    let sa = status(&a.endpoint()).await;
    assert_eq!((sa.role, sa.epoch), (Role::Replica, 2));
    let n = assert_present(&b.endpoint(), &seen.acked).await;
    assert!(n >= 4000);
    wait_caught_up(&b.endpoint(), 2, Duration::from_secs(30)).await;
    verify(&b.endpoint());
    assert_present(&a.endpoint(), &seen.acked).await;
    assert_present(&c.endpoint(), &seen.acked).await;
}

/// Acceptance 2 and 3: kill -9 the master during acks=1 writes, promote the replica that is
/// behind (it catches up from the other first), then the old master comes back, refuses writes
/// naming the new one, gives up exactly the acks=0 writes no replica had, and rejoins by partial
/// resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promotion_after_kill_loses_no_acked_write_and_the_old_master_rolls_back() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b", "c"]);
    let mut a = NodeProcess::master(&d[0], 2, &[TIMEOUT]);
    let b = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    let mut c = NodeProcess::replica(&d[2], 2, &a.endpoint(), &[TIMEOUT]);
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let only_a = cluster_client(&[a.endpoint()], Duration::from_secs(10));
    // acks=1 writes with both replicas, then with b frozen (b falls behind c).
    let load = Load::start(&only_a, "one", 20, 1, 100_000);
    load.until_acked(500).await;
    b.freeze();
    let before = load.acked();
    load.until_acked(before + 1000).await;
    let acked_one = load.finish().await;
    assert!(
        acked_one.errors.is_empty(),
        "{:?}",
        &acked_one.errors[..acked_one.errors.len().min(3)]
    );
    // c goes too; a takes acks=0 writes that no replica gets; then a is killed.
    c.kill9();
    let zero = Load::start(&only_a, "zero", 4, 0, 10);
    zero.until_acked(40).await;
    let acked_zero = zero.finish().await;
    assert_eq!(acked_zero.acked.len(), 40, "{:?}", acked_zero.errors);
    a.kill9();
    b.thaw();
    c.restart();
    let bid = node_id(&b.endpoint()).await;
    // The plan: b is behind c on some shard and catches up from it; nothing acknowledged is lost.
    let plan = ok(&kvctl(
        &b.endpoint(),
        &["-o", "json", "promote", &bid, "--plan"],
        None,
    ));
    let plan: serde_json::Value = serde_json::from_str(plan.trim()).unwrap();
    eprintln!("promote --plan: {plan}");
    let shards = plan["plan"]["shards"].as_array().unwrap();
    assert!(
        shards.iter().any(|s| !s["catch_up_from"].is_null()),
        "b is behind c: {plan}"
    );
    assert_eq!(plan["plan"]["old_master_answers"], false);
    let out = ok(&kvctl(&b.endpoint(), &["promote", &bid], None));
    eprintln!("kvctl promote: {out}");
    let sb = status(&b.endpoint()).await;
    assert_eq!((sb.role, sb.epoch, sb.writable), (Role::Master, 2, true));
    assert_present(&b.endpoint(), &acked_one.acked).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = status(&c.endpoint()).await;
            s.epoch == 2
                && s.master_link
                    .is_some_and(|l| l.state == shared::LinkState::Up)
        })
        .await,
        "c follows the new master"
    );
    // The old master comes back.
    a.restart();
    let aep = a.endpoint();
    let refused = client(&aep)
        .await
        .put(ctx(), PutRequest::new(b"x".to_vec(), b"y".to_vec()))
        .await
        .unwrap();
    match refused {
        Err(KvError::NotMaster { master, epoch }) => {
            assert_eq!(epoch, 2);
            assert_eq!(master.as_deref(), Some(b.addr.to_string().as_str()));
        }
        other => panic!("the old master took a write: {other:?}"),
    }
    wait_caught_up(&b.endpoint(), 2, Duration::from_secs(30)).await;
    // Its rollback files hold exactly the acks=0 writes that no live node has.
    let lost: Vec<&String> = {
        let c = client(&b.endpoint()).await;
        let mut lost = Vec::new();
        for k in acked_zero.acked.keys() {
            let v = c
                .get(ctx(), ByteBuf::from(k.as_bytes().to_vec()))
                .await
                .unwrap()
                .unwrap();
            if v.is_none() {
                lost.push(k);
            }
        }
        lost
    };
    let given = rollback_keys(&d[0].join("data"));
    let mut lost_sorted: Vec<String> = lost.iter().map(|s| (*s).clone()).collect();
    lost_sorted.sort();
    assert_eq!(
        given, lost_sorted,
        "rollback files = the acks=0 writes no replica had"
    );
    assert!(!given.is_empty(), "a had writes nobody else had");
    assert!(
        a.stdout.all().iter().any(|l| l.contains("rollback file")),
        "the rollback is logged"
    );
    // It rejoined by partial resync: the new master counts one, and no full resync, for it.
    let a_addr = a.addr.to_string();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let cs = cluster(&b.endpoint()).await;
            cs.replicas.iter().any(|r| {
                r.address == a_addr
                    && r.shards.iter().all(|s| s.full_resyncs == 0)
                    && r.shards.iter().any(|s| s.partial_resyncs > 0)
            })
        })
        .await,
        "{:?}",
        cluster(&b.endpoint()).await.replicas
    );
    verify(&b.endpoint());
}

/// Every key in a node's rollback files, sorted.
fn rollback_keys(data: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    let Ok(dir) = std::fs::read_dir(data.join("rollback")) else {
        return keys;
    };
    for f in dir.flatten() {
        for line in std::fs::read_to_string(f.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            keys.push(v["key"].as_str().unwrap().to_string());
        }
    }
    keys.sort();
    keys
}

/// Acceptance 4: a frozen master, a forced promotion, and the old master thawed while a client
/// keeps writing to it with acks=0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thawed_master_is_fenced_and_its_writes_go_to_rollback_only() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b"]);
    let a = NodeProcess::master(&d[0], 2, &[TIMEOUT]);
    let b = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    let c = client(&a.endpoint()).await;
    for i in 0..100 {
        c.put(
            ctx(),
            PutRequest::new(format!("k{i}").into_bytes(), b"v".to_vec()),
        )
        .await
        .unwrap()
        .unwrap();
    }
    wait_caught_up(&a.endpoint(), 1, Duration::from_secs(30)).await;
    a.freeze();
    // The replica notices within its timeout.
    let frozen = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&b.endpoint())
                .await
                .master_link
                .is_some_and(|l| l.state == shared::LinkState::Down)
        })
        .await
    );
    let noticed = frozen.elapsed();
    eprintln!("the replica reported the frozen master down after {noticed:?}");
    assert!(noticed < Duration::from_millis(2500), "{noticed:?}");
    let bep = b.endpoint();
    // Without --force: a majority of 2 is not there.
    let out = kvctl(&bep, &["promote", &bep], None);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
    ok(&kvctl(&bep, &["promote", &bep, "--force"], None));
    let cb = client(&b.endpoint()).await;
    for i in 0..20 {
        cb.put(
            ctx(),
            PutRequest::new(format!("new{i}").into_bytes(), b"b".to_vec()),
        )
        .await
        .unwrap()
        .unwrap();
    }
    // A client keeps writing to the old master directly (no failover following), acks=0.
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let ep = a.endpoint();
        let sending = std::sync::Arc::clone(&sending);
        tokio::spawn(async move {
            // Its connection and first write wait on the frozen master until SIGCONT.
            sending.store(true, std::sync::atomic::Ordering::SeqCst);
            let node = shared::client::Node::connect(
                &shared::addr::parse_endpoint(&ep, 3000).unwrap(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
            let mut acked = Vec::new();
            let mut last_ack = None;
            let started = Instant::now();
            for i in 0..100_000 {
                if started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                let key = format!("stale{i}");
                match node
                    .put(PutRequest::new(key.clone().into_bytes(), b"old".to_vec()))
                    .await
                {
                    Ok(_) => {
                        acked.push(key);
                        last_ack = Some(Instant::now());
                    }
                    Err(e) if matches!(e.kv(), Some(KvError::NotMaster { .. })) => break,
                    Err(e) => panic!("unexpected error from the old master: {e}"),
                }
            }
            (acked, last_ack)
        })
    };
    assert!(
        harness::eventually(Duration::from_secs(10), || {
            let sending = std::sync::Arc::clone(&sending);
            async move { sending.load(std::sync::atomic::Ordering::SeqCst) }
        })
        .await,
        "the writer started"
    );
    let thawed = Instant::now();
    a.thaw();
    let (acked, last_ack) = writer.await.unwrap();
    let fenced_after = last_ack.map_or(Duration::ZERO, |t| t.saturating_duration_since(thawed));
    eprintln!(
        "the thawed master acknowledged {} writes, the last {fenced_after:?} after SIGCONT",
        acked.len()
    );
    assert!(
        fenced_after < Duration::from_millis(2000),
        "it stopped admitting writes within the replica timeout plus 1 s: {fenced_after:?}"
    );
    // It rejoins the new master; what it acknowledged meanwhile is in its rollback files only.
    wait_caught_up(&b.endpoint(), 1, Duration::from_secs(30)).await;
    let given = rollback_keys(&d[0].join("data"));
    let mut want = acked.clone();
    want.sort();
    assert_eq!(
        given, want,
        "every write it acknowledged meanwhile is in its rollback file"
    );
    for k in &acked {
        let v = cb
            .get(ctx(), ByteBuf::from(k.as_bytes().to_vec()))
            .await
            .unwrap()
            .unwrap();
        assert!(v.is_none(), "{k} is nowhere else");
    }
    verify(&b.endpoint());
}

/// Acceptance 5: three failovers in a row under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_switchovers_in_a_row_under_load() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b", "c"]);
    let a = NodeProcess::master(&d[0], 2, &[TIMEOUT]);
    let b = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    let c = NodeProcess::replica(&d[2], 2, &a.endpoint(), &[TIMEOUT]);
    let eps = vec![a.endpoint(), b.endpoint(), c.endpoint()];
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let client = cluster_client(&eps, Duration::from_secs(10));
    let load = Load::start(&client, "r", 16, 0, 100_000);
    let ids = [
        node_id(&a.endpoint()).await,
        node_id(&b.endpoint()).await,
        node_id(&c.endpoint()).await,
    ];
    let order = [(0, 1), (1, 2), (2, 0)];
    for (step, (from, to)) in order.iter().enumerate() {
        let n = load.acked();
        load.until_acked(n + 300).await;
        let out = tokio::task::spawn_blocking({
            let (e, t) = (eps[*from].clone(), ids[*to].clone());
            move || kvctl(&e, &["failover", "--to", &t], None)
        })
        .await
        .unwrap();
        ok(&out);
        let s = status(&eps[*to]).await;
        assert_eq!(
            (s.role, s.epoch),
            (Role::Master, 2 + step as u64),
            "step {step}"
        );
    }
    let n = load.acked();
    load.until_acked(n + 300).await;
    let seen = load.finish().await;
    assert!(
        seen.errors.is_empty(),
        "{:?}",
        &seen.errors[..seen.errors.len().min(3)]
    );
    assert_eq!(status(&a.endpoint()).await.epoch, 4);
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    assert_present(&a.endpoint(), &seen.acked).await;
    verify(&a.endpoint());
}

/// Acceptance 6: a replica down while its master restarts stays listed until forgotten; a
/// master on an empty data directory is refused by its replica, which keeps every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_survives_restarts_and_a_new_directory_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "r1", "r2", "empty"]);
    let mut a = NodeProcess::master(&d[0], 2, &[TIMEOUT]);
    let mut r1 = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    let r2 = NodeProcess::replica(&d[2], 2, &a.endpoint(), &[TIMEOUT]);
    let c = client(&a.endpoint()).await;
    let entries: Vec<shared::KeyValue> = (0..3000)
        .map(|i| shared::KeyValue {
            key: ByteBuf::from(format!("k{i}").into_bytes()),
            value: ByteBuf::from(b"real".to_vec()),
        })
        .collect();
    for chunk in entries.chunks(1000) {
        c.mput(
            ctx(),
            shared::MputRequest {
                entries: chunk.to_vec(),
                acks: 0,
                acks_timeout_ms: 0,
            },
        )
        .await
        .unwrap()
        .unwrap();
    }
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let r1id = node_id(&r1.endpoint()).await;
    r1.kill9();
    a.terminate();
    a.restart();
    let out = ok(&kvctl(&a.endpoint(), &["-o", "json", "replicas"], None));
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == r1id.as_str())
        .unwrap_or_else(|| panic!("the down replica is listed: {list}"));
    assert_eq!(listed["link"], "down");
    assert!(listed["last_seen_unix_ms"].as_u64().is_some(), "{listed}");
    let text = ok(&kvctl(&a.endpoint(), &["replicas"], None));
    assert!(text.contains("down"), "{text}");
    ok(&kvctl(&a.endpoint(), &["replicas", "forget", &r1id], None));
    let out = ok(&kvctl(&a.endpoint(), &["-o", "json", "replicas"], None));
    assert!(!out.contains(&r1id), "forgotten: {out}");
    // The master restarts on an empty data directory (its disk did not mount).
    wait_caught_up(&a.endpoint(), 1, Duration::from_secs(30)).await;
    let port = a.addr.port();
    a.terminate();
    let args = vec![
        format!("--port={port}"),
        "--shard=2".into(),
        "--host=127.0.0.1".into(),
        format!("--data-dir={}", d[3].join("fresh").display()),
        "--metrics-port=0".into(),
    ];
    let mut impostor = NodeProcess::start(&d[3], &args).expect("starts on a new directory");
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(&r2.endpoint())
                .await
                .master_link
                .and_then(|l| l.last_error)
                .is_some_and(|e| e.contains("belongs to cluster") && e.contains("--reseed"))
        })
        .await
    );
    assert!(
        r2.stdout
            .all()
            .iter()
            .any(|l| l.contains("belongs to cluster")),
        "the refusal is logged"
    );
    let s = status(&r2.endpoint()).await;
    assert_eq!(
        s.shards.iter().map(|s| s.keys).sum::<u64>(),
        3000,
        "every key kept"
    );
    impostor.terminate();
    a.restart();
    wait_caught_up(&a.endpoint(), 1, Duration::from_secs(30)).await;
    verify(&a.endpoint());
    // kvd does not create a --data-dir whose parent is missing.
    let missing = d[3].join("no-such-mount").join("node");
    let args = vec![
        "--port=0".into(),
        format!("--data-dir={}", missing.display()),
        "--metrics-port=0".into(),
    ];
    let e = NodeProcess::start(&d[3], &args).err().expect("refused");
    assert_ne!(e.status.and_then(|s| s.code()), Some(0));
    assert!(e.stderr.contains("does not exist"), "{}", e.stderr);
    assert!(!missing.exists());
}

/// Acceptance 7: refusals name the cause and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_name_the_cause() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "r", "late"]);
    let a = NodeProcess::master(&d[0], 2, &[TIMEOUT, "--log-retention=256KiB"]);
    let fail = |out: std::process::Output, want: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(err.contains(want), "expected {want:?} in: {err}");
    };
    // Failover with no replica.
    fail(kvctl(&a.endpoint(), &["failover"], None), "no replica");
    // Failover to a down replica.
    let mut r = NodeProcess::replica(&d[1], 2, &a.endpoint(), &[TIMEOUT]);
    wait_caught_up(&a.endpoint(), 1, Duration::from_secs(30)).await;
    let rid = node_id(&r.endpoint()).await;
    r.kill9();
    assert!(
        eventually(Duration::from_secs(10), || async {
            cluster(&a.endpoint())
                .await
                .replicas
                .iter()
                .all(|x| x.link == shared::LinkState::Down)
        })
        .await
    );
    fail(
        kvctl(&a.endpoint(), &["failover", "--to", &rid], None),
        "down",
    );
    // Promote of an unknown node.
    fail(
        kvctl(&a.endpoint(), &["promote", "no-such-node"], None),
        "no-such-node",
    );
    // Promote of a node in a full resync: a new replica copies 200k keys; the master is frozen
    // in the middle of the copy.
    let c = client(&a.endpoint()).await;
    for chunk in 0..200 {
        let entries = (0..1000)
            .map(|i| shared::KeyValue {
                key: ByteBuf::from(format!("big{chunk}-{i}").into_bytes()),
                value: ByteBuf::from(vec![7u8; 100]),
            })
            .collect();
        c.mput(
            ctx(),
            shared::MputRequest {
                entries,
                acks: 0,
                acks_timeout_ms: 0,
            },
        )
        .await
        .unwrap()
        .unwrap();
    }
    let late = NodeProcess::start(&d[2], &replica_args(&d[2], 2, &a.endpoint(), &[TIMEOUT]))
        .expect("replica");
    assert!(
        eventually(Duration::from_secs(30), || async {
            status(&late.endpoint())
                .await
                .shards
                .iter()
                .any(|s| s.resyncing)
        })
        .await
    );
    a.freeze();
    let lep = late.endpoint();
    let out = kvctl(&lep, &["promote", &lep, "--force"], None);
    a.thaw();
    fail(out, "full resync");
}
