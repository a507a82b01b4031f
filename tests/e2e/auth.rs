//! Tokens and roles (`kvd --auth-file`, issue #11): real nodes, real kvctl, raw connections.

use std::{path::Path, process::Command, time::Duration};

use harness::{NodeProcess, ctx, kvctl, kvd_bin, wait_until};
use prometheus_parse::{Scrape, Value};
use serde_bytes::ByteBuf;
use shared::{
    JoinRequest, KvError, PutCondition, PutRequest, addr::parse_endpoint, transport::connect,
};

fn with<S: AsRef<str>>(token: Option<S>) -> shared::transport::Credentials {
    shared::transport::Credentials {
        token: token.map(|t| t.as_ref().to_string()),
        tls: None,
    }
}

/// `kvd token new`: the token printed once on stdout, its hashed line appended to `file`.
fn new_token(file: &Path, role: &str, name: &str) -> String {
    let out = Command::new(kvd_bin())
        .args([
            "token",
            "new",
            "--role",
            role,
            "--name",
            name,
            "--auth-file",
        ])
        .arg(file)
        .output()
        .expect("kvd token new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.len() >= 4 + 32, "at least 128 bits: {token}");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        !text.contains(&token),
        "the file holds the hash, not the token"
    );
    token
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

struct Tokens {
    file: String,
    read: String,
    write: String,
    replica: String,
    admin: String,
}

fn tokens(dir: &Path) -> Tokens {
    let file = dir.join("tokens");
    Tokens {
        read: new_token(&file, "read", "dashboard"),
        write: new_token(&file, "write", "app"),
        replica: new_token(&file, "replica", "nodes"),
        admin: new_token(&file, "admin", "ops"),
        file: file.display().to_string(),
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: ByteBuf::from(key.as_bytes().to_vec()),
        value: ByteBuf::from(value.as_bytes().to_vec()),
        condition: PutCondition::default(),
        acks: 0,
        acks_timeout_ms: 0,
    }
}

fn counter(node: &NodeProcess, name: &str, label: (&str, &str)) -> f64 {
    let (status, body) = node.http_get("/metrics");
    assert_eq!(status, 200);
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Acceptance 1: no token, a wrong token, a token of the wrong role: refused, nothing executed,
/// kvctl exits 5 naming what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_token_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(dir.path());
    let auth = format!("--auth-file={}", t.file);
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[&auth]);
    let m = master.endpoint();
    let ep = parse_endpoint(&m, 3000).unwrap();

    // 1,000 attempts, half without a token and half with a wrong one: every one refused at the
    // handshake, before any call.
    let mut refused = 0;
    for i in 0..1000 {
        let token = if i % 2 == 0 { None } else { Some("kvd_wrong") };
        match connect(&ep, &with(token)).await {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
                refused += 1;
            }
            Ok(_) => panic!("attempt {i} with {token:?} was let in"),
        }
    }
    assert_eq!(refused, 1000);
    assert_eq!(counter(&master, "kvd_requests_total", ("op", "put")), 0.0);
    assert_eq!(counter(&master, "kvd_requests_total", ("op", "get")), 0.0);
    let failures = counter(&master, "kvd_auth_refused_total", ("reason", "missing"))
        + counter(&master, "kvd_auth_refused_total", ("reason", "wrong"))
        + counter(&master, "kvd_auth_refused_total", ("reason", "throttled"));
    assert_eq!(failures, 1000.0);
    assert!(
        master
            .stdout
            .wait_for(
                "connection refused: authentication failed",
                Duration::from_secs(5)
            )
            .is_some(),
        "refusals are logged at WARN with the peer"
    );

    // kvctl: exit code 5 and a message naming the fix. kvctl connects from 127.0.0.1 too,
    // which the failures above may still have throttled (refused for up to 10 s): wait for
    // the plain refusal.
    let out = kvctl(&m, &["get", "k"], None);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = kvctl(&m, &["get", "k"], None);
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.code() == Some(5) && last.contains("requires a token")
        }),
        "{last}"
    );
    assert!(last.contains("--token-file"), "{last}");

    let read_file = write_file(dir.path(), "read-token", &t.read);
    let out = kvctl(&m, &["--token-file", &read_file, "put", "k", "v"], None);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("put needs a token with the write role") && err.contains("\"dashboard\""),
        "{err}"
    );
    assert_eq!(counter(&master, "kvd_requests_total", ("op", "put")), 0.0);

    // The write token writes; the read token reads.
    let write_file_path = write_file(dir.path(), "write-token", &t.write);
    let out = kvctl(
        &m,
        &["--token-file", &write_file_path, "put", "k", "v"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = kvctl(&m, &["--token-file", &read_file, "get", "k"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    let _ = t.admin;
}

/// Acceptance 2: each role can do its calls only; a replica with a wrong token is refused by
/// its master with a message naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_allow_only_their_calls_and_replicas_need_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(dir.path());
    let auth = format!("--auth-file={}", t.file);
    let peer = format!(
        "--master-token-file={}",
        write_file(dir.path(), "replica-token", &t.replica)
    );
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[&auth, &peer]);
    let m = master.endpoint();
    let ep = parse_endpoint(&m, 3000).unwrap();

    let read = connect(&ep, &with(Some(&t.read))).await.unwrap();
    let denied = |r: Result<(), KvError>, call: &str, needs: &str| match r {
        Err(KvError::PermissionDenied {
            call: c, needs: n, ..
        }) => assert!(c == call && n == needs, "{c} {n}"),
        other => panic!("{call}: {other:?}"),
    };
    denied(
        read.put(ctx(), put("a", "1")).await.unwrap().map(drop),
        "put",
        "write",
    );
    assert!(read.status(ctx()).await.unwrap().is_ok());

    let write = connect(&ep, &with(Some(&t.write))).await.unwrap();
    assert!(write.put(ctx(), put("a", "1")).await.unwrap().is_ok());
    let join = JoinRequest {
        node_id: "made-up".into(),
        address: "127.0.0.1:1".into(),
        shards: 2,
        cluster_id: None,
        epoch: 0,
    };
    denied(
        write.join(ctx(), join.clone()).await.unwrap().map(drop),
        "join",
        "replica",
    );
    denied(
        write.forget(ctx(), "x".into()).await.unwrap().map(drop),
        "forget",
        "admin",
    );
    let replica = connect(&ep, &with(Some(&t.replica))).await.unwrap();
    denied(
        replica.put(ctx(), put("a", "2")).await.unwrap().map(drop),
        "put",
        "write",
    );
    denied(
        replica.forget(ctx(), "x".into()).await.unwrap().map(drop),
        "forget",
        "admin",
    );
    // Only admin gets past the role check (and the node then answers on the merits).
    let admin = connect(&ep, &with(Some(&t.admin))).await.unwrap();
    assert!(matches!(
        admin.forget(ctx(), "x".into()).await.unwrap(),
        Err(KvError::UnknownNode { .. })
    ));

    // A replica with its token replicates; one with a wrong token is refused, naming the flag.
    let good = NodeProcess::replica(&dir.path().join("r1"), 2, &m, &[&auth, &peer]);
    let admin_file = write_file(dir.path(), "admin-token", &t.admin);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = kvctl(&m, &["--token-file", &admin_file, "verify"], None);
            out.status.success()
        }),
        "verify with the admin token"
    );
    let wrong = format!(
        "--master-token-file={}",
        write_file(dir.path(), "wrong-token", "kvd_not_a_token")
    );
    let bad = NodeProcess::replica(&dir.path().join("r2"), 2, &m, &[&auth, &wrong]);
    assert!(
        bad.stdout
            .wait_for("--master-token-file", Duration::from_secs(20))
            .is_some(),
        "the refused replica names the flag: {:?}",
        bad.stdout.all()
    );
    drop(good);
}

