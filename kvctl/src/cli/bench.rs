//! `kvctl bench`: a bounded load against one node, in the spirit of `redis-benchmark` and etcd's
//! `benchmark`, reporting throughput, latency percentiles and errors by kind.
//!
//! ```text
//!  flags ──► Args::plan (bounds, defaults) ──► status of the node: role, value limit
//!     a replica takes gets only: a run with puts or --prefill is refused, naming the master
//!  load runtime (--threads workers, apart from kvctl's own runtime):
//!     --connections tarpc clients (TCP_NODELAY, multiplexed)
//!     --prefill: every key once, with mput calls          ─┐ counters ──► progress bar on
//!     measured run: --clients × --pipeline loops (load.rs) ─┘              stderr (a terminal,
//!  histograms merged ──► Report (report.rs) ──► text or JSON on stdout        text output only)
//! ```
//!
//! Keys are `key:` and 12 digits (16 bytes), drawn uniformly from `--keyspace` keys; values are
//! `--value-size` bytes of `x`; so the keys and values are those of `redis-benchmark -r N -d N`.
//! Reads of keys that were never written are cheap and would flatter the figures: `--prefill`
//! writes every key first, and the report counts the keys gets did not find (with a note in the
//! text output when there are any). Latencies are from the call to its answer, per call (a
//! `--batch` call is one sample), kept in HDR histograms with 3 significant digits.
//!
//! A run stops by itself: after `--requests` calls, after `--duration` (10 s when neither is
//! given; at most an hour either way), when every connection is lost, or on Ctrl-C (the report
//! covers what ran). Exit code: 0 once the report is printed, even with some failed calls (they
//! are in the report); 3 when every connection was lost; 2 when no call succeeded at all.
//!
//! # JSON output (`-o json`)
//!
//! One document on one line. The shape is stable: fields are only ever added. Latencies are in
//! microseconds; rates are per second to one decimal.
//!
//! ```json
//! {
//!   "endpoint": "127.0.0.1:3000",
//!   "node": {"role": "master", "sync": "always", "version": "0.1.0"},
//!   "config": {"clients": 50, "connections": 4, "pipeline": 1, "batch": 1,
//!              "ratio": {"put": 1, "get": 0}, "value_size": 100, "keyspace": 100000,
//!              "acks": 0, "requests": 1000000000, "duration_secs": 10.0, "prefill": false,
//!              "threads": 1},
//!   "prefill": null,
//!   "elapsed_secs": 10.004,
//!   "stopped_by": "duration",
//!   "ops": 523412, "keys": 523412,
//!   "ops_per_sec": 52320.3, "keys_per_sec": 52320.3,
//!   "latency_us": {"count": 523412, "min": 180, "mean": 951.2, "p50": 890, "p90": 1310,
//!                  "p99": 2150, "p99_9": 4010, "max": 12470},
//!   "put": {"ops": 523412, "ops_per_sec": 52320.3, "latency_us": {…same fields…}},
//!   "get": {"ops": 0, "ops_per_sec": 0.0, "keys_found": 0, "keys_missing": 0,
//!           "latency_us": {…same fields, all 0…}},
//!   "errors": {"total": 0, "by_kind": {}}
//! }
//! ```
//!
//! - `config.requests` and `config.duration_secs` are the bounds in effect (the maximum when a
//!   flag was not given); `stopped_by` says which ended the run: `requests`, `duration`,
//!   `connection_lost` or `interrupted`.
//! - `prefill` is `{"keys": N, "secs": S}` when `--prefill` ran, else `null`.
//! - `ops` counts successful calls (a `--batch` call is one op); `keys` is `ops × batch`.
//! - `latency_us` covers every successful call; `put` and `get` each cover theirs (empty: zeros).
//! - `errors.by_kind` counts failed calls by kind: the node's `KvError` variant in snake case
//!   (`not_master`, `value_too_large`, `acks_timeout`, `shutting_down`, …) or a transport failure:
//!   `rpc_timeout` (no answer within `--timeout`), `rpc_connection_lost`, `rpc_aborted`.

mod args;
mod load;
mod report;

