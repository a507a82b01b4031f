//! The cluster as the console shows it: every node it knows of, with its role, epoch and state
//! as they are now, merged from what the last refresh saw. Pure: built from the state, tested
//! on its own, read by the Cluster screen, the header and the failover action.
//!
//! ```text
//!  a master answers (cluster view):  its row, then its replicas (link as the master sees it),
//!                                    each with its own status when it answered
//!  no master answers:                the replicas' own view: the master they name (down),
//!                                    the members known from earlier views, every node that
//!                                    answered; a replica's link is its own word
//! ```
//!
//! Role and epoch are each node's own word when it answered, so they change at run time with
//! no restart: after a switchover the old master reports itself a replica at the new epoch, and
//! a master that missed a promotion shows as `stale` (its epoch is below the highest known).

use std::collections::BTreeMap;

use ratatui::style::Color;
use shared::{
    LinkState, NodeStatus, Role,
    cluster::{ElectionStatus, Epoch, FailoverRecord, FailoverStatus, Member},
};

use crate::tui::event::Snapshot;

/// A node's state in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// A master that admits writes, or a replica that follows with its link up.
    Up,
    /// A master that does not admit writes now (a switchover pauses them, or it is starting).
    Paused,
    /// A master whose epoch is below the highest known: it missed a promotion.
    Stale,
    /// A replica copying a shard by a full resync.
    Resyncing,
    /// A replica whose link to its master is down.
    LinkDown,
    /// Listed as linked by the master, but its own status did not answer.
    NoAnswer,
    /// Did not answer at all.
    Down,
}

impl NodeState {
    /// The word shown.
    pub fn text(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Paused => "paused",
            Self::Stale => "stale",
            Self::Resyncing => "resyncing",
            Self::LinkDown => "link down",
            Self::NoAnswer => "no answer",
            Self::Down => "down",
        }
    }

    /// Its colour.
    pub fn color(self) -> Color {
        match self {
            Self::Up => Color::Green,
            Self::Paused | Self::Resyncing | Self::NoAnswer => Color::Yellow,
            Self::Stale | Self::LinkDown | Self::Down => Color::Red,
        }
    }
}

/// One node as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Its node id (empty when only its address is known).
    pub node_id: String,
    /// Its advertised address.
    pub address: String,
    /// Its role: its own word when it answered, else what the others say.
    pub role: Role,
    /// Its epoch, when it answered.
    pub epoch: Option<Epoch>,
    /// Its state.
    pub state: NodeState,
    /// Its own status, when it answered.
    pub own: Option<NodeStatus>,
    /// The master it names for its epoch (a replica's "who is the master").
    pub follows: Option<Member>,
    /// Its shard count, when known.
    pub shards: usize,
}

impl NodeView {
    /// It as a member (node id and address).
    pub fn member(&self) -> Member {
        Member {
            node_id: self.node_id.clone(),
            address: self.address.clone(),
        }
    }

    /// Whether it answered this refresh (itself, or the master for it).
    pub fn answers(&self) -> bool {
        self.own.is_some()
    }
}

/// The cluster in a few facts, for the header and the titles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overview {
    /// The highest epoch any node reported.
    pub epoch: Option<Epoch>,
    /// The master that answers, and whether it admits writes now.
    pub master: Option<(Member, bool)>,
    /// With no master answering: the master the others name (it does not answer).
    pub lost_master: Option<Member>,
    /// Replicas, and how many of them answered.
    pub replicas: usize,
    /// Replicas that answered.
    pub replicas_answering: usize,
    /// The last failover any node took part in (the highest epoch's; of two records of one
    /// failover, the old master's, which measured the pause).
    pub last_failover: Option<FailoverRecord>,
    /// How the cluster fails over (mode, timeout, note), as the master answering reports it,
    /// else the first node that answered.
    pub failover: Option<FailoverStatus>,
    /// The lease of the master answering (auto failover), in milliseconds left (0: ended);
    /// `None` without one.
    pub lease_ms: Option<u64>,
    /// An election a node that answered stands in (the highest epoch's).
    pub election: Option<ElectionStatus>,
}