/// Acceptance 4 (the refusal; `--insecure` is unit-tested in `kvd::exposure`, so that no test
/// opens a port on every interface): a node that would listen on a non-loopback address
/// without `--auth-file` does not start and says how to fix it; one that would advertise
/// 0.0.0.0 neither.
#[test]
fn an_unprotected_node_on_the_network_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().join("d").display());
    let e = NodeProcess::start(
        dir.path(),
        &[
            "--port=0".into(),
            "--host=127.0.0.1".into(),
            "--listen=0.0.0.0".into(),
            data.clone(),
        ],
    )
    .err()
    .expect("refused");
    assert!(e.status.is_some_and(|s| !s.success()), "{e:?}");
    assert!(
        e.stderr.contains("refusing to listen on 0.0.0.0")
            && e.stderr.contains("--auth-file")
            && e.stderr.contains("--insecure"),
        "{e:?}"
    );
    let e = NodeProcess::start(
        dir.path(),
        &["--port=0".into(), "--host=0.0.0.0".into(), data],
    )
    .err()
    .expect("refused");
    assert!(e.stderr.contains("--advertise"), "{e:?}");
}

/// Acceptance 4, `--insecure`: the node starts on 0.0.0.0 and logs a WARN. It runs in a network
/// namespace of its own (`unshare -n`: only a loopback interface, down), so no port opens on
/// this machine's interfaces. Where namespaces cannot be made (not root), the test says so and
/// checks nothing else.
#[test]
fn insecure_starts_on_every_interface_with_a_warning() {
    use std::io::BufRead as _;
    let probe = Command::new("unshare").args(["-n", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("unshare -n is not allowed here: --insecure left to kvd's unit test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("unshare")
        .args(["-n", "--"])
        .arg(kvd_bin())
        .args([
            "--port=0",
            "--host=127.0.0.1",
            "--listen=0.0.0.0",
            "--insecure",
            "--metrics-port=0",
        ])
        .arg(format!("--data-dir={}", dir.path().join("d").display()))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut warned, mut started) = (false, false);
    while !(warned && started) && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            warned |= line.contains("WARN") && line.contains("--insecure");
            started |= line.contains("kvd started");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned && started, "warned {warned}, started {started}");
}
