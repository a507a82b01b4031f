//! Switchover, promotion, take-over and forget: the operator's procedures. Each step that
//! changes the role or the epoch is an event of the state machine; the plans (which node, why,
//! what would be lost) are pure functions tested on their own.
//!
//! ```text
//!  switchover (on the master)                    promotion (on a replica, master gone)
//!  plan: best replica (link up, not resyncing,   preflight: every member's status: positions,
//!        fewest operations behind)                 last master sequence heard, old master?
//!  connect to it (unreachable: nothing changed)  refuse: resyncing, old master answers, newer
//!  Pause ─ drain admitted writes ─ positions       epoch, writes lost or no majority (no --force)
//!  wait until the target acknowledged them       detach the follower; catch up every shard from
//!  HandOver (persist E+1 for it) ─ take_over       the most advanced replica
//!  ok: HandedOver (follow it)                    Promote (persist E+1, majority, announce)
//!  refused / unknown: ask it; else Reclaim (E+2)
//! ```

use std::time::Duration;
use tokio::time::Instant;

use shared::{
    KvError, NodeStatus, Role,
    addr::parse_endpoint,
    cluster::{
        Candidate, Epoch, FailoverPlan, FailoverRecord, FailoverReply, FailoverRequest, LogPos,
        Member, NodePosition, PromoteReply, PromoteRequest, PromotionPlan, ShardPlan,
        ShardPosition, TakeOverRequest,
    },
};

use super::{
    peers::{self, CallError},
    runtime::{self, handle, now_unix_ms},
    state::{Event, Gate},
};
use crate::node::Node;

/// How long a preflight waits for each member's status (a frozen node accepts the connection
/// and never answers: it counts as not answering after this).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest and longest switchover timeouts taken from a request.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a new master waits for a majority before it answers the operator.
const MAJORITY_WAIT: Duration = Duration::from_secs(5);

/// Finds a member by node id, a unique prefix of one, or its address (`http://host:port`).
///
/// # Errors
/// `UnknownNode`, or `AmbiguousNode` for a prefix of several.
pub fn resolve(members: &[Member], name: &str) -> Result<Member, KvError> {
    let name = name.trim();
    if let Some(m) = members.iter().find(|m| m.node_id == name) {
        return Ok(m.clone());
    }
    if (name.contains(':') || name.contains('/'))
        && let Ok(want) = parse_endpoint(name, 3000)
    {
        let want = want.to_string();
        if let Some(m) = members
            .iter()
            .find(|m| parse_endpoint(&m.address, 3000).is_ok_and(|a| a.to_string() == want))
        {
            return Ok(m.clone());
        }
    }
    let matches: Vec<&Member> = members
        .iter()
        .filter(|m| !name.is_empty() && m.node_id.starts_with(name))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(KvError::UnknownNode {
            node: name.to_string(),
            known: members
                .iter()
                .map(|m| format!("{} at {}", m.node_id, m.address))
                .collect(),
        }),
        many => Err(KvError::AmbiguousNode {
            node: name.to_string(),
            matches: many
                .iter()
                .map(|m| format!("{} at {}", m.node_id, m.address))
                .collect(),
        }),
    }
}

/// A replica as a switchover candidate, as the master's registry sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The replica.
    pub node: Member,
    /// Heard from within the replica timeout.
    pub link_up: bool,
    /// Seconds since it was last heard from.
    pub silent_secs: f64,
    /// A full-resync copy to it is in progress.
    pub resyncing: bool,
    /// Operations behind, summed over shards.
    pub ops_behind: u64,
}

