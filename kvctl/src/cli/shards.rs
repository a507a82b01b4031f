//! `kvctl shards`: one row per shard of the node (the first endpoint that answers) — keys, size
//! on disk, last sequence — and, on a master, each replica's position and lag on that shard.
//!
//! JSON (`-o json`): an array, one object per shard:
//! `{"shard", "keys", "last_seq", "disk_bytes", "resyncing", "replicas": [{"node_id",
//! "address", "link", "acked_seq", "ops_behind", "bytes_behind", "secs_since_caught_up"}]}`.
//! `replicas` is empty on a replica node and on a master without replicas; `resyncing` is
//! always false on a master.

use std::io::{self, Write};

use serde::Serialize;
use shared::{ClusterStatus, NodeStatus, Role};

use crate::{
    cli::Global,
    client::Error,
    output::{Format, human_bytes, tenths, write_json, write_table},
};

/// Flags of `kvctl shards`.
#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Debug, Serialize)]
struct ShardJson<'a> {
    shard: u32,
    keys: u64,
    last_seq: u64,
    disk_bytes: u64,
    resyncing: bool,
    replicas: Vec<ShardReplicaJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ShardReplicaJson<'a> {
    node_id: &'a str,
    address: &'a str,
    link: &'static str,
    acked_seq: u64,
    ops_behind: u64,
    bytes_behind: u64,
    secs_since_caught_up: f64,
}

/// Runs `kvctl shards`.
///
/// # Errors
/// When the node cannot be reached or answers with an error.
pub async fn run(_args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let (status, cluster) = global
        .client()?
        .read(|node| async move {
            let status = node.status().await?;
            let cluster = match status.role {
                Role::Master => Some(node.cluster_status().await?),
                Role::Replica => None,
            };
            Ok((status, cluster))
        })
        .await?;
    print(out, global.output, &status, cluster.as_ref()).map_err(Error::Output)
}

fn rows<'a>(status: &'a NodeStatus, cluster: Option<&'a ClusterStatus>) -> Vec<ShardJson<'a>> {
    // On a master, take the node part from the cluster answer so sequences and lags agree.
    let node = cluster.map_or(status, |c| &c.master);
    node.shards
        .iter()
        .map(|s| ShardJson {
            shard: s.shard,
            keys: s.keys,
            last_seq: s.last_seq,
            disk_bytes: s.disk_bytes,
            resyncing: s.resyncing,
            replicas: cluster
                .map(|c| {
                    c.replicas
                        .iter()
                        .filter_map(|r| {
                            let lag = r.shards.iter().find(|l| l.shard == s.shard)?;
                            Some(ShardReplicaJson {
                                node_id: &r.node_id,
                                address: &r.address,
                                link: r.link.as_str(),
                                acked_seq: lag.acked_seq,
                                ops_behind: lag.ops_behind,
                                bytes_behind: lag.bytes_behind,
                                secs_since_caught_up: lag.secs_since_caught_up,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn print(
    out: &mut impl Write,
    format: Format,
    status: &NodeStatus,
    cluster: Option<&ClusterStatus>,
) -> io::Result<()> {
    let shards = rows(status, cluster);
    if format == Format::Json {
        return write_json(out, &shards);
    }
    let mut table = vec![
        [
            "shard",
            "keys",
            "disk",
            "last seq",
            "replica",
            "link",
            "acked seq",
            "behind",
            "lag",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &shards {
        let head = [
            s.shard.to_string(),
            s.keys.to_string(),
            human_bytes(s.disk_bytes),
            s.last_seq.to_string(),
        ];
        if s.replicas.is_empty() {
            let note = if s.resyncing {
                "full resync in progress"
            } else {
                ""
            };
            table.push([&head[..], &[note.to_string()]].concat());
        }
        for (i, r) in s.replicas.iter().enumerate() {
            let lead = if i == 0 {
                head.to_vec()
            } else {
                vec![String::new(); 4]
            };
            let behind = format!("{} ops, {}", r.ops_behind, human_bytes(r.bytes_behind));
            let lag = format!("{}s", tenths(r.secs_since_caught_up));
            table.push(
                [
                    lead,
                    vec![
                        r.address.to_string(),
                        r.link.to_string(),
                        r.acked_seq.to_string(),
                        behind,
                        lag,
                    ],
                ]
                .concat(),
            );
        }
    }
    write_table(
        out,
        &table,
        &[true, true, true, true, false, false, true, false, true],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{LinkState, ReplicaShardLag, ReplicaStatus, ShardStatus, SyncPolicy};

    fn node() -> NodeStatus {
        NodeStatus {
            storage: shared::StorageStatus::default(),
            node_id: "m".into(),
            role: Role::Master,
            address: "127.0.0.1:3000".into(),
            version: "0.1.0".into(),
            uptime_secs: 5,
            sync: SyncPolicy::Always,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: (0..2)
                .map(|shard| ShardStatus {
                    shard,
                    keys: 10 + u64::from(shard),
                    last_seq: 20,
                    disk_bytes: 2048,
                    resyncing: false,
                    partial_resyncs: 0,
                    full_resyncs: 0,
                    last_epoch: 1,
                    master_seq: 20,
                })
                .collect(),
            master_link: None,
            reads: 0,
            cluster_id: "c".into(),
            epoch: 1,
            master: None,
            writable: true,
            last_failover: None,
            failover: shared::cluster::FailoverStatus::manual(),
        }
    }

    fn cluster() -> ClusterStatus {
        ClusterStatus {
            master: node(),
            replicas: vec![ReplicaStatus {
                node_id: "r1".into(),
                address: "127.0.0.1:3001".into(),
                link: LinkState::Up,
                last_seen_secs: 0.2,
                last_seen_unix_ms: Some(1),
                shards: (0..2)
                    .map(|shard| ReplicaShardLag {
                        shard,
                        acked_seq: 18,
                        master_seq: 20,
                        ops_behind: 2,
                        bytes_behind: 100,
                        secs_since_caught_up: 1.5,
                        partial_resyncs: 0,
                        full_resyncs: 0,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn json_shape_is_stable() {
        let mut out = Vec::new();
        let c = cluster();
        print(&mut out, Format::Json, &c.master, Some(&c)).expect("print");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let shard = &v[1];
        let mut keys: Vec<&str> = shard
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "disk_bytes",
                "keys",
                "last_seq",
                "replicas",
                "resyncing",
                "shard"
            ]
        );
        assert_eq!(shard["keys"], 11);
        let r = &shard["replicas"][0];
        let mut keys: Vec<&str> = r
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "acked_seq",
                "address",
                "bytes_behind",
                "link",
                "node_id",
                "ops_behind",
                "secs_since_caught_up"
            ]
        );
        assert_eq!(r["link"], "up");
        assert_eq!(r["ops_behind"], 2);
    }

    #[test]
    fn text_lists_each_replica_under_its_shard() {
        let mut out = Vec::new();
        let c = cluster();
        print(&mut out, Format::Text, &c.master, Some(&c)).expect("print");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].contains("127.0.0.1:3001") && lines[1].contains("2 ops"),
            "{text}"
        );
        let mut out = Vec::new();
        print(&mut out, Format::Text, &node(), None).expect("print");
        assert_eq!(String::from_utf8(out).expect("utf8").lines().count(), 3);
    }
}
