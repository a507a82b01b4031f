//! `kvctl status`: the node's role, version, limits and per-shard figures, and its place in the
//! cluster: the cluster id, the epoch, and the last failover it took part in.
//!
//! The node is the first endpoint that answers (`-e a,b,c`).
//!
//! - On a master, kvctl also asks `cluster_status` and shows whether it admits writes and the
//!   whole cluster: the master
//!   (keys and last sequence per shard) and every replica that joined (link, and per shard how
//!   many operations it is behind). The node part then comes from that same answer, so the
//!   master's sequences and the replicas' lags are one snapshot.
//! - On a replica, it shows the replica's link to its master (address, state, since when, last
//!   error) and, per shard, whether a full resync is copying it and how many resyncs it did.
//!
//! The JSON shape is kvctl's own (see [`StatusJson`]), with stable `snake_case` names and roles,
//! link states and sync policies as lower-case strings, so scripts do not depend on how `shared`
//! happens to serialize its types. (Its field set is pinned by the end-to-end tests.)
//!
//! Failover shows in three lines: `failover` (the mode and timeout; on a master in auto mode
//! its lease; why it cannot elect, when it cannot), `election` (one this node is running: the
//! epoch, the candidate, the votes so far) and `last` (the last failover it took part in).

use std::io::{self, Write};

use serde::Serialize;
use shared::{
    ClusterStatus, MasterLink, NodeStatus, ReplicaStatus, Role, ShardStatus,
    cluster::{ElectionStatus, FailoverRecord, FailoverStatus, Member},
};

use crate::{
    cli::{Global, replicas::ReplicaJson},
    client::Error,
    output::{
        Format, ago, human_bytes, human_millis, human_uptime, lease_text, now_unix_ms, short_id,
        write_json, write_table,
    },
};

/// Flags of `kvctl status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// What `status` shows: a master with its cluster, or a replica (with its link in its status).
#[derive(Debug)]
enum View {
    Master(ClusterStatus),
    Replica(NodeStatus),
}

impl View {
    fn node(&self) -> &NodeStatus {
        match self {
            Self::Master(c) => &c.master,
            Self::Replica(s) => s,
        }
    }
}

/// `kvctl -o json status`.
///
/// `replicas` is present on a master only (possibly empty), `master_link` on a replica only.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    node_id: &'a str,
    role: &'static str,
    address: &'a str,
    version: &'a str,
    uptime_secs: u64,
    sync: &'static str,
    max_key_bytes: u64,
    max_value_bytes: u64,
    shards: Vec<ShardJson>,
    cluster_id: &'a str,
    epoch: u64,
    /// The master of `epoch` as this node knows it (`null`: not known yet).
    master: Option<&'a shared::cluster::Member>,
    /// Whether this node admits writes now (a master; always false on a replica).
    writable: bool,
    /// The last failover this node took part in (`null`: none).
    last_failover: Option<&'a FailoverRecord>,
    /// How this node fails over: the mode, the lease, an election in progress.
    failover: FailoverJson<'a>,
    /// The node's log apart from the shards' data, and why no write is taken (`null`: they are).
    storage: &'a shared::StorageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_link: Option<MasterLinkJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<Vec<ReplicaJson<'a>>>,
}

/// The failover part of [`StatusJson`]: `lease_ms` is `null` where there is no lease (manual
/// mode, a replica, a master of fewer than three members) and 0 once it ended; `election` is
/// `null` unless this node stands for election now; `note` says why it cannot elect, if so.
#[derive(Debug, Serialize)]
struct FailoverJson<'a> {
    mode: &'a str,
    timeout_ms: u64,
    lease_ms: Option<u64>,
    election: Option<ElectionJson<'a>>,
    note: Option<&'a str>,
}

/// An election in progress in [`FailoverJson`]: `votes` are the node ids that granted so far,
/// the candidate's own first.
#[derive(Debug, Serialize)]
struct ElectionJson<'a> {
    epoch: u64,
    candidate: &'a Member,
    votes: &'a [String],
    needed: u32,
    started_unix_ms: u64,
}

impl<'a> From<&'a FailoverStatus> for FailoverJson<'a> {
    fn from(f: &'a FailoverStatus) -> Self {
        Self {
            mode: &f.mode,
            timeout_ms: f.timeout_ms,
            lease_ms: f.lease_ms,
            election: f.election.as_ref().map(|e| ElectionJson {
                epoch: e.epoch,
                candidate: &e.candidate,
                votes: &e.votes,
                needed: e.needed,
                started_unix_ms: e.started_unix_ms,
            }),
            note: f.note.as_deref(),
        }
    }
}