/// The overview of `nodes`.
pub fn overview(nodes: &[NodeView]) -> Overview {
    let master = nodes
        .iter()
        .find(|n| n.role == Role::Master && matches!(n.state, NodeState::Up | NodeState::Paused));
    let lost_master = match master {
        Some(_) => None,
        None => nodes
            .iter()
            .find(|n| n.role == Role::Master && !n.answers())
            .map(NodeView::member),
    };
    let replicas: Vec<&NodeView> = nodes.iter().filter(|n| n.role == Role::Replica).collect();
    Overview {
        epoch: nodes.iter().filter_map(|n| n.epoch).max(),
        master: master.map(|m| (m.member(), m.state == NodeState::Up)),
        lost_master,
        replicas: replicas.len(),
        replicas_answering: replicas.iter().filter(|n| n.answers()).count(),
        last_failover: nodes
            .iter()
            .filter_map(|n| n.own.as_ref()?.last_failover.clone())
            .max_by_key(|f| (f.epoch, f.duration_ms)),
        failover: master
            .and_then(|m| m.own.as_ref())
            .or_else(|| nodes.iter().find_map(|n| n.own.as_ref()))
            .map(|s| s.failover.clone()),
        lease_ms: master
            .and_then(|m| m.own.as_ref())
            .and_then(|s| s.failover.lease_ms),
        election: nodes
            .iter()
            .filter_map(|n| n.own.as_ref()?.failover.election.clone())
            .max_by_key(|e| e.epoch),
    }
}

/// A master's state from its own status, given the highest epoch known.
fn master_state(s: &NodeStatus, highest: Epoch) -> NodeState {
    if s.epoch < highest {
        NodeState::Stale
    } else if s.writable {
        NodeState::Up
    } else {
        NodeState::Paused
    }
}

/// A replica's state from its own status (its link as it sees it).
fn replica_state(s: &NodeStatus) -> NodeState {
    if s.shards.iter().any(|x| x.resyncing) {
        NodeState::Resyncing
    } else if s
        .master_link
        .as_ref()
        .is_some_and(|l| l.state == LinkState::Down)
    {
        NodeState::LinkDown
    } else {
        NodeState::Up
    }
}

fn own_state(s: &NodeStatus, highest: Epoch) -> NodeState {
    match s.role {
        Role::Master => master_state(s, highest),
        Role::Replica => replica_state(s),
    }
}

fn from_status(s: &NodeStatus, highest: Epoch) -> NodeView {
    NodeView {
        node_id: s.node_id.clone(),
        address: s.address.clone(),
        role: s.role,
        epoch: Some(s.epoch),
        state: own_state(s, highest),
        own: Some(s.clone()),
        follows: s.master.clone(),
        shards: s.shards.len(),
    }
}

