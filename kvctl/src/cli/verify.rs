//! `kvctl verify`: checks that every replica holds the same data as the master, shard by shard,
//! by comparing digests taken at one sequence.
//!
//! ```text
//!  cluster_status (the master, found among the endpoints) ──► replicas, by address
//!  for each shard:
//!    ┌─► master.digest(shard, now)                       ──► seq S, keys, hash
//!    │   every replica at once: digest(shard, at S, wait ≤ min(time left, 10s))
//!    │     the replica holds the call until it has applied exactly S
//!    └── SequenceUnavailable (it is already past S, or did not get there in time) or
//!        ShardUnavailable (a full resync is copying it): again from the master, until
//!        --timeout-per-shard runs out
//!    compare keys and hash of each replica with the master's
//! ```
//!
//! Replicas whose link is down are contacted too: they may still be reachable. Every replica is
//! connected to before the first digest, so an unreachable one fails the run before any work.
//!
//! Outcomes: exit 0 when every shard of every replica matches (or there are no replicas), 1
//! ([`Error::VerifyMismatch`]) when some differ, 3 when the master or a replica cannot be reached
//! ([`Error::Peer`] names it), 2 for anything else (a replica refusing a digest, a shard that
//! could not be compared in time: [`Error::VerifyGaveUp`]). Text lines are printed as each shard
//! is done; JSON is one document at the end, printed for a mismatch too.

use std::{
    io::{self, Write},
    time::Duration,
};

use futures::future::join_all;
use serde::Serialize;
use shared::{
    Digest, KvError, ReplicaStatus,
    addr::parse_endpoint,
    client::{Client, Node},
};
use tokio::time::Instant;

use crate::{
    cli::{Global, parse_timeout},
    client::{DEFAULT_PORT, Error},
    output::{Format, short_hash, write_json},
};

/// Longest a replica is asked to wait for a sequence in one attempt.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Pause before asking the master again, so a shard whose replicas keep missing the sequence
/// does not turn into a tight loop of digests (each one reads the whole shard).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Flags of `kvctl verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to keep trying to compare one shard at one sequence while writes move the master
    /// ahead: `30`, `2.5`, `500ms`, `1m`.
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout_per_shard: Duration,
}

/// A replica the master lists, connected.
struct Replica {
    node_id: String,
    address: String,
    node: Node,
}

impl Replica {
    fn name(&self) -> String {
        format!("replica {}", self.node_id)
    }
}

/// One shard compared: the master's digest and each replica's at the same sequence.
#[derive(Debug, Clone, PartialEq)]
struct ShardResult {
    shard: u32,
    seq: u64,
    keys: u64,
    hash: String,
    replicas: Vec<ReplicaResult>,
}

/// One replica's digest of a shard.
#[derive(Debug, Clone, PartialEq)]
struct ReplicaResult {
    node_id: String,
    address: String,
    keys: u64,
    hash: String,
}

impl ShardResult {
    fn matches(&self, r: &ReplicaResult) -> bool {
        r.keys == self.keys && r.hash == self.hash
    }

    fn differs(&self) -> bool {
        self.replicas.iter().any(|r| !self.matches(r))
    }
}

/// Every shard compared, and how many replicas took part.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    shards: Vec<ShardResult>,
    replicas: usize,
}

impl Report {
    fn differing(&self) -> usize {
        self.shards.iter().filter(|s| s.differs()).count()
    }

    /// The command's outcome: `Ok` when everything matched, else [`Error::VerifyMismatch`].
    fn outcome(&self) -> Result<(), Error> {
        match self.differing() {
            0 => Ok(()),
            differ => Err(Error::VerifyMismatch {
                differ,
                shards: self.shards.len(),
            }),
        }
    }

    /// The last text line.
    fn summary(&self) -> String {
        match self.differing() {
            0 => format!(
                "verify: all {} shards match on {} replicas",
                self.shards.len(),
                self.replicas
            ),
            differ => format!("verify: {differ} shard(s) differ"),
        }
    }
}

