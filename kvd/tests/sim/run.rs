//! One simulated run: three real nodes (n0 the first master, n1 and n2 its replicas, automatic
//! failover with a 1 s timeout), four clients, and faults drawn from the seed.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
    rc::Rc,
    time::Duration,
};

use kvd::{Server, config::Args};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_bytes::ByteBuf;
use shared::{
    KvError, PutCondition, PutRequest,
    addr::Endpoint,
    client::{Client, Error},
};

use crate::checker::{History, Op, Outcome};

/// The nodes, by host name.
pub const NODES: [&str; 3] = ["n0", "n1", "n2"];
const PORT: u16 = 3000;
const CLIENTS: u32 = 4;
const KEYS: [&str; 3] = ["a", "b", "c"];
/// The failover timeout of every node.
const FAILOVER_TIMEOUT_MS: u64 = 1000;
/// Faults start after the cluster has formed and stop after this window.
const FAULTS_FROM: Duration = Duration::from_secs(3);
const FAULTS_FOR: Duration = Duration::from_secs(12);
/// A run that has not finished by then is a liveness failure (no master after the faults).
const SIM_LIMIT: Duration = Duration::from_secs(120);

/// How big a run is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Most operations per client (each goes on until the faults end, or this many).
    pub ops: u32,
    /// Simulated time per tick.
    pub tick: Duration,
}

/// What one run did and found.
pub struct Report {
    /// Faults, operations and outcomes, in order, with their simulated times.
    pub trace: Vec<String>,
    /// The checkers' verdicts: empty when every check passed.
    pub violations: Vec<String>,
    /// Writes acknowledged with acks >= 1.
    pub acked: usize,
    /// Operations whose outcome is unknown.
    pub unknown: usize,
    /// Faults injected.
    pub faults: usize,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// The epoch of the master at the end (1: no failover happened).
    pub epoch: u64,
}

