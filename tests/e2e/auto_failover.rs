//! Automatic failover with real processes (`--failover=auto`, failover timeout 1 s): the master
//! killed or frozen under 50 writers with acks=1, a partition between the master and both
//! replicas (a TCP proxy on their links), and one replica cut off alone (no election).
//!
//! The fault loop runs `KVD_E2E_FAULT_RUNS` times per fault (default 2 in `cargo test`; the
//! acceptance's 10: `KVD_E2E_FAULT_RUNS=10 cargo test -p e2e auto_failover -- --nocapture`).

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
    NodeProcess, Proxy, client, cluster_client, ctx, eventually, status, wait_caught_up,
};
use serde_bytes::ByteBuf;
use shared::{KvError, PutRequest, Role, client::Client};

const AUTO: [&str; 3] = [
    "--failover=auto",
    "--failover-timeout-ms=1000",
    "--replica-timeout-ms=1000",
];

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

/// A master and two replicas with automatic failover; the replicas reach the master through
/// `via` when given (a proxy's endpoint), else directly.
fn trio(root: &Path, via: Option<&str>) -> (NodeProcess, NodeProcess, NodeProcess) {
    let d = dirs(root, &["a", "b", "c"]);
    let a = NodeProcess::master(&d[0], 2, &AUTO);
    let master = via.map_or_else(|| a.endpoint(), str::to_string);
    let b = NodeProcess::replica(&d[1], 2, &master, &AUTO);
    let c = NodeProcess::replica(&d[2], 2, &master, &AUTO);
    (a, b, c)
}

async fn writable(endpoint: &str) -> bool {
    let s = status(endpoint).await;
    s.role == Role::Master && s.writable
}

