//! A simple bounded load loop for quick measurements until `kvctl bench` exists:
//! `loadgen <endpoint> <put|get|fill> <clients> <seconds> [connections] [keyspace]`.
//! Each client sends one request at a time; clients share `connections` multiplexed
//! connections (default 4) over `keyspace` keys (default 100,000). `fill` writes every key of
//! the keyspace once. Stops after `seconds` or 10 million requests, whichever first.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kvd_bench_tools::{client, ctx};
use serde_bytes::ByteBuf;
use shared::PutRequest;

const MAX_REQUESTS: u64 = 10_000_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, op, clients, seconds, rest @ ..] = args.as_slice() else {
        eprintln!("usage: loadgen <endpoint> <put|get> <clients> <seconds> [connections]");
        std::process::exit(2);
    };
    let clients: u64 = clients.parse().unwrap();
    let seconds: u64 = seconds.parse().unwrap();
    let conns: usize = rest.first().map_or(4, |c| c.parse().unwrap());
    let keyspace: u64 = rest.get(1).map_or(100_000, |k| k.parse().unwrap());
    let fill = op == "fill";
    let is_put = op == "put" || op == "fill";
    let mut pool = Vec::new();
    for _ in 0..conns {
        pool.push(client(endpoint).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let cl = pool[usize::try_from(c).unwrap() % conns].clone();
        let (done, errors) = (Arc::clone(&done), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut i = c * 7919;
            let mut n = 0u64;
            while Instant::now() < stop_at && done.load(Ordering::Relaxed) < MAX_REQUESTS {
                if fill {
                    i = c + n * clients;
                    if i >= keyspace {
                        break;
                    }
                    n += 1;
                } else {
                    i = (i + 1) % keyspace;
                }
                let key = ByteBuf::from(format!("key:{i:06}").into_bytes());
                let ok = if is_put {
                    let req = PutRequest::new(key.into_vec(), vec![b'v'; 100]);
                    matches!(cl.put(ctx(), req).await, Ok(Ok(_)))
                } else {
                    matches!(cl.get(ctx(), key).await, Ok(Ok(_)))
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{op}: {n} ok, {} errors in {secs:.1}s = {:.0} ops/s ({clients} clients, {conns} connections)",
        errors.load(Ordering::Relaxed),
        n as f64 / secs
    );
}
