//! `kvctl status`: the node's role, version, limits and per-shard figures.
//!
//! The JSON shape is kvctl's own (see [`StatusJson`]), with stable `snake_case` names and roles
//! and sync policies as lower-case strings, so scripts do not depend on how `shared` happens to
//! serialize its types.

use std::io::{self, Write};

use serde::Serialize;
use shared::{NodeStatus, ShardStatus};

use crate::{
    cli::Global,
    client::Error,
    output::{Format, human_bytes, human_uptime, write_json},
};

/// Flags of `kvctl status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// `kvctl -o json status`.
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
}

/// One shard of [`StatusJson`].
#[derive(Debug, Serialize)]
struct ShardJson {
    shard: u32,
    keys: u64,
    last_seq: u64,
    disk_bytes: u64,
}

impl<'a> From<&'a NodeStatus> for StatusJson<'a> {
    fn from(s: &'a NodeStatus) -> Self {
        Self {
            node_id: &s.node_id,
            role: s.role.as_str(),
            address: &s.address,
            version: &s.version,
            uptime_secs: s.uptime_secs,
            sync: s.sync.as_str(),
            max_key_bytes: s.max_key_bytes,
            max_value_bytes: s.max_value_bytes,
            shards: s
                .shards
                .iter()
                .map(
                    |&ShardStatus {
                         shard,
                         keys,
                         last_seq,
                         disk_bytes,
                     }| ShardJson {
                        shard,
                        keys,
                        last_seq,
                        disk_bytes,
                    },
                )
                .collect(),
        }
    }
}

/// Asks the node for its status and prints it on `out`.
///
/// # Errors
/// The node's or the transport's error.
pub async fn run(_args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let node = global.connect().await?;
    let status = node.status().await?;
    match global.output {
        Format::Text => print_text(out, &status),
        Format::Json => write_json(out, &StatusJson::from(&status)),
    }
    .map_err(Error::Output)
}

fn print_text(out: &mut impl Write, s: &NodeStatus) -> io::Result<()> {
    writeln!(out, "node id   {}", s.node_id)?;
    writeln!(out, "role      {}", s.role.as_str())?;
    writeln!(out, "address   {}", s.address)?;
    writeln!(out, "version   {}", s.version)?;
    writeln!(out, "uptime    {}", human_uptime(s.uptime_secs))?;
    writeln!(out, "sync      {}", s.sync.as_str())?;
    writeln!(
        out,
        "limits    keys up to {}, values up to {}",
        human_bytes(s.max_key_bytes),
        human_bytes(s.max_value_bytes)
    )?;
    writeln!(out)?;

    let total = s.shards.iter().fold((0u64, 0u64, 0u64), |(k, q, d), sh| {
        (
            k.saturating_add(sh.keys),
            q.saturating_add(sh.last_seq),
            d.saturating_add(sh.disk_bytes),
        )
    });
    let mut rows: Vec<[String; 4]> = vec![[
        "shard".to_string(),
        "keys".to_string(),
        "last seq".to_string(),
        "disk".to_string(),
    ]];
    for sh in &s.shards {
        rows.push([
            sh.shard.to_string(),
            sh.keys.to_string(),
            sh.last_seq.to_string(),
            human_bytes(sh.disk_bytes),
        ]);
    }
    rows.push([
        "total".to_string(),
        total.0.to_string(),
        total.1.to_string(),
        human_bytes(total.2),
    ]);

    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let [shard, keys, seq, disk] = row;
        let [w0, w1, w2, w3] = widths;
        writeln!(out, "{shard:<w0$}  {keys:>w1$}  {seq:>w2$}  {disk:>w3$}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cli::testing::global,
        client::testing::{Fake, serve},
    };

    async fn status(format: Format) -> String {
        let g = global(serve(Fake::default()).await, format);
        let mut out = Vec::new();
        run(Args {}, &g, &mut out).await.expect("status");
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn text_has_the_node_and_a_shard_table() {
        assert_eq!(
            status(Format::Text).await,
            "\
node id   n1
role      master
address   localhost:3000
version   0.1.0
uptime    1h 2m 5s
sync      always
limits    keys up to 4 KiB, values up to 1 MiB

shard  keys  last seq     disk
0        10        12    2 KiB
1      1500      1502    3 MiB
total  1510      1514  3.0 MiB
"
        );
    }

    #[tokio::test]
    async fn json_has_stable_names() {
        let json: serde_json::Value =
            serde_json::from_str(&status(Format::Json).await).expect("json");
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
                "shards": [
                    {"shard": 0, "keys": 10, "last_seq": 12, "disk_bytes": 2048},
                    {"shard": 1, "keys": 1500, "last_seq": 1502, "disk_bytes": 3_145_728},
                ],
            })
        );
    }
}
