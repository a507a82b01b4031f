//! `kvctl promote NODE [--force] [--plan]`: make a replica the master while the master is gone,
//! or (`--plan`) only show what that would do and lose.
//!
//! ```text
//!  NODE ──► an address (host:port, http://host:port): that node
//!       └─► a node id or a unique prefix of one, among the members kvctl can see:
//!             the cluster_status of a master that answers, else every endpoint's status
//!             (itself and the master it names)
//!  kvctl ──promote{force, plan_only, timeout_ms = --timeout}──► the candidate
//!          candidate: ask every member for its epoch and positions (the plan); refuse, or
//!          catch up from a replica that is ahead, take epoch + 1, get a majority, announce
//!        ◄──PromoteReply{plan, done, epoch, caught_up}──
//! ```
//!
//! Text output is the plan: the candidate, the epoch it would take, whether the old master
//! still answers, the members that do not, and per shard the candidate's applied position
//! (epoch:seq), each reachable replica's, the last master sequence any of them heard of, the
//! replica to catch up from, where the candidate ends up and the writes lost; then the
//! refusal, or once done `promoted <node id> at <address>: epoch N; …`. JSON is the
//! [`PromoteReply`] as it came.
//!
//! Exit codes: 0 when promoted (or, with `--plan`, when the plan carries no refusal); 2 when
//! the candidate refuses (its message names the cause and what to do: a full resync under way,
//! an old master that still answers, writes that would be lost without `--force`) or NODE is
//! unknown or ambiguous; 3 when the candidate cannot be reached; 4 when the request was sent
//! and no answer came (`kvctl status` shows whether it took over).

use std::io::{self, Write};

use shared::{
    KvError,
    addr::{Endpoint, parse_endpoint},
    client::{self, Client},
    cluster::{Member, NodePosition, PromoteReply, PromoteRequest, PromotionPlan},
};

use crate::{
    cli::Global,
    client::{DEFAULT_PORT, Error},
    output::{Format, short_id, write_json, write_table},
};

/// Flags of `kvctl promote` (the catch-up's time is the global `--timeout`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The replica to promote: its node id, a unique prefix of one, or its address
    /// (`http://host:port`).
    pub node: String,
    /// Promote even if the plan says writes would be lost, or no majority of the members
    /// answers: your word that the old master is gone for good and no other node was promoted.
    #[arg(long)]
    pub force: bool,
    /// Only show the plan: positions per shard, the catch-up, what would be lost.
    #[arg(long)]
    pub plan: bool,
}

/// Resolves NODE, asks it to promote itself (or for the plan) and prints the outcome.
///
/// # Errors
/// NODE unknown or ambiguous, the candidate's refusal, or why it could not be reached.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let client = global.client()?;
    let candidate = resolve(&client, &args.node).await?;
    let req = PromoteRequest {
        force: args.force,
        plan_only: args.plan,
        timeout_ms: u64::try_from(global.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let reply = client.node(&candidate).await?.promote(req).await?;
    match global.output {
        Format::Text => print_text(out, &reply, args.plan),
        Format::Json => write_json(out, &reply),
    }
    .map_err(Error::Output)?;
    outcome(&reply, args.plan)
}

/// `Ok` when promoted, or for a plan without a refusal; else the candidate's reason.
fn outcome(reply: &PromoteReply, plan_only: bool) -> Result<(), Error> {
    if reply.done {
        return Ok(());
    }
    match &reply.plan.refusal {
        Some(reason) => Err(Error::from(KvError::FailoverRefused {
            reason: reason.clone(),
        })),
        None if plan_only => Ok(()),
        None => Err(Error::from(KvError::FailoverRefused {
            reason: format!(
                "{} did not take over and gave no reason; see kvctl status",
                who(&reply.plan.candidate)
            ),
        })),
    }
}

/// Where NODE is: an address as it is, else the member it names.
///
/// # Errors
/// [`KvError::UnknownNode`], [`KvError::AmbiguousNode`], an address that does not parse, or
/// why no node could be asked for the members.
async fn resolve(client: &Client, node: &str) -> Result<Endpoint, Error> {
    if node.contains(':') {
        return parse_endpoint(node, DEFAULT_PORT).map_err(|e| Error::Usage(e.to_string()));
    }
    let members = members(client).await?;
    let member = pick(node, &members)?;
    parse_endpoint(&member.address, DEFAULT_PORT).map_err(|source| {
        Error::Client(client::Error::BadAddress {
            who: format!("member {}", member.node_id),
            address: member.address.clone(),
            source,
        })
    })
}

/// The members kvctl can see: a master's full list (down replicas included) when one answers,
/// else every node that answered and the masters they name.
async fn members(client: &Client) -> Result<Vec<Member>, Error> {
    let found = client.discover().await;
    if let Some((at, _)) = found.master()
        && let Ok(cluster) = async { client.node(at).await?.cluster_status().await }.await
    {
        let m = &cluster.master;
        let master = Member {
            node_id: m.node_id.clone(),
            address: m.address.clone(),
        };
        return Ok(std::iter::once(master)
            .chain(cluster.replicas.iter().map(|r| Member {
                node_id: r.node_id.clone(),
                address: r.address.clone(),
            }))
            .collect());
    }
    // Nobody answered: say why, naming each endpoint.
    found.first_answer()?;
    Ok(found.members())
}

/// The member `node` names: its node id exactly, else the one node id it starts.
///
/// # Errors
/// [`KvError::UnknownNode`] or [`KvError::AmbiguousNode`], listing the members.
fn pick<'a>(node: &str, members: &'a [Member]) -> Result<&'a Member, Error> {
    if let Some(m) = members.iter().find(|m| m.node_id == node) {
        return Ok(m);
    }
    let name = |m: &Member| format!("{} at {}", m.node_id, m.address);
    let matching: Vec<&Member> = members
        .iter()
        .filter(|m| m.node_id.starts_with(node))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::from(KvError::UnknownNode {
            node: node.to_string(),
            known: members.iter().map(name).collect(),
        })),
        several => Err(Error::from(KvError::AmbiguousNode {
            node: node.to_string(),
            matches: several.iter().map(|m| name(m)).collect(),
        })),
    }
}

