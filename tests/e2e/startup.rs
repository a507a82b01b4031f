//! Start-up refusals and the log file.

use std::time::Duration;

use harness::{NodeProcess, wait_until};

#[test]
fn another_shard_count_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    assert!(node.terminate().success());
    let data = format!("--data-dir={}", dir.path().join("data").display());
    let err = NodeProcess::start(
        dir.path(),
        &["--port=0", "--shard=3", "--host=127.0.0.1", &data].map(String::from),
    )
    .err()
    .expect("refused");
    assert_eq!(err.status.and_then(|s| s.code()), Some(1));
    assert!(
        err.stderr.contains("holds 2 shards") && err.stderr.contains("--shard=3"),
        "{}",
        err.stderr
    );
}

#[test]
fn replica_without_master_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = NodeProcess::start(
        dir.path(),
        &["--port=0", "--shard=2", "--replica=true"].map(String::from),
    )
    .err()
    .expect("refused");
    assert_eq!(err.status.and_then(|s| s.code()), Some(2));
    assert!(err.stderr.contains("--master"), "{}", err.stderr);
}

#[test]
fn log_file_holds_the_startup_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    let logs = dir.path().join("data").join("logs");
    let found = wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| {
                std::fs::read_to_string(f.path())
                    .is_ok_and(|s| s.contains("kvd started") && s.contains("shards=2"))
            })
    });
    assert!(
        found,
        "no log file in {} holds the start-up line",
        logs.display()
    );
    let line = node
        .stdout
        .wait_for("kvd started", Duration::from_secs(1))
        .unwrap();
    for field in [
        "role=master",
        "address=",
        "shards=2",
        "data_dir=",
        "sync=always",
        "version=",
    ] {
        assert!(line.contains(field), "start-up line lacks {field}: {line}");
    }
    assert!(node.terminate().success(), "SIGTERM exits 0");
}
