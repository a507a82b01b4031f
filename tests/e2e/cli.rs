//! kvctl against a real master: the seed command line, binary values, compare-and-swap, limits.

use harness::{NodeProcess, kvctl};
use rand::RngCore;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn seed_flags_then_put_get_delete() {
    let dir = tempfile::tempdir().unwrap();
    // The exact seed command line; the port is the OS's pick, the data goes to the default
    // ./data/node-<port> under the test's working directory.
    let node = NodeProcess::start(
        dir.path(),
        &[
            "--port=0",
            "--shard=2",
            "--replica=false",
            "--host=http://localhost",
        ]
        .map(String::from),
    )
    .unwrap();
    let ep = node.endpoint();

    let out = kvctl(&ep, &["put", "a", "1"], None);
    assert!(out.status.success(), "put: {}", text(&out.stderr));
    let out = kvctl(&ep, &["get", "a"], None);
    assert_eq!(out.status.code(), Some(0), "get: {}", text(&out.stderr));
    assert_eq!(out.stdout, b"1", "stdout is not a terminal, so no newline");
    let out = kvctl(&ep, &["delete", "a"], None);
    assert_eq!(out.status.code(), Some(0), "delete: {}", text(&out.stderr));
    let out = kvctl(&ep, &["get", "a"], None);
    assert_eq!(out.status.code(), Some(1), "get of a deleted key exits 1");
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        dir.path()
            .join("data")
            .join("node-0")
            .join("node.json")
            .exists()
    );
}

#[test]
fn binary_value_round_trips_through_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    let mut value = vec![0u8; 64 * 1024];
    rand::rng().fill_bytes(&mut value);
    let out = kvctl(&ep, &["put", "k", "-"], Some(&value));
    assert!(out.status.success(), "put: {}", text(&out.stderr));
    let out = kvctl(&ep, &["get", "k"], None);
    assert!(out.status.success(), "get: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), value.len());
    assert!(
        out.stdout == value,
        "64 KiB of random bytes came back altered"
    );

    // --file reads the same way.
    let path = dir.path().join("v.bin");
    std::fs::write(&path, &value[..1000]).unwrap();
    let out = kvctl(&ep, &["put", "f", "--file", path.to_str().unwrap()], None);
    assert!(out.status.success(), "put --file: {}", text(&out.stderr));
    assert_eq!(kvctl(&ep, &["get", "f"], None).stdout, &value[..1000]);
}

#[test]
fn stale_if_version_exits_1_and_keeps_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    assert!(kvctl(&ep, &["put", "cas", "one"], None).status.success());
    let out = kvctl(&ep, &["-o", "json", "get", "cas"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = v["version"].as_u64().unwrap();
    assert_eq!(v["value"], "one");

    let ok = kvctl(
        &ep,
        &["put", "cas", "two", "--if-version", &version.to_string()],
        None,
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    // `version` is stale now.
    let stale = kvctl(
        &ep,
        &["put", "cas", "three", "--if-version", &version.to_string()],
        None,
    );
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stderr).contains("version mismatch"),
        "{}",
        text(&stale.stderr)
    );
    assert_eq!(kvctl(&ep, &["get", "cas"], None).stdout, b"two");

    let absent = kvctl(&ep, &["put", "cas", "four", "--if-absent"], None);
    assert_eq!(absent.status.code(), Some(1));
    assert_eq!(kvctl(&ep, &["get", "cas"], None).stdout, b"two");
}

#[test]
fn oversized_key_and_value_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    let key = "k".repeat(5 * 1024);
    let out = kvctl(&ep, &["put", &key, "v"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("5120 bytes") && err.contains("4096"), "{err}");

    let value = vec![b'x'; 2 * 1024 * 1024];
    let out = kvctl(&ep, &["put", "big", "-"], Some(&value));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("2097152 bytes") && err.contains("1048576"),
        "{err}"
    );
    assert_eq!(
        kvctl(&ep, &["get", "big"], None).status.code(),
        Some(1),
        "nothing was stored"
    );
}

#[test]
fn scan_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 3, &[]);
    let ep = node.endpoint();
    for i in 0..30 {
        assert!(
            kvctl(
                &ep,
                &["put", &format!("user:{i:02}"), &format!("v{i}")],
                None
            )
            .status
            .success()
        );
    }
    assert!(kvctl(&ep, &["put", "other", "x"], None).status.success());
    let out = kvctl(&ep, &["-o", "json", "scan", "user:", "--limit", "0"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..30).map(|i| format!("user:{i:02}")).collect();
    assert_eq!(
        keys, want,
        "every key of the prefix, in order, across 3 shards"
    );
    let out = kvctl(&ep, &["scan", "--limit", "5"], None);
    assert_eq!(text(&out.stdout).lines().count(), 5);

    let out = kvctl(&ep, &["-o", "json", "status"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["role"], "master");
    let shards = s["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let keys: u64 = shards.iter().map(|s| s["keys"].as_u64().unwrap()).sum();
    let seqs: u64 = shards.iter().map(|s| s["last_seq"].as_u64().unwrap()).sum();
    assert_eq!((keys, seqs), (31, 31));
}

#[test]
fn unreachable_node_exits_3() {
    // A port bound but never listening, held for the test: connecting is refused, and no other
    // test's node can be given it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap();
    let port = held.local_addr().unwrap().port();
    let out = kvctl(&format!("http://127.0.0.1:{port}"), &["get", "a"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&port.to_string()));
}

#[test]
fn bench_runs_against_a_master_and_reads_from_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let args = [
        "-o",
        "json",
        "bench",
        "--clients",
        "8",
        "--keyspace",
        "500",
        "--duration",
        "1",
    ];
    let run = |endpoint: &str, extra: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(extra);
        let out = kvctl(endpoint, &all, None);
        assert!(
            out.status.success(),
            "bench {extra:?}: {}",
            text(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let puts = run(&m, &["--ratio", "1:0", "--prefill"]);
    assert!(puts["ops"].as_u64().unwrap() > 0, "{puts}");
    assert_eq!(puts["errors"]["total"], 0, "{puts}");
    assert_eq!(puts["node"]["role"], "master");
    for field in ["p50", "p99", "max"] {
        assert!(puts["latency_us"][field].as_f64().is_some(), "{puts}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(harness::wait_caught_up(
        &m,
        1,
        std::time::Duration::from_secs(60),
    ));
    let gets = run(&replica.endpoint(), &["--ratio", "0:1"]);
    assert_eq!(gets["node"]["role"], "replica");
    assert!(gets["get"]["ops"].as_u64().unwrap() > 0, "{gets}");
    assert_eq!(
        gets["get"]["keys_missing"], 0,
        "the prefilled keys are on the replica: {gets}"
    );
    // Writes against a replica are refused up front, naming the master.
    let out = kvctl(
        &replica.endpoint(),
        &["bench", "--ratio", "1:0", "--duration", "1"],
        None,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains(&master.addr.port().to_string()),
        "{}",
        text(&out.stderr)
    );
}
