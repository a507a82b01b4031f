//! Acknowledged writes survive a clean restart and a kill -9 in the middle of a write storm.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use harness::{NodeProcess, client, ctx, kvctl, wait_until};
use serde_bytes::ByteBuf;
use shared::PutRequest;

#[test]
fn restart_after_sigterm_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ep = node.endpoint();
    rt.block_on(async {
        let c = client(&ep).await;
        for i in 0..500u32 {
            let req = PutRequest::new(format!("k{i}").into_bytes(), format!("v{i}").into_bytes());
            c.put(ctx(), req).await.unwrap().unwrap();
        }
        c.delete(ctx(), ByteBuf::from(b"k7".to_vec()))
            .await
            .unwrap()
            .unwrap();
    });
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(node.stdout.all().iter().any(|l| l.contains("kvd stopped")));
    node.restart();
    let ep = node.endpoint();
    rt.block_on(async {
        let c = client(&ep).await;
        for i in 0..500u32 {
            let got = c
                .get(ctx(), ByteBuf::from(format!("k{i}").into_bytes()))
                .await
                .unwrap()
                .unwrap();
            if i == 7 {
                assert!(got.is_none(), "the deleted key came back");
            } else {
                assert_eq!(got.unwrap().value.into_vec(), format!("v{i}").into_bytes());
            }
        }
        let status = c.status(ctx()).await.unwrap().unwrap();
        assert_eq!(status.shards.iter().map(|s| s.keys).sum::<u64>(), 499);
        assert_eq!(status.shards.iter().map(|s| s.last_seq).sum::<u64>(), 501);
    });
    // A new write continues the sequence instead of reusing versions.
    assert!(kvctl(&ep, &["put", "k1", "again"], None).status.success());
}

#[test]
fn kill9_during_concurrent_writes_loses_no_acknowledged_write() {
    stop_during_concurrent_writes(NodeProcess::kill9);
}

/// SIGTERM in the middle of a write storm: the node finishes what it accepted, exits 0, and
/// every acknowledged write is there after the restart.
#[test]
fn sigterm_during_concurrent_writes_drains_and_loses_nothing() {
    stop_during_concurrent_writes(|node| {
        let status = node.terminate();
        assert!(status.success(), "SIGTERM under load exits 0, got {status}");
        assert!(node.stdout.all().iter().any(|l| l.contains("kvd stopped")));
    });
}

fn stop_during_concurrent_writes(stop_node: impl FnOnce(&mut NodeProcess)) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let writers = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..20u32 {
            let c = client(&ep).await;
            let (acked, count, stop) = (Arc::clone(&acked), Arc::clone(&count), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                // Bounded in count and time; an error (the kill) ends the writer.
                for n in 0..100_000u32 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    // Overwrite a small key set too, so the last acknowledged value must win.
                    let key = format!("w{w}-{}", n % 500);
                    let value = format!("{w}:{n}");
                    let req = PutRequest::new(key.clone().into_bytes(), value.clone().into_bytes());
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
    // Let a good number of writes land, then kill without warning.
    assert!(
        wait_until(Duration::from_secs(60), || count.load(Ordering::Relaxed)
            >= 3000),
        "writes too slow"
    );
    stop_node(&mut node);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in writers {
            t.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    let total = count.load(Ordering::Relaxed);
    assert!(total >= 3000);

    node.restart();
    let ep = node.endpoint();
    rt.block_on(async {
        let c = client(&ep).await;
        let mut missing = Vec::new();
        for (key, value) in &acked {
            let got = c
                .get(ctx(), ByteBuf::from(key.clone().into_bytes()))
                .await
                .unwrap()
                .unwrap();
            // A write that was sent but not acknowledged may also have landed, so a later value
            // of the same writer is fine; an older one or none is a lost write.
            let ok = got.as_ref().is_some_and(|g| {
                let got = String::from_utf8_lossy(&g.value).into_owned();
                let seq = |v: &str| {
                    v.split(':')
                        .nth(1)
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                seq(&got) >= seq(value)
            });
            if !ok {
                missing.push((key.clone(), value.clone(), got));
            }
        }
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged keys lost, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(3)]
        );
    });
    eprintln!(
        "stopped after {total} acknowledged writes; all {} keys intact",
        acked.len()
    );
}

#[test]
fn mput_then_mget_in_order_and_a_bad_entry_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 3, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&node.endpoint()).await;
        let entries: Vec<shared::KeyValue> = (0..100u32)
            .map(|i| shared::KeyValue {
                key: ByteBuf::from(format!("m{i}").into_bytes()),
                value: ByteBuf::from(format!("v{i}").into_bytes()),
            })
            .collect();
        let req = shared::MputRequest {
            entries,
            ..Default::default()
        };
        let versions = c.mput(ctx(), req).await.unwrap().unwrap();
        assert_eq!(versions.len(), 100);
        let mut keys: Vec<ByteBuf> = (0..100u32)
            .rev()
            .map(|i| ByteBuf::from(format!("m{i}").into_bytes()))
            .collect();
        keys.push(ByteBuf::from(b"absent".to_vec()));
        let got = c.mget(ctx(), keys).await.unwrap().unwrap();
        assert_eq!(got.len(), 101);
        for (slot, i) in got.iter().zip((0..100u32).rev()) {
            let v = slot.as_ref().expect("present");
            assert_eq!(v.value.as_slice(), format!("v{i}").as_bytes());
            assert_eq!(v.version, versions[i as usize]);
        }
        assert!(got[100].is_none());

        // One oversized value refuses the whole call before anything is written.
        let entries = vec![
            shared::KeyValue {
                key: ByteBuf::from(b"fine".to_vec()),
                value: ByteBuf::from(b"x".to_vec()),
            },
            shared::KeyValue {
                key: ByteBuf::from(b"big".to_vec()),
                value: ByteBuf::from(vec![0u8; 2 << 20]),
            },
        ];
        let err = c
            .mput(
                ctx(),
                shared::MputRequest {
                    entries,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, shared::KvError::ValueTooLarge { .. }),
            "{err:?}"
        );
        assert_eq!(
            c.get(ctx(), ByteBuf::from(b"fine".to_vec()))
                .await
                .unwrap()
                .unwrap(),
            None
        );
    });
}
