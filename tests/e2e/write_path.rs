//! The write path (issue #12): the node's one log under kill -9, a damaged log, a full disk, and
//! a data directory of format 1 migrated in place.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use harness::{NodeProcess, client, ctx, kvctl, wait_until};
use serde_bytes::ByteBuf;
use shared::PutRequest;

/// The number of a value `"<writer>:<n>"`.
fn nth(value: &str) -> u32 {
    value
        .split(':')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Acceptance 3: kill -9 during 50-client durable writes, 20 times over one data directory; after
/// each restart every acknowledged write is there (or a later one of the same writer, which
/// was in flight at the kill).
#[test]
fn kill9_twenty_times_during_fifty_client_durable_writes_loses_no_acknowledged_write() {
    const ROUNDS: u32 = 20;
    const CLIENTS: u32 = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 4, &["--sync=always"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // key -> the last value acknowledged for it, over every round.
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut total = 0usize;
    for round in 0..ROUNDS {
        let ep = node.endpoint();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..CLIENTS {
                let c = client(&ep).await;
                let (acked, count, stop) =
                    (Arc::clone(&acked), Arc::clone(&count), Arc::clone(&stop));
                tasks.push(tokio::spawn(async move {
                    let started = Instant::now();
                    // Bounded in count and time; an error (the kill) ends the writer.
                    for n in 0..20_000u32 {
                        if stop.load(Ordering::Relaxed)
                            || started.elapsed() > Duration::from_secs(30)
                        {
                            break;
                        }
                        let key = format!("w{w}-{}", n % 50);
                        let value = format!("{w}:{}", round * 100_000 + n);
                        let req =
                            PutRequest::new(key.clone().into_bytes(), value.clone().into_bytes());
                        match c.put(ctx(), req).await {
                            Ok(Ok(_)) => {
                                acked.lock().unwrap().insert(key, value);
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                }));
            }
            tasks
        });
        assert!(
            wait_until(Duration::from_secs(30), || count.load(Ordering::Relaxed)
                >= 500),
            "round {round}: writes too slow"
        );
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for t in writers {
                t.await.unwrap();
            }
        });
        total += count.load(Ordering::Relaxed);
        node.restart();
        let ep = node.endpoint();
        let acked = acked.lock().unwrap().clone();
        let missing = rt.block_on(async {
            let c = client(&ep).await;
            let mut missing = Vec::new();
            for (key, value) in &acked {
                let got = c
                    .get(ctx(), ByteBuf::from(key.clone().into_bytes()))
                    .await
                    .unwrap()
                    .unwrap();
                let got = got.map(|g| String::from_utf8_lossy(&g.value).into_owned());
                if got.as_deref().is_none_or(|g| nth(g) < nth(value)) {
                    missing.push((key.clone(), value.clone(), got));
                }
            }
            missing
        });
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged keys lost, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(3)]
        );
    }
    eprintln!("{ROUNDS} kill -9 rounds, {total} acknowledged writes, none lost");
}

/// The active segment of a data directory's log (the highest-numbered one).
fn last_segment(data: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

/// Acceptance 3: a flipped byte in the middle of the log is reported with the file and the
/// offset, and the node does not start (so serves nothing from it).
#[test]
fn a_flipped_byte_in_the_log_stops_kvd_naming_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    for i in 0..50 {
        assert!(
            kvctl(&ep, &["put", &format!("k{i}"), "some value"], None)
                .status
                .success()
        );
    }
    assert!(node.terminate().success());
    let seg = last_segment(&dir.path().join("data"));
    let mut bytes = std::fs::read(&seg).unwrap();
    // Inside the payload of an early frame (frames are ~70 bytes here).
    bytes[100] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let args = [
        "--port=0".to_string(),
        "--shard=2".into(),
        "--host=127.0.0.1".into(),
        format!("--data-dir={}", dir.path().join("data").display()),
    ];
    let e = NodeProcess::start(dir.path(), &args)
        .err()
        .expect("kvd must not start on a damaged log");
    assert_ne!(e.status.and_then(|s| s.code()), Some(0));
    assert!(
        e.stderr.contains(&seg.display().to_string()) && e.stderr.contains("offset"),
        "the error names the file and the offset: {}",
        e.stderr
    );
    // Put back, it starts and has every key.
    bytes[100] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    node.restart();
    let out = kvctl(&node.endpoint(), &["get", "k49"], None);
    assert!(out.status.success(), "{out:?}");
}

/// A tmpfs of `mib` MiB mounted at a new directory, unmounted on drop; `None` (with the reason)
/// where mounting is not allowed.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Self { dir })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the disk holding `path` with it until writing fails, then frees 8 MiB; returns the
/// bytes it holds.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let mut n = 0u64;
    // Bounded: the tmpfs is small.
    for _ in 0..100_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    // Give 8 MiB back: below what kvd keeps free, but not a disk its background work cannot
    // use at all.
    let keep = n.saturating_sub(8 << 20);
    f.set_len(keep).unwrap();
    let _ = f.sync_all();
    keep
}

