//! The write pause of a switchover under load, as clients see it.
//!
//! `switchover ENDPOINTS WRITERS SECS ROUNDS`: WRITERS tasks put unique keys through the client
//! library (which follows the master across a failover) for SECS seconds per round; in the
//! middle of each round the master hands over to the next node in ENDPOINTS (a,b,c: a→b, b→c,
//! c→a, ...). It prints, per round, the pause the master reported and the client-side latency
//! of the writes that started within one second of the switch, then checks that every
//! acknowledged write reads back from the last master. Exits 1 if one is missing.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use shared::{
    PutRequest,
    client::{Client, parse_endpoints},
    cluster::FailoverRequest,
};

#[derive(Default)]
struct Seen {
    acked: HashMap<Vec<u8>, Vec<u8>>,
    unknown: u64,
    errors: HashMap<String, u64>,
    /// (start, latency) of every acknowledged write.
    writes: Vec<(Instant, Duration)>,
}

fn usage() -> ! {
    eprintln!("usage: switchover ENDPOINTS(a,b,c) WRITERS SECS ROUNDS");
    std::process::exit(2);
}

fn quantiles(lat: &[Duration]) -> String {
    let mut h = Histogram::<u64>::new(3).unwrap_or_else(|_| usage());
    for d in lat {
        let _ = h.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "n={} p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        usage();
    }
    let endpoints = parse_endpoints(&args[1]).unwrap_or_else(|_| usage());
    let writers: usize = args[2].parse().unwrap_or_else(|_| usage());
    let secs: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let rounds: usize = args[4].parse().unwrap_or_else(|_| usage());
    let client = Client::builder(endpoints.clone())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        });
    let mut ids = Vec::new();
    for ep in &endpoints {
        let node = client.node(ep).await.unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(3);
        });
        ids.push(node.status().await.map(|s| s.node_id).unwrap_or_default());
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                // Bounded: a round is seconds long; no writer does more than this.
                for i in 0..10_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("sw{w}-{i}").into_bytes();
                    let t = Instant::now();
                    let r = client.put(PutRequest::new(key.clone(), key.clone())).await;
                    let mut s = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match r {
                        Ok(_) => {
                            s.writes.push((t, t.elapsed()));
                            s.acked.insert(key.clone(), key);
                        }
                        Err(e) if e.is_outcome_unknown() => s.unknown += 1,
                        Err(e) => *s.errors.entry(e.to_string()).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    let half = Duration::from_secs_f64(secs / 2.0);
    let mut last = 0;
    for round in 0..rounds {
        tokio::time::sleep(half).await;
        let to = (round + 1) % endpoints.len();
        let at = Instant::now();
        let reply = client
            .failover(FailoverRequest {
                to: Some(ids[to].clone()),
                plan_only: false,
                timeout_ms: 10_000,
            })
            .await;
        match reply {
            Ok(r) => println!(
                "round {}: {} -> {} epoch {}: the master paused writes for {} ms",
                round + 1,
                endpoints[last],
                endpoints[to],
                r.epoch,
                r.pause_ms
            ),
            Err(e) => {
                eprintln!("round {}: failover failed: {e}", round + 1);
                std::process::exit(1);
            }
        }
        last = to;
        tokio::time::sleep(half).await;
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let around: Vec<Duration> = s
            .writes
            .iter()
            .filter(|(t, _)| *t + Duration::from_secs(1) >= at && *t <= at + Duration::from_secs(1))
            .map(|(_, d)| *d)
            .collect();
        println!(
            "  writes started within 1 s of the switch: {}",
            quantiles(&around)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Taken out whole: the read-back below awaits, and no guard may be held across it.
    let s = std::mem::take(
        &mut *seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let all: Vec<Duration> = s.writes.iter().map(|(_, d)| *d).collect();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "all writes: {} acknowledged ({:.0}/s), {} unknown, {} errors; {}",
        s.acked.len(),
        s.acked.len() as f64 / elapsed,
        s.unknown,
        s.errors.values().sum::<u64>(),
        quantiles(&all)
    );
    for (e, n) in &s.errors {
        println!("  error x{n}: {e}");
    }
    let master = client.reading_from_master();
    let keys: Vec<&Vec<u8>> = s.acked.keys().collect();
    let mut missing = 0usize;
    for chunk in keys.chunks(1000) {
        let ask = chunk
            .iter()
            .map(|k| serde_bytes::ByteBuf::from((*k).clone()))
            .collect();
        match master.mget(ask).await {
            Ok(got) => {
                for (k, v) in chunk.iter().zip(got) {
                    if v.map(|v| v.value.into_vec()).as_ref() != s.acked.get(*k) {
                        missing += 1;
                    }
                }
            }
            Err(e) => {
                eprintln!("cannot read back: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("acknowledged writes missing on the last master: {missing}");
    if missing > 0 {
        std::process::exit(1);
    }
}
