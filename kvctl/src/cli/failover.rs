//! `kvctl failover [--to NODE] [--plan]`: a switchover from the live master to one of its
//! replicas, or (`--plan`) only what one would do.
//!
//! ```text
//!  kvctl ──failover{to, plan_only, timeout_ms = --timeout}──► the master (found among -e)
//!          deadline: --timeout to find it + --timeout for the switchover itself
//!                              master: pick the target, pause writes, wait until it has
//!                              every shard's last sequence, hand over (epoch + 1), follow it
//!        ◄──FailoverReply{plan, done, epoch, pause_ms}──
//! ```
//!
//! `--timeout` is the switchover's own time (sent as `timeout_ms`: how long writes may wait,
//! and the whole handover may take); kvctl waits that long again for the answer. Text output
//! is the plan (the master and its epoch, every candidate with its verdict, the target and
//! why), then, once done, `switched over to <node id> at <address>: epoch N; writes paused
//! for X ms`. JSON is the [`FailoverReply`] as it came.
//!
//! The master is found as writes find it, but if the node found answers `NotMaster` (the
//! mastership moved while the request was on its way), kvctl stops there instead of asking the
//! new master to hand over again.
//!
//! Exit codes: 0 when switched over (or, with `--plan`, when a target would be chosen); 2 when
//! the master refuses (no replica, a replica that is down, unknown or ambiguous `--to`: its
//! message names the cause and what to do), the plan has no target, or the master changed
//! meanwhile; 3 when no master can be
//! reached; 4 when the request was sent and no answer came (`kvctl status` shows which node is
//! the master now).

use std::io::{self, Write};

use shared::{
    KvError, client,
    cluster::{FailoverPlan, FailoverReply, FailoverRequest, Member},
};

use crate::{
    cli::Global,
    client::Error,
    output::{Format, short_id, write_json, write_table},
};

/// Flags of `kvctl failover` (the switchover's time is the global `--timeout`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The replica to hand over to: its node id, a unique prefix of one, or its address.
    /// Without it, the master picks the most caught up replica whose link is up and that is
    /// not copying a shard.
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// Only show what would happen: the candidates, their verdicts, the target and why.
    #[arg(long)]
    pub plan: bool,
}