use std::{
    io::{IsTerminal as _, Write},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::{KvClient, Role, addr::Endpoint};

pub use args::Args;

use crate::{
    cli::Global,
    client::Error,
    output::{Format, seconds, write_json},
};
use args::Plan;
use load::{Measured, Phase, PrefillError, Progress, StopReason};
use report::{Inputs, NodeInfo, Report};

/// How often the progress bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Runs the benchmark and prints its report on `out`.
///
/// # Errors
/// Flags that cannot run together, a node that cannot be reached, a replica asked to take puts,
/// a value over the node's limit, a failed prefill; after the report: every connection lost, or
/// no call succeeded.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let plan = Arc::new(args.plan().map_err(Error::Usage)?);
    let node = global.connect().await?;
    let status = node.status().await?;
    drop(node);
    let writes = plan.ratio.has_puts() || plan.prefill;
    if status.role == Role::Replica && writes {
        let master = status.master_link.as_ref().map_or_else(
            || "its master".to_string(),
            |l| format!("the master at {}", l.master),
        );
        return Err(Error::Usage(format!(
            "the node at {} is a replica and takes no writes: run a bench with puts or --prefill \
             against {master}, or read from the replica with --ratio 0:1 (after a prefill on the \
             master)",
            global.endpoint
        )));
    }
    let value_size = u64::try_from(plan.value_size).unwrap_or(u64::MAX);
    if writes && value_size > status.max_value_bytes {
        return Err(Error::Usage(format!(
            "--value-size {} is over the node's limit of {} bytes (kvd --max-value-bytes)",
            plan.value_size, status.max_value_bytes
        )));
    }
    let info = NodeInfo {
        role: status.role.as_str(),
        sync: status.sync.as_str(),
        version: status.version.clone(),
    };
    let show = global.output == Format::Text && std::io::stderr().is_terminal();
    let (measured, prefill) = run_load(Arc::clone(&plan), global, show).await?;
    let Measured {
        recorder,
        elapsed,
        stop,
    } = measured;
    let report = Report::new(&Inputs {
        endpoint: global.endpoint.to_string(),
        node: info,
        plan: &plan,
        prefill: prefill.map(|took| (plan.keyspace, took)),
        recorder: &recorder,
        elapsed,
        stop,
    })
    .map_err(|e| Error::Usage(format!("cannot summarise the latencies: {e}")))?;
    match global.output {
        Format::Text => report.write_text(out),
        Format::Json => write_json(out, &report),
    }
    .map_err(Error::Output)?;
    if stop == StopReason::ConnectionLost {
        return Err(Error::ConnectionLost {
            endpoint: global.endpoint.clone(),
            cause: "every connection of the bench was lost (the report covers the calls made \
                    before)"
                .to_string(),
        });
    }
    if recorder.ops() == 0 && recorder.error_total() > 0 {
        let kinds: Vec<&str> = recorder.errors.keys().map(String::as_str).collect();
        return Err(Error::Usage(format!(
            "no call succeeded ({} failed: {})",
            recorder.error_total(),
            kinds.join(", ")
        )));
    }
    Ok(())
}

/// Runs the connections, the prefill and the measured load on a runtime of their own (so
/// `--threads` can differ from kvctl's single-threaded runtime), while this task draws the
/// progress bar and watches for Ctrl-C.
async fn run_load(
    plan: Arc<Plan>,
    global: &Global,
    show: bool,
) -> Result<(Measured, Option<Duration>), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .thread_name("kvctl-bench")
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the load runtime: {e}")))?;
    let progress = Arc::new(Progress::default());
    let mut task = runtime.spawn(load(
        Arc::clone(&plan),
        global.endpoint.clone(),
        global.timeout,
        Arc::clone(&progress),
    ));
    let bar = Bar::new(show, &plan);
    let started = Instant::now();
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                progress.stop.store(true, Ordering::Relaxed);
            }
            () = tokio::time::sleep(TICK) => bar.update(&plan, &progress, started),
        }
    };
    bar.finish();
    // The load's tasks (tarpc dispatch) are done or idle; do not wait for them.
    runtime.shutdown_background();
    result.map_err(|e| Error::Usage(format!("the load failed: {e}")))?
}