/// `<node id> at <address>`.
fn who(m: &Member) -> String {
    format!("{} at {}", m.node_id, m.address)
}

fn print_text(out: &mut impl Write, reply: &PromoteReply, plan_only: bool) -> io::Result<()> {
    let plan = &reply.plan;
    print_plan(out, plan)?;
    if reply.done {
        let lost = if plan.lost > 0 {
            format!("; {} writes lost (forced)", plan.lost)
        } else {
            String::new()
        };
        writeln!(
            out,
            "promoted {}: epoch {}; caught up {} entries from other replicas{lost}",
            who(&plan.candidate),
            reply.epoch,
            reply.caught_up
        )?;
    } else if let Some(refusal) = &plan.refusal {
        writeln!(out, "refused      {refusal}")?;
    } else if plan_only {
        writeln!(
            out,
            "plan only: nothing was changed (run without --plan to promote)"
        )?;
    }
    Ok(())
}

/// The plan: who, which epoch, the old master, the members that do not answer, one row per
/// shard, and the writes lost.
fn print_plan(out: &mut impl Write, plan: &PromotionPlan) -> io::Result<()> {
    writeln!(out, "candidate    {}", who(&plan.candidate))?;
    writeln!(
        out,
        "epoch        {} (the candidate takes epoch {})",
        plan.epoch,
        plan.epoch + 1
    )?;
    let answers = if plan.old_master_answers {
        "still answers: promotion is refused, use kvctl failover"
    } else {
        "does not answer"
    };
    match &plan.old_master {
        Some(m) => writeln!(out, "old master   {}: {answers}", who(m))?,
        None => writeln!(out, "old master   unknown")?,
    }
    if !plan.unreachable.is_empty() {
        let list: Vec<String> = plan.unreachable.iter().map(who).collect();
        writeln!(out, "unreachable  {}", list.join(", "))?;
    }
    writeln!(out)?;
    let mut rows = vec![
        [
            "shard",
            "candidate",
            "replicas",
            "master seq heard",
            "catch up from",
            "after",
            "lost",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &plan.shards {
        let replicas = if s.replicas.is_empty() {
            "-".to_string()
        } else {
            s.replicas
                .iter()
                .map(|r| format!("{} {}", short_id(&r.node_id), r.pos))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(vec![
            s.shard.to_string(),
            s.candidate.to_string(),
            replicas,
            s.master_seq_heard.to_string(),
            s.catch_up_from
                .as_ref()
                .map_or_else(|| "-".to_string(), source),
            s.after_catch_up.to_string(),
            s.lost.to_string(),
        ]);
    }
    write_table(out, &rows, &[true, false, false, true, false, false, true])?;
    writeln!(out)?;
    writeln!(
        out,
        "lost         {} writes in all (the old master had them, no live node has)",
        plan.lost
    )
}

/// A catch-up source: `r1 (1:130)`.
fn source(p: &NodePosition) -> String {
    format!("{} ({})", short_id(&p.node_id), p.pos)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::{
        LinkState, ReplicaStatus,
        cluster::{LogPos, ShardPlan},
    };

    use super::*;
    use crate::{
        cli::testing::globals,
        client::{
            Exit,
            testing::{Fake, closed_endpoint, serve},
        },
    };

    fn member(id: &str, address: &str) -> Member {
        Member {
            node_id: id.into(),
            address: address.into(),
        }
    }

    fn pos(epoch: u64, seq: u64) -> LogPos {
        LogPos { epoch, seq }
    }

    /// A plan for `candidate`: shard 0 behind another replica (caught up from it), shard 1
    /// with two writes nobody alive has.
    fn plan(candidate: Member, refusal: Option<&str>) -> PromotionPlan {
        let r1 = NodePosition {
            node_id: "a1b2c3d4-replica".into(),
            address: "127.0.0.1:3001".into(),
            pos: pos(1, 130),
            master_seq: 130,
        };
        PromotionPlan {
            candidate,
            epoch: 1,
            old_master: Some(member("6f1c2a9e-master", "127.0.0.1:3000")),
            old_master_answers: false,
            shards: vec![
                ShardPlan {
                    shard: 0,
                    candidate: pos(1, 120),
                    replicas: vec![r1.clone()],
                    master_seq_heard: 130,
                    catch_up_from: Some(r1.clone()),
                    after_catch_up: pos(1, 130),
                    lost: 0,
                },
                ShardPlan {
                    shard: 1,
                    candidate: pos(1, 98),
                    replicas: vec![NodePosition {
                        pos: pos(1, 98),
                        master_seq: 100,
                        ..r1
                    }],
                    master_seq_heard: 100,
                    catch_up_from: None,
                    after_catch_up: pos(1, 98),
                    lost: 2,
                },
            ],
            lost: 2,
            unreachable: vec![member("6f1c2a9e-master", "127.0.0.1:3000")],
            refusal: refusal.map(String::from),
        }
    }

    fn reply(candidate: Member, done: bool, refusal: Option<&str>) -> PromoteReply {
        PromoteReply {
            plan: plan(candidate, refusal),
            done,
            epoch: if done { 2 } else { 1 },
            caught_up: if done { 10 } else { 0 },
        }
    }

    const LOSES: &str = "promoting 9e8d7c6b-replica would lose 2 writes the old master had \
                         (shard 1); bring the old master back, or promote with --force to \
                         accept the loss";

    /// A candidate replica served with `answer`, named by address in its status.
    fn candidate(answer: impl Fn(Member) -> PromoteReply) -> Fake {
        let fake = Fake {
            node_id: "9e8d7c6b-replica".into(),
            master: Some(closed_endpoint().to_string()),
            address: String::new(),
            ..Fake::default()
        };
        Fake {
            promote: Some(Ok(answer(member("9e8d7c6b-replica", "(served)")))),
            ..fake
        }
    }

    async fn promote(
        endpoints: Vec<Endpoint>,
        node: &str,
        force: bool,
        plan: bool,
        format: Format,
    ) -> (Result<(), Error>, String) {
        let args = Args {
            node: node.into(),
            force,
            plan,
        };
        let mut out = Vec::new();
        let result = run(args, &globals(endpoints, format), &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn nodes_by_id_prefix_or_not_at_all() {
        let members = [
            member("3f2a9c1b-7d4e", "h:1"),
            member("3f2b0000", "h:2"),
            member("77aa0b12", "h:3"),
        ];
        assert_eq!(pick("77", &members).expect("prefix").address, "h:3");
        assert_eq!(pick("3f2b0000", &members).expect("exact").address, "h:2");
        let e = pick("3f2", &members).expect_err("ambiguous");
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(
            e.to_string(),
            "\"3f2\" matches several members (3f2a9c1b-7d4e at h:1, 3f2b0000 at h:2); give more \
             of the node id"
        );
        let e = pick("zz", &members).expect_err("unknown");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string().starts_with(
                "\"zz\" is not a member of this cluster (members: 3f2a9c1b-7d4e at h:1, \
                 3f2b0000 at h:2, 77aa0b12 at h:3)"
            ),
            "{e}"
        );
    }

    #[test]
    fn the_plan_in_text() {
        let mut out = Vec::new();
        let r = reply(
            member("9e8d7c6b-replica", "127.0.0.1:3002"),
            false,
            Some(LOSES),
        );
        print_text(&mut out, &r, true).expect("print");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            format!(
                "\
candidate    9e8d7c6b-replica at 127.0.0.1:3002
epoch        1 (the candidate takes epoch 2)
old master   6f1c2a9e-master at 127.0.0.1:3000: does not answer
unreachable  6f1c2a9e-master at 127.0.0.1:3000

shard  candidate  replicas        master seq heard  catch up from     after  lost
    0  1:120      a1b2c3d4 1:130               130  a1b2c3d4 (1:130)  1:130     0
    1  1:98       a1b2c3d4 1:98                100  -                 1:98      2

lost         2 writes in all (the old master had them, no live node has)
refused      {LOSES}
"
            )
        );
    }

    #[tokio::test]
    async fn by_address_the_candidate_is_asked_directly() {
        let fake = candidate(|m| reply(m, true, None));
        let live = fake.live.clone();
        let at = serve(fake).await;
        // No endpoint needs to answer: the address is enough.
        let (result, out) = promote(
            vec![closed_endpoint()],
            &format!("http://{at}"),
            false,
            false,
            Format::Text,
        )
        .await;
        result.expect("promoted");
        assert!(
            out.ends_with(
                "promoted 9e8d7c6b-replica at (served): epoch 2; caught up 10 entries from \
                 other replicas; 2 writes lost (forced)\n"
            ),
            "{out}"
        );
        let asked = live.promotes.lock().expect("lock").clone();
        let [(req, left)] = asked.as_slice() else {
            panic!("{asked:?}")
        };
        assert_eq!(
            req,
            &PromoteRequest {
                force: false,
                plan_only: false,
                timeout_ms: 5000,
            }
        );
        assert!(*left > Duration::from_secs(5), "deadline {left:?} away");
    }

    #[tokio::test]
    async fn by_prefix_among_the_endpoints_when_no_master_answers() {
        let fake = candidate(|m| reply(m, false, None));
        let live = fake.live.clone();
        let at = serve(fake).await;
        let other = serve(Fake {
            node_id: "a1b2c3d4-replica".into(),
            master: Some(closed_endpoint().to_string()),
            address: String::new(),
            ..Fake::default()
        })
        .await;
        let (result, out) = promote(vec![other, at], "9e8d", false, true, Format::Json).await;
        result.expect("a plan without a refusal");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(json["done"], false);
        assert_eq!(
            json["plan"]["shards"][0]["candidate"],
            serde_json::json!({"epoch": 1, "seq": 120})
        );
        assert_eq!(json["plan"]["shards"][1]["lost"], 2);
        assert_eq!(json["plan"]["old_master_answers"], false);
        assert!(json["plan"]["refusal"].is_null());
        assert!(live.promotes.lock().expect("lock")[0].0.plan_only);
    }

    #[tokio::test]
    async fn a_master_that_answers_lists_the_members() {
        let fake = candidate(|m| reply(m, false, Some(LOSES)));
        let at = serve(fake).await;
        let master = serve(Fake {
            replicas: vec![ReplicaStatus {
                node_id: "9e8d7c6b-replica".into(),
                address: at.to_string(),
                link: LinkState::Down,
                last_seen_secs: 30.0,
                last_seen_unix_ms: Some(1),
                shards: Vec::new(),
            }]
            .into(),
            ..Fake::default()
        })
        .await;
        let (result, out) =
            promote(vec![master], "9e8d7c6b-replica", false, false, Format::Text).await;
        let e = result.expect_err("refused");
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(e.to_string(), LOSES);
        assert!(out.ends_with(&format!("refused      {LOSES}\n")), "{out}");
    }

    #[tokio::test]
    async fn an_unknown_node_exits_2_naming_the_members() {
        let at = serve(candidate(|m| reply(m, true, None))).await;
        let (result, out) = promote(vec![at.clone()], "nope", false, false, Format::Text).await;
        let e = result.expect_err("unknown");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string().contains(&format!("9e8d7c6b-replica at {at}")),
            "{e}"
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_from_the_candidate_exits_2_with_its_message() {
        let fake = Fake {
            promote: Some(Err(KvError::FailoverRefused {
                reason: "shard 1 of this node is being copied (full resync): wait until \
                         kvctl status shows it done, or promote another replica"
                    .into(),
            })),
            master: Some(closed_endpoint().to_string()),
            ..Fake::default()
        };
        let at = serve(fake).await;
        let (result, _) = promote(
            vec![at.clone()],
            &at.to_string(),
            false,
            false,
            Format::Text,
        )
        .await;
        let e = result.expect_err("refused");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string()
                .starts_with("shard 1 of this node is being copied"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn nobody_to_ask_for_the_members_exits_3() {
        let (result, _) =
            promote(vec![closed_endpoint()], "9e8d", false, false, Format::Text).await;
        assert_eq!(result.expect_err("unreachable").exit(), Exit::Unreachable);
    }
}