/// Acceptance 4: on a full disk writes fail with the reason and `/health` says why; once space
/// is freed writes succeed again without a restart, and every acknowledged write is there after
/// one.
#[test]
fn a_full_disk_refuses_writes_says_why_and_recovers_once_space_is_freed() {
    let fs = match Tmpfs::mount(160) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let mut node = NodeProcess::master(fs.path(), 2, &["--log-retention=8MiB"]);
    let ep = node.endpoint();
    let mut acked = Vec::new();
    for i in 0..100 {
        let out = kvctl(&ep, &["put", &format!("before{i}"), "v"], None);
        assert!(out.status.success(), "{out:?}");
        acked.push(format!("before{i}"));
    }
    assert_eq!(node.http_get("/health").0, 200);
    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    // A write now fails, saying the disk is full; nothing is acknowledged.
    let out = kvctl(&ep, &["put", "during", "v"], None);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "a write on a full disk was acknowledged"
    );
    assert!(
        err.contains("disk is full") || err.contains("free on the disk"),
        "{err}"
    );
    assert!(
        err.contains("Free space"),
        "the error says what to do: {err}"
    );
    let (code, body) = node.http_get("/health");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("disk_full") && body.contains("free"),
        "{body}"
    );
    // Space is freed: writes are taken again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || kvctl(
            &ep,
            &["put", "after", "v"],
            None
        )
        .status
        .success()),
        "writes did not resume once space was freed"
    );
    acked.push("after".into());
    assert_eq!(node.http_get("/health").0, 200);
    for i in 0..100 {
        let out = kvctl(&ep, &["put", &format!("later{i}"), "v"], None);
        assert!(out.status.success(), "{out:?}");
        acked.push(format!("later{i}"));
    }
    node.kill9();
    node.restart();
    let ep = node.endpoint();
    for key in &acked {
        let out = kvctl(&ep, &["get", key], None);
        assert!(out.status.success(), "{key} lost: {out:?}");
    }
    let out = kvctl(&ep, &["get", "during"], None);
    assert!(!out.status.success(), "the refused write must not be there");
    node.terminate();
}

/// The fixture's directory: `tests/fixtures/`.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Acceptance 5: a master and its replica made by the previous release (format 1: each shard's
/// log in its fjall database) open, migrate in place, keep every key, version and replication
/// position, and the replica resumes by partial resync, not a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_one_master_and_replica_migrate_and_resume_by_partial_resync() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(fixtures().join("format1-master-replica.tar.gz"))
        .arg("-C")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let format = |d: &str| {
        let raw = std::fs::read(root.path().join(d).join("node.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["format"].clone()
    };
    assert_eq!(format("m"), 1);
    let node_args = |d: &str| {
        vec![
            "--port=0".to_string(),
            "--shard=2".into(),
            "--host=127.0.0.1".into(),
            format!("--data-dir={}", root.path().join(d).display()),
        ]
    };
    let cwd = root.path().join("cwd");
    let master = NodeProcess::start(&cwd, &node_args("m")).expect("the master starts");
    assert!(
        master
            .stdout
            .wait_for(
                "migrated the data directory to format 2",
                Duration::from_secs(1)
            )
            .is_some(),
        "{:?}",
        master.stdout.all()
    );
    assert_eq!(format("m"), 2);
    // Every key with its value and version, as the previous release served them.
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("format1-master-keys.json")).unwrap(),
    )
    .unwrap();
    let m = master.endpoint();
    let out = kvctl(&m, &["scan", "-o", "json", "--limit", "1000"], None);
    assert!(out.status.success(), "{out:?}");
    let mut got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    got.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    assert_eq!(serde_json::Value::Array(got), want);
    let before = harness::status(&m).await;
    let seqs: Vec<u64> = before.shards.iter().map(|s| s.last_seq).collect();
    assert_eq!(seqs.iter().sum::<u64>(), 430, "{seqs:?}");

    // The fixture's ports were the OS's picks when it was made: point the replica's
    // cluster.json at where its master listens now, as an upgrade in place would find it.
    let file = root.path().join("r").join("cluster.json");
    let mut cluster: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let address = m.trim_start_matches("http://").to_string();
    let master_id = cluster["master"]["node_id"].clone();
    cluster["master"]["address"] = address.clone().into();
    for member in cluster["members"].as_array_mut().unwrap() {
        if member["node_id"] == master_id {
            member["address"] = address.clone().into();
        }
    }
    std::fs::write(&file, serde_json::to_vec(&cluster).unwrap()).unwrap();
    let mut args = node_args("r");
    args.extend(["--replica=true".into(), format!("--master={m}")]);
    let replica = NodeProcess::start(&root.path().join("cwd-r"), &args).expect("the replica");
    assert_eq!(format("r"), 2);
    assert!(
        kvctl(&m, &["put", "after-migration", "x"], None)
            .status
            .success()
    );
    let status = harness::wait_caught_up(&m, 1, Duration::from_secs(30)).await;
    let shards = &status.replicas[0].shards;
    assert!(
        shards.iter().all(|s| s.full_resyncs == 0),
        "the replica resumed without a copy: {shards:#?}"
    );
    assert!(
        shards.iter().any(|s| s.partial_resyncs >= 1),
        "the replica resumed by partial resync: {shards:#?}"
    );
    let out = kvctl(&replica.endpoint(), &["get", "after-migration"], None);
    assert_eq!(out.stdout, b"x");
    let out = kvctl(&replica.endpoint(), &["get", "k1"], None);
    assert_eq!(out.stdout, b"v1");
}