/// Asks the master for the switchover (or its plan) and prints the outcome on `out`.
///
/// # Errors
/// The master's refusal, a plan without a target, or why no master could be reached.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let plan_only = args.plan;
    let req = FailoverRequest {
        to: args.to,
        plan_only,
        timeout_ms: u64::try_from(global.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let reply = match global.client()?.failover(req).await {
        Ok(reply) => reply,
        // Found as the master, it answered that it is not (any more): not followed.
        Err(e @ client::Error::Kv(KvError::NotMaster { .. })) => {
            return Err(Error::Usage(format!(
                "the master changed while the failover was on its way, so nothing was done: \
                 {e}; see kvctl status, and run it again if it is still wanted"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    match global.output {
        Format::Text => print_text(out, &reply, plan_only),
        Format::Json => write_json(out, &reply),
    }
    .map_err(Error::Output)?;
    outcome(&reply, plan_only)
}

/// `Ok` when switched over, or for a plan that has a target; else the master's reason.
fn outcome(reply: &FailoverReply, plan_only: bool) -> Result<(), Error> {
    if reply.done {
        return Ok(());
    }
    match &reply.plan.target {
        None => Err(Error::from(KvError::FailoverRefused {
            reason: format!("no replica can take over: {}", reply.plan.reason),
        })),
        Some(_) if plan_only => Ok(()),
        Some(target) => Err(Error::from(KvError::FailoverRefused {
            reason: format!(
                "the master did not hand over to {} at {}: {}",
                target.node_id, target.address, reply.plan.reason
            ),
        })),
    }
}

fn print_text(out: &mut impl Write, reply: &FailoverReply, plan_only: bool) -> io::Result<()> {
    print_plan(out, &reply.plan)?;
    if reply.done {
        let to = reply.plan.target.as_ref().map_or_else(
            || "the new master".to_string(),
            |t| format!("{} at {}", t.node_id, t.address),
        );
        writeln!(
            out,
            "switched over to {to}: epoch {}; writes paused for {} ms",
            reply.epoch, reply.pause_ms
        )
    } else if reply.plan.target.is_some() && plan_only {
        writeln!(
            out,
            "plan only: nothing was changed (run without --plan to switch over)"
        )
    } else {
        Ok(())
    }
}

/// The master, each candidate with its verdict, and the target with the reason.
fn print_plan(out: &mut impl Write, plan: &FailoverPlan) -> io::Result<()> {
    writeln!(
        out,
        "master  {}, epoch {} (the new master takes epoch {})",
        who(&plan.master),
        plan.epoch,
        plan.epoch + 1
    )?;
    writeln!(out)?;
    if plan.candidates.is_empty() {
        writeln!(out, "no replicas to hand over to")?;
    } else {
        let mut rows = vec![
            [
                "node id",
                "address",
                "link",
                "resyncing",
                "ops behind",
                "verdict",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for c in &plan.candidates {
            rows.push(vec![
                short_id(&c.node.node_id).to_string(),
                c.node.address.clone(),
                if c.link_up { "up" } else { "down" }.to_string(),
                if c.resyncing { "yes" } else { "no" }.to_string(),
                c.ops_behind.to_string(),
                c.verdict.clone(),
            ]);
        }
        write_table(out, &rows, &[false, false, false, false, true, false])?;
    }
    writeln!(out)?;
    match &plan.target {
        Some(t) => writeln!(out, "target  {}: {}", who(t), plan.reason),
        None => writeln!(out, "target  none: {}", plan.reason),
    }
}

/// `<node id> at <address>`.
fn who(m: &Member) -> String {
    format!("{} at {}", m.node_id, m.address)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::cluster::Candidate;

    use super::*;
    use crate::{
        cli::testing::global,
        client::{
            Exit,
            testing::{Fake, serve},
        },
    };

    fn member(id: &str, address: &str) -> Member {
        Member {
            node_id: id.into(),
            address: address.into(),
        }
    }

    fn plan() -> FailoverPlan {
        FailoverPlan {
            master: member("6f1c2a9e-master", "127.0.0.1:3000"),
            epoch: 1,
            target: Some(member("a1b2c3d4-replica", "127.0.0.1:3001")),
            reason: "the most caught up replica with its link up".into(),
            candidates: vec![
                Candidate {
                    node: member("a1b2c3d4-replica", "127.0.0.1:3001"),
                    link_up: true,
                    resyncing: false,
                    ops_behind: 0,
                    verdict: "can take over".into(),
                },
                Candidate {
                    node: member("9e8d7c6b-replica", "127.0.0.1:3002"),
                    link_up: false,
                    resyncing: false,
                    ops_behind: 12,
                    verdict: "its link is down".into(),
                },
            ],
        }
    }

    fn done() -> FailoverReply {
        FailoverReply {
            plan: plan(),
            done: true,
            epoch: 2,
            pause_ms: 87,
            positions: vec![120, 98],
        }
    }

    fn planned() -> FailoverReply {
        FailoverReply {
            plan: plan(),
            done: false,
            epoch: 1,
            pause_ms: 0,
            positions: Vec::new(),
        }
    }

    async fn failover(
        answer: Result<FailoverReply, KvError>,
        args: Args,
        format: Format,
    ) -> (Result<(), Error>, String, Fake) {
        let fake = Fake {
            failover: Some(answer),
            ..Fake::default()
        };
        let at = serve(fake.clone()).await;
        let mut out = Vec::new();
        let result = run(args, &global(at, format), &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"), fake)
    }

    fn args(to: Option<&str>, plan: bool) -> Args {
        Args {
            to: to.map(String::from),
            plan,
        }
    }

    #[tokio::test]
    async fn a_switchover_prints_the_plan_and_the_pause() {
        let (result, out, fake) = failover(Ok(done()), args(None, false), Format::Text).await;
        result.expect("switched over");
        assert_eq!(
            out,
            "\
master  6f1c2a9e-master at 127.0.0.1:3000, epoch 1 (the new master takes epoch 2)

node id   address         link  resyncing  ops behind  verdict
a1b2c3d4  127.0.0.1:3001  up    no                  0  can take over
9e8d7c6b  127.0.0.1:3002  down  no                 12  its link is down

target  a1b2c3d4-replica at 127.0.0.1:3001: the most caught up replica with its link up
switched over to a1b2c3d4-replica at 127.0.0.1:3001: epoch 2; writes paused for 87 ms
"
        );
        let asked = fake.live.failovers.lock().expect("lock").clone();
        let [(req, left)] = asked.as_slice() else {
            panic!("{asked:?}")
        };
        // The global --timeout of the test (5 s) is the switchover's own time, and the
        // deadline leaves room beyond it for the answer.
        assert_eq!(
            req,
            &FailoverRequest {
                to: None,
                plan_only: false,
                timeout_ms: 5000,
            }
        );
        assert!(*left > Duration::from_secs(5), "deadline {left:?} away");
    }

    #[tokio::test]
    async fn a_plan_changes_nothing_and_says_so() {
        let (result, out, fake) =
            failover(Ok(planned()), args(Some("a1b2"), true), Format::Text).await;
        result.expect("a target would be chosen");
        assert!(
            out.ends_with(
                "target  a1b2c3d4-replica at 127.0.0.1:3001: the most caught up replica with \
                 its link up\nplan only: nothing was changed (run without --plan to switch \
                 over)\n"
            ),
            "{out}"
        );
        let asked = fake.live.failovers.lock().expect("lock").clone();
        assert_eq!(asked[0].0.to.as_deref(), Some("a1b2"));
        assert!(asked[0].0.plan_only);
    }

    #[tokio::test]
    async fn json_is_the_reply_as_it_came() {
        let (result, out, _) = failover(Ok(done()), args(None, false), Format::Json).await;
        result.expect("switched over");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(json["done"], true);
        assert_eq!(json["epoch"], 2);
        assert_eq!(json["pause_ms"], 87);
        assert_eq!(json["positions"], serde_json::json!([120, 98]));
        assert_eq!(json["plan"]["target"]["node_id"], "a1b2c3d4-replica");
        assert_eq!(json["plan"]["candidates"][1]["link_up"], false);
        assert_eq!(json["plan"]["candidates"][1]["verdict"], "its link is down");
        let back: FailoverReply = serde_json::from_str(&out).expect("the reply's shape");
        assert_eq!(back, done());
    }

    #[tokio::test]
    async fn a_plan_without_a_target_exits_2_after_printing_it() {
        let mut none = planned();
        none.plan.target = None;
        none.plan.reason = "no replica has its link up; start one, or see kvctl replicas".into();
        let (result, out, _) = failover(Ok(none), args(None, true), Format::Text).await;
        let e = result.expect_err("no target");
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(
            e.to_string(),
            "no replica can take over: no replica has its link up; start one, or see kvctl \
             replicas"
        );
        assert!(
            out.contains("\ntarget  none: no replica has its link up"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_refusal_exits_2_with_the_masters_message() {
        let refusal = KvError::FailoverRefused {
            reason: "replica 9e8d7c6b at 127.0.0.1:3002 is down: pick another with --to, or \
                     bring it back"
                .into(),
        };
        let (result, out, _) =
            failover(Err(refusal), args(Some("9e8d"), false), Format::Text).await;
        let e = result.expect_err("refused");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string()
                .starts_with("replica 9e8d7c6b at 127.0.0.1:3002 is down"),
            "{e}"
        );
        assert!(out.is_empty());
        let unknown = KvError::UnknownNode {
            node: "zz".into(),
            known: vec!["a1 at h:1".into()],
        };
        let (result, _, _) = failover(Err(unknown), args(Some("zz"), false), Format::Text).await;
        let e = result.expect_err("unknown");
        assert_eq!(e.exit(), Exit::Usage);
        assert!(
            e.to_string().contains("is not a member of this cluster"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn it_is_sent_to_the_master_through_a_replica() {
        let master = Fake {
            failover: Some(Ok(done())),
            ..Fake::default()
        };
        let live = master.live.clone();
        let master = serve(master).await;
        let replica = serve(Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        })
        .await;
        let mut out = Vec::new();
        run(args(None, false), &global(replica, Format::Text), &mut out)
            .await
            .expect("switched over");
        assert_eq!(live.failovers.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn no_answer_after_sending_exits_4() {
        // The master answers its status at once, and never the failover.
        let fake = Fake {
            failover: Some(Ok(done())),
            write_delay: Duration::from_secs(60),
            ..Fake::default()
        };
        let live = fake.live.clone();
        let at = serve(fake).await;
        let mut g = global(at, Format::Text);
        g.timeout = Duration::from_millis(200);
        let mut out = Vec::new();
        let e = run(args(None, false), &g, &mut out)
            .await
            .expect_err("no answer");
        assert_eq!(e.exit(), Exit::OutcomeUnknown, "{e}");
        assert!(
            e.to_string()
                .starts_with("the outcome of the failover sent to the node at"),
            "{e}"
        );
        assert!(e.to_string().ends_with("(kvctl status)"), "{e}");
        assert_eq!(live.failovers.lock().expect("lock").len(), 1, "sent once");
        assert!(out.is_empty());
    }
}
