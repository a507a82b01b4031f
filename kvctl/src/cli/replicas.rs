//! `kvctl replicas`: every replica the master knows, with its link and its lag on each shard;
//! `kvctl replicas forget NODE`: remove one from the membership for good.
//!
//! Both go to the master (found among the endpoints, or named by them). The master keeps its
//! replicas across restarts and lists one that is down, with when it was last heard from,
//! until it is forgotten. Text is one table row per replica and shard (or `no replicas have
//! joined`), then a line per replica that is down; JSON is one array of [`ReplicaJson`], the
//! same objects `kvctl status -o json` lists under `"replicas"` on a master. `forget` prints
//! `forgot replica <node id> at <address>`, or in JSON the member removed:
//! `{"node_id", "address"}`.

use std::io::{self, Write};

use serde::Serialize;
use shared::{LinkState, ReplicaShardLag, ReplicaStatus, cluster::Member};

use crate::{
    cli::Global,
    client::Error,
    output::{
        Format, ago, human_bytes, now_unix_ms, short_id, tenths, utc, write_json, write_table,
    },
};

/// Flags of `kvctl replicas`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without one: list the replicas.
    #[command(subcommand)]
    pub command: Option<Sub>,
}

/// What `kvctl replicas` can do besides listing.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Remove a replica from the master's membership for good: it is no longer listed (nor
    /// alerted on as down) and no longer counts towards a majority. NODE is its node id, a
    /// unique prefix of one, or its address. A replica that is still running rejoins.
    Forget {
        /// The replica: node id, unique prefix, or address (`host:port`).
        node: String,
    },
}

/// One replica as JSON, with stable `snake_case` names and the link as `"up"`/`"down"`.
#[derive(Debug, Serialize)]
pub struct ReplicaJson<'a> {
    node_id: &'a str,
    address: &'a str,
    link: &'static str,
    last_seen_secs: f64,
    /// When it was last heard from (milliseconds since the Unix epoch; `null`: never), across
    /// master restarts: with `link` down, since when it is down.
    last_seen_unix_ms: Option<u64>,
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
            last_seen_unix_ms: r.last_seen_unix_ms,
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

/// Asks the master for its replicas (or to forget one) and prints the answer on `out`.
///
/// # Errors
/// The master's refusal ([`shared::KvError::UnknownNode`], [`shared::KvError::AmbiguousNode`]
/// for `forget`), or why no master could be reached.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let client = global.client()?;
    match args.command {
        None => {
            let cluster = client.cluster_status().await?;
            print(out, global.output, &cluster.replicas, now_unix_ms()).map_err(Error::Output)
        }
        Some(Sub::Forget { node }) => {
            let gone = client.forget(&node).await?;
            print_forgotten(out, global.output, &gone).map_err(Error::Output)
        }
    }
}

fn print_forgotten(out: &mut impl Write, format: Format, gone: &Member) -> io::Result<()> {
    match format {
        Format::Text => writeln!(out, "forgot replica {} at {}", gone.node_id, gone.address),
        Format::Json => write_json(out, gone),
    }
}

/// Prints `replicas` as a table or a JSON array; `now_unix_ms` turns "last seen" into an age.
fn print(
    out: &mut impl Write,
    format: Format,
    replicas: &[ReplicaStatus],
    now_unix_ms: u64,
) -> io::Result<()> {
    match format {
        Format::Text => print_text(out, replicas, now_unix_ms),
        Format::Json => write_json(
            out,
            &replicas.iter().map(ReplicaJson::from).collect::<Vec<_>>(),
        ),
    }
}

fn print_text(
    out: &mut impl Write,
    replicas: &[ReplicaStatus],
    now_unix_ms: u64,
) -> io::Result<()> {
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
    write_table(out, &rows, &right)?;
    for r in replicas.iter().filter(|r| r.link == LinkState::Down) {
        writeln!(out, "{}", down_line(r, now_unix_ms))?;
    }
    Ok(())
}

