//! Automatic failover (`--failover=auto`, `docs/auto-failover.md`): the vote a node grants or
//! refuses, the votes a candidate asks for, and the detector that starts an election.
//!
//! ```text
//!  detector (every replica): no answer from the master for T, and up for T
//!     └─ random delay in [0, T/2) ─ still lost? ─ pre-vote to every member (nothing persisted)
//!           └─ a majority would grant ─ Promote (persist E+1 for itself) ─ RequestVotes
//!                 votes granted ─ HelloReply events ─ majority ─ catch-up ─ established ─ writes
//!                 no majority within T ─ ElectionLost (a replica of E+1 again)
//!  vote(request) on a voter: grants only if
//!     it lost its master for T itself (a replica), or it is a master whose lease ended;
//!     the candidate is at least as far as it on every shard; no other master for the epoch
//! ```
//!
//! The decision of *whether* to grant is here (it needs clocks and positions); the acceptance
//! itself is the state machine's `Hello` (persisted before the answer, one master per epoch).

use std::time::Duration;
use tokio::time::Instant;

use shared::{
    KvError, Role,
    cluster::{ElectionStatus, Epoch, LogPos, Member, VoteReply, VoteRequest},
};
use tokio_util::sync::CancellationToken;

use super::{
    peers,
    runtime::{self, handle, notify, positions},
    state::Event,
};
use crate::node::Node;

/// A candidate's tally: the epoch, the node ids that granted (itself first), the votes needed,
/// and when it started (milliseconds since the Unix epoch).
pub type Tally = (Epoch, Vec<String>, u32, u64);

/// How often the detector looks at the link to the master.
const TICK: Duration = Duration::from_millis(100);

/// This node's last position on every shard, in shard order.
fn own_positions(node: &Node) -> Vec<LogPos> {
    let mut p = positions(node);
    p.sort_by_key(|s| s.shard);
    p.into_iter().map(|s| s.pos).collect()
}

/// Why this node would not grant a vote to `req` now (`None`: it would).
fn refusal(node: &Node, req: &VoteRequest) -> Option<String> {
    let cfg = node.config();
    let cluster = node.cluster();
    let view = cluster.view();
    let timeout = cfg.failover_timeout;
    if !cfg.auto_failover {
        return Some("this node fails over by command only (--failover=manual)".into());
    }
    if cluster.cluster_id().as_deref() != Some(req.cluster_id.as_str()) {
        return Some(format!(
            "the candidate belongs to cluster {}",
            req.cluster_id
        ));
    }
    if req.epoch <= view.epoch
        && !(req.epoch == view.epoch
            && view
                .master
                .as_ref()
                .is_some_and(|m| m.node_id == req.from.node_id))
    {
        return Some(format!(
            "epoch {} is not above this node's {} (whose master is {})",
            req.epoch,
            view.epoch,
            view.master
                .as_ref()
                .map_or("not known", |m| m.address.as_str())
        ));
    }
    if node.uptime() < timeout {
        return Some(format!(
            "started {} ms ago: no vote within the failover timeout of a start",
            node.uptime().as_millis()
        ));
    }
    match view.role {
        // A master votes only once its lease has ended; one without a lease (a cluster of two,
        // where no election can happen without it) never does.
        Role::Master => match node.lease_left() {
            Some(left) if left.is_zero() => {}
            Some(left) => {
                return Some(format!(
                    "this node is the master and its lease runs for {} ms more",
                    left.as_millis()
                ));
            }
            None => return Some("this node is the master".into()),
        },
        Role::Replica => {
            let silent = node.replica().since_contact();
            if silent < timeout {
                return Some(format!(
                    "this replica heard from its master {} ms ago (failover timeout {} ms)",
                    silent.as_millis(),
                    timeout.as_millis()
                ));
            }
        }
    }
    let mine = own_positions(node);
    if req.positions.len() != mine.len() {
        return Some(format!(
            "the candidate gave {} positions for {} shards",
            req.positions.len(),
            mine.len()
        ));
    }
    if !at_least_as_far(
        &req.positions,
        &req.from.node_id,
        &mine,
        &cluster.me().node_id,
    ) {
        let behind: Vec<String> = mine
            .iter()
            .zip(&req.positions)
            .enumerate()
            .filter(|(_, (own, theirs))| theirs < own)
            .map(|(shard, (own, theirs))| format!("shard {shard} at {theirs}, this node at {own}"))
            .collect();
        return Some(format!("the candidate is behind ({})", behind.join(", ")));
    }
    None
}

