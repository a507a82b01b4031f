//! Finding the master: ask every endpoint for its status, follow the masters they name one hop
//! further, and pick the master with the highest epoch.
//!
//! ```text
//!  endpoints ──status (all at once)──► answers ──► names of masters (status.master,
//!                                                  master_link) not asked yet
//!                                       ◄──status (all at once)──┘  (at most MAX_HOPS rounds)
//!  choose: role master (and writable, for writes), highest epoch, and no node reporting a
//!          higher epoch (then that master is stale: it has not heard of a promotion yet)
//! ```
//!
//! A round never waits for a master to appear: the client runs rounds with a back-off while
//! none qualifies (a switchover's pause, a promotion under way).

use std::time::Duration;
use tokio::time::Instant;

use futures::future::join_all;

use super::{Error, pool::Pool};
use crate::{
    NodeStatus, Role,
    addr::{Endpoint, parse_endpoint},
    cluster::{Epoch, Member},
};

/// Rounds of following the masters that nodes name, beyond the endpoints themselves.
const MAX_HOPS: usize = 2;

/// Longest a status probe of one node may take in a round: a healthy node answers in
/// milliseconds, and one frozen or cut off must not make every write wait for the call's whole
/// time.
const PROBE: Duration = Duration::from_secs(1);

/// What kind of master a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// One that admits writes now.
    Writable,
    /// The master of the highest epoch, even while its writes are paused (status, admin).
    Master,
}

/// One node asked during a discovery.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Where it was asked.
    pub endpoint: Endpoint,
    /// Whether it is one of the client's endpoints (else another node named it).
    pub listed: bool,
    /// Its status, or why it did not answer.
    pub answer: Result<NodeStatus, Error>,
}

/// Every node asked in one discovery round, in the order asked (the endpoints first).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The nodes.
    pub nodes: Vec<Seen>,
    /// Addresses nodes named that could not be used.
    pub problems: Vec<Error>,
}

impl Discovery {
    /// Asks every endpoint, then the masters they name (up to [`MAX_HOPS`] rounds), by
    /// `deadline`.
    pub(crate) async fn run(pool: &Pool, endpoints: &[Endpoint], deadline: Instant) -> Self {
        let mut found = Self::default();
        let mut ask: Vec<Endpoint> = Vec::new();
        for e in endpoints {
            if !ask.contains(e) {
                ask.push(e.clone());
            }
        }
        let mut listed = true;
        for _ in 0..=MAX_HOPS {
            if ask.is_empty() {
                break;
            }
            // A node that does not answer a status within PROBE (frozen, cut off) does not
            // hold up the round: the others decide who the master is, and the next round asks
            // it again.
            let probe = deadline.min(Instant::now() + PROBE);
            let answers = join_all(ask.iter().map(|e| async move {
                match pool.node(e, probe).await {
                    Ok(node) => node.until(probe).status().await,
                    Err(err) => Err(err),
                }
            }))
            .await;
            for (endpoint, answer) in ask.drain(..).zip(answers) {
                found.nodes.push(Seen {
                    endpoint,
                    listed,
                    answer,
                });
            }
            listed = false;
            ask = found.named();
        }
        found
    }

    /// Masters the answers name that were not asked yet (unusable names go to `problems`).
    fn named(&mut self) -> Vec<Endpoint> {
        let mut next: Vec<Endpoint> = Vec::new();
        let mut problems = Vec::new();
        for seen in &self.nodes {
            let Ok(s) = &seen.answer else { continue };
            let names = s
                .master
                .iter()
                .map(|m| m.address.as_str())
                .chain(s.master_link.iter().map(|l| l.master.as_str()));
            for name in names {
                match parse_endpoint(name, super::DEFAULT_PORT) {
                    Ok(e) => {
                        let asked = self.nodes.iter().any(|n| n.endpoint == e);
                        if !asked && !next.contains(&e) {
                            next.push(e);
                        }
                    }
                    Err(source) => {
                        let problem = Error::BadAddress {
                            who: format!("the node at {}, naming its master,", seen.endpoint),
                            address: name.to_string(),
                            source,
                        };
                        if !problems
                            .iter()
                            .any(|p: &Error| p.to_string() == problem.to_string())
                        {
                            problems.push(problem);
                        }
                    }
                }
            }
        }
        self.problems.extend(problems);
        next
    }

