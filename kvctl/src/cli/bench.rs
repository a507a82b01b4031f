//! `kvctl bench`: a bounded load against the cluster, in the spirit of `redis-benchmark` and
//! etcd's `benchmark`, reporting throughput, latency percentiles and errors by kind.
//!
//! ```text
//!  flags ──► Args::plan (bounds, defaults) ──► the node to load, and its role and value limit:
//!     with puts or --prefill: the master, which must be one of the endpoints (-e); pointed at
//!       replicas only, the run is refused, naming the master
//!     gets only: the first endpoint that answers (a replica, say)
//!  load runtime (--threads workers, apart from kvctl's own runtime):
//!     one client library Client: --connections connections to the node (TCP_NODELAY,
//!       multiplexed), opened before the run
//!     --prefill: every key once, with mput calls          ─┐ counters ──► progress bar on
//!     measured run: --clients × --pipeline loops (load.rs) ─┘              stderr (a terminal,
//!  histograms merged ──► Report (report.rs) ──► text or JSON on stdout        text output only)
//! ```
//!
//! The calls go through the client library, so a run with puts follows the master across a
//! switchover (`kvctl failover` during a bench): the writes that waited show in the latency
//! percentiles, which is how the pause is measured under load. Gets of a run with puts are
//! read from the master too, so one run measures one node.
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
//! are in the report); 3 when no node could be reached any more; 2 when no call succeeded at
//! all.
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
//!   (`not_master`, `value_too_large`, `acks_timeout`, `shutting_down`, …) or the client's:
//!   `outcome_unknown` (a write sent that got no answer), `rpc_timeout` (a read with no answer
//!   within `--timeout`), `rpc_connection_lost`, `rpc_aborted`, `no_master` (none took writes
//!   within `--timeout`, as during a failover), `unreachable`.

mod args;
mod load;
mod report;