/// Connects, prefills if asked, and measures.
async fn load(
    plan: Arc<Plan>,
    endpoint: Endpoint,
    timeout: Duration,
    progress: Arc<Progress>,
) -> Result<(Measured, Option<Duration>), Error> {
    let clients = connect_all(&endpoint, plan.connections, timeout).await?;
    let prefill = if plan.prefill {
        let took = load::prefill(&plan, &clients, &progress, timeout)
            .await
            .map_err(|e| match e {
                PrefillError::Kv(e) => Error::Kv(e),
                PrefillError::Rpc(e) => Error::from_rpc(&endpoint, timeout, e),
                PrefillError::Task(e) => Error::Usage(format!("the prefill failed: {e}")),
            })?;
        Some(took)
    } else {
        None
    };
    let measured = load::measure(plan, &clients, progress, timeout)
        .await
        .map_err(Error::Usage)?;
    Ok((measured, prefill))
}

/// Opens `n` connections, each within `timeout`.
async fn connect_all(
    endpoint: &Endpoint,
    n: u32,
    timeout: Duration,
) -> Result<Vec<KvClient>, Error> {
    let mut clients = Vec::new();
    for _ in 0..n {
        match tokio::time::timeout(timeout, shared::transport::connect(endpoint)).await {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(e)) => {
                return Err(Error::Unreachable {
                    endpoint: endpoint.clone(),
                    cause: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::Unreachable {
                    endpoint: endpoint.clone(),
                    cause: format!("timed out after {}", seconds(timeout)),
                });
            }
        }
    }
    Ok(clients)
}

/// The progress bar on stderr, or nothing.
struct Bar {
    bar: ProgressBar,
    /// The phase the bar is drawn for.
    phase: std::cell::Cell<Phase>,
}

impl Bar {
    fn new(show: bool, plan: &Plan) -> Self {
        let target = if show {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(plan.duration_millis()), target);
        if let Ok(style) = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("connecting");
        Self {
            bar,
            phase: std::cell::Cell::new(Phase::Connecting),
        }
    }