/// Writers with acks=1 through `client` until stopped: every acknowledged key, and the count of
/// outcomes unknown and of errors.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, String>>>,
    unknown: Arc<Mutex<u64>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, prefix: &str, writers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let unknown = Arc::new(Mutex::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..writers)
            .map(|w| {
                let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
                let (unknown, errors) = (unknown.clone(), errors.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    for i in 0..1_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let key = format!("{prefix}{w}-{i}");
                        let mut req =
                            PutRequest::new(key.clone().into_bytes(), key.clone().into_bytes());
                        req.acks = 1;
                        req.acks_timeout_ms = 3000;
                        match client.put(req).await {
                            Ok(_) => {
                                acked.lock().unwrap().insert(key.clone(), key);
                            }
                            Err(e) if e.is_outcome_unknown() => *unknown.lock().unwrap() += 1,
                            Err(e) => errors.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            unknown,
            errors,
            tasks,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn until_acked(&self, n: usize) {
        let reached = eventually(Duration::from_secs(60), || async { self.acked() >= n }).await;
        let errors: Vec<String> = self
            .errors
            .lock()
            .unwrap()
            .iter()
            .take(3)
            .cloned()
            .collect();
        assert!(
            reached,
            "the load did not reach {n} acknowledged writes: errors {errors:?}"
        );
    }

    async fn finish(self) -> (HashMap<String, String>, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let unknown = *self.unknown.lock().unwrap();
        let errors = self.errors.lock().unwrap().clone();
        (acked, unknown, errors)
    }
}

async fn assert_present(endpoint: &str, acked: &HashMap<String, String>) {
    let c = client(endpoint).await;
    let keys: Vec<&String> = acked.keys().collect();
    let mut missing = 0;
    for chunk in keys.chunks(1000) {
        let ask = chunk
            .iter()
            .map(|k| ByteBuf::from(k.as_bytes().to_vec()))
            .collect();
        let got = c.mget(ctx(), ask).await.unwrap().unwrap();
        for (k, v) in chunk.iter().zip(got) {
            if v.map(|v| v.value.into_vec()) != Some(acked[*k].clone().into_bytes()) {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "acks=1 writes missing on {endpoint}");
}

fn runs() -> usize {
    std::env::var("KVD_E2E_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Freeze,
}

/// One run: the master faulted under 50 writers with acks=1; the time to a new master.
async fn one_run(fault: Fault) -> Duration {
    let root = tempfile::tempdir().unwrap();
    let (mut a, b, c) = trio(root.path(), None);
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let aep = a.endpoint();
    assert!(eventually(Duration::from_secs(10), || writable(&aep)).await);
    let eps = vec![a.endpoint(), b.endpoint(), c.endpoint()];
    let client = cluster_client(&eps, Duration::from_secs(10));
    let load = Load::start(&client, "w", 50);
    load.until_acked(500).await;
    let at = Instant::now();
    match fault {
        Fault::Kill => a.kill9(),
        Fault::Freeze => a.freeze(),
    }
    let (bep, cep) = (b.endpoint(), c.endpoint());
    assert!(
        eventually(Duration::from_secs(20), || async {
            writable(&bep).await || writable(&cep).await
        })
        .await,
        "no new master within 20 s:\nb: {}\nc: {}",
        b.stdout
            .all()
            .iter()
            .rev()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        c.stdout
            .all()
            .iter()
            .rev()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let took = at.elapsed();
    let new = if writable(&bep).await {
        bep.clone()
    } else {
        cep.clone()
    };
    let n = load.acked();
    load.until_acked(n + 500).await;
    let (acked, unknown, errors) = load.finish().await;
    assert!(
        errors.is_empty(),
        "{fault:?}: {:?}",
        &errors[..errors.len().min(3)]
    );
    assert_present(&new, &acked).await;
    // Epoch 2, or later after a split vote (both replicas stood at once).
    let s = status(&new).await;
    assert!(s.epoch >= 2, "{s:?}");
    let epoch = s.epoch;
    // The old master comes back as a replica of the new one.
    match fault {
        Fault::Kill => a.restart(),
        Fault::Freeze => {
            let frozen_for = Duration::from_secs(10).saturating_sub(at.elapsed());
            tokio::time::sleep(frozen_for).await;
            a.thaw();
        }
    }
    let aep = a.endpoint();
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = status(&aep).await;
            s.role == Role::Replica && s.epoch == epoch
        })
        .await,
        "the old master did not rejoin as a replica"
    );
    wait_caught_up(&new, 2, Duration::from_secs(30)).await;
    assert_present(&aep, &acked).await;
    eprintln!(
        "{fault:?}: a new master after {took:?}; {} writes acknowledged with acks=1, {unknown} unknown",
        acked.len()
    );
    took
}

/// Prints the time to a new master; a measurement, not asserted (the goal, a median under twice
/// the failover timeout, is judged on the long run's figures).
fn report(fault: Fault, mut times: Vec<Duration>) {
    times.sort();
    let median = times[(times.len() - 1) / 2];
    let max = times[times.len() - 1];
    eprintln!(
        "{fault:?} x{}: time to a new master median {median:?}, max {max:?}, all {times:?} \
         (failover timeout 1 s)",
        times.len()
    );
}

/// Acceptance 3, kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_master_killed_under_load_is_replaced_and_loses_no_acked_write() {
    let mut times = Vec::new();
    for _ in 0..runs() {
        times.push(one_run(Fault::Kill).await);
    }
    report(Fault::Kill, times);
}

/// Acceptance 3, SIGSTOP for 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_master_frozen_under_load_is_replaced_and_rejoins_when_thawed() {
    let mut times = Vec::new();
    for _ in 0..runs() {
        times.push(one_run(Fault::Freeze).await);
    }
    report(Fault::Freeze, times);
}

/// Acceptance 4: the master cut off from both replicas, clients still reaching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_master_stops_within_its_lease_and_a_new_one_is_elected() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b", "c"]);
    let a = NodeProcess::master(&d[0], 2, &AUTO);
    let proxy = Proxy::start(a.addr).await;
    let b = NodeProcess::replica(&d[1], 2, &proxy.endpoint(), &AUTO);
    let c = NodeProcess::replica(&d[2], 2, &proxy.endpoint(), &AUTO);
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    let aep = a.endpoint();
    assert!(eventually(Duration::from_secs(10), || writable(&aep)).await);
    // A client writes to the master directly, acks=0, and keeps going through the partition.
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let ep = aep.clone();
        let written = written.clone();
        tokio::spawn(async move {
            let node = shared::client::Node::connect(
                &shared::addr::parse_endpoint(&ep, 3000).unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let mut acked = Vec::new();
            let mut last_ack = Instant::now();
            let started = Instant::now();
            for i in 0..1_000_000 {
                if started.elapsed() > Duration::from_secs(15) {
                    break;
                }
                let key = format!("p{i}");
                match node
                    .put(PutRequest::new(key.clone().into_bytes(), b"v".to_vec()))
                    .await
                {
                    Ok(_) => {
                        acked.push(key);
                        last_ack = Instant::now();
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kv(),
                            Some(KvError::NoLease { .. } | KvError::NotMaster { .. })
                        ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("unexpected error from the master: {e}"),
                }
            }
            (acked, last_ack)
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            written.load(Ordering::Relaxed) >= 100
        })
        .await
    );
    let cut = Instant::now();
    proxy.cut();
    let (bep, cep) = (b.endpoint(), c.endpoint());
    assert!(
        eventually(Duration::from_secs(20), || async {
            writable(&bep).await || writable(&cep).await
        })
        .await,
        "the replicas did not elect a new master"
    );
    let elected = cut.elapsed();
    let new = if writable(&bep).await {
        bep.clone()
    } else {
        cep.clone()
    };
    proxy.heal();
    let (acked, last_ack) = writer.await.unwrap();
    let stopped = last_ack.saturating_duration_since(cut);
    eprintln!(
        "partition: the old master's last acknowledgement {stopped:?} after the cut (lease 880 ms), \
         a new master after {elected:?}"
    );
    assert!(
        stopped < Duration::from_millis(1500),
        "the old master acknowledged {stopped:?} after the cut: more than its lease and a pull"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = status(&aep).await;
            s.role == Role::Replica && s.epoch >= 2
        })
        .await,
        "the old master did not rejoin"
    );
    wait_caught_up(&new, 2, Duration::from_secs(30)).await;
    // Each write it acknowledged is on the new master or in its rollback file, not both.
    let cn = client(&new).await;
    let mut given: Vec<String> = Vec::new();
    if let Ok(files) = std::fs::read_dir(d[0].join("data").join("rollback")) {
        for f in files.flatten() {
            for line in std::fs::read_to_string(f.path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                given.push(v["key"].as_str().unwrap().to_string());
            }
        }
    }
    for k in &acked {
        let on_new = cn
            .get(ctx(), ByteBuf::from(k.as_bytes().to_vec()))
            .await
            .unwrap()
            .unwrap()
            .is_some();
        assert!(
            on_new != given.contains(k),
            "{k}: on the new master {on_new}, in the rollback file {}",
            given.contains(k)
        );
    }
    eprintln!(
        "partition: {} writes acknowledged with acks=0 by the old master, {} in its rollback file",
        acked.len(),
        given.len()
    );
}