/// One shard of [`StatusJson`]. The resync fields are always 0/false on a master.
#[derive(Debug, Serialize)]
struct ShardJson {
    shard: u32,
    keys: u64,
    last_seq: u64,
    disk_bytes: u64,
    resyncing: bool,
    partial_resyncs: u64,
    full_resyncs: u64,
    last_epoch: u64,
    master_seq: u64,
}

/// A replica's link to its master in [`StatusJson`]; `last_error` is `null` when there is none.
#[derive(Debug, Serialize)]
struct MasterLinkJson<'a> {
    master: &'a str,
    master_id: Option<&'a str>,
    state: &'static str,
    since_unix_ms: u64,
    last_error: Option<&'a str>,
}

impl<'a> From<&'a View> for StatusJson<'a> {
    fn from(view: &'a View) -> Self {
        let s = view.node();
        Self {
            node_id: &s.node_id,
            role: s.role.as_str(),
            address: &s.address,
            version: &s.version,
            uptime_secs: s.uptime_secs,
            sync: s.sync.as_str(),
            max_key_bytes: s.max_key_bytes,
            max_value_bytes: s.max_value_bytes,
            storage: &s.storage,
            shards: s
                .shards
                .iter()
                .map(
                    |&ShardStatus {
                         shard,
                         keys,
                         last_seq,
                         disk_bytes,
                         resyncing,
                         partial_resyncs,
                         full_resyncs,
                         last_epoch,
                         master_seq,
                     }| ShardJson {
                        shard,
                        keys,
                        last_seq,
                        disk_bytes,
                        resyncing,
                        partial_resyncs,
                        full_resyncs,
                        last_epoch,
                        master_seq,
                    },
                )
                .collect(),
            cluster_id: &s.cluster_id,
            epoch: s.epoch,
            master: s.master.as_ref(),
            writable: s.writable,
            last_failover: s.last_failover.as_ref(),
            failover: FailoverJson::from(&s.failover),
            master_link: s.master_link.as_ref().map(|l| MasterLinkJson {
                master: &l.master,
                master_id: l.master_id.as_deref(),
                state: l.state.as_str(),
                since_unix_ms: l.since_unix_ms,
                last_error: l.last_error.as_deref(),
            }),
            replicas: match view {
                View::Master(c) => Some(c.replicas.iter().map(ReplicaJson::from).collect()),
                View::Replica(_) => None,
            },
        }
    }
}

/// Asks the node for its status (and, on a master, for the cluster's) and prints it on `out`.
///
/// # Errors
/// The node's or the transport's error.
pub async fn run(_args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let view = global
        .client()?
        .read(|node| async move {
            let status = node.status().await?;
            Ok(match status.role {
                Role::Master => View::Master(node.cluster_status().await?),
                Role::Replica => View::Replica(status),
            })
        })
        .await?;
    match global.output {
        Format::Text => print_text(out, &view, now_unix_ms()),
        Format::Json => write_json(out, &StatusJson::from(&view)),
    }
    .map_err(Error::Output)
}