/// `kvctl -o json verify`.
#[derive(Debug, Serialize)]
struct ReportJson<'a> {
    ok: bool,
    shards: Vec<ShardJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ShardJson<'a> {
    shard: u32,
    seq: u64,
    master: DigestJson<'a>,
    replicas: Vec<ReplicaDigestJson<'a>>,
}

#[derive(Debug, Serialize)]
struct DigestJson<'a> {
    keys: u64,
    hash: &'a str,
}

#[derive(Debug, Serialize)]
struct ReplicaDigestJson<'a> {
    node_id: &'a str,
    address: &'a str,
    keys: u64,
    hash: &'a str,
    #[serde(rename = "match")]
    matches: bool,
}

impl<'a> From<&'a Report> for ReportJson<'a> {
    fn from(report: &'a Report) -> Self {
        Self {
            ok: report.differing() == 0,
            shards: report
                .shards
                .iter()
                .map(|s| ShardJson {
                    shard: s.shard,
                    seq: s.seq,
                    master: DigestJson {
                        keys: s.keys,
                        hash: &s.hash,
                    },
                    replicas: s
                        .replicas
                        .iter()
                        .map(|r| ReplicaDigestJson {
                            node_id: &r.node_id,
                            address: &r.address,
                            keys: r.keys,
                            hash: &r.hash,
                            matches: s.matches(r),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Compares every shard of every replica with the master's and prints the result on `out`.
///
/// # Errors
/// [`Error::VerifyMismatch`] when some shard differs (after printing the result), else what
/// stopped the comparison, naming the node.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let client = global.client()?;
    let (master, cluster) = client
        .on_master(|n| async move { n.cluster_status().await.map(|c| (n, c)) })
        .await?;
    // The master's connection again, without that first call's deadline: digests take long.
    let master = client.node(master.endpoint()).await?;
    if cluster.replicas.is_empty() {
        return match global.output {
            Format::Text => writeln!(out, "verify: no replicas to compare"),
            Format::Json => write_json(
                out,
                &ReportJson {
                    ok: true,
                    shards: Vec::new(),
                },
            ),
        }
        .map_err(Error::Output);
    }
    let replicas = connect_all(&client, &cluster.replicas).await?;
    let label_width = label_width(&replicas);
    let mut report = Report {
        shards: Vec::with_capacity(cluster.master.shards.len()),
        replicas: replicas.len(),
    };
    for shard in cluster.master.shards.iter().map(|s| s.shard) {
        let result = verify_shard(&master, &replicas, shard, args.timeout_per_shard).await?;
        if global.output == Format::Text {
            print_shard(out, &result, label_width).map_err(Error::Output)?;
        }
        report.shards.push(result);
    }
    match global.output {
        Format::Text => writeln!(out, "{}", report.summary()),
        Format::Json => write_json(out, &ReportJson::from(&report)),
    }
    .map_err(Error::Output)?;
    report.outcome()
}

/// Connects to every replica at once, by the address it advertises.
///
/// # Errors
/// The first replica (in the master's order) that cannot be reached, named.
async fn connect_all(client: &Client, listed: &[ReplicaStatus]) -> Result<Vec<Replica>, Error> {
    let connects = listed.iter().map(async |r| {
        let endpoint = parse_endpoint(&r.address, DEFAULT_PORT).map_err(|source| {
            Error::BadReplicaAddress {
                node_id: r.node_id.clone(),
                address: r.address.clone(),
                source,
            }
        })?;
        let node = client.node(&endpoint).await.map_err(|e| Error::Peer {
            node: format!("replica {}", r.node_id),
            source: Box::new(e.into()),
        })?;
        Ok(Replica {
            node_id: r.node_id.clone(),
            address: r.address.clone(),
            node,
        })
    });
    join_all(connects).await.into_iter().collect()
}

/// Compares one shard, retrying from the master's digest while a replica cannot give its digest
/// at the master's sequence, for at most `per_shard`.
///
/// # Errors
/// The master or a replica failing (named), or [`Error::VerifyGaveUp`] when `per_shard` ran out.
async fn verify_shard(
    master: &Node,
    replicas: &[Replica],
    shard: u32,
    per_shard: Duration,
) -> Result<ShardResult, Error> {
    let deadline = Instant::now() + per_shard;
    loop {
        let m = master
            .digest(shard, None, Duration::ZERO)
            .await
            .map_err(|e| Error::Peer {
                node: "master".to_string(),
                source: Box::new(e.into()),
            })?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(MAX_WAIT);
        let answers = join_all(
            replicas
                .iter()
                .map(|r| r.node.digest(shard, Some(m.seq), wait)),
        )
        .await;
        let mut compared = Vec::with_capacity(replicas.len());
        let mut retry = None;
        for (r, answer) in replicas.iter().zip(answers) {
            match answer.map_err(Error::from).and_then(|d| at_seq(d, m.seq)) {
                Ok(d) => compared.push(ReplicaResult {
                    node_id: r.node_id.clone(),
                    address: r.address.clone(),
                    keys: d.keys,
                    hash: d.hash,
                }),
                Err(e)
                    if matches!(
                        e.kv(),
                        Some(
                            KvError::SequenceUnavailable { .. } | KvError::ShardUnavailable { .. }
                        )
                    ) =>
                {
                    retry = Some(Error::Peer {
                        node: r.name(),
                        source: Box::new(e),
                    });
                }
                Err(e) => {
                    return Err(Error::Peer {
                        node: r.name(),
                        source: Box::new(e),
                    });
                }
            }
        }
        let Some(last) = retry else {
            return Ok(ShardResult {
                shard,
                seq: m.seq,
                keys: m.keys,
                hash: m.hash,
                replicas: compared,
            });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::VerifyGaveUp {
                shard,
                after: per_shard,
                last: Box::new(last),
            });
        }
        tokio::time::sleep(RETRY_PAUSE.min(left)).await;
    }
}

/// A replica's digest, refused as [`KvError::SequenceUnavailable`] unless it is at `seq`.
fn at_seq(d: Digest, seq: u64) -> Result<Digest, Error> {
    if d.seq == seq {
        Ok(d)
    } else {
        Err(Error::from(KvError::SequenceUnavailable {
            shard: d.shard,
            current: d.seq,
            requested: seq,
        }))
    }
}

/// Width of the node column: `master` or `replica <address>`.
fn label_width(replicas: &[Replica]) -> usize {
    replicas
        .iter()
        .map(|r| "replica ".len() + r.address.chars().count())
        .max()
        .unwrap_or(0)
        .max("master".len())
}

/// One line for the master and one per replica, each starting with the shard and sequence.
fn print_shard(out: &mut impl Write, s: &ShardResult, width: usize) -> io::Result<()> {
    let lead = format!("shard {}  seq {}", s.shard, s.seq);
    writeln!(
        out,
        "{lead}  {:<width$}  keys {}  hash {}",
        "master",
        s.keys,
        short_hash(&s.hash)
    )?;
    for r in &s.replicas {
        let label = format!("replica {}", r.address);
        if s.matches(r) {
            writeln!(out, "{lead}  {label:<width$}  match")?;
        } else {
            writeln!(
                out,
                "{lead}  {label:<width$}  MISMATCH (keys {}, hash {})",
                r.keys,
                short_hash(&r.hash)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, atomic::Ordering};

    use shared::LinkState;

    use super::*;
    use crate::{
        cli::{replicas::testing::replica, testing::global},
        client::{
            Exit,
            testing::{Digests, FIRST_DIGEST_SEQ, Fake, serve},
        },
    };

    const HASH: &str = "9f3a1b2c3d4e5f60718293a4b5c6d7e8";
    const OTHER: &str = "77aa01bc3d4e5f60718293a4b5c6d7e8";

    fn result(shard: u32, replicas: &[(&str, u64, &str)]) -> ShardResult {
        ShardResult {
            shard,
            seq: 1234,
            keys: 500,
            hash: HASH.to_string(),
            replicas: replicas
                .iter()
                .map(|&(address, keys, hash)| ReplicaResult {
                    node_id: format!("id-{address}"),
                    address: address.to_string(),
                    keys,
                    hash: hash.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn text_lines_per_shard_and_node() {
        let s = result(0, &[("10.0.0.2:3000", 500, HASH), ("h:1", 499, OTHER)]);
        let mut out = Vec::new();
        print_shard(&mut out, &s, "replica 10.0.0.2:3000".len()).expect("print");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\
shard 0  seq 1234  master                 keys 500  hash 9f3a1b2c…
shard 0  seq 1234  replica 10.0.0.2:3000  match
shard 0  seq 1234  replica h:1            MISMATCH (keys 499, hash 77aa01bc…)
"
        );
    }

    #[test]
    fn outcome_and_summary() {
        let all_match = Report {
            shards: vec![
                result(0, &[("a:1", 500, HASH), ("b:1", 500, HASH)]),
                result(1, &[("a:1", 500, HASH), ("b:1", 500, HASH)]),
            ],
            replicas: 2,
        };
        assert!(all_match.outcome().is_ok());
        assert_eq!(
            all_match.summary(),
            "verify: all 2 shards match on 2 replicas"
        );

        // Same key count, other hash: still a difference.
        let differ = Report {
            shards: vec![
                result(0, &[("a:1", 500, HASH), ("b:1", 500, OTHER)]),
                result(1, &[("a:1", 500, HASH), ("b:1", 500, HASH)]),
                result(2, &[("a:1", 499, HASH), ("b:1", 500, HASH)]),
            ],
            replicas: 2,
        };
        assert_eq!(differ.summary(), "verify: 2 shard(s) differ");
        let e = differ.outcome().expect_err("differs");
        assert_eq!(e.exit(), Exit::NotFound);
        assert!(
            e.to_string().starts_with("verify found a difference"),
            "{e}"
        );
    }

    #[test]
    fn json_shape() {
        let report = Report {
            shards: vec![result(3, &[("a:1", 500, HASH), ("b:1", 499, OTHER)])],
            replicas: 2,
        };
        let mut out = Vec::new();
        write_json(&mut out, &ReportJson::from(&report)).expect("json");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "ok": false,
                "shards": [{
                    "shard": 3,
                    "seq": 1234,
                    "master": {"keys": 500, "hash": HASH},
                    "replicas": [
                        {"node_id": "id-a:1", "address": "a:1", "keys": 500, "hash": HASH,
                         "match": true},
                        {"node_id": "id-b:1", "address": "b:1", "keys": 499, "hash": OTHER,
                         "match": false},
                    ],
                }],
            })
        );
    }

    /// A master listing replicas served by `fakes`, each with its digests.
    async fn cluster(master: Arc<Digests>, fakes: Vec<Arc<Digests>>) -> Fake {
        let mut listed = Vec::new();
        for (i, digests) in fakes.into_iter().enumerate() {
            let at = serve(Fake {
                digests,
                ..Fake::default()
            })
            .await;
            listed.push(replica(
                &format!("replica-{i}"),
                &at.to_string(),
                LinkState::Up,
                0,
            ));
        }
        Fake {
            replicas: listed.into(),
            digests: master,
            ..Fake::default()
        }
    }

    async fn verify(
        fake: Fake,
        format: Format,
        per_shard: Duration,
    ) -> (String, Result<(), Error>) {
        let g = global(serve(fake).await, format);
        let mut out = Vec::new();
        let result = run(
            Args {
                timeout_per_shard: per_shard,
            },
            &g,
            &mut out,
        )
        .await;
        (String::from_utf8(out).expect("utf-8"), result)
    }

    #[tokio::test]
    async fn every_shard_of_every_replica_matches() {
        let fake = cluster(
            Digests::new(500, HASH),
            vec![Digests::new(500, HASH), Digests::new(500, HASH)],
        )
        .await;
        let (text, result) = verify(fake, Format::Text, Duration::from_secs(5)).await;
        result.expect("all match");
        assert_eq!(text.lines().count(), 2 * 3 + 1, "{text}");
        assert!(text.starts_with(&format!("shard 0  seq {FIRST_DIGEST_SEQ}  master ")));
        assert!(
            text.ends_with("verify: all 2 shards match on 2 replicas\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_differing_replica_exits_1_after_printing_the_json() {
        let fake = cluster(
            Digests::new(500, HASH),
            vec![Digests::new(500, HASH), Digests::new(499, OTHER)],
        )
        .await;
        let (json, result) = verify(fake, Format::Json, Duration::from_secs(5)).await;
        let e = result.expect_err("differs");
        assert_eq!(e.exit(), Exit::NotFound);
        let json: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(json["ok"], false);
        assert_eq!(json["shards"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["shards"][0]["replicas"][0]["match"], true);
        assert_eq!(json["shards"][0]["replicas"][1]["match"], false);
        assert_eq!(json["shards"][0]["replicas"][1]["node_id"], "replica-1");
    }

    #[tokio::test]
    async fn a_replica_past_the_sequence_makes_the_shard_start_again() {
        let replica = Digests::refusing(500, HASH, 2);
        let master = Digests::new(500, HASH);
        let fake = cluster(master.clone(), vec![replica.clone()]).await;
        let (text, result) = verify(fake, Format::Text, Duration::from_secs(5)).await;
        result.expect("matches once the sequences meet");
        // Shard 0 took three master digests (two refused), shard 1 one.
        assert_eq!(master.taken_now.load(Ordering::SeqCst), 4);
        assert_eq!(replica.refuse.load(Ordering::SeqCst), 0);
        let first = FIRST_DIGEST_SEQ + 2;
        assert!(
            text.starts_with(&format!("shard 0  seq {first}  master ")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_shard_that_never_meets_gives_up_with_exit_2() {
        let fake = cluster(
            Digests::new(500, HASH),
            vec![Digests::refusing(500, HASH, u32::MAX)],
        )
        .await;
        let (_, result) = verify(fake, Format::Text, Duration::from_millis(300)).await;
        let e = result.expect_err("gives up");
        assert!(matches!(e, Error::VerifyGaveUp { shard: 0, .. }), "{e:?}");
        assert_eq!(e.exit(), Exit::Usage);
        let msg = e.to_string();
        assert!(msg.contains("within 0.3s (--timeout-per-shard)"), "{msg}");
        assert!(
            msg.contains("replica replica-0: shard 0 is at sequence"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_replica_exits_3_naming_it() {
        let closed = shared::client::testing::closed_port();
        let mut fake = cluster(Digests::new(500, HASH), vec![Digests::new(500, HASH)]).await;
        let mut listed = fake.replicas.to_vec();
        listed.push(replica(
            "gone-replica",
            &format!("127.0.0.1:{closed}"),
            LinkState::Down,
            0,
        ));
        fake.replicas = listed.into();
        let (out, result) = verify(fake, Format::Text, Duration::from_secs(5)).await;
        let e = result.expect_err("unreachable");
        assert_eq!(e.exit(), Exit::Unreachable);
        assert!(
            e.to_string().starts_with(&format!(
                "replica gone-replica: cannot reach the node at 127.0.0.1:{closed}"
            )),
            "{e}"
        );
        assert_eq!(
            out, "",
            "nothing compared before every replica is connected"
        );
    }

    #[tokio::test]
    async fn no_replicas_is_success() {
        let (text, result) = verify(Fake::default(), Format::Text, Duration::from_secs(5)).await;
        result.expect("nothing to compare");
        assert_eq!(text, "verify: no replicas to compare\n");
        let (json, result) = verify(Fake::default(), Format::Json, Duration::from_secs(5)).await;
        result.expect("nothing to compare");
        assert_eq!(json, "{\"ok\":true,\"shards\":[]}\n");
    }

    #[tokio::test]
    async fn a_replica_endpoint_is_followed_to_the_master() {
        let master =
            serve(cluster(Digests::new(500, HASH), vec![Digests::new(500, HASH)]).await).await;
        let entry = Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        };
        let (text, result) = verify(entry, Format::Text, Duration::from_secs(5)).await;
        result.expect("match");
        assert!(
            text.ends_with("verify: all 2 shards match on 1 replicas\n"),
            "{text}"
        );
    }
}
