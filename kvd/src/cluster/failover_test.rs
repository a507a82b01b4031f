//! The plans and the node-name resolution, without network or disk.

use shared::{ShardStatus, SyncPolicy};

use super::*;

fn m(id: &str) -> Member {
    Member {
        node_id: id.into(),
        address: format!("127.0.0.1:{}", 3000 + id.len()),
    }
}

fn seen(id: &str, up: bool, resyncing: bool, behind: u64) -> Seen {
    Seen {
        node: m(id),
        link_up: up,
        silent_secs: if up { 0.1 } else { 12.0 },
        resyncing,
        ops_behind: behind,
    }
}

#[test]
fn nodes_are_found_by_id_prefix_or_address() {
    let members = vec![
        Member {
            node_id: "a1b2".into(),
            address: "127.0.0.1:3001".into(),
        },
        Member {
            node_id: "a1c3".into(),
            address: "localhost:3002".into(),
        },
    ];
    assert_eq!(resolve(&members, "a1b2").expect("id").node_id, "a1b2");
    assert_eq!(resolve(&members, "a1c").expect("prefix").node_id, "a1c3");
    assert_eq!(
        resolve(&members, "http://127.0.0.1:3001")
            .expect("address")
            .node_id,
        "a1b2"
    );
    assert_eq!(
        resolve(&members, "localhost:3002")
            .expect("address")
            .node_id,
        "a1c3"
    );
    let e = resolve(&members, "a1").expect_err("ambiguous");
    assert!(matches!(e, KvError::AmbiguousNode { .. }), "{e}");
    assert!(e.to_string().contains("a1b2 at 127.0.0.1:3001"), "{e}");
    let e = resolve(&members, "zz").expect_err("unknown");
    assert!(matches!(e, KvError::UnknownNode { .. }), "{e}");
    assert!(e.to_string().contains("kvctl status"), "{e}");
    assert!(resolve(&members, "").is_err(), "an empty name is nobody");
}

#[test]
fn switchover_picks_the_most_caught_up_live_replica() {
    let plan = switchover_plan(
        m("master"),
        4,
        &[
            seen("far", true, false, 900),
            seen("down", false, false, 0),
            seen("near", true, false, 3),
            seen("copying", true, true, 0),
        ],
        None,
    );
    assert_eq!(plan.target, Some(m("near")));
    let order: Vec<&str> = plan
        .candidates
        .iter()
        .map(|c| c.node.node_id.as_str())
        .collect();
    assert_eq!(order, ["near", "far", "copying", "down"]);
    assert!(
        plan.candidates[3].verdict.starts_with("down"),
        "{:?}",
        plan.candidates[3]
    );
    assert!(plan.candidates[2].verdict.starts_with("resyncing"));
}

#[test]
fn switchover_refusals_say_why() {
    let plan = switchover_plan(m("master"), 1, &[], None);
    assert_eq!(plan.target, None);
    assert!(plan.reason.contains("no replica"), "{}", plan.reason);
    let plan = switchover_plan(
        m("master"),
        1,
        &[seen("down", false, false, 0)],
        Some(&m("down")),
    );
    assert_eq!(plan.target, None);
    assert!(
        plan.reason.contains("not heard from for 12.0s"),
        "{}",
        plan.reason
    );
    let plan = switchover_plan(m("master"), 1, &[seen("down", false, false, 0)], None);
    assert!(
        plan.reason.contains("every replica is down"),
        "{}",
        plan.reason
    );
}

fn status(id: &str, role: Role, epoch: u64, shards: &[(u64, u64, u64)]) -> NodeStatus {
    NodeStatus {
        node_id: id.into(),
        role,
        address: m(id).address,
        version: "0".into(),
        uptime_secs: 1,
        sync: SyncPolicy::Always,
        max_key_bytes: 1,
        max_value_bytes: 1,
        shards: (0u32..)
            .zip(shards)
            .map(|(shard, &(last_epoch, last_seq, master_seq))| ShardStatus {
                shard,
                keys: 0,
                last_seq,
                disk_bytes: 0,
                resyncing: false,
                partial_resyncs: 0,
                full_resyncs: 0,
                last_epoch,
                master_seq,
            })
            .collect(),
        master_link: None,
        reads: 0,
        cluster_id: "c".into(),
        epoch,
        master: Some(m("old")),
        writable: false,
        last_failover: None,
        storage: shared::StorageStatus::default(),
        failover: shared::cluster::FailoverStatus {
            mode: "manual".into(),
            timeout_ms: 5000,
            lease_ms: None,
            election: None,
            note: None,
        },
    }
}