    /// The nodes that answered, with their status.
    pub fn answered(&self) -> impl Iterator<Item = (&Endpoint, &NodeStatus)> {
        self.nodes
            .iter()
            .filter_map(|n| n.answer.as_ref().ok().map(|s| (&n.endpoint, s)))
    }

    /// Whether no node answered at all.
    #[must_use]
    pub fn nobody_answered(&self) -> bool {
        self.answered().next().is_none()
    }

    /// The master of the highest epoch that no node knows a higher one than, writable or not
    /// (its writes may be paused by a switchover).
    #[must_use]
    pub fn master(&self) -> Option<(&Endpoint, &NodeStatus)> {
        self.chosen(Want::Master)
    }

    /// The master that takes writes now: as [`Discovery::master`], and writable.
    #[must_use]
    pub fn writable_master(&self) -> Option<(&Endpoint, &NodeStatus)> {
        self.chosen(Want::Writable)
    }

    fn chosen(&self, want: Want) -> Option<(&Endpoint, &NodeStatus)> {
        self.choose(want)
            .and_then(|i| self.nodes.get(i))
            .and_then(|n| n.answer.as_ref().ok().map(|s| (&n.endpoint, s)))
    }

    /// The first of the client's endpoints that answered, in their order; else why none did.
    ///
    /// # Errors
    /// Each endpoint's failure ([`Error::NoEndpointAnswered`], or the one failure).
    pub fn first_answer(&self) -> Result<(&Endpoint, &NodeStatus), Error> {
        let listed = self.nodes.iter().filter(|n| n.listed);
        if let Some((e, s)) = listed
            .clone()
            .find_map(|n| n.answer.as_ref().ok().map(|s| (&n.endpoint, s)))
        {
            return Ok((e, s));
        }
        Err(Error::from_failures(
            listed
                .filter_map(|n| n.answer.as_ref().err().cloned())
                .collect(),
        ))
    }

    /// The index of the master a caller wanting `want` should use.
    pub(crate) fn choose(&self, want: Want) -> Option<usize> {
        let statuses: Vec<Option<&NodeStatus>> =
            self.nodes.iter().map(|n| n.answer.as_ref().ok()).collect();
        choose(&statuses, want)
    }

    /// The highest epoch any node reported.
    #[must_use]
    pub fn highest_epoch(&self) -> Option<Epoch> {
        self.answered().map(|(_, s)| s.epoch).max()
    }

    /// Every node this round knows of: each that answered, and the masters they name.
    #[must_use]
    pub fn members(&self) -> Vec<Member> {
        let mut out: Vec<Member> = Vec::new();
        for (_, s) in self.answered() {
            let me = Member {
                node_id: s.node_id.clone(),
                address: s.address.clone(),
            };
            for m in std::iter::once(me).chain(s.master.clone()) {
                if !out.iter().any(|o| o.node_id == m.node_id) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// What each node said, one line each, for people.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.answer {
                Ok(s) => format!("{}: {}", n.endpoint, describe(s)),
                Err(e) => e.brief(),
            })
            .collect();
        lines.extend(self.problems.iter().map(ToString::to_string));
        lines
    }

    /// Why nobody answered: each node's failure.
    pub(crate) fn failures(&self) -> Vec<Error> {
        self.nodes
            .iter()
            .filter_map(|n| n.answer.as_ref().err().cloned())
            .collect()
    }
}

/// A node's place in the cluster in a few words: `master n1 (epoch 2), writes paused`.
fn describe(s: &NodeStatus) -> String {
    match s.role {
        Role::Master => format!(
            "master {} (epoch {}){}",
            s.node_id,
            s.epoch,
            if s.writable { "" } else { ", writes paused" }
        ),
        Role::Replica => {
            let of = s
                .master
                .as_ref()
                .map(|m| m.address.clone())
                .or_else(|| s.master_link.as_ref().map(|l| l.master.clone()))
                .unwrap_or_else(|| "an unknown master".to_string());
            format!("replica {} (epoch {}) of {of}", s.node_id, s.epoch)
        }
    }
}

