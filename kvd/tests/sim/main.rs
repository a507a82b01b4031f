//! Deterministic simulation of real kvd nodes under faults (issue #10, acceptance 2).
//!
//! Three real nodes (`kvd::Server`: the storage, the replication, the cluster runtime, the
//! election, the lease, tarpc and its codecs) and five clients (the client library) run in
//! [turmoil](https://docs.rs/turmoil): one thread, simulated time, simulated TCP. Each node's
//! disk work runs inline (`kvd::blocking::run_inline`), its random delays come from the seed
//! (`kvd::random::seed`), so a seed is one run: the same faults, the same interleaving, the same
//! history. Faults drawn from the seed: a node cut off from the other two (clients still reach
//! it), one link cut, one link held (its messages delayed until released), a node crashed and
//! restarted on its data directory; message latency 1 ms up to a seed-drawn maximum.
//!
//! After the faults, everything heals and a last client reads every key from the master. Two
//! checkers then judge the history (`checker.rs`): a per-key linearizability check of master
//! reads and writes (stateright's `LinearizabilityTester`), and a lost-write check (a write
//! acknowledged with acks >= 1 must be in the final state, or overwritten by a later write).
//!
//! - CI: `cargo test -p kvd --test sim` runs a fixed set of seeds (`KVD_SIM_SEEDS`, default
//!   100, from `KVD_SIM_FIRST`, default 0), and first runs one seed twice to check that it
//!   replays the same trace.
//! - Longer: `KVD_SIM_SEEDS=2000 KVD_SIM_FIRST=1000 cargo test -p kvd --release --test sim -- --nocapture`.
//! - A failing seed prints its trace and the command that replays it:
//!   `KVD_SIM_SEED=<seed> cargo test -p kvd --test sim -- --nocapture` (add `KVD_SIM_LOG=debug`
//!   for the nodes' own logs).
//!
//! What is not simulated: a lost fsync (a crashed host keeps what it wrote: the page cache
//! survives, as with kill -9; power loss is not modelled), clock drift (every host has the same
//! clock: drift is covered by the model check, `model_auto.rs`), and a frozen process (a held
//! link delays its messages, but the node's own timers keep running).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod checker;
mod net;
mod run;

use std::{sync::Arc, time::Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Log lines stamped with the simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let ms = turmoil::sim_elapsed().unwrap_or_default().as_millis();
        write!(w, "{ms:>7} ms")
    }
}

/// Installs the simulated network, inline disk work and (optionally) the nodes' logs, once.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if shared::net::install(Arc::new(net::Turmoil)).is_err() {
            panic!("a network was already in use before the simulation installed its own");
        }
        kvd::blocking::run_inline();
        if let Ok(filter) = std::env::var("KVD_SIM_LOG") {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .with_timer(SimTime)
                .with_ansi(false)
                .init();
        }
    });
}

/// Seeds tried on the mutant before it counts as missed.
const MUTANT_SEEDS: u64 = 30;

const SIZE: run::Size = run::Size {
    ops: 1000,
    tick: std::time::Duration::from_millis(5),
};

fn fail(seed: u64, report: &run::Report) -> ! {
    panic!(
        "seed {seed} failed:\n  {}\n\ntrace:\n{}\n\nreplay: KVD_SIM_SEED={seed} cargo test -p kvd --test sim -- --nocapture",
        report.violations.join("\n  "),
        report.trace.join("\n")
    );
}

/// The seeds: one replayed twice, then the fixed set (or the one `KVD_SIM_SEED` names). One test,
/// because the simulation's switches (network, inline disk work, seeded delays) are the
/// process's.
#[test]
fn seeds_keep_every_acknowledged_write_and_stay_linearizable() {
    setup();
    if let Ok(seed) = std::env::var("KVD_SIM_SEED") {
        let seed: u64 = seed.parse().expect("KVD_SIM_SEED is a number");
        let report = run::run(seed, SIZE);
        eprintln!("{}", report.trace.join("\n"));
        if !report.violations.is_empty() {
            fail(seed, &report);
        }
        return;
    }
    // A seed is a run: the same seed gives the same trace, faults and outcomes alike (tokio's
    // scheduler seeded by turmoil needs `--cfg tokio_unstable`, set in .cargo/config.toml).
    if cfg!(tokio_unstable) {
        let replayed = env("KVD_SIM_REPLAY", 1);
        let first = run::run(replayed, SIZE);
        let again = run::run(replayed, SIZE);
        if first.trace != again.trace {
            let at = first
                .trace
                .iter()
                .zip(&again.trace)
                .position(|(a, b)| a != b)
                .unwrap_or(first.trace.len().min(again.trace.len()));
            panic!(
                "seed {replayed} did not replay: the traces differ from line {at}:\n  first: {:?}\n  again: {:?}",
                first.trace.get(at),
                again.trace.get(at)
            );
        }
        eprintln!(
            "seed {replayed} replayed the same trace ({} lines)",
            first.trace.len()
        );
    } else {
        eprintln!(
            "built without --cfg tokio_unstable (RUSTFLAGS overrides .cargo/config.toml): tokio's \
             scheduler is not seeded, so the replay check is skipped"
        );
    }
    let from = env("KVD_SIM_FIRST", 0);
    let count = env("KVD_SIM_SEEDS", 100);
    let started = Instant::now();
    let (mut acked, mut unknown, mut faults, mut failed_over) = (0, 0, 0, 0);
    let mut simulated = std::time::Duration::ZERO;
    for seed in from..from + count {
        let report = run::run(seed, SIZE);
        if !report.violations.is_empty() {
            fail(seed, &report);
        }
        acked += report.acked;
        unknown += report.unknown;
        faults += report.faults;
        simulated += report.simulated;
        failed_over += u64::from(report.epoch > 1);
    }
    // Not vacuous: the faults depose masters, and the runs go on through the elections.
    assert!(
        count < 20 || failed_over * 4 >= count,
        "only {failed_over} of {count} seeds ended on a new master: the faults do not exercise \
         automatic failover"
    );
    // The mutant: masters that ignore their lease. An isolated master then answers reads after
    // a new one took writes, which the checker must see.
    kvd::cluster::lease::ignore_for_mutant_test(true);
    let caught = (0..MUTANT_SEEDS).find_map(|seed| {
        let report = run::run(seed, SIZE);
        report.violations.first().map(|v| (seed, v.clone()))
    });
    kvd::cluster::lease::ignore_for_mutant_test(false);
    let Some((seed, violation)) = caught else {
        panic!("masters ignoring their lease went unnoticed over {MUTANT_SEEDS} seeds");
    };
    let first = violation.lines().take(3).collect::<Vec<_>>().join("\n    ");
    eprintln!("the mutant (masters ignoring their lease) is caught at seed {seed}:\n    {first}");
    eprintln!(
        "{count} seeds from {from}: {faults} faults, {failed_over} seeds ended on a new master, \
         {acked} writes acknowledged with acks >= 1 (none lost), {unknown} outcomes unknown, \
         linearizable; {:.0} s simulated in {:?}",
        simulated.as_secs_f64(),
        started.elapsed()
    );
}