/// Which replica a switchover hands over to, and why; `to` is the operator's choice.
#[must_use]
pub fn switchover_plan(
    master: Member,
    epoch: Epoch,
    seen: &[Seen],
    to: Option<&Member>,
) -> FailoverPlan {
    let mut candidates: Vec<Candidate> = seen
        .iter()
        .map(|s| Candidate {
            node: s.node.clone(),
            link_up: s.link_up,
            resyncing: s.resyncing,
            ops_behind: s.ops_behind,
            verdict: if !s.link_up {
                format!(
                    "down: not heard from for {:.1}s; bring it back or pick another",
                    s.silent_secs
                )
            } else if s.resyncing {
                "resyncing: a full resync is copying one of its shards".into()
            } else {
                format!("can take over: {} operations behind", s.ops_behind)
            },
        })
        .collect();
    let eligible = |c: &Candidate| c.link_up && !c.resyncing;
    candidates.sort_by(|a, b| {
        eligible(b)
            .cmp(&eligible(a))
            .then(a.ops_behind.cmp(&b.ops_behind))
            .then(a.node.node_id.cmp(&b.node.node_id))
    });
    let (target, reason) = match to {
        Some(want) => match candidates.iter().find(|c| c.node.node_id == want.node_id) {
            Some(c) if eligible(c) => (Some(c.node.clone()), "chosen with --to".to_string()),
            Some(c) => (
                None,
                format!(
                    "replica {} at {} cannot take over: {}",
                    c.node.node_id, c.node.address, c.verdict
                ),
            ),
            None => (
                None,
                format!(
                    "{} at {} is not a replica of this master",
                    want.node_id, want.address
                ),
            ),
        },
        None => match candidates.first() {
            None => (
                None,
                "this master has no replica to hand over to; start one with \
                 `kvd --replica=true --master=<this master>` and wait until it caught up"
                    .to_string(),
            ),
            Some(c) if eligible(c) => (
                Some(c.node.clone()),
                format!(
                    "the most caught up replica whose link is up and that is not resyncing ({} \
                     operations behind)",
                    c.ops_behind
                ),
            ),
            Some(_) => (
                None,
                "no replica can take over: every replica is down or resyncing (see the \
                 candidates); bring one back and retry"
                    .to_string(),
            ),
        },
    };
    FailoverPlan {
        master,
        epoch,
        target,
        reason,
        candidates,
    }
}

fn refused(reason: impl Into<String>) -> KvError {
    KvError::FailoverRefused {
        reason: reason.into(),
    }
}

fn timeout_of(ms: u64) -> Duration {
    Duration::from_millis(ms).clamp(MIN_TIMEOUT, MAX_TIMEOUT)
}

/// Waits until the gate is open (a new master got its majority), up to `timeout`.
async fn opened(node: &Node, timeout: Duration) -> bool {
    let mut changes = node.cluster().gate().subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if node.cluster().view().gate == Gate::Open {
            return true;
        }
        changes.borrow_and_update();
        if node.cluster().view().gate == Gate::Open {
            return true;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return node.cluster().view().gate == Gate::Open;
        }
    }
}