/// The text form; `now_unix_ms` turns the link's `since` into "12s ago".
fn print_text(out: &mut impl Write, view: &View, now_unix_ms: u64) -> io::Result<()> {
    let s = view.node();
    writeln!(out, "node id   {}", s.node_id)?;
    writeln!(out, "role      {}", s.role.as_str())?;
    writeln!(out, "address   {}", s.address)?;
    writeln!(out, "cluster   {}", s.cluster_id)?;
    writeln!(out, "epoch     {}", s.epoch)?;
    if s.role == Role::Master {
        let writable = if s.writable {
            "yes"
        } else {
            "no: writes are paused (a switchover) or it is stepping down"
        };
        writeln!(out, "writable  {writable}")?;
    }
    writeln!(out, "version   {}", s.version)?;
    writeln!(out, "uptime    {}", human_uptime(s.uptime_secs))?;
    writeln!(out, "sync      {}", s.sync.as_str())?;
    writeln!(
        out,
        "limits    keys up to {}, values up to {}",
        human_bytes(s.max_key_bytes),
        human_bytes(s.max_value_bytes)
    )?;
    writeln!(
        out,
        "log       {} on disk, retention {} (segments of {}); data store journal {}",
        human_bytes(s.storage.log_disk_bytes),
        human_bytes(s.storage.log_retention_bytes),
        human_bytes(s.storage.log_segment_bytes),
        human_bytes(s.storage.store_journal_bytes)
    )?;
    if let Some(problem) = &s.storage.problem {
        writeln!(out, "WRITES    refused: {problem}")?;
    }
    writeln!(out, "failover  {}", mode_line(&s.failover, s.role))?;
    if let Some(e) = &s.failover.election {
        writeln!(out, "election  {}", election_line(e, now_unix_ms))?;
    }
    if let Some(f) = &s.last_failover {
        writeln!(out, "last      failover {}", failover_line(f, now_unix_ms))?;
    }
    match view {
        View::Master(cluster) => {
            writeln!(out)?;
            print_shards(out, &s.shards, false)?;
            writeln!(out)?;
            print_cluster(out, cluster)
        }
        View::Replica(_) => {
            print_link(out, s.master_link.as_ref(), now_unix_ms)?;
            writeln!(out)?;
            print_shards(out, &s.shards, true)
        }
    }
}

/// The mode in one line: `auto, timeout 1000 ms, lease 3.2 s left` on a master in auto mode,
/// with why it cannot elect when it cannot; `manual (kvctl failover, kvctl promote)`.
fn mode_line(f: &FailoverStatus, role: Role) -> String {
    if f.mode != "auto" {
        return format!("{} (by command: kvctl failover, kvctl promote)", f.mode);
    }
    let mut line = format!("auto, timeout {} ms", f.timeout_ms);
    match (role, f.lease_ms) {
        (Role::Master, Some(ms)) => {
            line.push_str(", lease ");
            line.push_str(&lease_text(ms));
        }
        (Role::Master, None) => line.push_str(", no lease (needs three members or more)"),
        (Role::Replica, _) => {}
    }
    if let Some(note) = &f.note {
        line.push_str("; ");
        line.push_str(note);
    }
    line
}

/// An election in progress in one line: `epoch 5, asked by b1 (h:2): votes 1/2 (b1), started
/// 2s ago`.
fn election_line(e: &ElectionStatus, now_unix_ms: u64) -> String {
    let votes = e
        .votes
        .iter()
        .map(|v| short_id(v))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "epoch {} in progress, asked by {} ({}): votes {}/{} ({votes}), started {} ago",
        e.epoch,
        short_id(&e.candidate.node_id),
        e.candidate.address,
        e.votes.len(),
        e.needed,
        human_millis(now_unix_ms.saturating_sub(e.started_unix_ms)),
    )
}

/// The last failover in one line: `epoch 2, switchover from a (h:1) to b (h:2) 5m 3s ago, took
/// 120 ms: <reason>`.
fn failover_line(f: &FailoverRecord, now_unix_ms: u64) -> String {
    let node = |m: &Member| format!("{} ({})", short_id(&m.node_id), m.address);
    let from = f
        .from
        .as_ref()
        .map_or_else(String::new, |m| format!(" from {}", node(m)));
    let reason = if f.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", f.reason)
    };
    format!(
        "epoch {}, {}{from} to {} {}, took {} ms{reason}",
        f.epoch,
        f.kind,
        node(&f.to),
        ago(f.at_unix_ms, now_unix_ms),
        f.duration_ms
    )
}

fn print_link(out: &mut impl Write, link: Option<&MasterLink>, now_unix_ms: u64) -> io::Result<()> {
    let Some(link) = link else {
        return writeln!(out, "master    unknown (no link reported)");
    };
    writeln!(out, "master    {}", link.master)?;
    let since = ago(link.since_unix_ms, now_unix_ms);
    match &link.last_error {
        Some(e) => writeln!(
            out,
            "link      {} since {since}, last error: {e}",
            link.state.as_str()
        ),
        None => writeln!(out, "link      {} since {since}", link.state.as_str()),
    }
}

