//! Replicas that join, follow every shard, survive restarts, resync and report lag.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, stream};
use harness::{NodeProcess, client, cluster, ctx, kvctl, replica_args, wait_caught_up};
use serde_bytes::ByteBuf;
use shared::{KvError, PutRequest};

/// Writes `key{i}` = `value{i}` for every `i` in `range` through `endpoint`, 64 at a time.
async fn put_range(endpoint: &str, prefix: &str, range: std::ops::Range<u32>) {
    let c = client(endpoint).await;
    stream::iter(range)
        .for_each_concurrent(64, |i| {
            let c = c.clone();
            async move {
                let req = PutRequest::new(
                    format!("{prefix}{i}").into_bytes(),
                    format!("value{i}").into_bytes(),
                );
                c.put(ctx(), req).await.expect("rpc").expect("put");
            }
        })
        .await;
}

/// Checks that every `key{i}` of `range` reads `value{i}` on `endpoint`.
async fn assert_all_readable(endpoint: &str, prefix: &str, range: std::ops::Range<u32>) {
    let c = client(endpoint).await;
    let missing: Vec<u32> = stream::iter(range)
        .map(|i| {
            let c = c.clone();
            async move {
                let got = c
                    .get(ctx(), ByteBuf::from(format!("{prefix}{i}").into_bytes()))
                    .await
                    .expect("rpc");
                match got {
                    Ok(Some(v)) if v.value.as_slice() == format!("value{i}").as_bytes() => None,
                    _ => Some(i),
                }
            }
        })
        .buffer_unordered(64)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} keys missing on {endpoint}, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

fn verify(master: &str) {
    let out = kvctl(master, &["verify"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replica_with_seed_flags_gets_every_key_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (mdir, rdir) = (dir.path().join("m"), dir.path().join("r"));
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::create_dir_all(&rdir).unwrap();
    let master = NodeProcess::start(
        &mdir,
        &[
            "--port=0",
            "--shard=2",
            "--replica=false",
            "--host=http://localhost",
        ]
        .map(String::from),
    )
    .unwrap();
    let master_url = format!("--master=http://localhost:{}", master.addr.port());
    let replica = NodeProcess::start(
        &rdir,
        &[
            "--port=0",
            "--shard=2",
            "--replica=true",
            &master_url,
            "--host=http://localhost",
        ]
        .map(String::from),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (m, r) = (master.endpoint(), replica.endpoint());
    rt.block_on(async {
        put_range(&m, "key", 0..10_000).await;
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
        assert_all_readable(&r, "key", 0..10_000).await;
    });
    verify(&m);
    // The replica's own view: linked, no resync.
    let status = rt.block_on(async { client(&r).await.status(ctx()).await.unwrap().unwrap() });
    assert_eq!(status.role, shared::Role::Replica);
    let link = status
        .master_link
        .expect("a replica reports its master link");
    assert_eq!(link.state, shared::LinkState::Up);
    assert_eq!(status.shards.iter().map(|s| s.keys).sum::<u64>(), 10_000);
}

#[test]
fn three_replicas_report_zero_lag_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 3, &[]);
    let m = master.endpoint();
    let replicas: Vec<NodeProcess> = (0..3)
        .map(|i| NodeProcess::replica(&dir.path().join(format!("r{i}")), 3, &m, &[]))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        put_range(&m, "k", 0..1000).await;
        wait_caught_up(&m, 3, Duration::from_secs(60)).await;
    });
    let out = kvctl(&m, &["-o", "json", "replicas"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let mut addrs: Vec<String> = list
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    let mut want: Vec<String> = replicas.iter().map(|r| r.addr.to_string()).collect();
    want.sort();
    assert_eq!(addrs, want);
    for r in list {
        assert_eq!(r["link"], "up");
        let shards = r["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 3);
        for s in shards {
            assert_eq!(s["ops_behind"], 0, "{r}");
            assert_eq!(s["bytes_behind"], 0, "{r}");
        }
    }
    let text = String::from_utf8_lossy(&kvctl(&m, &["status"], None).stdout).into_owned();
    for r in &replicas {
        assert!(
            text.contains(&r.addr.to_string()),
            "kvctl status lists replica {}:\n{text}",
            r.addr
        );
    }
    verify(&m);
}

#[test]
fn killed_replica_catches_up_by_partial_resync() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &["--replica-timeout-ms=1000"]);
    let m = master.endpoint();
    let mut replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        put_range(&m, "a", 0..2000).await;
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
    });
    replica.kill9();
    rt.block_on(put_range(&m, "b", 0..5000));
    // The master kept taking writes and marks the silent replica down.
    let down = harness::wait_until(Duration::from_secs(10), || {
        rt.block_on(cluster(&m)).replicas[0].link == shared::LinkState::Down
    });
    assert!(down, "the master did not mark the killed replica down");
    assert!(
        master
            .stdout
            .wait_for("replica marked down", Duration::from_secs(5))
            .is_some()
    );
    replica.restart();
    let r = replica.endpoint();
    let status = rt.block_on(async {
        let status = wait_caught_up(&m, 1, Duration::from_secs(60)).await;
        assert_all_readable(&r, "b", 0..5000).await;
        status
    });
    for s in &status.replicas[0].shards {
        assert_eq!(s.full_resyncs, 0, "caught up without a full resync: {s:?}");
        assert!(
            s.partial_resyncs >= 1,
            "the restart resumed by partial resync: {s:?}"
        );
    }
    // The replica logs both ends of it, with its figures.
    for shard in 0..2 {
        let line = replica
            .stdout
            .wait_for(
                &format!("partial resync finished: caught up with the master shard={shard}"),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|| panic!("no end of the partial resync of shard {shard} in the log"));
        assert!(
            line.contains("entries=") && line.contains("secs="),
            "{line}"
        );
    }
    verify(&m);
}