/// Acceptance 5: one replica cut off while the other still hears the master: no election.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_cut_off_alone_does_not_depose_the_master() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), &["a", "b", "c"]);
    let a = NodeProcess::master(&d[0], 2, &AUTO);
    let proxy = Proxy::start(a.addr).await;
    let b = NodeProcess::replica(&d[1], 2, &proxy.endpoint(), &AUTO);
    let c = NodeProcess::replica(&d[2], 2, &a.endpoint(), &AUTO);
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
    proxy.cut();
    let bep = b.endpoint();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(&bep)
                .await
                .master_link
                .is_some_and(|l| l.state == shared::LinkState::Down)
        })
        .await
    );
    // Watched over five failover timeouts: b would stand, but its pre-vote finds no majority.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        for n in [&a, &b, &c] {
            let s = status(&n.endpoint()).await;
            assert_eq!(s.epoch, 1, "{}: no election: {s:?}", n.endpoint());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        writable(&a.endpoint()).await,
        "the master kept its lease (c confirms it)"
    );
    assert!(
        b.stdout.all().iter().any(|l| l.contains("pre-vote lost")),
        "the cut-off replica tried and was refused:\n{}",
        b.stdout.all().join("\n")
    );
    proxy.heal();
    wait_caught_up(&a.endpoint(), 2, Duration::from_secs(30)).await;
}