/// Picks a master among `statuses` (`None`: did not answer): role master (and writable when
/// `want` says so) with the highest epoch, the first such in order; none when a node reports
/// an epoch higher than that master's (it is stale: a newer master exists somewhere).
pub(crate) fn choose(statuses: &[Option<&NodeStatus>], want: Want) -> Option<usize> {
    let highest = statuses.iter().flatten().map(|s| s.epoch).max()?;
    let mut best: Option<(usize, Epoch, bool)> = None;
    for (i, s) in statuses.iter().enumerate() {
        let Some(s) = s else { continue };
        if s.role != Role::Master || (want == Want::Writable && !s.writable) {
            continue;
        }
        // Prefer the higher epoch, then (for `Master`) a writable one, then the first.
        let better = best.is_none_or(|(_, epoch, writable)| {
            s.epoch > epoch || (s.epoch == epoch && s.writable && !writable)
        });
        if better {
            best = Some((i, s.epoch, s.writable));
        }
    }
    best.filter(|&(_, epoch, _)| epoch >= highest)
        .map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyncPolicy, cluster::FIRST_EPOCH};

    fn status(role: Role, epoch: Epoch, writable: bool) -> NodeStatus {
        NodeStatus {
            node_id: "n".into(),
            role,
            address: "h:1".into(),
            version: "0".into(),
            uptime_secs: 0,
            sync: SyncPolicy::Always,
            max_key_bytes: 1,
            max_value_bytes: 1,
            shards: Vec::new(),
            master_link: None,
            reads: 0,
            cluster_id: "c".into(),
            epoch,
            master: None,
            writable,
            last_failover: None,
            storage: crate::StorageStatus::default(),
            failover: crate::cluster::FailoverStatus::manual(),
        }
    }

    #[test]
    fn the_writable_master_with_the_highest_epoch_wins() {
        let old = status(Role::Master, 1, true);
        let new = status(Role::Master, 2, true);
        let replica = status(Role::Replica, 2, false);
        assert_eq!(
            choose(&[Some(&old), Some(&replica), Some(&new)], Want::Writable),
            Some(2)
        );
        assert_eq!(choose(&[None, Some(&old)], Want::Writable), Some(1));
        assert_eq!(choose(&[Some(&replica), None], Want::Writable), None);
        assert_eq!(choose(&[None, None], Want::Writable), None);
        assert_eq!(choose(&[], Want::Master), None);
    }

    #[test]
    fn a_master_behind_a_known_epoch_is_stale() {
        // The old master (epoch 1) has not heard of the promotion a replica knows of.
        let old = status(Role::Master, FIRST_EPOCH, true);
        let replica = status(Role::Replica, 2, false);
        assert_eq!(choose(&[Some(&old), Some(&replica)], Want::Writable), None);
        assert_eq!(choose(&[Some(&old), Some(&replica)], Want::Master), None);
    }

    #[test]
    fn a_paused_master_serves_status_but_not_writes() {
        let paused = status(Role::Master, 3, false);
        let replica = status(Role::Replica, 3, false);
        assert_eq!(
            choose(&[Some(&replica), Some(&paused)], Want::Writable),
            None
        );
        assert_eq!(
            choose(&[Some(&replica), Some(&paused)], Want::Master),
            Some(1)
        );
        // Of two masters of one epoch (never both writable), the writable one.
        let writable = status(Role::Master, 3, true);
        assert_eq!(
            choose(&[Some(&paused), Some(&writable)], Want::Master),
            Some(1)
        );
    }

    #[test]
    fn descriptions_for_people() {
        let mut r = status(Role::Replica, 2, false);
        r.node_id = "r1".into();
        r.master = Some(Member {
            node_id: "m".into(),
            address: "10.0.0.1:3000".into(),
        });
        assert_eq!(describe(&r), "replica r1 (epoch 2) of 10.0.0.1:3000");
        r.master = None;
        assert_eq!(describe(&r), "replica r1 (epoch 2) of an unknown master");
        let mut m = status(Role::Master, 4, false);
        m.node_id = "m1".into();
        assert_eq!(describe(&m), "master m1 (epoch 4), writes paused");
    }
}
