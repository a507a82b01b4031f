//! The metrics endpoint, health and readiness, JSON log files and their rotation.

use std::{collections::HashSet, time::Duration};

use harness::{NodeProcess, client, ctx, wait_caught_up, wait_until};
use prometheus_parse::{Sample, Scrape, Value};
use serde_bytes::ByteBuf;
use shared::PutRequest;

fn scrape(node: &NodeProcess) -> Scrape {
    let (status, body) = node.http_get("/metrics");
    assert_eq!(status, 200);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("a valid exposition")
}

fn samples<'a>(s: &'a Scrape, name: &str) -> Vec<&'a Sample> {
    s.samples.iter().filter(|x| x.metric == name).collect()
}

fn value(s: &Sample) -> f64 {
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("{} is not a single value", s.metric),
    }
}

fn requests(s: &Scrape, op: &str, result: &str) -> f64 {
    samples(s, "kvd_requests_total")
        .into_iter()
        .filter(|x| x.labels.get("op") == Some(op) && x.labels.get("result") == Some(result))
        .map(value)
        .sum()
}

#[test]
fn metrics_of_a_master_with_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 3, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 3, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    let before = scrape(&master);
    let puts_before = requests(&before, "put", "ok");
    rt.block_on(async {
        let c = client(&m).await;
        for i in 0..200u32 {
            c.put(ctx(), PutRequest::new(format!("k{i}"), "v"))
                .await
                .unwrap()
                .unwrap();
            c.get(ctx(), ByteBuf::from(format!("k{i}").into_bytes()))
                .await
                .unwrap()
                .unwrap();
        }
        // One refused request counts as an error.
        assert!(c.get(ctx(), ByteBuf::new()).await.unwrap().is_err());
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
    });
    let after = scrape(&master);
    assert!(
        (requests(&after, "put", "ok") - puts_before - 200.0).abs() < 0.5,
        "200 puts were counted"
    );
    assert!(requests(&after, "get", "ok") >= 200.0);
    assert!(requests(&after, "get", "error") >= 1.0);
    assert!(
        requests(&after, "pull", "ok") >= 1.0,
        "the replica's pulls are counted"
    );

    // Lag gauges for the replica on every shard, at 0 once caught up.
    let lag = samples(&after, "kvd_replica_lag_operations");
    let shards: HashSet<&str> = lag.iter().filter_map(|s| s.labels.get("shard")).collect();
    assert_eq!(
        shards,
        HashSet::from(["0", "1", "2"]),
        "a lag gauge per shard"
    );
    assert!(lag.iter().all(|s| value(s) == 0.0));
    for name in [
        "kvd_replica_lag_bytes",
        "kvd_replica_lag_seconds",
        "kvd_replica_full_resyncs_total",
    ] {
        assert_eq!(samples(&after, name).len(), 3, "{name} per shard");
    }
    let link = samples(&after, "kvd_replica_link_up");
    assert_eq!(link.len(), 1);
    assert_eq!(
        link[0].labels.get("address"),
        Some(replica.addr.to_string().as_str())
    );
    assert_eq!(value(link[0]), 1.0);
    let keys: f64 = samples(&after, "kvd_shard_keys")
        .into_iter()
        .map(value)
        .sum();
    assert_eq!(keys, 200.0);

    // Histograms come with buckets, a sum and a count.
    let put_latency = samples(&after, "kvd_request_duration_seconds")
        .into_iter()
        .find(|s| s.labels.get("op") == Some("put"))
        .expect("put latency histogram");
    let Value::Histogram(buckets) = &put_latency.value else {
        panic!("not a histogram")
    };
    assert!(buckets.len() > 5);
    assert!(
        buckets
            .iter()
            .any(|b| b.less_than.is_infinite() && b.count >= 200.0)
    );
    for name in [
        "kvd_request_duration_seconds_sum",
        "kvd_request_duration_seconds_count",
    ] {
        let s = samples(&after, name)
            .into_iter()
            .find(|s| s.labels.get("op") == Some("put"))
            .expect(name);
        assert!(value(s) > 0.0, "{name}");
    }
    let batches = samples(&after, "kvd_commit_batch_size");
    assert_eq!(batches.len(), 3, "a batch-size histogram per shard");
    assert!(
        samples(&after, "kvd_commit_duration_seconds_count")
            .iter()
            .map(|s| value(s))
            .sum::<f64>()
            >= 1.0
    );
    assert_eq!(samples(&after, "kvd_build_info").len(), 1);
    assert!(!samples(&after, "kvd_open_connections").is_empty());
    assert!(
        !samples(&after, "kvd_process_resident_memory_bytes").is_empty(),
        "process metrics"
    );

    // The replica's own view.
    let r = scrape(&replica);
    assert_eq!(
        samples(&r, "kvd_master_link_up")
            .iter()
            .map(|s| value(s))
            .sum::<f64>(),
        1.0
    );
    assert_eq!(samples(&r, "kvd_master_lag_operations").len(), 3);
}

