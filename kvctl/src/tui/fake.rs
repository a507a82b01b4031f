//! Deterministic made-up clusters and consoles for the tests: fixed addresses and node ids,
//! and times that are offsets from one `Instant`, so every rate, lag and age is the same on
//! every run.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, LinkState, MasterLink, NodeStatus, ReplicaShardLag, ReplicaStatus, Role,
    ShardStatus, SyncPolicy, Versioned,
    cluster::{
        Candidate, ElectionStatus, FailoverPlan, FailoverRecord, FailoverReply, FailoverStatus,
        LogPos, Member, NodePosition, PromoteReply, PromotionPlan, ShardPlan,
    },
};

use crate::tui::{
    app::{App, Command, Config, Purpose},
    event::{Event, Failure, KeyPage, Probe, Reply, Snapshot},
};

/// The wall clock of refresh 0 (milliseconds since the Unix epoch): 2023-11-14 22:13:20 UTC.
pub const NOW_MS: u64 = 1_700_000_000_000;

/// The master of the fake cluster, its replicas, and where they are.
pub const MASTER: (&str, &str) = ("6f1c2a9e-master", "127.0.0.1:3000");
/// The replica that keeps up.
pub const R1: (&str, &str) = ("a1b2c3d4-replica", "127.0.0.1:3001");
/// The replica with a backlog.
pub const R2: (&str, &str) = ("9e8d7c6b-replica", "127.0.0.1:3002");

/// A member.
pub fn member((id, address): (&str, &str)) -> Member {
    Member {
        node_id: id.into(),
        address: address.into(),
    }
}

/// The endpoint every fake console talks to.
pub const ENDPOINT: &str = "http://127.0.0.1:3000";

/// A node's status with `shards` as (keys, last sequence, disk bytes).
pub fn node(
    id: &str,
    role: Role,
    address: &str,
    uptime: u64,
    shards: &[(u64, u64, u64)],
) -> NodeStatus {
    NodeStatus {
        storage: shared::StorageStatus {
            log_disk_bytes: 96 << 20,
            log_retention_bytes: 256 << 20,
            log_segment_bytes: 32 << 20,
            store_journal_bytes: 40 << 20,
            problem: None,
        },
        node_id: id.into(),
        role,
        address: address.into(),
        version: "0.1.0".into(),
        uptime_secs: uptime,
        reads: 0,
        sync: SyncPolicy::Always,
        max_key_bytes: 4096,
        max_value_bytes: 1 << 20,
        shards: shards
            .iter()
            .zip(0..)
            .map(|(&(keys, last_seq, disk_bytes), shard)| ShardStatus {
                shard,
                keys,
                last_seq,
                disk_bytes,
                resyncing: false,
                partial_resyncs: 0,
                full_resyncs: 0,
                last_epoch: 1,
                master_seq: last_seq,
            })
            .collect(),
        master_link: (role == Role::Replica).then(|| MasterLink {
            master: "127.0.0.1:3000".into(),
            state: LinkState::Up,
            since_unix_ms: 0,
            last_error: None,
            master_id: None,
        }),
        cluster_id: "c0ffee42-cluster".into(),
        epoch: 1,
        master: Some(member(MASTER)),
        writable: role == Role::Master,
        last_failover: None,
        failover: shared::cluster::FailoverStatus::manual(),
    }
}