#[test]
fn replica_behind_retention_resyncs_fully_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &["--log-retention=256KiB"]);
    let m = master.endpoint();
    let mut replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        put_range(&m, "a", 0..500).await;
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
    });
    replica.terminate();
    // Far past the master's 256 KiB of log (about 4,000 entries of these keys).
    rt.block_on(put_range(&m, "b", 0..8000));
    // Writes keep going while the replica restarts and copies every shard.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU32::new(0));
    let writer = {
        let (m, stop, acked) = (m.clone(), Arc::clone(&stop), Arc::clone(&acked));
        rt.spawn(async move {
            let c = client(&m).await;
            for i in 0..1_000_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = PutRequest::new(
                    format!("c{i}").into_bytes(),
                    format!("value{i}").into_bytes(),
                );
                c.put(ctx(), req).await.unwrap().unwrap();
                acked.store(i + 1, Ordering::Relaxed);
            }
        })
    };
    assert!(harness::wait_until(Duration::from_secs(30), || acked
        .load(Ordering::Relaxed)
        > 100));
    replica.restart();
    for shard in 0..2 {
        let line = replica.stdout.wait_for(
            &format!("full resync finished shard={shard}"),
            Duration::from_secs(60),
        );
        assert!(line.is_some(), "shard {shard} did not finish a full resync");
    }
    // The writer ran across the copy and goes on after it.
    let during = acked.load(Ordering::Relaxed);
    assert!(harness::wait_until(Duration::from_secs(30), || acked
        .load(Ordering::Relaxed)
        > during + 100));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).unwrap();
    let written = acked.load(Ordering::Relaxed);
    let r = replica.endpoint();
    rt.block_on(async {
        let status = wait_caught_up(&m, 1, Duration::from_secs(60)).await;
        assert!(
            status.replicas[0]
                .shards
                .iter()
                .all(|s| s.full_resyncs >= 1),
            "every shard needed a full resync: {status:#?}"
        );
        assert_all_readable(&r, "b", 0..8000).await;
        assert_all_readable(&r, "c", 0..written).await;
    });
    verify(&m);
}