/// The value of the one sample of `name` (panics when there is none or several).
fn only(s: &Scrape, name: &str) -> f64 {
    let found = samples(s, name);
    assert_eq!(found.len(), 1, "one sample of {name}");
    value(found[0])
}

/// Automatic failover in status and metrics: the mode, the master's lease, no election while
/// the master lives; once it is killed, a replica elected, whose last failover (an election,
/// its reason and duration) shows in `kvctl status` and in its metrics.
#[test]
fn failover_mode_lease_and_last_election_in_status_and_metrics() {
    const AUTO: [&str; 3] = [
        "--failover=auto",
        "--failover-timeout-ms=1000",
        "--replica-timeout-ms=1000",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut master = NodeProcess::master(&dir.path().join("a"), 2, &AUTO);
    let m = master.endpoint();
    let b = NodeProcess::replica(&dir.path().join("b"), 2, &m, &AUTO);
    let c = NodeProcess::replica(&dir.path().join("c"), 2, &m, &AUTO);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 2, Duration::from_secs(60)));

    // The master holds a lease once its replicas confirm it (it runs below the 1 s timeout).
    assert!(
        wait_until(Duration::from_secs(10), || {
            samples(&scrape(&master), "kvd_lease_seconds")
                .first()
                .is_some_and(|s| value(s) > 0.0)
        }),
        "the master gets a lease"
    );
    let ms = scrape(&master);
    assert_eq!(only(&ms, "kvd_failover_auto"), 1.0);
    assert!((only(&ms, "kvd_failover_timeout_seconds") - 1.0).abs() < 1e-9);
    let lease = only(&ms, "kvd_lease_seconds");
    assert!(lease > 0.0 && lease < 1.0, "lease {lease} s");
    assert_eq!(only(&ms, "kvd_election_in_progress"), 0.0);
    assert_eq!(only(&ms, "kvd_election_votes"), 0.0);
    assert!(samples(&ms, "kvd_last_failover_duration_seconds").is_empty());
    let rs = scrape(&b);
    assert_eq!(only(&rs, "kvd_failover_auto"), 1.0);
    assert!(
        samples(&rs, "kvd_lease_seconds").is_empty(),
        "a replica has no lease"
    );

    let status = json(&m, &["status"]);
    assert_eq!(status["failover"]["mode"], "auto");
    assert_eq!(status["failover"]["timeout_ms"], 1000);
    assert!(
        status["failover"]["lease_ms"]
            .as_u64()
            .is_some_and(|l| l < 1000),
        "{status}"
    );
    assert!(status["failover"]["election"].is_null());
    assert!(status["failover"]["note"].is_null(), "three members elect");
    let text = String::from_utf8(harness::kvctl(&m, &["status"], None).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("failover  auto, timeout 1000 ms, lease ")),
        "{text}"
    );

    // The master dies: one of the replicas is elected and says so.
    master.kill9();
    let (b_ep, c_ep) = (b.endpoint(), c.endpoint());
    let mut winner = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            winner = [&b, &c].into_iter().find(|n| {
                let s = rt.block_on(harness::status(&n.endpoint()));
                s.role == shared::Role::Master && s.writable && s.last_failover.is_some()
            });
            winner.is_some()
        }),
        "a replica is elected ({b_ep}, {c_ep})"
    );
    let winner = winner.unwrap();
    let ws = scrape(winner);
    let took = samples(&ws, "kvd_last_failover_duration_seconds");
    assert_eq!(took.len(), 1);
    assert_eq!(took[0].labels.get("kind"), Some("election"));
    assert!(
        value(took[0]) >= 1.0,
        "an election takes at least the timeout"
    );
    assert_eq!(
        samples(&ws, "kvd_last_failover_epoch")
            .first()
            .map(|s| value(s)),
        Some(2.0)
    );
    assert!(
        samples(&ws, "kvd_last_failover_timestamp_seconds")
            .first()
            .is_some_and(|s| value(s) > 1.6e9)
    );
    let status = json(&winner.endpoint(), &["status"]);
    let last = &status["last_failover"];
    assert_eq!(last["kind"], "election", "{status}");
    assert_eq!(last["epoch"], 2);
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("silent for 1000 ms")),
        "{status}"
    );
    let text =
        String::from_utf8(harness::kvctl(&winner.endpoint(), &["status"], None).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("last      failover epoch 2, election")
                && l.contains("the master was silent for 1000 ms or more")),
        "{text}"
    );
    // Its log has the election: standing, the votes, the win.
    let log = winner.stdout.all().join("\n");
    for needle in [
        "standing for election",
        "vote granted to this node",
        "elected master",
    ] {
        assert!(log.contains(needle), "{needle} in the log:\n{log}");
    }
}