/// A master `m1` with two shards at sequence `master_seq` each, and one replica `r<n>` per
/// entry of `replicas`: (acknowledged sequence, operations behind) on both shards.
pub fn cluster(master_seq: u64, replicas: &[(u64, u64)]) -> ClusterStatus {
    ClusterStatus {
        master: node(
            "m1",
            Role::Master,
            "127.0.0.1:3000",
            60,
            &[(10, master_seq, 4096), (10, master_seq, 4096)],
        ),
        replicas: replicas
            .iter()
            .enumerate()
            .map(|(i, &(acked, behind))| ReplicaStatus {
                node_id: format!("r{}", i + 1),
                address: format!("127.0.0.1:{}", 3001 + i),
                link: LinkState::Up,
                last_seen_secs: 0.1,
                last_seen_unix_ms: None,
                shards: (0..2)
                    .map(|shard| ReplicaShardLag {
                        shard,
                        acked_seq: acked,
                        master_seq,
                        ops_behind: behind,
                        bytes_behind: behind * 100,
                        secs_since_caught_up: 0.0,
                        partial_resyncs: 0,
                        full_resyncs: 0,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Writes per second on shard 0 in refresh `i` (shard 1 takes half).
fn writes(i: u64) -> u64 {
    [10, 14, 22, 35, 28, 18, 12, 9, 16, 30][usize::try_from(i % 10).unwrap_or(0)]
}

/// The sequence of shard 0 and 1 after refresh `i`.
fn seqs(i: u64) -> (u64, u64) {
    let w: u64 = (0..=i).map(writes).sum();
    (5000 + w, 2500 + w / 2)
}

/// What refresh `i` of the fake cluster sees: a master with two shards, a replica that keeps
/// up (`127.0.0.1:3001`) and one draining a backlog on shard 0 (`127.0.0.1:3002`); and the
/// replicas' own statuses.
pub fn cluster_at(i: u64) -> (Snapshot, Vec<NodeStatus>) {
    let (s0, s1) = seqs(i);
    let reads: u64 = (0..=i).map(|j| 40 * writes(j) + 100).sum();
    let mut master = node(
        "6f1c2a9e-master",
        Role::Master,
        "127.0.0.1:3000",
        3725 + i,
        &[
            (1200 + i, s0, (2 << 20) + i * 512),
            (600 + i / 2, s1, (1 << 20) + i * 256),
        ],
    );
    master.reads = reads;
    let behind = 400u64.saturating_sub(10 * i);
    let lag = |shard: u32, acked: u64, master_seq: u64, ops: u64, partial, full| ReplicaShardLag {
        shard,
        acked_seq: acked,
        master_seq,
        ops_behind: ops,
        bytes_behind: ops * 120,
        // Precision loss is irrelevant in test data.
        #[allow(clippy::cast_precision_loss)]
        secs_since_caught_up: if ops > 0 { 12.5 + i as f64 } else { 0.0 },
        partial_resyncs: partial,
        full_resyncs: full,
    };
    let replicas = vec![
        ReplicaStatus {
            node_id: "a1b2c3d4-replica".into(),
            address: "127.0.0.1:3001".into(),
            link: LinkState::Up,
            last_seen_secs: 0.2,
            last_seen_unix_ms: None,
            shards: vec![lag(0, s0, s0, 0, 1, 0), lag(1, s1, s1, 0, 1, 0)],
        },
        ReplicaStatus {
            node_id: "9e8d7c6b-replica".into(),
            address: "127.0.0.1:3002".into(),
            link: LinkState::Up,
            last_seen_secs: 0.4,
            last_seen_unix_ms: None,
            shards: vec![
                lag(0, s0 - behind, s0, behind, 0, 0),
                lag(1, s1, s1, 0, 0, 1),
            ],
        },
    ];
    let mut r1 = node(
        "a1b2c3d4-replica",
        Role::Replica,
        "127.0.0.1:3001",
        3600 + i,
        &[
            (1200 + i, s0, (2 << 20) + i * 500),
            (600 + i / 2, s1, (1 << 20) + i * 250),
        ],
    );
    let mut r2 = node(
        "9e8d7c6b-replica",
        Role::Replica,
        "127.0.0.1:3002",
        125 + i,
        &[
            (800 + i * 10, s0 - behind, 3 << 19),
            (600 + i / 2, s1, 1 << 20),
        ],
    );
    r1.reads = reads * 2;
    r2.reads = reads / 2;
    (
        Snapshot {
            endpoint: master.clone(),
            nodes: vec![Probe {
                address: MASTER.1.into(),
                status: Ok(master.clone()),
            }],
            cluster: Ok(ClusterStatus { master, replicas }),
            endpoints_answered: true,
            at_unix_ms: NOW_MS + i * 1000,
        },
        vec![r1, r2],
    )
}

/// `--failover=auto` with the default timeout (5 s); `lease_ms` the master's lease.
pub fn auto(lease_ms: Option<u64>) -> FailoverStatus {
    FailoverStatus {
        mode: "auto".into(),
        timeout_ms: 5000,
        lease_ms,
        election: None,
        note: None,
    }
}

/// Refresh `i` of [`cluster_at`] with automatic failover on every node: the master's lease
/// runs for 4.35 s more (its replicas confirm it at every pull).
pub fn auto_at(i: u64) -> (Snapshot, Vec<NodeStatus>) {
    let (mut snapshot, mut peers) = cluster_at(i);
    let master = auto(Some(4_350));
    snapshot.endpoint.failover = master.clone();
    for p in &mut snapshot.nodes {
        if let Ok(s) = &mut p.status {
            s.failover = master.clone();
        }
    }
    if let Ok(c) = &mut snapshot.cluster {
        c.master.failover = master;
    }
    for p in &mut peers {
        p.failover = auto(None);
    }
    (snapshot, peers)
}

/// Refresh 40 with automatic failover once the master is gone (see [`master_down`]):
/// `a1b2c3d4` stands for epoch 2 and has its own vote of the 2 it needs (the other replica has
/// not answered it yet), started 1.2 s before.
pub fn electing(peers: &[NodeStatus]) -> Snapshot {
    let mut snapshot = master_down(peers);
    let at = snapshot.at_unix_ms;
    let stand = |s: &mut NodeStatus| {
        s.failover = auto(None);
        if s.node_id == R1.0 {
            s.role = Role::Master;
            s.epoch = 2;
            s.master = Some(member(R1));
            s.master_link = None;
            s.writable = false;
            s.failover.election = Some(ElectionStatus {
                epoch: 2,
                candidate: member(R1),
                votes: vec![R1.0.into()],
                needed: 2,
                started_unix_ms: at - 1_200,
            });
        }
    };
    stand(&mut snapshot.endpoint);
    for p in &mut snapshot.nodes {
        if let Ok(s) = &mut p.status {
            stand(s);
        }
    }
    snapshot
}

/// The members of a cluster view, as the console remembers them.
pub fn members_of(snapshot: &Snapshot) -> Vec<(Member, Role)> {
    let Ok(c) = &snapshot.cluster else {
        return Vec::new();
    };
    std::iter::once((member((&c.master.node_id, &c.master.address)), Role::Master))
        .chain(
            c.replicas
                .iter()
                .map(|r| (member((&r.node_id, &r.address)), Role::Replica)),
        )
        .collect()
}

/// Refresh `i` after a switchover from the master to `a1b2c3d4` (epoch 2), 5m 3s before
/// refresh 0; the console's endpoint is the old master, now a replica that names the new one.
pub fn switched_over(_t0: Instant, i: u64) -> (Snapshot, Vec<NodeStatus>) {
    let (before, peers) = cluster_at(i);
    let Ok(old) = before.cluster else {
        return (before, peers);
    };
    let record = |duration_ms, reason: &str| FailoverRecord {
        epoch: 2,
        kind: "switchover".into(),
        from: Some(member(MASTER)),
        to: member(R1),
        at_unix_ms: NOW_MS - 303_000,
        duration_ms,
        reason: reason.into(),
    };
    let mut new_master = peers[0].clone();
    new_master.role = Role::Master;
    new_master.master_link = None;
    new_master.writable = true;
    new_master.last_failover = Some(record(0, "handed over by the master"));
    let mut old_master = old.master.clone();
    old_master.role = Role::Replica;
    old_master.writable = false;
    old_master.master_link = Some(MasterLink {
        master: R1.1.into(),
        state: LinkState::Up,
        since_unix_ms: NOW_MS - 300_000,
        last_error: None,
        master_id: Some(R1.0.into()),
    });
    old_master.last_failover = Some(record(
        87,
        "the most caught up replica whose link is up and that is not resyncing",
    ));
    let mut r2 = peers[1].clone();
    for s in [&mut new_master, &mut old_master, &mut r2] {
        s.epoch = 2;
        s.master = Some(member(R1));
        if let Some(l) = &mut s.master_link {
            l.master = R1.1.into();
        }
    }
    let mut replicas = old.replicas.clone();
    replicas[0].node_id = MASTER.0.into();
    replicas[0].address = MASTER.1.into();
    (
        Snapshot {
            endpoint: old_master.clone(),
            cluster: Ok(ClusterStatus {
                master: new_master.clone(),
                replicas,
            }),
            nodes: vec![
                Probe {
                    address: MASTER.1.into(),
                    status: Ok(old_master.clone()),
                },
                Probe {
                    address: R1.1.into(),
                    status: Ok(new_master),
                },
            ],
            endpoints_answered: true,
            at_unix_ms: before.at_unix_ms,
        },
        vec![old_master, r2],
    )
}

/// What a refresh sees once the master is gone: the console was given the master only, and
/// the two replicas it knew of answer with their link down.
pub fn master_down(peers: &[NodeStatus]) -> Snapshot {
    let down = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(l) = &mut s.master_link {
            l.state = LinkState::Down;
            l.since_unix_ms = NOW_MS - 12_000;
            l.last_error = Some("connection refused".into());
        }
        s
    };
    let refused = "cannot reach the node at 127.0.0.1:3000: Connection refused (os error 111)";
    let replicas: Vec<NodeStatus> = peers.iter().map(down).collect();
    Snapshot {
        endpoint: replicas[0].clone(),
        cluster: Err(format!("no master answers: {refused}")),
        nodes: std::iter::once(Probe {
            address: MASTER.1.into(),
            status: Err(refused.into()),
        })
        .chain(replicas.iter().map(|s| Probe {
            address: s.address.clone(),
            status: Ok(s.clone()),
        }))
        .collect(),
        endpoints_answered: false,
        at_unix_ms: NOW_MS + 40_000,
    }
}

/// The master's switchover plan: both replicas can take over, `a1b2c3d4` is the most caught
/// up; `to` asks for another (the master's answer for it).
pub fn switchover_plan(to: Option<&str>) -> FailoverPlan {
    let candidate = |(id, address), behind: u64| Candidate {
        node: member((id, address)),
        link_up: true,
        resyncing: false,
        ops_behind: behind,
        verdict: format!("can take over: {behind} operations behind"),
    };
    let candidates = vec![candidate(R1, 0), candidate(R2, 400)];
    let (target, reason) = match to {
        Some(id) if id == R2.0 => (Some(member(R2)), "chosen with --to".to_string()),
        _ => (
            Some(member(R1)),
            "the most caught up replica whose link is up and that is not resyncing (0              operations behind)"
                .to_string(),
        ),
    };
    FailoverPlan {
        master: member(MASTER),
        epoch: 1,
        target,
        reason,
        candidates,
    }
}

/// The master's answer to the switchover to `to`.
pub fn switchover_done(to: (&str, &str)) -> FailoverReply {
    let mut plan = switchover_plan(Some(to.0));
    plan.target = Some(member(to));
    FailoverReply {
        plan,
        done: true,
        epoch: 2,
        pause_ms: 87,
        positions: vec![5010, 2505],
    }
}

/// `candidate`'s promotion plan with the master gone: shard 0 catches up from the other
/// replica, shard 1 loses 2 writes nobody alive has, so it is refused without `force`.
pub fn promotion_plan(candidate: (&str, &str), force: bool) -> PromotionPlan {
    let other = if candidate.0 == R1.0 { R2 } else { R1 };
    let at = |epoch, seq| LogPos { epoch, seq };
    let other_at = |seq| NodePosition {
        node_id: other.0.into(),
        address: other.1.into(),
        pos: at(1, seq),
        master_seq: seq,
    };
    PromotionPlan {
        candidate: member(candidate),
        epoch: 1,
        old_master: Some(member(MASTER)),
        old_master_answers: false,
        shards: vec![
            ShardPlan {
                shard: 0,
                candidate: at(1, 5000),
                replicas: vec![other_at(5010)],
                master_seq_heard: 5010,
                catch_up_from: Some(other_at(5010)),
                after_catch_up: at(1, 5010),
                lost: 0,
            },
            ShardPlan {
                shard: 1,
                candidate: at(1, 2500),
                replicas: vec![NodePosition {
                    master_seq: 2502,
                    ..other_at(2500)
                }],
                master_seq_heard: 2502,
                catch_up_from: None,
                after_catch_up: at(1, 2500),
                lost: 2,
            },
        ],
        lost: 2,
        unreachable: vec![member(MASTER)],
        refusal: (!force).then(|| {
            format!(
                "promoting {} would lose 2 writes that the master had and no live node has                  (shard 1: 2 (master at 2502, best live 2500)); bring the master back, or pass                  --force to accept the loss",
                candidate.0
            )
        }),
    }
}

/// The candidate's answer to a forced promotion.
pub fn promotion_done(candidate: (&str, &str)) -> PromoteReply {
    PromoteReply {
        plan: promotion_plan(candidate, true),
        done: true,
        epoch: 2,
        caught_up: 10,
    }
}

/// [`auto_at`] for 30 refreshes, then the master gone and a replica standing for election
/// ([`electing`]).
pub fn electing_console(t0: Instant) -> App {
    let mut app = console_of(t0, 30, false, auto_at);
    let at = t0 + Duration::from_secs(40);
    app.update(Event::Tick(at));
    let (_, peers) = auto_at(30);
    app.update(Event::Reply(Reply::Refreshed {
        at,
        result: Ok(Box::new(electing(&peers))),
    }));
    app
}

/// A console that saw the cluster for 30 refreshes, then the master die (the replicas answer).
pub fn master_down_console(t0: Instant, read_only: bool) -> App {
    let mut app = console(t0, 30, read_only);
    let at = t0 + Duration::from_secs(40);
    app.update(Event::Tick(at));
    let (_, peers) = cluster_at(30);
    app.update(Event::Reply(Reply::Refreshed {
        at,
        result: Ok(Box::new(master_down(&peers))),
    }));
    app
}

/// What refresh `i` sees (see [`cluster_at`]).
pub fn snapshot(i: u64) -> Snapshot {
    cluster_at(i).0
}

/// The console's flags, starting at `now`.
pub fn config(now: Instant, read_only: bool) -> Config {
    Config {
        endpoint: ENDPOINT.into(),
        refresh: Duration::from_secs(1),
        read_only,
        log_file: "/home/op/.local/state/kvctl/tui.log".into(),
        now,
        timeout: Duration::from_secs(10),
    }
}

/// A key press.
pub fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Key presses for every character of `text`.
pub fn typed(app: &mut App, text: &str) -> Vec<Command> {
    text.chars()
        .flat_map(|c| app.update(key(KeyCode::Char(c))))
        .collect()
}

/// A console that has seen `refreshes` refreshes, one a second from `t0`.
pub fn console(t0: Instant, refreshes: u64, read_only: bool) -> App {
    console_of(t0, refreshes, read_only, cluster_at)
}

/// A console after `refreshes` refreshes of `scene` (refresh `i` at `t0 + i` seconds), the
/// peers' statuses answered.
pub fn console_of(
    t0: Instant,
    refreshes: u64,
    read_only: bool,
    scene: impl Fn(u64) -> (Snapshot, Vec<NodeStatus>),
) -> App {
    let mut app = App::new(config(t0, read_only));
    for i in 0..refreshes {
        let at = t0 + Duration::from_secs(i);
        app.update(Event::Tick(at));
        let (snapshot, peers) = scene(i);
        let asked = app.update(Event::Reply(Reply::Refreshed {
            at,
            result: Ok(Box::new(snapshot)),
        }));
        for command in asked {
            if let Command::PeerStatus { node_id, .. } = command {
                let status = peers.iter().find(|p| p.node_id == node_id).cloned();
                app.update(Event::Reply(Reply::PeerStatus {
                    result: status.map(Box::new).ok_or_else(|| "unknown".to_string()),
                    node_id,
                }));
            }
        }
    }
    app
}

/// `refreshes` failed refreshes after the console's last one, a second apart.
pub fn disconnect(app: &mut App, t0: Instant, from: u64, refreshes: u64) {
    for i in from..from + refreshes {
        let at = t0 + Duration::from_secs(i);
        app.update(Event::Tick(at));
        app.update(Event::Reply(Reply::Refreshed {
            at,
            result: Err(Failure::unreachable(
                "cannot reach the node at 127.0.0.1:3000: Connection refused (os error 111); \
                 is kvd running there? (-e/--endpoint, KVCTL_ENDPOINT)",
            )),
        }));
    }
}

/// The generation of the scan among `commands`.
pub fn scan_generation(commands: &[Command]) -> u64 {
    commands
        .iter()
        .find_map(|c| match c {
            Command::Scan(p) => Some(p.generation),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no scan in {commands:?}"))
}

/// Answers the scan among `commands` with `page`.
pub fn answer_scan(app: &mut App, commands: &[Command], page: KeyPage) {
    let generation = scan_generation(commands);
    app.update(Event::Reply(Reply::Scanned {
        generation,
        result: Ok(page),
    }));
}

/// A page of keys `user:0001`… `user:<n>` (versions 100 + i), plus a binary key.
pub fn user_keys(n: u32, next: Option<&str>) -> KeyPage {
    let mut rows: Vec<(Vec<u8>, u64)> = (1..=n)
        .map(|i| (format!("user:{i:04}").into_bytes(), 100 + u64::from(i)))
        .collect();
    rows.insert(0, (vec![0x00, 0xff, 0x10], 7));
    KeyPage {
        rows,
        next: next.map(|n| n.as_bytes().to_vec()),
    }
}

/// The console on the Keys screen with a page of keys shown.
pub fn keys_console(t0: Instant, read_only: bool) -> App {
    let mut app = console(t0, 30, read_only);
    let commands = app.update(key(KeyCode::Char('4')));
    answer_scan(&mut app, &commands, user_keys(40, Some("user:0040")));
    app
}

/// The answer to a read of `key`.
pub fn fetched(key: &[u8], purpose: Purpose, value: &[u8], version: u64) -> Event {
    Event::Reply(Reply::Fetched {
        key: key.to_vec(),
        purpose,
        result: Ok(Some(Versioned {
            value: ByteBuf::from(value.to_vec()),
            version,
        })),
    })
}