/// The shard table with a total row; `resyncs` adds the replica's resync columns.
fn print_shards(out: &mut impl Write, shards: &[ShardStatus], resyncs: bool) -> io::Result<()> {
    let mut header = vec!["shard", "keys", "last seq", "disk"];
    if resyncs {
        header.extend(["resyncing", "partial resyncs", "full resyncs"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    let mut total = ShardStatus {
        shard: 0,
        keys: 0,
        last_seq: 0,
        disk_bytes: 0,
        resyncing: false,
        partial_resyncs: 0,
        full_resyncs: 0,
        last_epoch: 0,
        master_seq: 0,
    };
    let row = |sh: &ShardStatus, name: String, resyncing: &str| {
        let mut row = vec![
            name,
            sh.keys.to_string(),
            sh.last_seq.to_string(),
            human_bytes(sh.disk_bytes),
        ];
        if resyncs {
            row.extend([
                resyncing.to_string(),
                sh.partial_resyncs.to_string(),
                sh.full_resyncs.to_string(),
            ]);
        }
        row
    };
    for sh in shards {
        rows.push(row(
            sh,
            sh.shard.to_string(),
            if sh.resyncing { "yes" } else { "no" },
        ));
        total.keys = total.keys.saturating_add(sh.keys);
        total.last_seq = total.last_seq.saturating_add(sh.last_seq);
        total.disk_bytes = total.disk_bytes.saturating_add(sh.disk_bytes);
        total.partial_resyncs = total.partial_resyncs.saturating_add(sh.partial_resyncs);
        total.full_resyncs = total.full_resyncs.saturating_add(sh.full_resyncs);
    }
    rows.push(row(&total, "total".to_string(), ""));
    write_table(out, &rows, &[false, true, true, true, false, true, true])
}

/// The cluster table: the master first, then each replica, one row per node.
fn print_cluster(out: &mut impl Write, cluster: &ClusterStatus) -> io::Result<()> {
    let m = &cluster.master;
    let master_shards = m
        .shards
        .iter()
        .map(|sh| format!("{}: {} keys, seq {}", sh.shard, sh.keys, sh.last_seq))
        .collect::<Vec<_>>()
        .join("; ");
    let mut rows = vec![
        ["role", "address", "node id", "state", "shards"]
            .map(String::from)
            .to_vec(),
        vec![
            "master".to_string(),
            m.address.clone(),
            short_id(&m.node_id).to_string(),
            "up".to_string(),
            master_shards,
        ],
    ];
    for r in &cluster.replicas {
        rows.push(vec![
            "replica".to_string(),
            r.address.clone(),
            short_id(&r.node_id).to_string(),
            r.link.as_str().to_string(),
            replica_summary(r),
        ]);
    }
    writeln!(out, "cluster")?;
    write_table(out, &rows, &[])?;
    if cluster.replicas.is_empty() {
        writeln!(out, "no replicas have joined")?;
    }
    Ok(())
}

/// `in sync`, or the shards that are behind: `1: 5 behind; others in sync`.
fn replica_summary(r: &ReplicaStatus) -> String {
    if r.shards.is_empty() {
        return "no position yet".to_string();
    }
    let behind: Vec<String> = r
        .shards
        .iter()
        .filter(|l| l.ops_behind > 0)
        .map(|l| format!("{}: {} behind", l.shard, l.ops_behind))
        .collect();
    match (behind.is_empty(), behind.len() == r.shards.len()) {
        (true, _) => "in sync".to_string(),
        (false, true) => behind.join("; "),
        (false, false) => format!("{}; others in sync", behind.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use shared::LinkState;

    use super::*;
    use crate::{
        cli::{replicas::testing::replica, testing::global},
        client::testing::{Fake, serve},
    };

    async fn status(fake: Fake, format: Format) -> String {
        let g = global(serve(fake).await, format);
        let mut out = Vec::new();
        run(Args {}, &g, &mut out).await.expect("status");
        String::from_utf8(out).expect("utf-8")
    }

    fn replica_fake() -> Fake {
        Fake {
            master: Some("10.0.0.1:3000".into()),
            ..Fake::default()
        }
    }

    #[tokio::test]
    async fn text_has_the_node_a_shard_table_and_the_cluster() {
        assert_eq!(
            status(Fake::default(), Format::Text).await,
            "\
node id   n1
role      master
address   localhost:3000
cluster   c0ffee42-cluster
epoch     1
writable  yes
version   0.1.0
uptime    1h 2m 5s
sync      always
limits    keys up to 4 KiB, values up to 1 MiB
log       64 MiB on disk, retention 256 MiB (segments of 32 MiB); data store journal 40 MiB
failover  manual (by command: kvctl failover, kvctl promote)

shard  keys  last seq     disk
0        10        12    2 KiB
1      1500      1502    3 MiB
total  1510      1514  3.0 MiB

cluster
role    address         node id  state  shards
master  localhost:3000  n1       up     0: 10 keys, seq 12; 1: 1500 keys, seq 1502
no replicas have joined
"
        );
    }

    #[tokio::test]
    async fn a_master_lists_its_replicas() {
        let fake = Fake {
            replicas: vec![
                replica("3f2a9c1b-7d4e-4c1a", "10.0.0.2:3000", LinkState::Up, 0),
                replica("77aa0b12ffee", "10.0.0.3:3000", LinkState::Down, 5),
            ]
            .into(),
            ..Fake::default()
        };
        let text = status(fake.clone(), Format::Text).await;
        let cluster = text.split("\ncluster\n").nth(1).expect("cluster table");
        assert_eq!(
            cluster,
            "\
role     address         node id   state  shards
master   localhost:3000  n1        up     0: 10 keys, seq 12; 1: 1500 keys, seq 1502
replica  10.0.0.2:3000   3f2a9c1b  up     in sync
replica  10.0.0.3:3000   77aa0b12  down   1: 5 behind; others in sync
"
        );
        let json: serde_json::Value =
            serde_json::from_str(&status(fake, Format::Json).await).expect("json");
        let replicas = json["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len(), 2);
        assert_eq!(replicas[1]["node_id"], "77aa0b12ffee");
        assert_eq!(replicas[1]["link"], "down");
        assert_eq!(replicas[1]["shards"][1]["ops_behind"], 5);
        assert!(json.get("master_link").is_none());
    }

    #[tokio::test]
    async fn json_has_stable_names() {
        let mut json: serde_json::Value =
            serde_json::from_str(&status(Fake::default(), Format::Json).await).expect("json");
        // The fake names itself as master at the address it was bound to.
        let master = json
            .as_object_mut()
            .and_then(|o| o.remove("master"))
            .expect("master");
        assert_eq!(master["node_id"], "n1");
        assert!(
            master["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))
        );
        assert_eq!(
            json,
            serde_json::json!({
                "node_id": "n1",
                "role": "master",
                "address": "localhost:3000",
                "version": "0.1.0",
                "uptime_secs": 3725,
                "sync": "always",
                "max_key_bytes": 4096,
                "max_value_bytes": 1_048_576,
                "storage": {"log_disk_bytes": 67_108_864, "log_retention_bytes": 268_435_456,
                            "log_segment_bytes": 33_554_432, "store_journal_bytes": 41_943_040,
                            "problem": null},
                "shards": [
                    {"shard": 0, "keys": 10, "last_seq": 12, "disk_bytes": 2048,
                     "resyncing": false, "partial_resyncs": 0, "full_resyncs": 0,
                     "last_epoch": 1, "master_seq": 12},
                    {"shard": 1, "keys": 1500, "last_seq": 1502, "disk_bytes": 3_145_728,
                     "resyncing": false, "partial_resyncs": 0, "full_resyncs": 0,
                     "last_epoch": 1, "master_seq": 1502},
                ],
                "cluster_id": "c0ffee42-cluster",
                "epoch": 1,
                "writable": true,
                "last_failover": null,
                "failover": {"mode": "manual", "timeout_ms": 5000, "lease_ms": null,
                             "election": null, "note": null},
                "replicas": [],
            })
        );
    }

    #[tokio::test]
    async fn a_replica_shows_its_link_and_resyncs() {
        let text = status(replica_fake(), Format::Text).await;
        assert!(text.contains("\nrole      replica\n"), "{text}");
        assert!(text.contains("\nmaster    10.0.0.1:3000\n"), "{text}");
        // The fake's link came up 12 s before it answered.
        assert!(text.contains("\nlink      up since 1"), "{text}");
        assert!(!text.contains("\ncluster\n"), "no cluster table: {text}");

        let json: serde_json::Value =
            serde_json::from_str(&status(replica_fake(), Format::Json).await).expect("json");
        assert_eq!(json["role"], "replica");
        let link = &json["master_link"];
        assert_eq!(link["master"], "10.0.0.1:3000");
        assert_eq!(link["state"], "up");
        assert!(link["since_unix_ms"].as_u64().is_some_and(|t| t > 0));
        assert!(link["last_error"].is_null());
        assert_eq!(json["shards"][1]["resyncing"], true);
        assert_eq!(json["shards"][1]["full_resyncs"], 1);
        assert_eq!(json["shards"][0]["partial_resyncs"], 1);
        assert!(json.get("replicas").is_none());
    }

    #[test]
    fn replica_text_at_a_fixed_time() {
        let mut s = shared::NodeStatus {
            storage: shared::StorageStatus {
                log_disk_bytes: 1 << 20,
                log_retention_bytes: 8 << 20,
                log_segment_bytes: 1 << 20,
                store_journal_bytes: 3 << 20,
                problem: Some("3.0 MiB free on the disk of /data".into()),
            },
            node_id: "r1".into(),
            role: Role::Replica,
            address: "10.0.0.2:3000".into(),
            version: "0.1.0".into(),
            uptime_secs: 59,
            reads: 0,
            sync: shared::SyncPolicy::None,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: vec![ShardStatus {
                shard: 0,
                keys: 3,
                last_seq: 9,
                disk_bytes: 100,
                resyncing: true,
                partial_resyncs: 2,
                full_resyncs: 1,
                last_epoch: 2,
                master_seq: 12,
            }],
            master_link: Some(MasterLink {
                master: "10.0.0.1:3000".into(),
                state: LinkState::Down,
                since_unix_ms: 1_000_000,
                last_error: Some("connection refused".into()),
                master_id: Some("m1".into()),
            }),
            cluster_id: "c1".into(),
            epoch: 3,
            master: Some(Member {
                node_id: "m1".into(),
                address: "10.0.0.1:3000".into(),
            }),
            writable: false,
            failover: shared::cluster::FailoverStatus::manual(),
            last_failover: Some(FailoverRecord {
                epoch: 3,
                kind: "switchover".into(),
                from: Some(Member {
                    node_id: "3f2a9c1b-7d4e".into(),
                    address: "10.0.0.2:3000".into(),
                }),
                to: Member {
                    node_id: "m1".into(),
                    address: "10.0.0.1:3000".into(),
                },
                at_unix_ms: 1_000_000,
                duration_ms: 120,
                reason: "kvctl failover".into(),
            }),
        };
        let render = |s: &NodeStatus| {
            let mut out = Vec::new();
            print_text(&mut out, &View::Replica(s.clone()), 1_072_500).expect("print");
            String::from_utf8(out).expect("utf-8")
        };
        assert_eq!(
            render(&s),
            "\
node id   r1
role      replica
address   10.0.0.2:3000
cluster   c1
epoch     3
version   0.1.0
uptime    59s
sync      none
limits    keys up to 4 KiB, values up to 1 MiB
log       1 MiB on disk, retention 8 MiB (segments of 1 MiB); data store journal 3 MiB
WRITES    refused: 3.0 MiB free on the disk of /data
failover  manual (by command: kvctl failover, kvctl promote)
last      failover epoch 3, switchover from 3f2a9c1b (10.0.0.2:3000) to m1 (10.0.0.1:3000) 1m 12s ago, took 120 ms: kvctl failover
master    10.0.0.1:3000
link      down since 1m 12s ago, last error: connection refused

shard  keys  last seq   disk  resyncing  partial resyncs  full resyncs
0         3         9  100 B  yes                      2             1
total     3         9  100 B                           2             1
"
        );
        s.master_link = None;
        s.last_failover = None;
        let text = render(&s);
        assert!(text.contains("\nmaster    unknown (no link reported)\n"));
        assert!(!text.contains("\nlast "), "{text}");
    }

    /// A master of the fake in auto mode, with `failover` as its failover status.
    fn auto_master(failover: FailoverStatus) -> View {
        let me = Member {
            node_id: "n1".into(),
            address: "127.0.0.1:3000".into(),
        };
        let master = NodeStatus {
            storage: shared::StorageStatus::default(),
            node_id: me.node_id.clone(),
            role: Role::Master,
            address: me.address.clone(),
            version: "0.1.0".into(),
            uptime_secs: 5,
            reads: 0,
            sync: shared::SyncPolicy::Always,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: Vec::new(),
            master_link: None,
            cluster_id: "c1".into(),
            epoch: 4,
            master: Some(me),
            writable: true,
            failover,
            last_failover: None,
        };
        View::Master(ClusterStatus {
            master,
            replicas: Vec::new(),
        })
    }

    fn auto(lease_ms: Option<u64>) -> FailoverStatus {
        FailoverStatus {
            mode: "auto".into(),
            timeout_ms: 1000,
            lease_ms,
            ..FailoverStatus::manual()
        }
    }

    fn text_of(view: &View, now_unix_ms: u64) -> String {
        let mut out = Vec::new();
        print_text(&mut out, view, now_unix_ms).expect("print");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn an_auto_master_shows_its_lease_and_an_election_its_votes() {
        let line = |view: &View, label: &str| {
            text_of(view, 1_000_000)
                .lines()
                .find(|l| l.starts_with(label))
                .map(str::to_string)
        };
        assert_eq!(
            line(&auto_master(auto(Some(3_250))), "failover").as_deref(),
            Some("failover  auto, timeout 1000 ms, lease 3.2 s left")
        );
        assert_eq!(
            line(&auto_master(auto(Some(0))), "failover").as_deref(),
            Some("failover  auto, timeout 1000 ms, lease ended: not serving")
        );
        let two = FailoverStatus {
            note: Some("two members: a majority is both".into()),
            ..auto(None)
        };
        assert_eq!(
            line(&auto_master(two), "failover").as_deref(),
            Some(
                "failover  auto, timeout 1000 ms, no lease (needs three members or more); two \
                 members: a majority is both"
            )
        );
        // A candidate: the epoch it stands for, who it is, the votes so far out of those needed.
        let standing = FailoverStatus {
            election: Some(ElectionStatus {
                epoch: 5,
                candidate: Member {
                    node_id: "b1b2b3b4-node".into(),
                    address: "10.0.0.2:3000".into(),
                },
                votes: vec!["b1b2b3b4-node".into(), "c9c8c7c6-node".into()],
                needed: 2,
                started_unix_ms: 999_600,
            }),
            ..auto(Some(0))
        };
        let view = auto_master(standing);
        assert_eq!(
            line(&view, "election").as_deref(),
            Some(
                "election  epoch 5 in progress, asked by b1b2b3b4 (10.0.0.2:3000): votes 2/2 \
                 (b1b2b3b4, c9c8c7c6), started 400 ms ago"
            )
        );
        assert_eq!(line(&auto_master(auto(Some(1))), "election"), None);

        let json: serde_json::Value = serde_json::to_value(StatusJson::from(&view)).expect("json");
        assert_eq!(
            json["failover"],
            serde_json::json!({
                "mode": "auto",
                "timeout_ms": 1000,
                "lease_ms": 0,
                "election": {
                    "epoch": 5,
                    "candidate": {"node_id": "b1b2b3b4-node", "address": "10.0.0.2:3000"},
                    "votes": ["b1b2b3b4-node", "c9c8c7c6-node"],
                    "needed": 2,
                    "started_unix_ms": 999_600,
                },
                "note": null,
            })
        );
    }

    #[test]
    fn a_replica_in_auto_mode_has_no_lease_and_an_election_record_its_reason() {
        let mut view = auto_master(auto(None));
        if let View::Master(c) = &mut view {
            c.master.last_failover = Some(FailoverRecord {
                epoch: 4,
                kind: "election".into(),
                from: None,
                to: c.master.master.clone().expect("the fake names its master"),
                at_unix_ms: 940_000,
                duration_ms: 1_430,
                reason: "the master was silent for 1000 ms or more".into(),
            });
            c.master.role = Role::Replica;
        }
        let text = text_of(&view, 1_000_000);
        assert!(
            text.contains("\nfailover  auto, timeout 1000 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("\nlast      failover epoch 4, election to n1 (127.0.0.1:")
                && text.contains(
                    " 1m 0s ago, took 1430 ms: the master was silent for 1000 ms or more\n"
                ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_paused_master_says_it_takes_no_writes() {
        let text = status(
            Fake {
                writable: false,
                epoch: 4,
                ..Fake::default()
            },
            Format::Text,
        )
        .await;
        assert!(text.contains("\nepoch     4\n"), "{text}");
        assert!(
            text.contains(
                "\nwritable  no: writes are paused (a switchover) or it is stepping down\n"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_first_endpoint_that_answers_is_shown() {
        let gone = crate::client::testing::closed_endpoint();
        let replica = serve(replica_fake()).await;
        let g = crate::cli::testing::globals(vec![gone, replica], Format::Text);
        let mut out = Vec::new();
        run(Args {}, &g, &mut out).await.expect("status");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("\nrole      replica\n"), "{text}");
    }
}