/// Whether a candidate at `theirs` may have the vote of a node at `mine` (positions per shard):
/// yes when it is at least as far on every shard; no when the node is at least as far on every
/// shard and ahead on one; and when each is ahead on some shard (shards replicate on their own,
/// so this happens), by a total order, so that of any two nodes one can win: the sum of epochs,
/// then of sequences, then the node id. Safety does not rest on this (the winner catches up
/// from the most advanced voter of every shard); it only makes the most advanced node the one
/// elected when there is one, and an election always possible.
#[must_use]
pub fn at_least_as_far(theirs: &[LogPos], their_id: &str, mine: &[LogPos], my_id: &str) -> bool {
    let ahead = theirs.iter().zip(mine).any(|(t, m)| t > m);
    let behind = theirs.iter().zip(mine).any(|(t, m)| t < m);
    match (ahead, behind) {
        (_, false) => true,
        (false, true) => false,
        (true, true) => {
            let key = |p: &[LogPos], id: &str| {
                (
                    p.iter().map(|x| x.epoch).sum::<u64>(),
                    p.iter().map(|x| x.seq).sum::<u64>(),
                    id.to_string(),
                )
            };
            key(theirs, their_id) > key(mine, my_id)
        }
    }
}

/// Serves a vote request: a pre-vote says whether it would grant; a vote grants by accepting
/// the candidate for the epoch (persisted first, by the state machine), or refuses saying why.
///
/// # Errors
/// A failure to persist the acceptance.
pub async fn on_vote(node: &Node, req: VoteRequest) -> Result<VoteReply, KvError> {
    let refused = refusal(node, &req);
    let mut granted = refused.is_none();
    let mut reason = refused.unwrap_or_default();
    if granted && !req.pre {
        match handle(
            node,
            Event::Hello {
                epoch: req.epoch,
                master: Some(req.from.clone()),
            },
        )
        .await
        {
            Ok(()) => {
                let view = node.cluster().view();
                granted = view.epoch == req.epoch
                    && view
                        .master
                        .as_ref()
                        .is_some_and(|m| m.node_id == req.from.node_id);
                if granted {
                    node.replica().touch();
                    tracing::warn!(
                        candidate = %req.from.address,
                        epoch = req.epoch,
                        "voted for a new master (automatic failover)"
                    );
                } else {
                    reason = "this node accepted another master for the epoch".into();
                }
            }
            Err(KvError::FailoverRefused { reason: r }) => {
                granted = false;
                reason = r;
            }
            Err(e) => return Err(e),
        }
    }
    if !granted {
        // A pre-vote refused is routine (a replica cut off alone asks again and again): debug.
        if req.pre {
            tracing::debug!(candidate = %req.from.address, epoch = req.epoch, %reason, "pre-vote refused");
        } else {
            tracing::info!(candidate = %req.from.address, epoch = req.epoch, %reason, "vote refused (automatic failover)");
        }
    }
    let view = node.cluster().view();
    Ok(VoteReply {
        node: node.cluster().me().clone(),
        granted,
        reason,
        epoch: view.epoch,
        master: view.master,
        positions: own_positions(node),
    })
}

fn vote_request(node: &Node, epoch: Epoch, pre: bool) -> VoteRequest {
    VoteRequest {
        from: node.cluster().me().clone(),
        cluster_id: node.cluster().cluster_id().unwrap_or_default(),
        epoch,
        pre,
        positions: own_positions(node),
    }
}

async fn ask(
    node: &Node,
    member: &Member,
    req: VoteRequest,
    timeout: Duration,
) -> Option<VoteReply> {
    let client = peers::connect(node.peer_credentials(), &member.address, timeout)
        .await
        .ok()?;
    match client.vote(peers::ctx(timeout), req).await {
        Ok(Ok(reply)) if reply.node.node_id == member.node_id => Some(reply),
        Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
            let _ = node;
            None
        }
    }
}