#[test]
fn master_killed_during_writes_comes_back_and_replicas_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (m, acked) = (m.clone(), std::sync::Arc::clone(&acked));
        rt.spawn(async move {
            let c = client(&m).await;
            for i in 0..200_000u32 {
                let req = PutRequest::new(
                    format!("w{i}").into_bytes(),
                    format!("value{i}").into_bytes(),
                );
                match c.put(ctx(), req).await {
                    Ok(Ok(_)) => acked.lock().unwrap().push(i),
                    _ => break,
                }
            }
        })
    };
    assert!(harness::wait_until(Duration::from_secs(60), || acked
        .lock()
        .unwrap()
        .len()
        >= 1500));
    master.kill9();
    rt.block_on(writer).unwrap();
    let acked = acked.lock().unwrap().clone();
    // The replica keeps serving reads and says its link is down, since when, and why.
    let r = replica.endpoint();
    let link_down = harness::wait_until(Duration::from_secs(10), || {
        let status = rt.block_on(async { client(&r).await.status(ctx()).await.unwrap().unwrap() });
        status
            .master_link
            .is_some_and(|l| l.state == shared::LinkState::Down && l.last_error.is_some())
    });
    assert!(link_down, "the replica did not report its master link down");
    let first = format!("w{}", acked[0]);
    assert_eq!(
        kvctl(&r, &["get", &first], None).status.code(),
        Some(0),
        "reads go on"
    );
    let text = String::from_utf8_lossy(&kvctl(&r, &["status"], None).stdout).into_owned();
    assert!(
        text.contains("down"),
        "kvctl status on the replica shows the link down:\n{text}"
    );
    master.restart();
    rt.block_on(async {
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
        let c = client(&m).await;
        for i in &acked {
            let got = c
                .get(ctx(), ByteBuf::from(format!("w{i}").into_bytes()))
                .await
                .unwrap()
                .unwrap();
            assert!(
                got.is_some(),
                "acknowledged write w{i} is missing on the master"
            );
        }
    });
    verify(&m);
}

#[test]
fn acks_wait_for_replicas_and_say_how_many_answered() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let started = std::time::Instant::now();
    let out = kvctl(
        &m,
        &["put", "k", "v", "--acks", "1", "--acks-timeout", "1"],
        None,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 of 1"), "{err}");
    // The write itself is committed on the master.
    assert_eq!(kvctl(&m, &["get", "k"], None).stdout, b"v");

    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    let out = kvctl(&m, &["put", "acked", "yes", "--acks", "1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Acknowledged by the replica means already readable there.
    assert_eq!(
        kvctl(&replica.endpoint(), &["get", "acked"], None).stdout,
        b"yes"
    );
}

#[test]
fn writes_sent_to_a_replica_land_on_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let r = replica.endpoint();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    // The replica itself refuses, naming the master.
    let refused = rt.block_on(async {
        client(&r)
            .await
            .put(ctx(), PutRequest::new("x", "y"))
            .await
            .unwrap()
    });
    assert!(
        matches!(
            refused,
            Err(KvError::NotMaster {
                master: Some(_),
                ..
            })
        ),
        "{refused:?}"
    );
    let out = kvctl(&r, &["put", "via-replica", "hello"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(kvctl(&m, &["get", "via-replica"], None).stdout, b"hello");
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    assert_eq!(kvctl(&r, &["get", "via-replica"], None).stdout, b"hello");
}

#[test]
fn join_refusals_stop_the_replica_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let refused = |args: Vec<String>| {
        let mut node = NodeProcess::start(dir.path(), &args).unwrap();
        let status = node
            .wait_exit(Duration::from_secs(30))
            .expect("a refused replica exits");
        assert_eq!(status.code(), Some(1));
        node.stderr()
    };
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    let err = refused(replica_args(&dir.path().join("bad"), 3, &m, &[]));
    assert!(
        err.contains("master has 2 shards") && err.contains("replica has 3"),
        "{err}"
    );

    // A second replica with a copy of the first one's data directory claims the same id.
    let mut first = NodeProcess::replica(&dir.path().join("r1"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    first.terminate();
    let copy = dir.path().join("r2").join("data");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.path().join("r1/data/node.json"), copy.join("node.json")).unwrap();
    first.restart();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    std::fs::create_dir_all(dir.path().join("r2")).unwrap();
    let err = refused(replica_args(&dir.path().join("r2"), 2, &m, &[]));
    assert!(err.contains("already used by the replica at"), "{err}");
    assert_eq!(rt.block_on(cluster(&m)).replicas.len(), 1);
}