/// Every node of `data` in the order shown: the master first.
///
/// `peers` are the replicas' own statuses as last asked (used while a master answers);
/// `known` the members (and their roles) of the last cluster view, for nodes that do not
/// answer now.
pub fn build(
    data: &Snapshot,
    peers: &BTreeMap<String, Result<NodeStatus, String>>,
    known: &[(Member, Role)],
) -> Vec<NodeView> {
    // This refresh's own statuses, the endpoint's included.
    let mut fresh: Vec<&NodeStatus> = vec![&data.endpoint];
    for p in &data.nodes {
        if let Ok(s) = &p.status
            && !fresh.iter().any(|f| f.node_id == s.node_id)
        {
            fresh.push(s);
        }
    }
    let find = |id: &str| fresh.iter().copied().find(|s| s.node_id == id);
    let mut highest = fresh.iter().map(|s| s.epoch).max().unwrap_or(0);
    if let Ok(c) = &data.cluster {
        highest = highest.max(c.master.epoch);
    }
    highest = highest.max(
        peers
            .values()
            .filter_map(|p| p.as_ref().ok().map(|s| s.epoch))
            .max()
            .unwrap_or(0),
    );

    let mut rows: Vec<NodeView> = Vec::new();
    match &data.cluster {
        Ok(cluster) => {
            rows.push(from_status(&cluster.master, highest));
            for r in &cluster.replicas {
                let own = find(&r.node_id)
                    .or_else(|| peers.get(&r.node_id).and_then(|p| p.as_ref().ok()));
                let state = match own {
                    Some(s) if s.role == Role::Master => master_state(s, highest),
                    _ => match (r.link, own) {
                        (LinkState::Down, _) => NodeState::LinkDown,
                        (LinkState::Up, Some(s)) if s.shards.iter().any(|x| x.resyncing) => {
                            NodeState::Resyncing
                        }
                        (LinkState::Up, Some(_)) => NodeState::Up,
                        (LinkState::Up, None) => NodeState::NoAnswer,
                    },
                };
                rows.push(NodeView {
                    node_id: r.node_id.clone(),
                    address: r.address.clone(),
                    role: own.map_or(Role::Replica, |s| s.role),
                    epoch: own.map(|s| s.epoch),
                    state,
                    own: own.cloned(),
                    follows: own.and_then(|s| s.master.clone()),
                    shards: r.shards.len(),
                });
            }
        }
        Err(_) => {
            // The replicas' own view: the masters they name first, then the members known
            // from before, then anything else that answered.
            let named: Vec<Member> = fresh
                .iter()
                .filter(|s| s.role == Role::Replica)
                .filter_map(|s| s.master.clone())
                .fold(Vec::new(), |mut out, m| {
                    if !out.iter().any(|o: &Member| o.node_id == m.node_id) {
                        out.push(m);
                    }
                    out
                });
            let mut order: Vec<(Member, Role)> =
                named.iter().map(|m| (m.clone(), Role::Master)).collect();
            order.extend(known.iter().cloned());
            order.extend(fresh.iter().map(|s| {
                (
                    Member {
                        node_id: s.node_id.clone(),
                        address: s.address.clone(),
                    },
                    s.role,
                )
            }));
            for (m, role) in order {
                if rows.iter().any(|r| r.node_id == m.node_id) {
                    continue;
                }
                let row = match find(&m.node_id) {
                    Some(s) => from_status(s, highest),
                    None => NodeView {
                        role: if named.iter().any(|n| n.node_id == m.node_id) {
                            Role::Master
                        } else {
                            role
                        },
                        node_id: m.node_id,
                        address: m.address,
                        epoch: None,
                        state: NodeState::Down,
                        own: None,
                        follows: None,
                        shards: 0,
                    },
                };
                rows.push(row);
            }
        }
    }
    // Nodes that answered but are in no list (a node of another membership among -e).
    for s in &fresh {
        if !rows.iter().any(|r| r.node_id == s.node_id) {
            rows.push(from_status(s, highest));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::tui::{event::Probe, fake};

    fn peers_of(statuses: &[NodeStatus]) -> BTreeMap<String, Result<NodeStatus, String>> {
        statuses
            .iter()
            .map(|s| (s.node_id.clone(), Ok(s.clone())))
            .collect()
    }

    fn summary(rows: &[NodeView]) -> Vec<(String, Role, Option<Epoch>, NodeState)> {
        rows.iter()
            .map(|r| (r.node_id.clone(), r.role, r.epoch, r.state))
            .collect()
    }

    #[test]
    fn the_master_first_then_its_replicas_with_their_own_word() {
        let (snapshot, peers) = fake::cluster_at(0);
        let rows = build(&snapshot, &peers_of(&peers), &[]);
        assert_eq!(
            summary(&rows),
            vec![
                (
                    "6f1c2a9e-master".into(),
                    Role::Master,
                    Some(1),
                    NodeState::Up
                ),
                (
                    "a1b2c3d4-replica".into(),
                    Role::Replica,
                    Some(1),
                    NodeState::Up
                ),
                (
                    "9e8d7c6b-replica".into(),
                    Role::Replica,
                    Some(1),
                    NodeState::Up
                ),
            ]
        );
        let o = overview(&rows);
        assert_eq!(o.epoch, Some(1));
        assert_eq!(
            o.master.map(|(m, w)| (m.node_id, w)),
            Some(("6f1c2a9e-master".into(), true))
        );
        assert_eq!((o.replicas, o.replicas_answering), (2, 2));
        // A replica that has not answered its own status yet.
        let rows = build(&snapshot, &BTreeMap::new(), &[]);
        assert_eq!(rows[1].state, NodeState::NoAnswer);
    }

    #[test]
    fn after_a_switchover_the_roles_are_the_nodes_own() {
        let t0 = Instant::now();
        let (snapshot, peers) = fake::switched_over(t0, 0);
        let rows = build(&snapshot, &peers_of(&peers), &[]);
        assert_eq!(
            summary(&rows),
            vec![
                (
                    "a1b2c3d4-replica".into(),
                    Role::Master,
                    Some(2),
                    NodeState::Up
                ),
                (
                    "6f1c2a9e-master".into(),
                    Role::Replica,
                    Some(2),
                    NodeState::Up
                ),
                (
                    "9e8d7c6b-replica".into(),
                    Role::Replica,
                    Some(2),
                    NodeState::Up
                ),
            ]
        );
        let f = overview(&rows).last_failover.expect("a failover");
        // The old master's record, which measured the pause.
        assert_eq!((f.epoch, f.duration_ms), (2, 87));
    }

    #[test]
    fn a_paused_master_and_a_stale_one() {
        let (mut snapshot, peers) = fake::cluster_at(0);
        if let Ok(c) = &mut snapshot.cluster {
            c.master.writable = false;
        }
        snapshot.endpoint.writable = false;
        let rows = build(&snapshot, &peers_of(&peers), &[]);
        assert_eq!(rows[0].state, NodeState::Paused);
        assert_eq!(overview(&rows).master.map(|(_, w)| w), Some(false));
        // A replica knows epoch 2: the master of epoch 1 missed a promotion.
        let mut newer = peers.clone();
        newer[0].epoch = 2;
        let rows = build(&snapshot, &peers_of(&newer), &[]);
        assert_eq!(rows[0].state, NodeState::Stale);
        assert_eq!(overview(&rows).master, None);
    }

    #[test]
    fn with_the_master_down_the_replicas_view() {
        let (snapshot, peers) = fake::cluster_at(0);
        let known = fake::members_of(&snapshot);
        let down = fake::master_down(&peers);
        let rows = build(&down, &BTreeMap::new(), &known);
        assert_eq!(
            summary(&rows),
            vec![
                (
                    "6f1c2a9e-master".into(),
                    Role::Master,
                    None,
                    NodeState::Down
                ),
                (
                    "a1b2c3d4-replica".into(),
                    Role::Replica,
                    Some(1),
                    NodeState::LinkDown
                ),
                (
                    "9e8d7c6b-replica".into(),
                    Role::Replica,
                    Some(1),
                    NodeState::LinkDown
                ),
            ]
        );
        assert_eq!(
            rows[1].follows.as_ref().map(|m| m.node_id.as_str()),
            Some("6f1c2a9e-master")
        );
        let o = overview(&rows);
        assert_eq!(o.master, None);
        assert_eq!(
            o.lost_master.map(|m| m.node_id),
            Some("6f1c2a9e-master".into())
        );
        assert_eq!((o.replicas, o.replicas_answering), (2, 2));
        // Only one replica answers: the other is listed down from what was known.
        let mut one = down.clone();
        one.nodes.retain(|p: &Probe| p.address != "127.0.0.1:3002");
        let rows = build(&one, &BTreeMap::new(), &known);
        assert_eq!(rows[2].state, NodeState::Down);
        assert_eq!(rows[2].role, Role::Replica);
    }
}
