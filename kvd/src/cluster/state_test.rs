//! The state machine's decisions, checked as command lists (no network, no disk).

use super::*;
use shared::cluster::LogPos;

fn m(id: &str) -> Member {
    Member {
        node_id: id.into(),
        address: format!("{id}:1"),
    }
}

fn three() -> Vec<Member> {
    vec![m("a"), m("b"), m("c")]
}

fn persist_index(cmds: &[Command]) -> Option<usize> {
    cmds.iter()
        .position(|c| matches!(c, Command::Persist { .. }))
}

/// `Persist` must come before anything that acts on the new epoch.
fn assert_persist_first(cmds: &[Command]) {
    let p = persist_index(cmds).expect("a Persist command");
    assert_eq!(p, 0, "Persist comes first: {cmds:?}");
}

fn gate(core: &Core) -> Gate {
    core.view().gate
}

#[test]
fn a_lone_master_admits_writes_at_once() {
    let (core, cmds) = Core::start(m("a"), 1, Some(m("a")), true, None, vec![m("a")]);
    assert_eq!(core.state(), &State::Master);
    assert_eq!(gate(&core), Gate::Open);
    assert_eq!(
        cmds,
        vec![Command::BecomeMaster, Command::Publish(core.view())]
    );
}

#[test]
fn a_restarted_master_probes_before_any_write() {
    let (mut core, cmds) = Core::start(m("a"), 3, Some(m("a")), true, None, three());
    assert_eq!(core.state(), &State::Probing);
    assert_eq!(gate(&core), Gate::Paused);
    assert!(cmds.contains(&Command::Announce { probe: true }));
    let cmds = core.handle(Event::ProbeDone).expect("done");
    assert_eq!(cmds, vec![Command::Publish(core.view())]);
    assert_eq!(gate(&core), Gate::Open);
}

#[test]
fn a_probe_that_finds_a_higher_epoch_makes_it_a_replica() {
    let (mut core, _) = Core::start(m("a"), 3, Some(m("a")), true, None, three());
    let cmds = core
        .handle(Event::HelloReply {
            from: m("b"),
            epoch: 4,
            master: Some(m("b")),
            positions: vec![],
        })
        .expect("adopt");
    assert_persist_first(&cmds);
    assert_eq!(
        cmds,
        vec![
            Command::Persist {
                epoch: 4,
                master: Some(m("b"))
            },
            Command::StopMaster,
            Command::Publish(View {
                epoch: 4,
                role: Role::Replica,
                master: Some(m("b")),
                gate: Gate::Closed,
                serving: false,
            }),
            Command::Follow {
                address: "b:1".into()
            },
        ]
    );
    // The probe ending later changes nothing.
    assert!(core.handle(Event::ProbeDone).expect("late").is_empty());
    assert_eq!(core.state(), &State::Replica);
}

#[test]
fn a_master_that_hears_a_higher_epoch_steps_down_at_once() {
    let (mut core, _) = Core::start(m("a"), 2, Some(m("a")), true, None, vec![m("a")]);
    let cmds = core
        .handle(Event::Heard {
            epoch: 3,
            master: None,
        })
        .expect("heard");
    assert_persist_first(&cmds);
    assert_eq!(gate(&core), Gate::Closed);
    assert_eq!(core.view().role, Role::Replica);
    assert_eq!(
        cmds.last(),
        Some(&Command::Discover),
        "no master known: ask the members"
    );
}