#[test]
fn replica_readiness_follows_its_master() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    assert!(wait_until(Duration::from_secs(10), || replica
        .http_get("/ready")
        .0
        == 200));
    assert_eq!(master.http_get("/ready").0, 200);

    master.kill9();
    let killed = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || replica.http_get("/ready").0
            == 503),
        "not 503 within 3 s"
    );
    let (_, body) = replica.http_get("/ready");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert!(
        v["reason"].as_str().unwrap().contains("master link"),
        "{body}"
    );
    assert_eq!(replica.http_get("/health").0, 200);
    eprintln!("503 after {:?}", killed.elapsed());

    master.restart();
    let restarted = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || replica.http_get("/ready").0
            == 200),
        "not 200 within 3 s"
    );
    eprintln!("200 again after {:?}", restarted.elapsed());
    assert_eq!(replica.http_get("/health").0, 200);
}

/// Listening TCP sockets the process holds (from /proc: its socket inodes in LISTEN state).
fn listening_sockets(pid: u32) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|table| table.lines().skip(1).map(String::from).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.get(3) == Some(&"0A") && cols.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

#[test]
fn metrics_port_zero_opens_nothing_and_a_busy_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(&dir.path().join("a"), 2, &["--metrics-port=0"]);
    assert!(node.metrics.is_none());
    assert_eq!(
        listening_sockets(node.pid()),
        1,
        "only the service port listens"
    );
    let with = NodeProcess::master(&dir.path().join("b"), 2, &[]);
    assert_eq!(
        listening_sockets(with.pid()),
        2,
        "the service port and the metrics port"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let data = format!("--data-dir={}", dir.path().join("c").display());
    let args = [
        "--port=0".to_string(),
        "--host=127.0.0.1".into(),
        format!("--metrics-port={port}"),
        data,
    ];
    let err = NodeProcess::start(dir.path(), &args)
        .err()
        .expect("a busy metrics port is refused");
    assert_eq!(err.status.and_then(|s| s.code()), Some(1));
    assert!(
        err.stderr.contains("--metrics-port") && err.stderr.contains(&port.to_string()),
        "{}",
        err.stderr
    );
}

#[test]
fn json_log_files_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Old files from earlier days, beyond what --log-max-files keeps.
    for day in 10..15 {
        std::fs::write(logs.join(format!("kvd.2026-11-{day}.log")), "{}\n").unwrap();
    }
    let log_dir = format!("--log-dir={}", logs.display());
    let mut node = NodeProcess::master(
        dir.path(),
        2,
        &["--log-format=json", "--log-max-files=2", &log_dir],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&node.endpoint()).await;
        c.put(ctx(), PutRequest::new("a", "b"))
            .await
            .unwrap()
            .unwrap();
    });
    assert!(node.terminate().success());
    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .collect();
    assert!(files.len() <= 2, "at most 2 log files kept: {files:?}");
    let today = files.iter().max().unwrap();
    let text = std::fs::read_to_string(today).unwrap();
    let mut started = false;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "kvd started" {
            started = true;
            assert_eq!(v["fields"]["shards"], 2);
        }
    }
    assert!(started, "the start-up line is in the JSON log:\n{text}");
    // Stdout stays human-readable.
    assert!(
        node.stdout
            .all()
            .iter()
            .any(|l| l.contains("kvd started") && !l.starts_with('{'))
    );
}

/// The sorted keys of a JSON object.
fn fields(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn json(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let out = harness::kvctl(endpoint, &full, None);
    assert!(
        out.status.success(),
        "kvctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kvctl {args:?} printed no JSON: {e}"))
}