#[derive(Clone, Debug)]
enum Fault {
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
    Hold(&'static str, &'static str),
    Release(&'static str, &'static str),
    Crash(&'static str),
    Bounce(&'static str),
}

/// The fault schedule of a seed: isolated nodes (clients still reach them), single links cut,
/// links held (every message on them delayed until released), crashes and restarts.
fn schedule(rng: &mut StdRng) -> Vec<(Duration, Fault)> {
    let mut out = Vec::new();
    let mut t = FAULTS_FROM;
    let end = FAULTS_FROM + FAULTS_FOR;
    while t < end {
        let len = Duration::from_millis(rng.random_range(300..4000));
        let node = NODES[rng.random_range(0..NODES.len())];
        let others: Vec<&'static str> = NODES.iter().copied().filter(|n| *n != node).collect();
        match rng.random_range(0..4) {
            0 => {
                for o in &others {
                    out.push((t, Fault::Partition(node, o)));
                    out.push((t + len, Fault::Repair(node, o)));
                }
            }
            1 => {
                let o = others[rng.random_range(0..others.len())];
                out.push((t, Fault::Partition(node, o)));
                out.push((t + len, Fault::Repair(node, o)));
            }
            2 => {
                let o = others[rng.random_range(0..others.len())];
                out.push((t, Fault::Hold(node, o)));
                out.push((t + len, Fault::Release(node, o)));
            }
            _ => {
                out.push((t, Fault::Crash(node)));
                out.push((t + len, Fault::Bounce(node)));
            }
        }
        // Now and then the next fault overlaps this one.
        t += if rng.random_bool(0.3) {
            len / 2
        } else {
            len + Duration::from_millis(rng.random_range(0..1500))
        };
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

fn node_args(name: &str, dir: &Path) -> Vec<String> {
    let mut a = vec![
        "kvd".to_string(),
        format!("--port={PORT}"),
        format!("--host={name}"),
        format!("--data-dir={}", dir.display()),
        "--shard=2".into(),
        "--metrics-port=0".into(),
        "--sync=none".into(),
        "--min-acks=0".into(),
        "--acks-timeout-ms=1000".into(),
        "--replica-timeout-ms=1000".into(),
        // Simulated hosts are not on loopback, and the simulation runs without tokens.
        "--insecure".into(),
        "--failover=auto".into(),
        format!("--failover-timeout-ms={FAILOVER_TIMEOUT_MS}"),
    ];
    if name != NODES[0] {
        a.push("--replica=true".into());
        a.push(format!("--master=http://{}:{PORT}", NODES[0]));
    }
    a
}

/// A node's software: open the data directory, serve until the host is crashed.
async fn node(args: Vec<String>) -> turmoil::Result {
    let cfg = <Args as clap::Parser>::try_parse_from(&args)?
        .validate()
        .map_err(|e| e.0)?;
    let server = Server::bind(cfg).await?;
    server.run(std::future::pending()).await?;
    Ok(())
}

/// The shared record of a run, on the simulation's one thread.
#[derive(Default)]
struct Log {
    history: RefCell<History>,
    trace: RefCell<Vec<String>>,
    /// Orders every event of the run (simulated time alone has ties).
    clock: Cell<u64>,
    clients_done: Cell<u32>,
    healed: Cell<bool>,
    final_state: RefCell<Option<BTreeMap<String, Option<String>>>>,
    /// The final master's epoch (1: no failover happened).
    final_epoch: Cell<u64>,
}

impl Log {
    fn tick(&self) -> u64 {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        t
    }

    fn note(&self, line: String) {
        let ms = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        self.trace.borrow_mut().push(format!("{ms:>7} ms  {line}"));
    }
}

fn endpoints() -> Vec<Endpoint> {
    NODES
        .iter()
        .map(|n| Endpoint {
            host: (*n).to_string(),
            port: PORT,
        })
        .collect()
}

fn client() -> Client {
    Client::builder(endpoints())
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// What a write's error says about whether it was applied.
fn write_outcome(e: &Error) -> Outcome {
    match e {
        _ if e.is_outcome_unknown() => Outcome::Unknown,
        // Applied on the master, acknowledged by too few replicas, or a storage failure part
        // way: it may or may not survive.
        Error::Kv(KvError::AcksTimeout { .. } | KvError::Storage { .. }) => Outcome::Unknown,
        // The node refused it before admitting it.
        Error::Kv(_) => Outcome::Failed,
        // Nothing was sent (no master found, connection refused or lost before sending).
        _ if e.is_unreachable() => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

async fn client_loop(id: u32, seed: u64, size: Size, log: Rc<Log>) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(id) + 1).wrapping_mul(0x9e37_79b9));
    let c = client();
    let master = c.reading_from_master();
    tokio::time::sleep(Duration::from_millis(1000 + u64::from(id) * 100)).await;
    for n in 0..size.ops {
        if log.healed.get() {
            break;
        }
        let key = KEYS[rng.random_range(0..KEYS.len())];
        if rng.random_bool(0.6) {
            let acks = u8::from(rng.random_bool(0.8));
            let value = format!("c{id}.{n}");
            let at = log.tick();
            let op = log.history.borrow_mut().invoke(
                id,
                key,
                Op::Write {
                    value: value.clone(),
                    acks,
                },
                at,
            );
            let result = c
                .put(PutRequest {
                    key: ByteBuf::from(key.as_bytes().to_vec()),
                    value: ByteBuf::from(value.as_bytes().to_vec()),
                    condition: PutCondition::default(),
                    acks: u32::from(acks),
                    acks_timeout_ms: 0,
                })
                .await;
            let outcome = match &result {
                Ok(_) => Outcome::WriteOk,
                Err(e) => write_outcome(e),
            };
            let at = log.tick();
            log.note(format!(
                "c{id} put {key}={value} acks={acks}: {}",
                match &result {
                    Ok(v) => format!("ok {v:?}"),
                    Err(e) => format!("{outcome:?}: {e}"),
                }
            ));
            log.history.borrow_mut().complete(op, outcome, at);
        } else {
            let at = log.tick();
            let op = log.history.borrow_mut().invoke(id, key, Op::Read, at);
            let result = master.get(key.as_bytes()).await;
            let outcome = match &result {
                Ok(found) => Outcome::ReadOk(
                    found
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(&v.value).into_owned()),
                ),
                Err(_) => Outcome::Failed,
            };
            let at = log.tick();
            log.note(format!(
                "c{id} get {key}: {}",
                match &result {
                    Ok(_) => format!("{outcome:?}"),
                    Err(e) => format!("failed: {e}"),
                }
            ));
            log.history.borrow_mut().complete(op, outcome, at);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..300))).await;
    }
    log.clients_done.set(log.clients_done.get() + 1);
    Ok(())
}

/// After the clients and the faults: every key read from the master, retried until one answers.
async fn final_reads(log: Rc<Log>) -> turmoil::Result {
    while log.clients_done.get() < CLIENTS || !log.healed.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let master = client().reading_from_master();
    let mut state = BTreeMap::new();
    for key in KEYS {
        loop {
            let at = log.tick();
            let op = log.history.borrow_mut().invoke(CLIENTS, key, Op::Read, at);
            match master.get(key.as_bytes()).await {
                Ok(found) => {
                    let value = found.map(|v| String::from_utf8_lossy(&v.value).into_owned());
                    let at = log.tick();
                    log.note(format!("final get {key}: {value:?}"));
                    log.history
                        .borrow_mut()
                        .complete(op, Outcome::ReadOk(value.clone()), at);
                    state.insert(key.to_string(), value);
                    break;
                }
                Err(e) => {
                    let at = log.tick();
                    log.history.borrow_mut().complete(op, Outcome::Failed, at);
                    log.note(format!("final get {key}: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    *log.final_state.borrow_mut() = Some(state);
    loop {
        if let Ok(node) = master.master().await
            && let Ok(status) = node.status().await
        {
            log.note(format!(
                "final master {} at epoch {}",
                status.address, status.epoch
            ));
            log.final_epoch.set(status.epoch);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Runs seed `seed` to the end and checks its history.
///
/// # Panics
/// When the simulation itself fails (a node's software returned an error).
pub fn run(seed: u64, size: Size) -> Report {
    kvd::random::seed(seed);
    // On tmpfs where there is one: a simulated crash keeps the page cache anyway, and fjall's
    // directory fsyncs on a real disk cost more than the whole simulated run.
    let root = match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm),
        _ => tempfile::tempdir(),
    }
    .expect("tempdir");
    let mut faults_rng = StdRng::seed_from_u64(seed);
    let mut faults = schedule(&mut faults_rng);
    let latency = faults_rng.random_range(1..20);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_LIMIT)
        .tick_duration(size.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(latency))
        .build();
    for name in NODES {
        let args = node_args(name, &root.path().join(name));
        sim.host(name, move || node(args.clone()));
    }
    let log = Rc::new(Log::default());
    for id in 0..CLIENTS {
        let log = Rc::clone(&log);
        sim.client(format!("c{id}"), client_loop(id, seed, size, log));
    }
    sim.client("final", final_reads(Rc::clone(&log)));
    let injected = faults.len() / 2;
    faults.reverse();
    let mut crashed = BTreeSet::new();
    let mut failure = None;
    loop {
        let now = sim.elapsed();
        while faults.last().is_some_and(|(t, _)| *t <= now) {
            let (_, fault) = faults.pop().expect("a fault");
            apply(&mut sim, &fault, &mut crashed);
            let ms = now.as_millis();
            log.trace
                .borrow_mut()
                .push(format!("{ms:>7} ms  fault {fault:?}"));
        }
        if faults.is_empty() && !log.healed.get() {
            for a in NODES {
                for b in NODES {
                    if a < b {
                        sim.repair(a, b);
                        sim.release(a, b);
                    }
                }
            }
            for n in std::mem::take(&mut crashed) {
                sim.bounce(n);
            }
            log.healed.set(true);
            log.trace
                .borrow_mut()
                .push(format!("{:>7} ms  healed", now.as_millis()));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                failure = Some(format!("the simulation failed: {e}"));
                break;
            }
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    let history = log.history.borrow();
    let mut violations: Vec<String> = failure.into_iter().collect();
    match log.final_state.borrow().as_ref() {
        Some(state) => {
            if let Err(found) = crate::checker::check_lost_writes(&history, state) {
                violations.extend(found.iter().map(|v| format!("lost write: {v}")));
            }
        }
        None => violations.push("no final state: the cluster never served the final reads".into()),
    }
    if let Err(found) = crate::checker::check_linearizable(&history) {
        violations.extend(found.iter().map(|v| format!("not linearizable: {v}")));
    }
    let acked = history
        .ops()
        .iter()
        .filter(|r| {
            matches!(r.op, Op::Write { acks, .. } if acks >= 1)
                && matches!(r.completed, Some((Outcome::WriteOk, _)))
        })
        .count();
    let unknown = history
        .ops()
        .iter()
        .filter(|r| matches!(r.completed, None | Some((Outcome::Unknown, _))))
        .count();
    let mut trace = log.trace.borrow().clone();
    let mut summary = String::new();
    let _ = write!(
        summary,
        "seed {seed}: {injected} faults, {acked} writes acknowledged with acks >= 1, {unknown} \
         unknown, final epoch {}, {} ms simulated",
        log.final_epoch.get(),
        simulated.as_millis()
    );
    trace.push(summary);
    Report {
        trace,
        violations,
        acked,
        unknown,
        faults: injected,
        simulated,
        epoch: log.final_epoch.get(),
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, fault: &Fault, crashed: &mut BTreeSet<&'static str>) {
    match *fault {
        Fault::Partition(a, b) => sim.partition(a, b),
        Fault::Repair(a, b) => sim.repair(a, b),
        Fault::Hold(a, b) => sim.hold(a, b),
        Fault::Release(a, b) => sim.release(a, b),
        Fault::Crash(n) => {
            if crashed.insert(n) {
                sim.crash(n);
            }
        }
        Fault::Bounce(n) => {
            if crashed.remove(n) {
                sim.bounce(n);
            }
        }
    }
}