/// `replica 77aa0b12 at 10.0.0.3:3000 is down since 2023-11-14 22:13:20 UTC (5m 3s ago)`.
fn down_line(r: &ReplicaStatus, now_unix_ms: u64) -> String {
    let who = format!("replica {} at {}", short_id(&r.node_id), r.address);
    match r.last_seen_unix_ms {
        Some(seen) => format!(
            "{who} is down since {} ({})",
            utc(seen),
            ago(seen, now_unix_ms)
        ),
        None => format!("{who} is down and has never been heard from"),
    }
}

/// Hand-built replicas for the tests of `replicas`, `status` and `verify`.
#[cfg(test)]
pub mod testing {
    use shared::{LinkState, ReplicaShardLag, ReplicaStatus};

    /// When every hand-built replica was last heard from: 2023-11-14 22:13:20 UTC.
    pub const SEEN_UNIX_MS: u64 = 1_700_000_000_000;

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
            last_seen_unix_ms: Some(SEEN_UNIX_MS),
            shards: vec![lag(0, 12, 0), lag(1, 1502, behind)],
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::LinkState;

    use super::{
        testing::{SEEN_UNIX_MS, replica},
        *,
    };
    use crate::{
        cli::testing::global,
        client::{
            Exit,
            testing::{Fake, serve},
        },
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
        // 5 minutes and 3 seconds after the replicas were last seen.
        print(&mut out, format, replicas, SEEN_UNIX_MS + 303_000).expect("print");
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
replica 77aa0b12 at 10.0.0.3:3000 is down since 2023-11-14 22:13:20 UTC (5m 3s ago)
"
        );
        assert_eq!(render(Format::Text, &[]), "no replicas have joined\n");
        let mut never = replica("r9", "10.0.0.9:3000", LinkState::Down, 0);
        never.last_seen_unix_ms = None;
        assert!(
            render(Format::Text, &[never])
                .ends_with("\nreplica r9 at 10.0.0.9:3000 is down and has never been heard from\n")
        );
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
                "last_seen_unix_ms": SEEN_UNIX_MS,
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
        run(
            Args { command: None },
            &global(replica, Format::Json),
            &mut out,
        )
        .await
        .expect("replicas");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        assert_eq!(json[1]["link"], "down");
    }

    async fn forget(fake: Fake, node: &str, format: Format) -> (Result<(), Error>, String) {
        let at = serve(fake).await;
        let mut out = Vec::new();
        let args = Args {
            command: Some(Sub::Forget { node: node.into() }),
        };
        let result = run(args, &global(at, format), &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[tokio::test]
    async fn forget_asks_the_master_and_names_the_replica_removed() {
        let master = Fake {
            replicas: two().into(),
            ..Fake::default()
        };
        let live = master.live.clone();
        let master = serve(master).await;
        // Through a replica: `forget` goes to the master.
        let replica = Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        };
        let (result, out) = forget(replica.clone(), "77aa", Format::Text).await;
        result.expect("forget");
        assert_eq!(out, "forgot replica 77aa0b12ffee at 10.0.0.3:3000\n");
        let (result, out) = forget(replica, "10.0.0.2:3000", Format::Json).await;
        result.expect("forget");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "node_id": "3f2a9c1b-7d4e-4c1a-9a7e-0c1d2e3f4a5b",
                "address": "10.0.0.2:3000",
            })
        );
        let asked = live.forgotten.lock().expect("lock").clone();
        assert_eq!(asked, ["77aa", "10.0.0.2:3000"]);
    }

    #[tokio::test]
    async fn forget_of_an_unknown_or_ambiguous_node_exits_2_with_the_masters_message() {
        let mut both = two();
        both[1].node_id = "3f2a0000".into();
        let fake = Fake {
            replicas: both.into(),
            ..Fake::default()
        };
        let (result, out) = forget(fake.clone(), "nope", Format::Text).await;
        let e = result.expect_err("unknown");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string()
                .starts_with("\"nope\" is not a member of this cluster"),
            "{e}"
        );
        assert!(out.is_empty());
        let (result, _) = forget(fake, "3f2a", Format::Text).await;
        let e = result.expect_err("ambiguous");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(e.to_string().contains("matches several members"), "{e}");
    }
}
