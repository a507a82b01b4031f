//! Replication lag under full write load: `replag <master> <replica> <seconds> [clients]`.
//!
//! Runs `clients` (default 50) writers against the master as fast as it takes durable puts,
//! and meanwhile (a) samples the master's view of the replica's lag (operations behind, summed
//! over shards) every 10 ms, and (b) every 10 ms writes a probe key on the master and times how
//! long until the replica serves it (polled every 200 µs). Prints p50/p99/max of both.
//! Bounded: stops after `seconds` (at most 600).

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use kvd_bench_tools::{client, ctx};
use serde_bytes::ByteBuf;
use shared::PutRequest;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, master, replica, seconds, rest @ ..] = args.as_slice() else {
        eprintln!("usage: replag <master> <replica> <seconds> [clients]");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse::<u64>().unwrap().min(600);
    let clients: u32 = rest.first().map_or(50, |c| c.parse().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let mut pool = Vec::new();
    for _ in 0..4 {
        pool.push(client(master).await);
    }
    let mut writers = Vec::new();
    for w in 0..clients {
        let c = pool[w as usize % pool.len()].clone();
        let (stop, puts) = (Arc::clone(&stop), Arc::clone(&puts));
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let req = PutRequest::new(
                    format!("load:{w}:{}", i % 2000).into_bytes(),
                    vec![b'v'; 100],
                );
                if matches!(c.put(ctx(), req).await, Ok(Ok(_))) {
                    puts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let sampler = {
        let (stop, m) = (Arc::clone(&stop), client(master).await);
        tokio::spawn(async move {
            let mut ops = Histogram::<u64>::new(3).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(status)) = m.cluster_status(ctx()).await {
                    let behind: u64 = status
                        .replicas
                        .iter()
                        .flat_map(|r| r.shards.iter())
                        .map(|s| s.ops_behind)
                        .sum();
                    ops.record(behind).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ops
        })
    };
    let (m, r) = (client(master).await, client(replica).await);
    let mut delay = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    let mut probe = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        probe += 1;
        let value = probe.to_string().into_bytes();
        m.put(ctx(), PutRequest::new(b"probe".to_vec(), value.clone()))
            .await
            .unwrap()
            .unwrap();
        let acked = Instant::now();
        loop {
            let got = r
                .get(ctx(), ByteBuf::from(b"probe".to_vec()))
                .await
                .unwrap()
                .unwrap();
            if got.is_some_and(|v| v.value.as_slice() == value.as_slice()) {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(30),
                "the replica did not get the probe in 30 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delay
            .record(u64::try_from(acked.elapsed().as_micros()).unwrap())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let ops = sampler.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "durable puts: {:.0}/s with {clients} clients",
        puts.load(Ordering::Relaxed) as f64 / secs
    );
    println!(
        "lag in operations (sum over shards, {} samples): p50 {} p99 {} max {}",
        ops.len(),
        ops.value_at_quantile(0.5),
        ops.value_at_quantile(0.99),
        ops.max()
    );
    println!(
        "lag in time, master ack -> readable on the replica ({} probes): p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        delay.len(),
        delay.value_at_quantile(0.5) as f64 / 1000.0,
        delay.value_at_quantile(0.99) as f64 / 1000.0,
        delay.max() as f64 / 1000.0
    );
}
