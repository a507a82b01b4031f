//! Prometheus metrics and the HTTP endpoint that serves them with `/health` and `/ready`.
//!
//! ```text
//!  rpc handlers ──Requests::observe──> kvd_requests_total{op,result}, kvd_request_duration_seconds{op}
//!  shard writers ─ShardMetrics──────> kvd_commit_batch_size{shard}, kvd_commit_duration_seconds{shard}
//!  GET /metrics ──refresh(node)─────> gauges read from the node: shards, replicas, links
//!                 └─ TextEncoder over the registry (plus process metrics on Linux)
//! ```
//!
//! Hot-path metrics are resolved to handles once (no label lookups per request); gauges that
//! describe state are computed when Prometheus scrapes.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use shared::{LinkState, Role};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{node::Node, storage::ShardMetrics};

/// The operations of the service, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Op {
    /// `get`
    Get,
    /// `put`
    Put,
    /// `delete`
    Delete,
    /// `scan`
    Scan,
    /// `status`
    Status,
    /// `mget`
    Mget,
    /// `mput`
    Mput,
    /// `cluster_status`
    ClusterStatus,
    /// `digest`
    Digest,
    /// `join`
    Join,
    /// `pull`
    Pull,
    /// `snapshot`
    Snapshot,
    /// `hello`
    Hello,
    /// `take_over`
    TakeOver,
    /// `failover`
    Failover,
    /// `promote`
    Promote,
    /// `forget`
    Forget,
    /// `vote`
    Vote,
}

const OPS: [(Op, &str); 18] = [
    (Op::Get, "get"),
    (Op::Put, "put"),
    (Op::Delete, "delete"),
    (Op::Scan, "scan"),
    (Op::Status, "status"),
    (Op::Mget, "mget"),
    (Op::Mput, "mput"),
    (Op::ClusterStatus, "cluster_status"),
    (Op::Digest, "digest"),
    (Op::Join, "join"),
    (Op::Pull, "pull"),
    (Op::Snapshot, "snapshot"),
    (Op::Hello, "hello"),
    (Op::TakeOver, "take_over"),
    (Op::Failover, "failover"),
    (Op::Promote, "promote"),
    (Op::Forget, "forget"),
    (Op::Vote, "vote"),
];

impl Op {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        OPS[self as usize].1
    }
}

/// Request counters and latency histograms, resolved per operation.
pub struct Requests {
    ok: Vec<IntCounter>,
    error: Vec<IntCounter>,
    latency: Vec<Histogram>,
}

impl Requests {
    /// Counts one request and its duration.
    pub fn observe(&self, op: Op, ok: bool, elapsed: Duration) {
        let i = op as usize;
        if ok { &self.ok[i] } else { &self.error[i] }.inc();
        self.latency[i].observe(elapsed.as_secs_f64());
    }
}

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    /// Requests by operation and result.
    pub requests: Requests,
    /// Open client connections.
    pub connections: IntGauge,
    batch_size: HistogramVec,
    commit_seconds: HistogramVec,
    shard_keys: IntGaugeVec,
    shard_disk: IntGaugeVec,
    shard_seq: IntGaugeVec,
    replica_ops: IntGaugeVec,
    replica_bytes: IntGaugeVec,
    replica_secs: GaugeVec,
    replica_up: IntGaugeVec,
    replica_partial: IntCounterVec,
    replica_full: IntCounterVec,
    replicas: IntGauge,
    link_up: IntGaugeVec,
    epoch: IntGauge,
    role: IntGaugeVec,
    writable: IntGauge,
    log_disk: IntGauge,
    log_retention: IntGauge,
    store_journal: IntGauge,
    storage_ok: IntGauge,
    failovers: IntGauge,
    failover_auto: IntGauge,
    failover_timeout: Gauge,
    lease: GaugeVec,
    election: IntGauge,
    election_votes: IntGauge,
    election_needed: IntGauge,
    last_failover_epoch: IntGaugeVec,
    last_failover_seconds: GaugeVec,
    last_failover_at: GaugeVec,
    /// Entries this node gave up when it rejoined a master whose history lacks them (kept in
    /// its rollback files).
    pub rollback_entries: IntCounter,
    /// Connections and calls refused by authentication, by reason.
    pub auth_refused: prometheus::IntCounterVec,
    link_lag: IntGaugeVec,
    resyncing: IntGaugeVec,
    uptime: Gauge,
}

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn latency_buckets() -> Vec<f64> {
    // 25 µs .. ~3.3 s, doubling.
    prometheus::exponential_buckets(0.000_025, 2.0, 18)
        .unwrap_or_else(|_| prometheus::DEFAULT_BUCKETS.to_vec())
}