/// Asks every other member for its vote for this node's epoch: each vote granted is an
/// acceptance for the state machine (with the voter's positions, for the catch-up); an answer
/// with a higher epoch is heard.
pub async fn request_votes(node: &Node) {
    let epoch = node.cluster().view().epoch;
    let timeout = (node.config().failover_timeout / 2).max(Duration::from_millis(200));
    let others = node.cluster().others();
    let mut asks: futures::stream::FuturesUnordered<_> = others
        .iter()
        .map(|m| ask(node, m, vote_request(node, epoch, false), timeout))
        .collect();
    // Each answer as it comes: a majority of quick ones need not wait for a frozen node.
    while let Some(reply) = futures::StreamExt::next(&mut asks).await {
        let Some(reply) = reply else { continue };
        if reply.granted {
            tracing::info!(epoch, voter = %reply.node.address, "vote granted to this node");
        } else {
            tracing::info!(epoch, voter = %reply.node.address, reason = %reply.reason, "vote refused to this node");
        }
        node.cluster().note_vote(epoch, &reply);
        let event = if reply.granted {
            Event::HelloReply {
                from: reply.node.clone(),
                epoch: reply.epoch,
                master: reply.master.clone(),
                positions: reply.positions.clone(),
            }
        } else {
            Event::Heard {
                epoch: reply.epoch,
                master: reply.master.clone(),
            }
        };
        let _ = notify(node, event).await;
    }
}

/// The detector: while this node is an auto-failover replica whose master has been silent for
/// the failover timeout, it waits a random delay, pre-votes, and stands. Runs until `cancel`.
pub async fn run(node: Node, cancel: CancellationToken) {
    let timeout = node.config().failover_timeout;
    let members = node.cluster().file().members.len();
    if members == 2 {
        tracing::warn!(
            "--failover=auto with two members: a majority is both, so this cluster never elects a \
             new master on its own (promote by hand, or add a third node)"
        );
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        if !lost(&node, timeout) {
            continue;
        }
        let delay = timeout.mul_f64(crate::random::in_range(0.0..0.5));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        if !lost(&node, timeout) {
            continue;
        }
        stand(&node, timeout, &cancel).await;
    }
}

/// Whether this node should stand: a replica, up for the timeout, silent master for it, and
/// not backing off after a lost pre-vote or election.
fn lost(node: &Node, timeout: Duration) -> bool {
    let view = node.cluster().view();
    view.role == Role::Replica
        && node.uptime() >= timeout
        && node.replica().since_contact() >= timeout
        && !node.cluster().backing_off()
        && !node.cluster().others().is_empty()
}