use std::{
    io::{IsTerminal as _, Write},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::{
    NodeStatus, Role,
    addr::Endpoint,
    client::{self, Client, ReadFrom},
};

pub use args::Args;

use crate::{
    cli::Global,
    client::Error,
    output::{Format, write_json},
};
use args::Plan;
use load::{Measured, Phase, Progress, StopReason};
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
    let writes = plan.ratio.has_puts() || plan.prefill;
    let (target, status) = target(&global.client()?, writes).await?;
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
    let (measured, prefill) = run_load(Arc::clone(&plan), global, &target, show).await?;
    let Measured {
        recorder,
        elapsed,
        stop,
    } = measured;
    let report = Report::new(&Inputs {
        endpoint: target.to_string(),
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
        return Err(Error::Client(client::Error::ConnectionLost {
            endpoint: target,
            cause: "no node could be reached any more, so every client of the bench stopped \
                    (the report covers the calls made before)"
                .to_string(),
        }));
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

/// The node a run loads, and its status: for a run that writes, the master, which must be one
/// of the endpoints; else the first endpoint that answers.
///
/// # Errors
/// No endpoint answers; a run that writes names no master, or only replicas of one.
async fn target(client: &Client, writes: bool) -> Result<(Endpoint, NodeStatus), Error> {
    if !writes {
        return Ok(client
            .read(|n| async move { n.status().await.map(|s| (n.endpoint().clone(), s)) })
            .await?);
    }
    let found = client.discover().await;
    let (first, first_status) = found.first_answer()?;
    if let Some((at, status)) = found.writable_master()
        && client.endpoints().contains(at)
    {
        return Ok((at.clone(), status.clone()));
    }
    if first_status.role == Role::Replica {
        let master = found
            .master()
            .map(|(at, _)| at.to_string())
            .or_else(|| first_status.master.as_ref().map(|m| m.address.clone()))
            .or_else(|| first_status.master_link.as_ref().map(|l| l.master.clone()))
            .map_or_else(
                || "its master".to_string(),
                |m| format!("the master at {m}"),
            );
        return Err(Error::Usage(format!(
            "the node at {first} is a replica and takes no writes: run a bench with puts or \
             --prefill against {master} (give it with -e), or read from the replica with \
             --ratio 0:1 (after a prefill on the master)"
        )));
    }
    Err(Error::Usage(format!(
        "no endpoint takes writes now, so a bench with puts or --prefill cannot start: {}",
        found.describe().join("; ")
    )))
}

/// Runs the connections, the prefill and the measured load on a runtime of their own (so
/// `--threads` can differ from kvctl's single-threaded runtime), while this task draws the
/// progress bar and watches for Ctrl-C.
async fn run_load(
    plan: Arc<Plan>,
    global: &Global,
    target: &Endpoint,
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
        global.endpoints.clone(),
        target.clone(),
        global.timeout,
        shared::transport::Credentials {
            token: global.token()?,
            tls: global.tls()?,
        },
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

/// Connects, prefills if asked, and measures. Runs on the load runtime, so the connections'
/// tasks run on its threads.
async fn load(
    plan: Arc<Plan>,
    endpoints: Vec<Endpoint>,
    target: Endpoint,
    timeout: Duration,
    creds: shared::transport::Credentials,
    progress: Arc<Progress>,
) -> Result<(Measured, Option<Duration>), Error> {
    let writes = plan.ratio.has_puts() || plan.prefill;
    let client = Client::builder(endpoints)
        .timeout(timeout)
        .token(creds.token)
        .tls(creds.tls)
        .connections_per_node(usize::try_from(plan.connections).unwrap_or(1))
        // One run measures one node: with puts, the master takes the gets too.
        .read_from(if writes {
            ReadFrom::Master
        } else {
            ReadFrom::Endpoints
        })
        .build()?;
    // Every connection opened before the clock starts.
    for _ in 0..plan.connections {
        if writes {
            client.master().await?;
        } else {
            client.node(&target).await?;
        }
    }
    let prefill = if plan.prefill {
        Some(load::prefill(&plan, &client, &progress).await?)
    } else {
        None
    };
    let measured = load::measure(plan, &client, progress)
        .await
        .map_err(Error::Usage)?;
    Ok((measured, prefill))
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

    /// A replica whose master is nowhere: benches with writes have no master to go to.
    fn replica() -> Fake {
        Fake {
            master: Some(closed().to_string()),
            ..Fake::default()
        }
    }

    fn closed() -> Endpoint {
        crate::client::testing::closed_endpoint()
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
                e.to_string().contains("against the master at 127.0.0.1:"),
                "{e}"
            );
            assert!(out.is_empty(), "nothing ran: {out}");
        }
    }

    #[tokio::test]
    async fn a_run_with_puts_loads_the_master_among_the_endpoints() {
        let master = Fake::default();
        let live = master.live.clone();
        let master = serve(master).await;
        let replica = serve(Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        })
        .await;
        let args = Wrap::try_parse_from(["bench", "--requests", "20", "--clients", "2"])
            .expect("flags")
            .args;
        let mut out = Vec::new();
        let g = crate::cli::testing::globals(vec![replica, master.clone()], Format::Json);
        run(args, &g, &mut out).await.expect("bench");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["endpoint"], master.to_string());
        assert_eq!(v["node"]["role"], "master");
        assert_eq!(v["put"]["ops"], 20);
        assert_eq!(
            live.writes.load(std::sync::atomic::Ordering::SeqCst),
            20,
            "every put went to the master"
        );
    }

    #[tokio::test]
    async fn a_run_with_puts_follows_the_master_across_a_switchover() {
        let a = Fake::default();
        let a_live = a.live.clone();
        let a_at = serve(a).await;
        let b = Fake {
            master: Some(a_at.to_string()),
            node_id: "b".into(),
            ..Fake::default()
        };
        let b_live = b.live.clone();
        let b_at = serve(b).await;
        // The switchover happens once a has taken 10 writes; the run does 40.
        a_live.hand_over_after(10, &b_at, 2, b_live.clone());
        let args = Wrap::try_parse_from(["bench", "--requests", "40", "--clients", "1"])
            .expect("flags")
            .args;
        let mut out = Vec::new();
        let g = crate::cli::testing::globals(vec![a_at, b_at], Format::Json);
        run(args, &g, &mut out).await.expect("bench");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["put"]["ops"], 40, "{v}");
        assert_eq!(v["errors"]["total"], 0, "{v}");
        let (on_a, on_b) = (
            a_live.writes.load(std::sync::atomic::Ordering::SeqCst),
            b_live.writes.load(std::sync::atomic::Ordering::SeqCst),
        );
        assert_eq!((on_a, on_b), (10, 30));
        assert_eq!(
            a_live.refused.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "refused once, then the client went to b"
        );
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