/// A switchover from this master to a replica (`kvctl failover`), or its plan.
///
/// # Errors
/// `NotMaster` on a replica; `FailoverRefused` when no replica can take over (nothing changed);
/// `FailoverAborted` when it started and was called off (writes resumed).
#[allow(clippy::too_many_lines)]
pub async fn failover(node: &Node, req: FailoverRequest) -> Result<FailoverReply, KvError> {
    let cluster = node.cluster();
    let view = cluster.view();
    if view.role != Role::Master {
        return Err(KvError::NotMaster {
            master: view.master.map(|m| m.address),
            epoch: view.epoch,
        });
    }
    let me = cluster.me().clone();
    let registry = node.cluster_status()?.replicas;
    let seen: Vec<Seen> = registry
        .iter()
        .map(|r| Seen {
            node: Member {
                node_id: r.node_id.clone(),
                address: r.address.clone(),
            },
            link_up: r.link == shared::LinkState::Up,
            silent_secs: r.last_seen_secs,
            resyncing: node.master().is_copying(&r.node_id),
            ops_behind: r.shards.iter().map(|s| s.ops_behind).sum(),
        })
        .collect();
    let to = match &req.to {
        Some(name) => {
            let replicas: Vec<Member> = seen.iter().map(|s| s.node.clone()).collect();
            Some(resolve(&replicas, name)?)
        }
        None => None,
    };
    let plan = switchover_plan(me.clone(), view.epoch, &seen, to.as_ref());
    let reply = |plan: FailoverPlan, done, epoch, pause_ms, positions| FailoverReply {
        plan,
        done,
        epoch,
        pause_ms,
        positions,
    };
    if req.plan_only {
        return Ok(reply(plan, false, view.epoch, 0, Vec::new()));
    }
    let Some(target) = plan.target.clone() else {
        return Err(refused(plan.reason));
    };
    if view.gate != Gate::Open {
        return Err(refused(format!(
            "this master does not admit writes now (epoch {}); retry once it does",
            view.epoch
        )));
    }
    let timeout = timeout_of(req.timeout_ms);
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    // Connected before anything changes: an unreachable target leaves the master as it was.
    let client = peers::connect(
        node.peer_credentials(),
        &target.address,
        left().min(PROBE_TIMEOUT * 2),
    )
    .await
    .map_err(|e| refused(format!("{e}; nothing changed")))?;
    let started = Instant::now();
    tracing::warn!(
        target = %target.address,
        node_id = %target.node_id,
        epoch = view.epoch,
        timeout_ms = timeout.as_millis(),
        "switchover: writes paused"
    );
    handle(
        node,
        Event::Pause {
            target: target.clone(),
        },
    )
    .await?;
    let resume = |reason: String| async move {
        let _ = handle(node, Event::Resume).await;
        tracing::warn!(%reason, "switchover called off; writes resumed");
        Err(KvError::FailoverAborted { reason })
    };
    if !cluster.gate().drained(left()).await {
        return resume(format!(
            "{} writes in flight did not finish within {} ms",
            cluster.gate().in_flight(),
            timeout.as_millis()
        ))
        .await;
    }
    let positions: Vec<u64> = (0..node.config().shards)
        .map(|i| {
            node.shard_at(i)
                .map_or(0, |s| *s.writer.last_seq().borrow())
        })
        .collect();
    // Wait until the target acknowledged every shard's last sequence.
    let mut acks = node.master().ack_changes();
    loop {
        acks.borrow_and_update();
        let behind: Vec<(u32, u64, u64)> = (0u32..)
            .zip(&positions)
            .filter_map(|(s, &p)| {
                let acked = node.master().acked_by(&target.node_id, s);
                (acked < p).then_some((s, acked, p))
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        if tokio::time::timeout(left(), acks.changed()).await.is_err() {
            let (s, acked, p) = behind[0];
            return resume(format!(
                "replica {} did not catch up within {} ms: shard {s} at {acked} of {p}",
                target.node_id,
                timeout.as_millis()
            ))
            .await;
        }
    }
    handle(node, Event::HandOver).await?;
    let new_epoch = view.epoch + 1;
    let take = TakeOverRequest {
        from: me.clone(),
        cluster_id: cluster.cluster_id().unwrap_or_default(),
        epoch: new_epoch,
        positions: positions.clone(),
    };
    let outcome = peers::take_over(&client, &target.address, take, left().max(PROBE_TIMEOUT)).await;
    let took_over = match outcome {
        Ok(()) => true,
        Err(CallError::Refused(e)) => {
            tracing::warn!(error = %e, "switchover: the target refused to take over");
            false
        }
        Err(CallError::NoAnswer(e)) => {
            // Unknown: did it take over? Ask it; only its own word that it did counts.
            tracing::warn!(error = %e, "switchover: no answer to take_over; asking the target");
            match peers::status(node.peer_credentials(), &target.address, PROBE_TIMEOUT * 2).await {
                Ok(s) => {
                    s.epoch >= new_epoch
                        && s.master
                            .as_ref()
                            .is_some_and(|m| m.node_id == target.node_id)
                }
                Err(_) => false,
            }
        }
    };
    if !took_over {
        handle(node, Event::Reclaim).await?;
        opened(node, MAJORITY_WAIT).await;
        let epoch = cluster.view().epoch;
        return Err(KvError::FailoverAborted {
            reason: format!(
                "replica {} did not take over epoch {new_epoch}, so this master took epoch {epoch} \
                 (a late hand-over can only make a master that is already fenced)",
                target.node_id
            ),
        });
    }
    handle(node, Event::HandedOver).await?;
    let pause = started.elapsed();
    let pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(
        new_master = %target.address,
        node_id = %target.node_id,
        epoch = new_epoch,
        pause_ms,
        "switchover done: this node is now a replica"
    );
    runtime::record_failover(
        node,
        FailoverRecord {
            epoch: new_epoch,
            kind: "switchover".into(),
            from: Some(me),
            to: target.clone(),
            at_unix_ms: now_unix_ms(),
            duration_ms: pause_ms,
            reason: plan.reason.clone(),
        },
    )
    .await;
    Ok(reply(plan, true, new_epoch, pause_ms, positions))
}

/// The old master's hand-over, on the target replica.
///
/// # Errors
/// `FailoverRefused` when this replica cannot take over (it says why).
pub async fn take_over(node: &Node, req: TakeOverRequest) -> Result<(), KvError> {
    if node.cluster().cluster_id().as_deref() != Some(req.cluster_id.as_str()) {
        return Err(refused(format!(
            "{} belongs to cluster {}, not this node's",
            req.from.address, req.cluster_id
        )));
    }
    let shards = node.config().shards;
    let mut caught_up = req.positions.len() == shards as usize;
    let mut resyncing = false;
    let mut positions = Vec::with_capacity(req.positions.len());
    for (i, &p) in (0..shards).zip(&req.positions) {
        let (local, repl) = node.replica_shard(i)?;
        caught_up &= *local.writer.last_seq().borrow() >= p;
        resyncing |= repl.resyncing.load(std::sync::atomic::Ordering::Acquire);
        positions.push(LogPos {
            epoch: local.writer.epoch_at(p),
            seq: p,
        });
    }
    handle(
        node,
        Event::TakeOver {
            from: req.from.clone(),
            epoch: req.epoch,
            caught_up,
            resyncing,
            positions,
        },
    )
    .await?;
    opened(node, MAJORITY_WAIT).await;
    tracing::warn!(
        from = %req.from.address,
        epoch = req.epoch,
        "took over as the master (switchover)"
    );
    runtime::record_failover(
        node,
        FailoverRecord {
            epoch: req.epoch,
            kind: "switchover".into(),
            from: Some(req.from),
            to: node.cluster().me().clone(),
            at_unix_ms: now_unix_ms(),
            duration_ms: 0,
            reason: "handed over by the master".into(),
        },
    )
    .await;
    Ok(())
}

/// What the candidate learned in its preflight.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The candidate.
    pub candidate: Member,
    /// Its epoch.
    pub epoch: Epoch,
    /// The master of that epoch.
    pub old_master: Option<Member>,
    /// The candidate's positions.
    pub mine: Vec<ShardPosition>,
    /// Every member that answered, with its status.
    pub answered: Vec<(Member, NodeStatus)>,
    /// Members that did not.
    pub unreachable: Vec<Member>,
    /// Members in all (the candidate included).
    pub members: usize,
}

/// The promotion plan from a preflight: per shard, who is ahead, what the candidate gets by
/// catching up, what is lost; and whether the promotion may go ahead.
#[must_use]
pub fn promotion_plan(p: &Preflight, force: bool) -> PromotionPlan {
    let old_master_answers = p.old_master.as_ref().is_some_and(|m| {
        p.answered
            .iter()
            .any(|(a, s)| a.node_id == m.node_id && s.role == Role::Master)
    });
    let other_master = p
        .answered
        .iter()
        .find(|(_, s)| s.role == Role::Master && s.epoch >= p.epoch);
    let newer = p.answered.iter().find(|(_, s)| s.epoch > p.epoch);
    let shards: Vec<ShardPlan> = p
        .mine
        .iter()
        .map(|own| {
            let replicas: Vec<NodePosition> = p
                .answered
                .iter()
                .filter(|(_, s)| s.role == Role::Replica)
                .filter_map(|(m, s)| {
                    s.shards
                        .iter()
                        .find(|x| x.shard == own.shard)
                        .map(|x| NodePosition {
                            node_id: m.node_id.clone(),
                            address: m.address.clone(),
                            pos: LogPos {
                                epoch: x.last_epoch,
                                seq: x.last_seq,
                            },
                            master_seq: x.master_seq.max(x.last_seq),
                        })
                })
                .collect();
            let heard = replicas
                .iter()
                .map(|r| r.master_seq)
                .chain(std::iter::once(own.master_seq))
                .max()
                .unwrap_or(0);
            let best = replicas
                .iter()
                .filter(|r| r.pos > own.pos)
                .max_by_key(|r| r.pos)
                .cloned();
            let after = best.as_ref().map_or(own.pos, |b| b.pos);
            ShardPlan {
                shard: own.shard,
                candidate: own.pos,
                replicas,
                master_seq_heard: heard,
                catch_up_from: best,
                after_catch_up: after,
                lost: heard.saturating_sub(after.seq),
            }
        })
        .collect();
    let lost: u64 = shards.iter().map(|s| s.lost).sum();
    let reachable = 1 + p.answered.len();
    let majority = p.members.max(1) / 2 + 1;
    let refusal = if let Some(s) = p.mine.iter().find(|s| s.resyncing) {
        Some(format!(
            "shard {} of {} is in a full resync: it cannot take over until the copy completes \
             (kvctl status shows it); wait, or promote another replica",
            s.shard, p.candidate.node_id
        ))
    } else if let Some((m, s)) = other_master {
        Some(format!(
            "{} at {} is the master of epoch {} and answers: use `kvctl failover` for a \
             switchover, which loses nothing",
            m.node_id, m.address, s.epoch
        ))
    } else if let Some((m, s)) = newer {
        Some(format!(
            "{} at {} already knows epoch {} (this node knows {}): a newer master exists{}; \
             let this node follow it instead",
            m.node_id,
            m.address,
            s.epoch,
            p.epoch,
            s.master.as_ref().map_or_else(String::new, |x| format!(
                " ({} at {})",
                x.node_id, x.address
            ))
        ))
    } else if lost > 0 && !force {
        let worst: Vec<String> = shards
            .iter()
            .filter(|s| s.lost > 0)
            .map(|s| {
                format!(
                    "shard {}: {} (master at {}, best live {})",
                    s.shard, s.lost, s.master_seq_heard, s.after_catch_up.seq
                )
            })
            .collect();
        Some(format!(
            "promoting {} would lose {lost} writes that the master had and no live node has ({}); \
             bring the master back, or pass --force to accept the loss",
            p.candidate.node_id,
            worst.join(", ")
        ))
    } else if reachable < majority && !force {
        Some(format!(
            "only {reachable} of {} members answer; a promotion needs a majority ({majority}) so \
             that no other node can be promoted to the same epoch; bring members back, or pass \
             --force if you are sure no other promotion is happening",
            p.members
        ))
    } else {
        None
    };
    PromotionPlan {
        candidate: p.candidate.clone(),
        epoch: p.epoch,
        old_master: p.old_master.clone(),
        old_master_answers,
        shards,
        lost,
        unreachable: p.unreachable.clone(),
        refusal,
    }
}

/// Asks every other member for its status.
async fn preflight(node: &Node) -> Preflight {
    let cluster = node.cluster();
    let view = cluster.view();
    let me = cluster.me().clone();
    let members = cluster.file().member_list();
    let mut others: Vec<Member> = members
        .iter()
        .filter(|m| m.node_id != me.node_id)
        .cloned()
        .collect();
    if let Some(m) = &view.master
        && m.node_id != me.node_id
        && !others.iter().any(|o| o.node_id == m.node_id)
    {
        others.push(m.clone());
    }
    let asks = others
        .iter()
        .map(|m| peers::status(node.peer_credentials(), &m.address, PROBE_TIMEOUT));
    let answers = futures::future::join_all(asks).await;
    let mut answered = Vec::new();
    let mut unreachable = Vec::new();
    for (m, a) in others.into_iter().zip(answers) {
        match a {
            Ok(s) if s.node_id == m.node_id => answered.push((m, s)),
            _ => unreachable.push(m),
        }
    }
    Preflight {
        candidate: me,
        epoch: view.epoch,
        old_master: view.master,
        mine: runtime::positions(node),
        answered,
        unreachable,
        members: members.len().max(1),
    }
}

/// Promotes this replica while the master is gone (`kvctl promote`), or plans it.
///
/// # Errors
/// `FailoverRefused` with the plan's reason; a catch-up that fails (nothing changed).
pub async fn promote(node: &Node, req: PromoteRequest) -> Result<PromoteReply, KvError> {
    let view = node.cluster().view();
    if view.role == Role::Master {
        return Err(refused(format!(
            "this node is already the master of epoch {}; promote a replica",
            view.epoch
        )));
    }
    let started = Instant::now();
    let pre = preflight(node).await;
    let plan = promotion_plan(&pre, req.force);
    if req.plan_only {
        return Ok(PromoteReply {
            plan,
            done: false,
            epoch: view.epoch,
            caught_up: 0,
        });
    }
    if let Some(reason) = &plan.refusal {
        return Err(refused(reason.clone()));
    }
    tracing::warn!(
        epoch = view.epoch,
        lost = plan.lost,
        force = req.force,
        unreachable = plan.unreachable.len(),
        "promotion: catching up from the most advanced replicas"
    );
    handle(node, Event::Detach).await?;
    let deadline = Instant::now() + timeout_of(req.timeout_ms);
    let mut caught_up = 0;
    for s in &plan.shards {
        if let Some(from) = &s.catch_up_from {
            match crate::replication::replica::catch_up(
                node,
                &from.address,
                s.shard,
                from.pos,
                deadline,
            )
            .await
            {
                Ok(n) => {
                    caught_up += n;
                    tracing::info!(shard = s.shard, from = %from.address, entries = n, "caught up before the promotion");
                }
                Err(e) => {
                    let _ = handle(node, Event::Reattach).await;
                    return Err(refused(format!(
                        "catching up shard {} from {} failed: {e}; nothing was promoted",
                        s.shard, from.node_id
                    )));
                }
            }
        }
    }
    let highest = pre
        .answered
        .iter()
        .map(|(_, s)| s.epoch)
        .max()
        .unwrap_or(0)
        .max(view.epoch);
    handle(
        node,
        Event::Promote {
            highest,
            force: req.force,
        },
    )
    .await?;
    let epoch = node.cluster().view().epoch;
    if !opened(node, MAJORITY_WAIT).await {
        tracing::warn!(
            epoch,
            "promoted, but no majority accepted the epoch yet: writes are held until one does"
        );
    }
    let kind = if req.force {
        "promote --force"
    } else {
        "promote"
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(
        epoch,
        caught_up,
        lost = plan.lost,
        duration_ms,
        "promoted to master ({kind})"
    );
    runtime::record_failover(
        node,
        FailoverRecord {
            epoch,
            kind: kind.into(),
            from: plan.old_master.clone(),
            to: node.cluster().me().clone(),
            at_unix_ms: now_unix_ms(),
            duration_ms,
            reason: if plan.lost > 0 {
                format!("the master was gone; {} writes lost", plan.lost)
            } else {
                "the master was gone".into()
            },
        },
    )
    .await;
    Ok(PromoteReply {
        plan,
        done: true,
        epoch,
        caught_up,
    })
}

/// Removes a replica from the membership for good (`kvctl replicas forget`).
///
/// # Errors
/// `NotMaster` on a replica; `UnknownNode`/`AmbiguousNode`; `InvalidArgument` for a replica
/// that is up (it would join again).
pub async fn forget(node: &Node, name: &str) -> Result<Member, KvError> {
    let view = node.cluster().view();
    if view.role != Role::Master {
        return Err(KvError::NotMaster {
            master: view.master.map(|m| m.address),
            epoch: view.epoch,
        });
    }
    let member = resolve(&node.cluster().others(), name)?;
    if node.master().is_up(&member.node_id) {
        return Err(KvError::InvalidArgument(format!(
            "replica {} at {} is up: stop it first, or it joins again",
            member.node_id, member.address
        )));
    }
    let id = member.node_id.clone();
    let file = node
        .cluster()
        .update_file(move |f| f.remove(&id).is_some())
        .await?;
    node.master().forget(&member.node_id);
    handle(node, Event::Members(file.member_list())).await?;
    tracing::warn!(node_id = %member.node_id, address = %member.address, "replica forgotten");
    Ok(member)
}

#[cfg(test)]
#[path = "failover_test.rs"]
mod tests;