/// One election: a pre-vote, then the vote, then waiting for the outcome.
async fn stand(node: &Node, timeout: Duration, cancel: &CancellationToken) {
    let view = node.cluster().view();
    let epoch = view.epoch + 1;
    let others = node.cluster().others();
    let members = others.len() + 1;
    let needed = members / 2 + 1;
    let ask_for = (timeout / 2).max(Duration::from_millis(200));
    let mut asks: futures::stream::FuturesUnordered<_> = others
        .iter()
        .map(|m| ask(node, m, vote_request(node, epoch, true), ask_for))
        .collect();
    // Until a majority would grant, or everyone answered (or timed out).
    let mut answers: Vec<VoteReply> = Vec::new();
    while let Some(reply) = futures::StreamExt::next(&mut asks).await {
        if let Some(reply) = reply {
            answers.push(reply);
        }
        if 1 + answers.iter().filter(|a| a.granted).count() >= needed {
            break;
        }
    }
    let yes = 1 + answers.iter().filter(|a| a.granted).count();
    let highest = answers.iter().map(|a| a.epoch).max().unwrap_or(0);
    if yes < needed {
        let why: Vec<String> = answers
            .iter()
            .filter(|a| !a.granted)
            .map(|a| format!("{}: {}", a.node.address, a.reason))
            .collect();
        tracing::info!(
            epoch,
            yes,
            needed,
            refusals = %why.join("; "),
            "pre-vote lost: not standing (the epoch stays)"
        );
        // Back off before standing again; the promise not to vote is not renewed (that would
        // make two candidates refuse each other for ever).
        node.cluster().back_off_standing(timeout);
        return;
    }
    // Still lost, and nothing changed meanwhile? (It may have voted for another candidate
    // while its pre-vote ran: then it waits for that one.)
    if !lost(node, timeout) || node.cluster().view().epoch != view.epoch {
        return;
    }
    let started = Instant::now();
    tracing::warn!(
        epoch,
        yes,
        needed,
        silent_ms = node.replica().since_contact().as_millis(),
        candidate = %node.cluster().me().address,
        "the master is lost: standing for election (automatic failover)"
    );
    node.cluster()
        .begin_election(epoch.max(highest + 1), needed);
    if let Err(e) = handle(
        node,
        Event::Promote {
            highest: highest.max(view.epoch),
            force: false,
        },
    )
    .await
    {
        tracing::warn!(error = %e, "cannot stand for election");
        node.cluster().end_election();
        node.cluster().back_off_standing(timeout);
        return;
    }
    let stood = node.cluster().view().epoch;
    // Wait for the outcome: writes open (won), a higher epoch (someone else won), or the time.
    let mut changes = node.cluster().gate().subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = node.cluster().view();
        if v.epoch != stood || v.role != Role::Master {
            break;
        }
        if v.gate == super::state::Gate::Open {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(epoch = stood, candidate = %node.cluster().me().address, ms, "elected master (automatic failover)");
            runtime::record_failover(
                node,
                shared::cluster::FailoverRecord {
                    epoch: stood,
                    kind: "election".into(),
                    from: view.master.clone(),
                    to: node.cluster().me().clone(),
                    at_unix_ms: runtime::now_unix_ms(),
                    duration_ms: ms + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    reason: format!(
                        "the master was silent for {} ms or more",
                        timeout.as_millis()
                    ),
                },
            )
            .await;
            break;
        }
        changes.borrow_and_update();
        tokio::select! {
            () = cancel.cancelled() => break,
            r = tokio::time::timeout_at(deadline, changes.changed()) => {
                if r.is_err() {
                    tracing::warn!(epoch = stood, candidate = %node.cluster().me().address, "election lost: no majority in time; standing down");
                    let _ = handle(node, Event::ElectionLost { epoch: stood }).await;
                    break;
                }
            }
        }
    }
    node.cluster().end_election();
    node.cluster().back_off_standing(timeout);
}

/// The election shown in status, from the candidate's tally.
#[must_use]
pub fn status(tally: Option<Tally>, me: &Member) -> Option<ElectionStatus> {
    tally.map(|(epoch, votes, needed, started_unix_ms)| ElectionStatus {
        epoch,
        candidate: me.clone(),
        votes,
        needed,
        started_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[(u64, u64)]) -> Vec<LogPos> {
        v.iter()
            .map(|&(epoch, seq)| LogPos { epoch, seq })
            .collect()
    }

    #[test]
    fn a_candidate_behind_everywhere_is_refused_one_ahead_everywhere_granted() {
        let me = p(&[(1, 10), (1, 20)]);
        assert!(
            at_least_as_far(&p(&[(1, 10), (1, 20)]), "b", &me, "a"),
            "equal"
        );
        assert!(at_least_as_far(&p(&[(1, 11), (1, 20)]), "b", &me, "a"));
        assert!(!at_least_as_far(&p(&[(1, 9), (1, 20)]), "b", &me, "a"));
        // A later epoch is further along, whatever the sequence.
        assert!(at_least_as_far(&p(&[(2, 5), (1, 20)]), "b", &me, "a"));
    }

    #[test]
    fn of_two_nodes_each_ahead_on_a_shard_exactly_one_can_win() {
        // The deadlock a per-shard rule alone would have: b ahead on shard 0, c on shard 1.
        let b = p(&[(1, 276), (1, 260)]);
        let c = p(&[(1, 264), (1, 264)]);
        let b_gets_c = at_least_as_far(&b, "b", &c, "c");
        let c_gets_b = at_least_as_far(&c, "c", &b, "b");
        assert!(b_gets_c != c_gets_b, "one and only one of them can win");
        assert!(b_gets_c, "the larger total wins");
    }
}
