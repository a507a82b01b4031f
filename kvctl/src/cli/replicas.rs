//! `kvctl replicas`: every replica the master knows, with its link and its lag on each shard.
//!
//! Asks the master's `cluster_status`; pointed at a replica, follows its redirect to the master
//! once, as writes do. Text is one table row per replica and shard (or `no replicas have
//! joined`); JSON is one array of [`ReplicaJson`], the same objects `kvctl status -o json` lists
//! under `"replicas"` on a master.

use std::io::{self, Write};

use serde::Serialize;
use shared::{ReplicaShardLag, ReplicaStatus};

use crate::{
    cli::Global,
    client::{Error, on_master},
    output::{Format, human_bytes, short_id, tenths, write_json, write_table},
};

/// Flags of `kvctl replicas`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// One replica as JSON, with stable `snake_case` names and the link as `"up"`/`"down"`.
#[derive(Debug, Serialize)]
pub struct ReplicaJson<'a> {
    node_id: &'a str,
    address: &'a str,
    link: &'static str,
    last_seen_secs: f64,
    shards: Vec<LagJson>,
}

/// One shard of [`ReplicaJson`].
#[derive(Debug, Serialize)]
struct LagJson {
    shard: u32,
    acked_seq: u64,
    master_seq: u64,
    ops_behind: u64,
    bytes_behind: u64,
    secs_since_caught_up: f64,
    partial_resyncs: u64,
    full_resyncs: u64,
}

impl<'a> From<&'a ReplicaStatus> for ReplicaJson<'a> {
    fn from(r: &'a ReplicaStatus) -> Self {
        Self {
            node_id: &r.node_id,
            address: &r.address,
            link: r.link.as_str(),
            last_seen_secs: r.last_seen_secs,
            shards: r
                .shards
                .iter()
                .map(
                    |&ReplicaShardLag {
                         shard,
                         acked_seq,
                         master_seq,
                         ops_behind,
                         bytes_behind,
                         secs_since_caught_up,
                         partial_resyncs,
                         full_resyncs,
                     }| LagJson {
                        shard,
                        acked_seq,
                        master_seq,
                        ops_behind,
                        bytes_behind,
                        secs_since_caught_up,
                        partial_resyncs,
                        full_resyncs,
                    },
                )
                .collect(),
        }
    }
}

/// Asks the master for its replicas and prints them on `out`.
///
/// # Errors
/// The node's or the transport's error, or [`Error::BadMasterAddress`] when a replica names a
/// master that does not parse.
pub async fn run(_args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let node = global.connect().await?;
    let (_, cluster) = on_master(&node, async |n| n.cluster_status().await).await?;
    print(out, global.output, &cluster.replicas).map_err(Error::Output)
}

/// Prints `replicas` as a table or a JSON array.
fn print(out: &mut impl Write, format: Format, replicas: &[ReplicaStatus]) -> io::Result<()> {
    match format {
        Format::Text => print_text(out, replicas),
        Format::Json => write_json(
            out,
            &replicas.iter().map(ReplicaJson::from).collect::<Vec<_>>(),
        ),
    }
}