impl Metrics {
    /// Registers every metric (names follow Prometheus conventions, prefix `kvd_`).
    ///
    /// # Errors
    /// Only on a programming error (a duplicate or invalid metric name).
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("kvd".into()), None)?;
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let counter = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests handled, by operation and result (ok or error)",
            ),
            &["op", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time to handle a request, by operation",
            )
            .buckets(latency_buckets()),
            &["op"],
        )?;
        reg(Box::new(counter.clone()))?;
        reg(Box::new(latency.clone()))?;
        let requests = Requests {
            ok: OPS
                .iter()
                .map(|(_, n)| counter.with_label_values(&[*n, "ok"]))
                .collect(),
            error: OPS
                .iter()
                .map(|(_, n)| counter.with_label_values(&[*n, "error"]))
                .collect(),
            latency: OPS
                .iter()
                .map(|(_, n)| latency.with_label_values(&[*n]))
                .collect(),
        };

        let connections = IntGauge::new("open_connections", "Client connections open now")?;
        reg(Box::new(connections.clone()))?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new("commit_batch_size", "Writes per group commit, by shard")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 14)?),
            &["shard"],
        )?;
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "commit_duration_seconds",
                "Time of one group commit including its fsync, by shard",
            )
            .buckets(latency_buckets()),
            &["shard"],
        )?;
        reg(Box::new(batch_size.clone()))?;
        reg(Box::new(commit_seconds.clone()))?;

        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let shard_keys = gauge("shard_keys", "Keys stored in the shard", &["shard"])?;
        let shard_disk = gauge(
            "shard_disk_bytes",
            "Bytes the shard takes on disk",
            &["shard"],
        )?;
        let shard_seq = gauge(
            "shard_last_sequence",
            "Sequence number of the shard's last write",
            &["shard"],
        )?;
        let rl = &["replica", "address", "shard"];
        let replica_ops = gauge(
            "replica_lag_operations",
            "Operations the replica is behind on the shard",
            rl,
        )?;
        let replica_bytes = gauge(
            "replica_lag_bytes",
            "Log bytes the replica is behind on the shard",
            rl,
        )?;
        let replica_secs = GaugeVec::new(
            Opts::new(
                "replica_lag_seconds",
                "Seconds since the replica was last caught up on the shard (0 when it is)",
            ),
            rl,
        )?;
        reg(Box::new(replica_secs.clone()))?;
        let replica_up = gauge(
            "replica_link_up",
            "1 when the master heard from the replica within the timeout",
            &["replica", "address"],
        )?;
        let replica_partial = IntCounterVec::new(
            Opts::new(
                "replica_partial_resyncs_total",
                "Times the replica resumed from its own position",
            ),
            rl,
        )?;
        let replica_full = IntCounterVec::new(
            Opts::new(
                "replica_full_resyncs_total",
                "Times the replica copied the whole shard",
            ),
            rl,
        )?;
        reg(Box::new(replica_partial.clone()))?;
        reg(Box::new(replica_full.clone()))?;
        let replicas = IntGauge::new("replicas", "Replicas that joined this master")?;
        reg(Box::new(replicas.clone()))?;
        let link_up = gauge(
            "master_link_up",
            "On a replica: 1 when its link to the master works (no sample on a master)",
            &["master"],
        )?;
        let epoch = IntGauge::new("epoch", "The cluster-wide epoch this node knows")?;
        reg(Box::new(epoch.clone()))?;
        let role = gauge(
            "role",
            "1 for the role the node has now (master or replica), 0 for the other",
            &["role"],
        )?;
        let writable = IntGauge::new(
            "writable",
            "1 while this node is a master that admits writes",
        )?;
        reg(Box::new(writable.clone()))?;
        let log_disk = IntGauge::new(
            "log_disk_bytes",
            "Bytes the node's log (journal and replication log of every shard) takes on disk",
        )?;
        reg(Box::new(log_disk.clone()))?;
        let log_retention = IntGauge::new(
            "log_retention_bytes",
            "The log's retention (--log-retention)",
        )?;
        reg(Box::new(log_retention.clone()))?;
        let store_journal = IntGauge::new(
            "store_journal_bytes",
            "Bytes the data store's own journal (fjall's) takes on disk",
        )?;
        reg(Box::new(store_journal.clone()))?;
        let storage_ok = IntGauge::new(
            "storage_ok",
            "0 while the node's storage takes no writes (disk nearly full, or the log failed)",
        )?;
        reg(Box::new(storage_ok.clone()))?;
        let failovers = IntGauge::new(
            "failovers",
            "Failovers (switchovers and promotions) this node took part in since it started",
        )?;
        reg(Box::new(failovers.clone()))?;
        let failover_auto = IntGauge::new(
            "failover_auto",
            "1 when this node fails over on its own (--failover=auto), 0 by command only",
        )?;
        reg(Box::new(failover_auto.clone()))?;
        let failover_timeout = Gauge::new(
            "failover_timeout_seconds",
            "--failover-timeout-ms: a replica silent this long from its master starts an election",
        )?;
        reg(Box::new(failover_timeout.clone()))?;
        // No labels: a vector only so that the sample can be absent where there is no lease.
        let lease = GaugeVec::new(
            Opts::new(
                "lease_seconds",
                "On a master in auto mode: how long its lease still runs (0: ended, it does not \
                 serve); no sample without a lease (manual mode, a replica, fewer than three members)",
            ),
            &[],
        )?;
        reg(Box::new(lease.clone()))?;
        let election = IntGauge::new(
            "election_in_progress",
            "1 while this node stands for election (automatic failover)",
        )?;
        reg(Box::new(election.clone()))?;
        let election_votes = IntGauge::new(
            "election_votes",
            "Votes this node has so far in the election it runs, its own included (0: none runs)",
        )?;
        reg(Box::new(election_votes.clone()))?;
        let election_needed = IntGauge::new(
            "election_votes_needed",
            "Votes the election this node runs needs (a majority; 0: none runs)",
        )?;
        reg(Box::new(election_needed.clone()))?;
        let fl = &["kind"];
        let last_failover_epoch = gauge(
            "last_failover_epoch",
            "The epoch the last failover this node took part in started, by kind (switchover, \
             promote, election); no sample before the first",
            fl,
        )?;
        let last_failover_seconds = GaugeVec::new(
            Opts::new(
                "last_failover_duration_seconds",
                "How long the last failover this node took part in took, by kind",
            ),
            fl,
        )?;
        reg(Box::new(last_failover_seconds.clone()))?;
        let last_failover_at = GaugeVec::new(
            Opts::new(
                "last_failover_timestamp_seconds",
                "When the last failover this node took part in happened (Unix time), by kind",
            ),
            fl,
        )?;
        reg(Box::new(last_failover_at.clone()))?;
        let rollback_entries = IntCounter::new(
            "rollback_entries_total",
            "Entries given up when rejoining a master whose history lacks them (see the rollback files)",
        )?;
        reg(Box::new(rollback_entries.clone()))?;
        let auth_refused = prometheus::IntCounterVec::new(
            Opts::new(
                "auth_refused_total",
                "Connections refused at the handshake (reason missing, wrong, throttled, \
                 handshake) and calls refused for their role (reason role)",
            ),
            &["reason"],
        )?;
        reg(Box::new(auth_refused.clone()))?;
        let link_lag = gauge(
            "master_lag_operations",
            "On a replica: operations behind the master's sequence at the last pull",
            &["shard"],
        )?;
        let resyncing = gauge(
            "shard_resyncing",
            "On a replica: 1 while a full resync copies the shard",
            &["shard"],
        )?;
        let uptime = Gauge::new("uptime_seconds", "Seconds since the process started")?;
        reg(Box::new(uptime.clone()))?;

        let build = IntGaugeVec::new(
            Opts::new("build_info", "Build information; the value is 1"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        reg(Box::new(build))?;
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            requests,
            connections,
            batch_size,
            commit_seconds,
            shard_keys,
            shard_disk,
            shard_seq,
            replica_ops,
            replica_bytes,
            replica_secs,
            replica_up,
            replica_partial,
            replica_full,
            replicas,
            link_up,
            epoch,
            role,
            writable,
            log_disk,
            log_retention,
            store_journal,
            storage_ok,
            failovers,
            failover_auto,
            failover_timeout,
            lease,
            election,
            election_votes,
            election_needed,
            last_failover_epoch,
            last_failover_seconds,
            last_failover_at,
            rollback_entries,
            auth_refused,
            link_lag,
            resyncing,
            uptime,
        })
    }

    /// The handles a shard's writer records its commits with.
    #[must_use]
    pub fn shard(&self, shard: u32) -> ShardMetrics {
        let label = shard.to_string();
        ShardMetrics {
            batch_size: self.batch_size.with_label_values(&[&label]),
            commit_seconds: self.commit_seconds.with_label_values(&[&label]),
        }
    }

    /// Reads the node's state into the gauges and renders the exposition.
    ///
    /// # Errors
    /// When encoding fails.
    pub fn render(&self, node: &Node) -> Result<String, MetricsError> {
        let status = node.status();
        self.uptime.set(status.uptime_secs as f64);
        self.epoch.set(gauge_i64(status.epoch));
        for r in [Role::Master, Role::Replica] {
            self.role
                .with_label_values(&[r.as_str()])
                .set(i64::from(r == status.role));
        }
        self.writable.set(i64::from(status.writable));
        self.log_disk.set(gauge_i64(status.storage.log_disk_bytes));
        self.log_retention
            .set(gauge_i64(status.storage.log_retention_bytes));
        self.store_journal
            .set(gauge_i64(status.storage.store_journal_bytes));
        self.storage_ok
            .set(i64::from(status.storage.problem.is_none()));
        self.failovers.set(gauge_i64(
            node.cluster()
                .failovers
                .load(std::sync::atomic::Ordering::Relaxed),
        ));
        self.render_failover(&status);
        for s in &status.shards {
            let label = s.shard.to_string();
            self.shard_keys
                .with_label_values(&[&label])
                .set(gauge_i64(s.keys));
            self.shard_disk
                .with_label_values(&[&label])
                .set(gauge_i64(s.disk_bytes));
            self.shard_seq
                .with_label_values(&[&label])
                .set(gauge_i64(s.last_seq));
            if status.role == Role::Replica {
                self.resyncing
                    .with_label_values(&[&label])
                    .set(i64::from(s.resyncing));
            }
        }
        self.link_up.reset();
        if let Some(link) = &status.master_link {
            self.link_up
                .with_label_values(&[&link.master])
                .set(i64::from(link.state == LinkState::Up));
            for (shard, lag) in node.replica_lag().into_iter().enumerate() {
                self.link_lag
                    .with_label_values(&[&shard.to_string()])
                    .set(gauge_i64(lag));
            }
        }
        if let Ok(cluster) = node.cluster_status() {
            for vec in [&self.replica_ops, &self.replica_bytes, &self.replica_up] {
                vec.reset();
            }
            self.replica_secs.reset();
            self.replica_partial.reset();
            self.replica_full.reset();
            self.replicas
                .set(i64::try_from(cluster.replicas.len()).unwrap_or(i64::MAX));
            for r in &cluster.replicas {
                self.replica_up
                    .with_label_values(&[&r.node_id, &r.address])
                    .set(i64::from(r.link == LinkState::Up));
                for s in &r.shards {
                    let labels = [r.node_id.as_str(), r.address.as_str(), &s.shard.to_string()];
                    self.replica_ops
                        .with_label_values(&labels)
                        .set(gauge_i64(s.ops_behind));
                    self.replica_bytes
                        .with_label_values(&labels)
                        .set(gauge_i64(s.bytes_behind));
                    self.replica_secs
                        .with_label_values(&labels)
                        .set(s.secs_since_caught_up);
                    self.replica_partial
                        .with_label_values(&labels)
                        .inc_by(s.partial_resyncs);
                    self.replica_full
                        .with_label_values(&labels)
                        .inc_by(s.full_resyncs);
                }
            }
        }
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// The failover gauges: the mode, the lease, an election in progress, the last failover.
    fn render_failover(&self, status: &shared::NodeStatus) {
        let f = &status.failover;
        self.failover_auto.set(i64::from(f.mode == "auto"));
        self.failover_timeout.set(millis_to_secs(f.timeout_ms));
        self.lease.reset();
        if let Some(ms) = f.lease_ms {
            self.lease
                .with_label_values::<&str>(&[])
                .set(millis_to_secs(ms));
        }
        let (running, votes, needed) = f.election.as_ref().map_or((0, 0, 0), |e| {
            (
                1,
                i64::try_from(e.votes.len()).unwrap_or(i64::MAX),
                i64::from(e.needed),
            )
        });
        self.election.set(running);
        self.election_votes.set(votes);
        self.election_needed.set(needed);
        self.last_failover_epoch.reset();
        self.last_failover_seconds.reset();
        self.last_failover_at.reset();
        if let Some(last) = &status.last_failover {
            let kind = [last.kind.as_str()];
            self.last_failover_epoch
                .with_label_values(&kind)
                .set(gauge_i64(last.epoch));
            self.last_failover_seconds
                .with_label_values(&kind)
                .set(millis_to_secs(last.duration_ms));
            self.last_failover_at
                .with_label_values(&kind)
                .set(millis_to_secs(last.at_unix_ms));
        }
    }
}

/// Milliseconds as seconds for a gauge (exact below 2^53 ms, some 285 000 years).
fn millis_to_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Binds the metrics listener.
///
/// # Errors
/// When the port cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics`, `/health` and `/ready` until `stop` fires.
pub async fn serve(listener: TcpListener, node: Node, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(node);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the metrics endpoint failed");
    }
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    match node.metrics().render(&node) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            e.to_string(),
        ),
    }
}

/// 200 while the node can take writes; 503 with the reason when its storage cannot (the disk
/// is nearly full, or the log failed).
async fn health(State(node): State<Node>) -> impl IntoResponse {
    match node.storage_problem() {
        None => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))),
        Some((status, reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": status, "reason": reason })),
        ),
    }
}

async fn ready(State(node): State<Node>) -> impl IntoResponse {
    match node.readiness() {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ready": true, "role": node.role().as_str() })),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({ "ready": false, "role": node.role().as_str(), "reason": reason }),
            ),
        ),
    }
}