#[test]
fn the_epoch_never_goes_down() {
    let (mut core, _) = Core::start(m("b"), 5, Some(m("a")), true, None, three());
    for epoch in [0, 1, 4, 5] {
        assert!(
            core.handle(Event::Heard {
                epoch,
                master: Some(m("c"))
            })
            .expect("heard")
            .is_empty()
        );
    }
    assert_eq!((core.epoch(), core.master()), (5, Some(&m("a"))));
    let e = core
        .handle(Event::Joined {
            master: m("c"),
            epoch: 4,
        })
        .expect_err("a stale master is not followed");
    assert!(
        matches!(
            e,
            KvError::StaleEpoch {
                got: 4,
                epoch: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn one_master_per_epoch() {
    let (mut core, _) = Core::start(m("c"), 3, Some(m("a")), true, None, three());
    let e = core
        .handle(Event::Hello {
            epoch: 3,
            master: Some(m("b")),
        })
        .expect_err("a second master for epoch 3");
    assert!(e.to_string().contains("already has a master"), "{e}");
    assert_eq!(core.master(), Some(&m("a")));
    // The same master again is fine, and so is a new epoch with another master.
    assert!(
        core.handle(Event::Hello {
            epoch: 3,
            master: Some(m("a"))
        })
        .expect("same")
        .is_empty()
    );
    let cmds = core
        .handle(Event::Hello {
            epoch: 4,
            master: Some(m("b")),
        })
        .expect("new epoch");
    assert_persist_first(&cmds);
    assert_eq!(core.master(), Some(&m("b")));
}

#[test]
fn a_replica_learns_its_master_once_and_keeps_it() {
    let (mut core, cmds) = Core::start(m("b"), 0, None, false, Some("seed:1".into()), vec![]);
    assert_eq!(
        cmds.last(),
        Some(&Command::Follow {
            address: "seed:1".into()
        })
    );
    let cmds = core
        .handle(Event::Joined {
            master: m("a"),
            epoch: 1,
        })
        .expect("joined");
    assert_persist_first(&cmds);
    assert_eq!((core.epoch(), core.master()), (1, Some(&m("a"))));
    let e = core
        .handle(Event::Joined {
            master: m("c"),
            epoch: 1,
        })
        .expect_err("a second master for epoch 1");
    assert!(matches!(e, KvError::FailoverRefused { .. }), "{e}");
}

#[test]
fn a_redirect_to_a_higher_epoch_is_followed() {
    let (mut core, _) = Core::start(m("b"), 2, Some(m("a")), true, None, three());
    let cmds = core
        .handle(Event::Redirected {
            epoch: 3,
            address: Some("c:1".into()),
        })
        .expect("redirect");
    assert_persist_first(&cmds);
    assert_eq!(
        cmds.last(),
        Some(&Command::Follow {
            address: "c:1".into()
        })
    );
    assert_eq!(core.master(), None, "known by address only until it joins");
}

#[test]
fn switchover_pauses_hands_over_and_follows() {
    let (mut core, _) = Core::start(m("a"), 2, Some(m("a")), true, None, vec![m("a")]);
    core.handle(Event::Members(three())).expect("members");
    core.handle(Event::Pause { target: m("b") }).expect("pause");
    assert_eq!(gate(&core), Gate::Paused);
    assert!(core.handle(Event::Pause { target: m("c") }).is_err());
    let cmds = core.handle(Event::HandOver).expect("hand over");
    assert_persist_first(&cmds);
    assert_eq!(
        cmds[0],
        Command::Persist {
            epoch: 3,
            master: Some(m("b"))
        }
    );
    assert_eq!(
        gate(&core),
        Gate::Paused,
        "waiting writes wait for the answer"
    );
    let cmds = core.handle(Event::HandedOver).expect("done");
    assert_eq!(
        cmds,
        vec![
            Command::StopMaster,
            Command::Publish(View {
                epoch: 3,
                role: Role::Replica,
                master: Some(m("b")),
                gate: Gate::Closed,
                serving: false,
            }),
            Command::Follow {
                address: "b:1".into()
            },
        ]
    );
}

#[test]
fn a_switchover_called_off_before_the_hand_over_resumes_the_same_epoch() {
    let (mut core, _) = Core::start(m("a"), 2, Some(m("a")), true, None, vec![m("a")]);
    core.handle(Event::Pause { target: m("b") }).expect("pause");
    core.handle(Event::Resume).expect("resume");
    assert_eq!((core.epoch(), gate(&core)), (2, Gate::Open));
}

#[test]
fn a_hand_over_with_an_unknown_outcome_takes_the_epoch_after() {
    let (mut core, _) = Core::start(m("a"), 2, Some(m("a")), true, None, vec![m("a")]);
    core.handle(Event::Members(three())).expect("members");
    core.handle(Event::Pause { target: m("b") }).expect("pause");
    core.handle(Event::HandOver).expect("hand over");
    let cmds = core.handle(Event::Reclaim).expect("reclaim");
    assert_persist_first(&cmds);
    assert_eq!(
        cmds[0],
        Command::Persist {
            epoch: 4,
            master: Some(m("a"))
        }
    );
    assert!(cmds.contains(&Command::Announce { probe: false }));
    assert_eq!(gate(&core), Gate::Paused, "no write before a majority");
    // b accepted epoch 3 for itself: no acceptance of 4 from it yet; c accepts 4, and says
    // where it is: it may hold what b wrote in epoch 3.
    let c_at = vec![pos(3, 12), pos(2, 5)];
    let cmds = core
        .handle(Event::HelloReply {
            from: m("c"),
            epoch: 4,
            master: Some(m("a")),
            positions: c_at.clone(),
        })
        .expect("c");
    assert_eq!(core.state(), &State::CatchingUp);
    assert_eq!(
        cmds.last(),
        Some(&Command::CatchUp {
            epoch: 4,
            from: vec![(m("c"), c_at)]
        }),
        "first, what the majority holds"
    );
    assert_eq!(gate(&core), Gate::Paused);
    assert!(!core.view().serving, "no pull served before the catch-up");
    core.handle(Event::CaughtUp { epoch: 4 })
        .expect("caught up");
    assert_eq!((core.epoch(), gate(&core)), (4, Gate::Open));
    assert!(core.view().serving);
}

fn pos(epoch: u64, seq: u64) -> LogPos {
    LogPos { epoch, seq }
}

#[test]
fn a_hello_naming_this_node_master_of_an_epoch_it_did_not_take_is_ignored() {
    // The old master's announcement of the hand-over can arrive before the take_over.
    let (mut core, _) = Core::start(m("b"), 2, Some(m("a")), true, None, three());
    let cmds = core
        .handle(Event::Hello {
            epoch: 3,
            master: Some(m("b")),
        })
        .expect("hello");
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!((core.epoch(), core.master()), (2, Some(&m("a"))));
    // The take_over that follows still works.
    core.handle(Event::TakeOver {
        from: m("a"),
        epoch: 3,
        caught_up: true,
        resyncing: false,
        positions: vec![],
    })
    .expect("take over");
    assert_eq!(core.epoch(), 3);
}

#[test]
fn take_over_is_refused_unless_everything_holds() {
    let start = || Core::start(m("b"), 2, Some(m("a")), true, None, three()).0;
    let ok = |from: &str, epoch, caught_up, resyncing| Event::TakeOver {
        from: m(from),
        epoch,
        caught_up,
        resyncing,
        positions: vec![],
    };
    for (event, want) in [
        (ok("c", 3, true, false), "does not follow"),
        (
            ok("a", 4, true, false),
            "does not follow this replica's epoch",
        ),
        (ok("a", 3, false, false), "has not applied"),
        (ok("a", 3, true, true), "full resync"),
    ] {
        let mut core = start();
        let e = core.handle(event).expect_err("refused");
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!((core.epoch(), core.state()), (2, &State::Replica));
    }
    let mut core = start();
    let cmds = core.handle(ok("a", 3, true, false)).expect("take over");
    assert_persist_first(&cmds);
    assert_eq!(
        core.state(),
        &State::CatchingUp,
        "b and the old master a are 2 of 3: a majority at once"
    );
    assert!(cmds.contains(&Command::CatchUp {
        epoch: 3,
        from: vec![(m("a"), vec![])]
    }));
    assert!(cmds.contains(&Command::StopFollowing));
    assert!(cmds.contains(&Command::Announce { probe: false }));
    core.handle(Event::CaughtUp { epoch: 3 })
        .expect("caught up");
    assert_eq!((core.epoch(), gate(&core)), (3, Gate::Open));
}

#[test]
fn promotion_waits_for_a_majority_unless_forced() {
    let (mut core, _) = Core::start(m("b"), 2, Some(m("a")), true, None, three());
    let cmds = core
        .handle(Event::Promote {
            highest: 2,
            force: false,
        })
        .expect("promote");
    assert_persist_first(&cmds);
    assert_eq!((core.epoch(), gate(&core)), (3, Gate::Paused));
    // An answer that holds another master for epoch 3 does not count.
    core.handle(Event::HelloReply {
        from: m("c"),
        epoch: 3,
        master: Some(m("c")),
        positions: vec![],
    })
    .expect("c");
    assert_eq!(gate(&core), Gate::Paused);
    core.handle(Event::HelloReply {
        from: m("c"),
        epoch: 3,
        master: Some(m("b")),
        positions: vec![pos(2, 9)],
    })
    .expect("c accepts");
    assert_eq!(core.state(), &State::CatchingUp);
    // A catch-up of another epoch (an earlier attempt) does not open the gate.
    core.handle(Event::CaughtUp { epoch: 2 }).expect("stale");
    assert_eq!(gate(&core), Gate::Paused);
    core.handle(Event::CaughtUp { epoch: 3 })
        .expect("caught up");
    assert_eq!(gate(&core), Gate::Open);

    let (mut forced, _) = Core::start(m("b"), 2, Some(m("a")), true, None, three());
    forced
        .handle(Event::Promote {
            highest: 5,
            force: true,
        })
        .expect("forced");
    assert_eq!(
        (forced.epoch(), gate(&forced)),
        (6, Gate::Open),
        "above the highest epoch any member reported"
    );
    assert!(
        forced
            .handle(Event::Promote {
                highest: 0,
                force: true
            })
            .is_err(),
        "a master is not promoted"
    );
}

#[test]
fn a_new_master_that_hears_a_higher_epoch_gives_up_its_own() {
    let (mut core, _) = Core::start(m("b"), 2, Some(m("a")), true, None, three());
    core.handle(Event::Promote {
        highest: 2,
        force: false,
    })
    .expect("promote");
    let cmds = core
        .handle(Event::HelloReply {
            from: m("c"),
            epoch: 4,
            master: Some(m("c")),
            positions: vec![],
        })
        .expect("higher");
    assert_persist_first(&cmds);
    assert!(cmds.contains(&Command::StopMaster));
    assert_eq!((core.epoch(), gate(&core)), (4, Gate::Closed));
}

#[test]
fn majorities() {
    let core = |n: usize| {
        let members = (0..n).map(|i| m(&format!("n{i}"))).collect();
        Core::start(m("n0"), 1, None, false, None, members).0
    };
    assert_eq!(core(1).majority(), 1);
    assert_eq!(core(2).majority(), 2);
    assert_eq!(core(3).majority(), 2);
    assert_eq!(core(5).majority(), 3);
}

#[test]
fn a_master_restarted_before_its_epoch_was_established_gathers_a_majority_again() {
    // b took epoch 3 (persisted), then crashed before its majority answered.
    let (mut core, cmds) = Core::start(m("b"), 3, Some(m("b")), false, None, three());
    assert!(
        matches!(core.state(), State::Establishing { .. }),
        "{:?}",
        core.state()
    );
    assert_eq!(gate(&core), Gate::Paused);
    assert!(!core.view().serving);
    assert!(cmds.contains(&Command::Announce { probe: false }));
    core.handle(Event::HelloReply {
        from: m("c"),
        epoch: 3,
        master: Some(m("b")),
        positions: vec![],
    })
    .expect("c");
    let cmds = core
        .handle(Event::CaughtUp { epoch: 3 })
        .expect("caught up");
    assert_eq!(
        cmds[0],
        Command::Established { epoch: 3 },
        "written down before the gate opens"
    );
    assert_eq!(gate(&core), Gate::Open);
    // Established, a restart probes and admits as before.
    let (core, _) = Core::start(m("b"), 3, Some(m("b")), true, None, three());
    assert_eq!(core.state(), &State::Probing);
}