fn print_text(out: &mut impl Write, replicas: &[ReplicaStatus]) -> io::Result<()> {
    if replicas.is_empty() {
        return writeln!(out, "no replicas have joined");
    }
    let header = [
        "replica",
        "node id",
        "link",
        "shard",
        "acked seq",
        "master seq",
        "ops behind",
        "bytes behind",
        "behind for",
        "partial resyncs",
        "full resyncs",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for r in replicas {
        let who = [
            r.address.clone(),
            short_id(&r.node_id).to_string(),
            r.link.as_str().to_string(),
        ];
        if r.shards.is_empty() {
            // Joined, but no position reported yet.
            rows.push(who.iter().cloned().chain(["-".to_string()]).collect());
        }
        for lag in &r.shards {
            let figures = [
                lag.shard.to_string(),
                lag.acked_seq.to_string(),
                lag.master_seq.to_string(),
                lag.ops_behind.to_string(),
                human_bytes(lag.bytes_behind),
                tenths(lag.secs_since_caught_up),
                lag.partial_resyncs.to_string(),
                lag.full_resyncs.to_string(),
            ];
            rows.push(who.iter().cloned().chain(figures).collect());
        }
    }
    let right = [
        false, false, false, true, true, true, true, true, true, true, true,
    ];
    write_table(out, &rows, &right)
}

/// Hand-built replicas for the tests of `replicas`, `status` and `verify`.
#[cfg(test)]
pub mod testing {
    use shared::{LinkState, ReplicaShardLag, ReplicaStatus};

    /// A replica at `address`, in sync on shard 0 and `behind` operations behind on shard 1.
    pub fn replica(node_id: &str, address: &str, link: LinkState, behind: u64) -> ReplicaStatus {
        let lag = |shard: u32, master_seq: u64, ops_behind: u64| ReplicaShardLag {
            shard,
            acked_seq: master_seq - ops_behind,
            master_seq,
            ops_behind,
            bytes_behind: ops_behind * 1536,
            secs_since_caught_up: if ops_behind == 0 { 0.0 } else { 12.34 },
            partial_resyncs: u64::from(shard),
            full_resyncs: 0,
        };
        ReplicaStatus {
            node_id: node_id.to_string(),
            address: address.to_string(),
            link,
            last_seen_secs: 0.25,
            shards: vec![lag(0, 12, 0), lag(1, 1502, behind)],
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::LinkState;

    use super::{testing::replica, *};
    use crate::{
        cli::testing::global,
        client::testing::{Fake, serve},
    };

    fn two() -> Vec<ReplicaStatus> {
        vec![
            replica(
                "3f2a9c1b-7d4e-4c1a-9a7e-0c1d2e3f4a5b",
                "10.0.0.2:3000",
                LinkState::Up,
                0,
            ),
            replica("77aa0b12ffee", "10.0.0.3:3000", LinkState::Down, 5),
        ]
    }

    fn render(format: Format, replicas: &[ReplicaStatus]) -> String {
        let mut out = Vec::new();
        print(&mut out, format, replicas).expect("print");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn text_is_one_row_per_replica_and_shard() {
        assert_eq!(
            render(Format::Text, &two()),
            "\
replica        node id   link  shard  acked seq  master seq  ops behind  bytes behind  behind for  partial resyncs  full resyncs
10.0.0.2:3000  3f2a9c1b  up        0         12          12           0           0 B        0.0s                0             0
10.0.0.2:3000  3f2a9c1b  up        1       1502        1502           0           0 B        0.0s                1             0
10.0.0.3:3000  77aa0b12  down      0         12          12           0           0 B        0.0s                0             0
10.0.0.3:3000  77aa0b12  down      1       1497        1502           5       7.5 KiB       12.3s                1             0
"
        );
        assert_eq!(render(Format::Text, &[]), "no replicas have joined\n");
    }

    #[test]
    fn json_is_one_array_with_stable_names() {
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &two()[1..])).expect("json");
        assert_eq!(
            json,
            serde_json::json!([{
                "node_id": "77aa0b12ffee",
                "address": "10.0.0.3:3000",
                "link": "down",
                "last_seen_secs": 0.25,
                "shards": [
                    {"shard": 0, "acked_seq": 12, "master_seq": 12, "ops_behind": 0,
                     "bytes_behind": 0, "secs_since_caught_up": 0.0,
                     "partial_resyncs": 0, "full_resyncs": 0},
                    {"shard": 1, "acked_seq": 1497, "master_seq": 1502, "ops_behind": 5,
                     "bytes_behind": 7680, "secs_since_caught_up": 12.34,
                     "partial_resyncs": 1, "full_resyncs": 0},
                ],
            }])
        );
        assert_eq!(render(Format::Json, &[]), "[]\n");
    }

    #[tokio::test]
    async fn a_replica_endpoint_is_followed_to_its_master() {
        let master = serve(Fake {
            replicas: two().into(),
            ..Fake::default()
        })
        .await;
        let replica = serve(Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        })
        .await;
        let mut out = Vec::new();
        run(Args {}, &global(replica, Format::Json), &mut out)
            .await
            .expect("replicas");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        assert_eq!(json[1]["link"], "down");
    }
}