    fn update(&self, plan: &Plan, progress: &Progress, started: Instant) {
        let phase = progress.phase();
        let changed = phase != self.phase.replace(phase);
        match phase {
            Phase::Connecting | Phase::Done => {}
            Phase::Prefill => {
                if changed {
                    self.bar.set_prefix("prefill");
                    self.bar.set_length(plan.keyspace);
                }
                let keys = progress.prefilled.load(Ordering::Relaxed);
                self.bar.set_position(keys);
                self.bar
                    .set_message(format!("{keys} of {} keys", plan.keyspace));
            }
            Phase::Measuring => {
                if changed {
                    self.bar.set_prefix("bench");
                    self.bar.reset_elapsed();
                    self.bar.set_length(plan.bar_length());
                }
                let done = progress.done.load(Ordering::Relaxed);
                let failed = progress.failed.load(Ordering::Relaxed);
                let elapsed = self.bar.elapsed();
                let position = if plan.bar_counts_calls() {
                    progress.started.load(Ordering::Relaxed).min(plan.requests)
                } else {
                    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
                };
                self.bar.set_position(position);
                let rate = report::rate(done, elapsed);
                self.bar.set_message(format!(
                    "{done} ok, {failed} failed, {rate:.0} calls/s, {:.0}s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Plan {
    /// The run's time bound in milliseconds.
    fn duration_millis(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the bar shows calls (only --requests given) rather than time.
    fn bar_counts_calls(&self) -> bool {
        self.requests_given && !self.duration_given
    }

    fn bar_length(&self) -> u64 {
        if self.bar_counts_calls() {
            self.requests
        } else {
            self.duration_millis()
        }
    }
}

#[cfg(test)]
mod tests {
    //! Short runs against the fake node (bounded by --requests; nothing here times anything).

    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::testing::global,
        client::{
            Exit,
            testing::{Fake, serve},
        },
    };

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: Args,
    }

    async fn bench(fake: Fake, flags: &[&str], format: Format) -> (Result<(), Error>, String) {
        let endpoint = serve(fake).await;
        let args = Wrap::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
            .expect("flags")
            .args;
        let mut out = Vec::new();
        let result = run(args, &global(endpoint, format), &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"))
    }

    fn replica() -> Fake {
        Fake {
            master: Some("localhost:3000".into()),
            ..Fake::default()
        }
    }

    #[tokio::test]
    async fn puts_report_in_json() {
        let (result, out) = bench(
            Fake::default(),
            &["--requests", "300", "--clients", "3", "--pipeline", "2"],
            Format::Json,
        )
        .await;
        result.expect("bench");
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        assert_eq!(v["ops"], 300);
        assert_eq!(v["put"]["ops"], 300);
        assert_eq!(v["get"]["ops"], 0);
        assert_eq!(v["stopped_by"], "requests");
        assert_eq!(v["errors"]["total"], 0);
        assert_eq!(v["node"]["role"], "master");
        assert_eq!(v["config"]["connections"], 3);
        assert_eq!(v["latency_us"]["count"], 300);
        assert!(v["latency_us"]["p50"].as_u64().expect("p50") > 0);
    }

    #[tokio::test]
    async fn gets_count_found_and_missing_keys() {
        let fake = Fake::default().with("key:000000000000", "v");
        let (result, out) = bench(
            fake.clone(),
            &["--requests", "50", "--ratio", "0:1", "--keyspace", "1"],
            Format::Json,
        )
        .await;
        result.expect("bench");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            (
                v["get"]["keys_found"].as_u64(),
                v["get"]["keys_missing"].as_u64()
            ),
            (Some(50), Some(0))
        );
        let (result, out) = bench(
            fake,
            &["--requests", "40", "--ratio", "1:1", "--keyspace", "2"],
            Format::Text,
        )
        .await;
        result.expect("bench");
        assert!(
            out.contains("stopped by requests; 40 calls ok, 0 failed"),
            "{out}"
        );
        assert!(out.lines().any(|l| l.starts_with("get ")), "{out}");
    }

    #[tokio::test]
    async fn a_replica_takes_gets_but_refuses_a_bench_with_puts() {
        let (result, _) = bench(
            replica(),
            &["--requests", "20", "--ratio", "0:1"],
            Format::Json,
        )
        .await;
        result.expect("gets from a replica");
        for flags in [&["--requests", "20"][..], &["--ratio", "0:1", "--prefill"]] {
            let (result, out) = bench(replica(), flags, Format::Text).await;
            let e = result.expect_err("refused");
            assert_eq!(e.exit(), Exit::Usage);
            assert!(
                e.to_string().contains("is a replica and takes no writes"),
                "{e}"
            );
            assert!(
                e.to_string().contains("the master at localhost:3000"),
                "{e}"
            );
            assert!(out.is_empty(), "nothing ran: {out}");
        }
    }

    #[tokio::test]
    async fn errors_are_counted_by_kind() {
        // The fake does not offer mget: every call fails, with the node's own error.
        let (result, out) = bench(
            Fake::default(),
            &["--requests", "10", "--ratio", "0:1", "--batch", "4"],
            Format::Json,
        )
        .await;
        let e = result.expect_err("no call succeeded");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string()
                .contains("no call succeeded (10 failed: unsupported)"),
            "{e}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("the report comes first");
        assert_eq!(
            v["errors"],
            serde_json::json!({"total": 10, "by_kind": {"unsupported": 10}})
        );
        assert_eq!(v["ops"], 0);
    }

    #[tokio::test]
    async fn acks_the_node_cannot_give_are_errors() {
        let (result, out) = bench(
            Fake::default(),
            &["--requests", "5", "--acks", "1", "--clients", "1"],
            Format::Text,
        )
        .await;
        assert!(result.is_err());
        assert!(
            out.contains("acks_timeout: 5 (first: the write is committed"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_node() {
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let args = Wrap::try_parse_from(["bench", "--requests", "1"])
            .expect("flags")
            .args;
        let mut out = Vec::new();
        let e = run(args, &global(endpoint, Format::Text), &mut out)
            .await
            .expect_err("unreachable");
        assert_eq!(e.exit(), Exit::Unreachable);
    }
}