/// The JSON shapes the README documents for status, shards, replicas and verify.
#[test]
fn json_outputs_have_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &m, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&m).await;
        for i in 0..20u32 {
            c.put(ctx(), PutRequest::new(format!("k{i}"), "v"))
                .await
                .unwrap()
                .unwrap();
        }
        wait_caught_up(&m, 1, Duration::from_secs(60)).await;
    });
    let shard_fields = [
        "disk_bytes",
        "full_resyncs",
        "keys",
        "last_epoch",
        "last_seq",
        "master_seq",
        "partial_resyncs",
        "resyncing",
        "shard",
    ];
    let lag_fields = [
        "acked_seq",
        "bytes_behind",
        "full_resyncs",
        "master_seq",
        "ops_behind",
        "partial_resyncs",
        "secs_since_caught_up",
        "shard",
    ];
    let replica_fields = [
        "address",
        "last_seen_secs",
        "last_seen_unix_ms",
        "link",
        "node_id",
        "shards",
    ];

    let status = json(&m, &["status"]);
    let node = [
        "address",
        "cluster_id",
        "epoch",
        "failover",
        "last_failover",
        "master",
        "max_key_bytes",
        "max_value_bytes",
        "node_id",
        "replicas",
        "role",
        "shards",
        "storage",
        "sync",
        "uptime_secs",
        "version",
        "writable",
    ];
    assert_eq!(fields(&status), node);
    assert_eq!(
        fields(&status["storage"]),
        [
            "log_disk_bytes",
            "log_retention_bytes",
            "log_segment_bytes",
            "problem",
            "store_journal_bytes"
        ]
    );
    // The default retention, and a log that holds something once written.
    assert_eq!(status["storage"]["log_retention_bytes"], 256u64 << 20);
    assert!(status["storage"]["log_disk_bytes"].as_u64().unwrap() > 0);
    assert!(status["storage"]["problem"].is_null());
    assert_eq!(
        (status["role"].as_str(), status["sync"].as_str()),
        (Some("master"), Some("always"))
    );
    assert_eq!(
        fields(&status["failover"]),
        ["election", "lease_ms", "mode", "note", "timeout_ms"]
    );
    // A master in manual mode has no lease and runs no election.
    assert_eq!(status["failover"]["mode"], "manual");
    assert!(status["failover"]["lease_ms"].is_null());
    assert!(status["failover"]["election"].is_null());
    assert_eq!(fields(&status["shards"][0]), shard_fields);
    assert_eq!(fields(&status["replicas"][0]), replica_fields);
    assert_eq!(fields(&status["replicas"][0]["shards"][0]), lag_fields);

    let rstatus = json(&replica.endpoint(), &["status"]);
    let mut rnode: Vec<&str> = node.iter().copied().filter(|f| *f != "replicas").collect();
    rnode.push("master_link");
    rnode.sort_unstable();
    assert_eq!(fields(&rstatus), rnode);
    assert_eq!(rstatus["role"], "replica");
    assert_eq!(
        fields(&rstatus["master_link"]),
        [
            "last_error",
            "master",
            "master_id",
            "since_unix_ms",
            "state"
        ]
    );
    assert_eq!(rstatus["master_link"]["state"], "up");

    let shards = json(&m, &["shards"]);
    assert_eq!(shards.as_array().unwrap().len(), 2);
    assert_eq!(
        fields(&shards[0]),
        [
            "disk_bytes",
            "keys",
            "last_seq",
            "replicas",
            "resyncing",
            "shard"
        ]
    );
    assert_eq!(
        fields(&shards[0]["replicas"][0]),
        [
            "acked_seq",
            "address",
            "bytes_behind",
            "link",
            "node_id",
            "ops_behind",
            "secs_since_caught_up"
        ]
    );
    let keys: u64 = shards
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(keys, 20);

    let replicas = json(&m, &["replicas"]);
    assert_eq!(fields(&replicas[0]), replica_fields);
    assert_eq!(fields(&replicas[0]["shards"][0]), lag_fields);
    assert_eq!(replicas[0]["address"], replica.addr.to_string());

    let verify = json(&m, &["verify"]);
    assert_eq!(fields(&verify), ["ok", "shards"]);
    assert_eq!(verify["ok"], true);
    assert_eq!(
        fields(&verify["shards"][0]),
        ["master", "replicas", "seq", "shard"]
    );
    assert_eq!(fields(&verify["shards"][0]["master"]), ["hash", "keys"]);
    assert_eq!(
        fields(&verify["shards"][0]["replicas"][0]),
        ["address", "hash", "keys", "match", "node_id"]
    );
}

#[test]
fn completions_and_versions() {
    let out = std::process::Command::new(harness::kvctl_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("_kvctl()") && script.contains("replicas"));
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(
        checked.success(),
        "the bash completion script does not parse"
    );
    for (bin, name) in [(harness::kvctl_bin(), "kvctl"), (harness::kvd_bin(), "kvd")] {
        let out = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