fn pos(epoch: u64, seq: u64, master_seq: u64) -> (LogPos, u64) {
    (LogPos { epoch, seq }, master_seq)
}

fn preflight(mine: &[(LogPos, u64)], answered: Vec<NodeStatus>, members: usize) -> Preflight {
    Preflight {
        candidate: m("cand"),
        epoch: 2,
        old_master: Some(m("old")),
        mine: (0u32..)
            .zip(mine)
            .map(|(shard, &(pos, master_seq))| ShardPosition {
                shard,
                pos,
                master_seq,
                resyncing: false,
            })
            .collect(),
        answered: answered.into_iter().map(|s| (m(&s.node_id), s)).collect(),
        unreachable: vec![m("old")],
        members,
    }
}

#[test]
fn a_candidate_behind_catches_up_from_the_replica_ahead_and_nothing_is_lost() {
    let other = status("other", Role::Replica, 2, &[(2, 100, 100), (2, 50, 50)]);
    let p = preflight(&[pos(2, 90, 95), pos(2, 50, 50)], vec![other], 3);
    let plan = promotion_plan(&p, false);
    assert_eq!(plan.refusal, None, "{plan:?}");
    assert_eq!(plan.lost, 0);
    let s0 = &plan.shards[0];
    assert_eq!(
        s0.catch_up_from.as_ref().map(|c| c.node_id.as_str()),
        Some("other")
    );
    assert_eq!(s0.after_catch_up, LogPos { epoch: 2, seq: 100 });
    assert_eq!(plan.shards[1].catch_up_from, None, "equal is not ahead");
    assert!(!plan.old_master_answers);
}

#[test]
fn writes_only_the_master_had_are_counted_and_refused_without_force() {
    // Both replicas heard of sequence 120 on shard 0, the best has 100: 20 are gone.
    let other = status("other", Role::Replica, 2, &[(2, 100, 120)]);
    let p = preflight(&[pos(2, 80, 110)], vec![other], 3);
    let plan = promotion_plan(&p, false);
    assert_eq!(plan.lost, 20);
    let reason = plan.refusal.expect("refused");
    assert!(reason.contains("would lose 20 writes"), "{reason}");
    assert!(reason.contains("--force"), "{reason}");
    assert_eq!(promotion_plan(&p, true).refusal, None, "forced");
}

#[test]
fn a_master_that_answers_means_failover_not_promote() {
    let old = status("old", Role::Master, 2, &[(2, 100, 100)]);
    let plan = promotion_plan(&preflight(&[pos(2, 100, 100)], vec![old], 3), true);
    assert!(plan.old_master_answers);
    let reason = plan.refusal.expect("refused even with --force");
    assert!(reason.contains("kvctl failover"), "{reason}");
}

#[test]
fn a_newer_epoch_elsewhere_refuses() {
    let newer = status("other", Role::Replica, 3, &[(3, 100, 100)]);
    let plan = promotion_plan(&preflight(&[pos(2, 100, 100)], vec![newer], 3), true);
    let reason = plan.refusal.expect("refused");
    assert!(reason.contains("already knows epoch 3"), "{reason}");
}

#[test]
fn no_majority_needs_force() {
    let plan = promotion_plan(&preflight(&[pos(2, 100, 100)], vec![], 2), false);
    let reason = plan.refusal.expect("refused");
    assert!(reason.contains("only 1 of 2 members answer"), "{reason}");
    assert_eq!(
        promotion_plan(&preflight(&[pos(2, 100, 100)], vec![], 2), true).refusal,
        None
    );
}

#[test]
fn a_resyncing_candidate_is_refused_even_with_force() {
    let mut p = preflight(&[pos(2, 100, 100)], vec![], 1);
    p.mine[0].resyncing = true;
    let reason = promotion_plan(&p, true).refusal.expect("refused");
    assert!(reason.contains("full resync"), "{reason}");
}
