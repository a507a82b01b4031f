//! The failover action driven through `App::update` with made-up events: open, the plan
//! arriving, picking another candidate, the confirmation (a wrong or short prefix is refused,
//! the right one runs), the outcome, Esc at every step, `--force`, and the read-only mode.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::KeyCode;

use super::*;
use crate::tui::{
    app::{Popup, StatusKind},
    event::{Event, FailoverDone, Failure, Reply},
    fake::{self, MASTER, R1, R2, key, member, typed},
};

const TEN: Duration = Duration::from_secs(10);

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.update(key(code))
}

fn flow(app: &App) -> &Flow {
    match &app.popup {
        Some(Popup::Failover(flow)) => flow,
        other => panic!("no failover popup: {other:?}"),
    }
}

fn status_text(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn status_command(app: &App) -> Option<String> {
    app.status.as_ref().and_then(|s| s.command.clone())
}

/// The plan request among `commands`: its number and what it asks.
fn plan_asked(commands: &[Command]) -> (u64, PlanRequest) {
    match commands {
        [
            Command::Plan {
                generation,
                request,
                timeout,
            },
        ] => {
            assert_eq!(*timeout, TEN, "the console's --timeout");
            (*generation, request.clone())
        }
        other => panic!("no plan asked: {other:?}"),
    }
}

fn planned(generation: u64, plan: Plan) -> Event {
    Event::Reply(Reply::Planned {
        generation,
        result: Ok(plan),
    })
}

/// A console on the fake cluster with the switchover plan shown.
fn switchover_shown(t0: Instant) -> App {
    let mut app = fake::console(t0, 30, false);
    let (generation, request) = plan_asked(&press(&mut app, KeyCode::Char('F')));
    assert_eq!(request, PlanRequest::Switchover { to: None });
    app.update(planned(
        generation,
        Plan::Switchover(fake::switchover_plan(None)),
    ));
    app
}

#[test]
fn a_switchover_from_the_plan_to_the_outcome() {
    let t0 = Instant::now();
    let mut app = fake::console(t0, 30, false);
    // F asks the master for its plan, nothing else.
    let (generation, request) = plan_asked(&press(&mut app, KeyCode::Char('F')));
    assert_eq!(request, PlanRequest::Switchover { to: None });
    assert_eq!(flow(&app).kind, FailoverKind::Switchover);
    assert_eq!(flow(&app).plan, PlanState::Asking);
    // Enter before the plan is in does nothing but say so.
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(flow(&app).step, Step::Plan);
    assert!(
        flow(&app)
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("not in yet"))
    );

    // The plan arrives: the candidates in the master's order, its pick selected.
    app.update(planned(
        generation,
        Plan::Switchover(fake::switchover_plan(None)),
    ));
    let f = flow(&app);
    assert_eq!(f.candidates, vec![member(R1), member(R2)]);
    assert_eq!(f.candidate(), Some(&member(R1)));
    assert_eq!(
        f.suggested.as_ref().map(|(m, _)| m.clone()),
        Some(member(R1))
    );
    assert_eq!(f.blocked(), None);
    assert_eq!(f.problem, None);

    // Enter: the confirmation; letters are text there (`q`, `F`, `4` do not act).
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert!(matches!(flow(&app).step, Step::Confirm { .. }));
    assert_eq!(typed(&mut app, "a1b"), vec![]);
    // Too short.
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(
        flow(&app).problem.as_deref(),
        Some("type at least 4 characters of its node id (3 typed): nothing was done")
    );
    assert!(matches!(flow(&app).step, Step::Confirm { .. }));
    // Wrong.
    typed(&mut app, "X");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(
        flow(&app).problem.as_deref(),
        Some("its node id does not start with \"a1bX\": nothing was done")
    );
    assert!(!app.should_quit());

    // Right: the real call, with the command line it amounts to.
    press(&mut app, KeyCode::Backspace);
    typed(&mut app, "2c");
    let commands = press(&mut app, KeyCode::Enter);
    let action = FailoverAction::Switchover {
        to: member(R1),
        timeout: TEN,
    };
    assert_eq!(commands, vec![Command::Failover(action.clone())]);
    assert!(matches!(&flow(&app).step, Step::Running { action: a, .. } if *a == action));
    let command = "kvctl -e http://127.0.0.1:3000 failover --to a1b2c3d4-replica";
    assert_eq!(status_command(&app).as_deref(), Some(command));
    assert_eq!(
        status_text(&app),
        "switching over to a1b2c3d4-replica at 127.0.0.1:3001… writes paused"
    );
    // F again while it runs starts nothing.
    assert_eq!(press(&mut app, KeyCode::Char('F')), vec![]);

    // The outcome: shown in the popup and the status bar, and the cluster asked again.
    let commands = app.update(Event::Reply(Reply::FailedOver {
        action: action.clone(),
        result: Ok(Box::new(FailoverDone::Switchover(fake::switchover_done(
            R1,
        )))),
    }));
    assert!(
        matches!(commands.as_slice(), [Command::Refresh { .. }]) || commands.is_empty(),
        "{commands:?}"
    );
    assert!(matches!(
        &flow(&app).step,
        Step::Done { outcome: Ok(_), .. }
    ));
    assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Done));
    assert_eq!(
        status_text(&app),
        "switched over to a1b2c3d4-replica at 127.0.0.1:3001: epoch 2; writes paused for 87 ms"
    );
    assert_eq!(status_command(&app).as_deref(), Some(command));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.popup, None);
    assert_eq!(
        status_command(&app).as_deref(),
        Some(command),
        "kept in the status bar"
    );

    // The next refresh shows the new master as master and the old as replica, at epoch 2.
    let (snapshot, peers) = fake::switched_over(t0, 31);
    let at = t0 + Duration::from_secs(31);
    app.update(Event::Tick(at));
    for c in app.update(Event::Reply(Reply::Refreshed {
        at,
        result: Ok(Box::new(snapshot)),
    })) {
        if let Command::PeerStatus { node_id, .. } = c {
            let s = peers.iter().find(|p| p.node_id == node_id).cloned();
            app.update(Event::Reply(Reply::PeerStatus {
                result: s.map(Box::new).ok_or_else(|| "unknown".to_string()),
                node_id,
            }));
        }
    }
    let roles: Vec<(String, shared::Role, Option<u64>)> = app
        .nodes()
        .into_iter()
        .map(|n| (n.node_id, n.role, n.epoch))
        .collect();
    assert_eq!(
        roles,
        vec![
            (R1.0.into(), shared::Role::Master, Some(2)),
            (MASTER.0.into(), shared::Role::Replica, Some(2)),
            (R2.0.into(), shared::Role::Replica, Some(2)),
        ]
    );
}

#[test]
fn picking_another_candidate_asks_its_plan_and_drops_the_old_answers() {
    let t0 = Instant::now();
    let mut app = switchover_shown(t0);
    let first = flow(&app).generation;
    let (generation, request) = plan_asked(&press(&mut app, KeyCode::Down));
    assert_eq!(
        request,
        PlanRequest::Switchover {
            to: Some(R2.0.into())
        }
    );
    assert_eq!(flow(&app).candidate(), Some(&member(R2)));
    assert_eq!(flow(&app).plan, PlanState::Asking);
    // The previous plan stays shown meanwhile; Enter waits for the new one.
    assert!(flow(&app).shown_plan().is_some());
    press(&mut app, KeyCode::Enter);
    assert_eq!(flow(&app).step, Step::Plan);
    // An answer to the superseded request is dropped.
    app.update(planned(
        first,
        Plan::Switchover(fake::switchover_plan(None)),
    ));
    assert_eq!(flow(&app).plan, PlanState::Asking);
    app.update(planned(
        generation,
        Plan::Switchover(fake::switchover_plan(Some(R2.0))),
    ));
    assert_eq!(flow(&app).blocked(), None);
    // Down at the end of the list changes nothing and asks nothing.
    assert_eq!(press(&mut app, KeyCode::Down), vec![]);
    // Back to the master's own pick: asked without --to, so its reason shows.
    let (_, request) = plan_asked(&press(&mut app, KeyCode::Up));
    assert_eq!(request, PlanRequest::Switchover { to: None });
    press(&mut app, KeyCode::Down);
    let generation = flow(&app).generation;
    app.update(planned(
        generation,
        Plan::Switchover(fake::switchover_plan(Some(R2.0))),
    ));
    press(&mut app, KeyCode::Enter);
    typed(&mut app, "9e8d7c");
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::Failover(FailoverAction::Switchover {
            to: member(R2),
            timeout: TEN
        })]
    );
    assert_eq!(
        status_command(&app).as_deref(),
        Some("kvctl -e http://127.0.0.1:3000 failover --to 9e8d7c6b-replica")
    );
}

#[test]
fn a_candidate_the_master_would_not_take_cannot_be_confirmed() {
    let mut app = switchover_shown(Instant::now());
    press(&mut app, KeyCode::Down);
    let generation = flow(&app).generation;
    let mut plan = fake::switchover_plan(Some(R2.0));
    plan.target = None;
    plan.reason = "replica 9e8d7c6b-replica at 127.0.0.1:3002 cannot take over: down".into();
    app.update(planned(generation, Plan::Switchover(plan)));
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(flow(&app).step, Step::Plan);
    assert!(
        flow(&app)
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with("the master would not hand over to 9e8d7c6b-replica")),
        "{:?}",
        flow(&app).problem
    );
}

#[test]
fn esc_cancels_at_every_step_before_it_runs() {
    let t0 = Instant::now();
    // While the plan is asked.
    let mut app = fake::console(t0, 30, false);
    press(&mut app, KeyCode::Char('F'));
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.popup, None);
    assert!(!app.should_quit());
    assert_eq!(
        status_text(&app),
        "switchover cancelled: nothing was changed"
    );
    // A late plan opens nothing.
    app.update(planned(1, Plan::Switchover(fake::switchover_plan(None))));
    assert_eq!(app.popup, None);
    // With the plan shown.
    let mut app = switchover_shown(t0);
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.popup, None);
    // While typing the prefix, even with the whole id typed.
    let mut app = switchover_shown(t0);
    press(&mut app, KeyCode::Enter);
    typed(&mut app, R1.0);
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.popup, None);
    assert_eq!(
        status_text(&app),
        "switchover cancelled: nothing was changed"
    );
    assert!(!app.should_quit());
}

#[test]
fn esc_while_it_runs_hides_the_popup_and_the_outcome_goes_to_the_status_bar() {
    let mut app = switchover_shown(Instant::now());
    press(&mut app, KeyCode::Enter);
    typed(&mut app, "a1b2");
    let commands = press(&mut app, KeyCode::Enter);
    let [Command::Failover(action)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.popup, None);
    assert_eq!(
        app.status.as_ref().map(|s| s.kind),
        Some(StatusKind::Pending)
    );
    // The master refuses: its message in full, with the command.
    let refusal = "replica a1b2c3d4-replica did not catch up within 10000 ms: shard 0 at 4990 \
                   of 5010";
    app.update(Event::Reply(Reply::FailedOver {
        action: action.clone(),
        result: Err(Failure::refused(refusal)),
    }));
    assert_eq!(app.popup, None);
    assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Error));
    assert_eq!(
        status_text(&app),
        format!("switchover to a1b2c3d4-replica failed: {refusal}")
    );
    assert_eq!(
        status_command(&app).as_deref(),
        Some("kvctl -e http://127.0.0.1:3000 failover --to a1b2c3d4-replica")
    );
    // And a new one can start.
    assert!(matches!(
        press(&mut app, KeyCode::Char('F')).as_slice(),
        [Command::Plan { .. }]
    ));
}

#[test]
fn a_refusal_is_shown_in_full_in_the_popup() {
    let mut app = switchover_shown(Instant::now());
    press(&mut app, KeyCode::Enter);
    typed(&mut app, "a1b2");
    let commands = press(&mut app, KeyCode::Enter);
    let [Command::Failover(action)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    let refusal = "this master does not admit writes now (epoch 1); retry once it does";
    app.update(Event::Reply(Reply::FailedOver {
        action: action.clone(),
        result: Err(Failure::refused(refusal)),
    }));
    assert_eq!(
        flow(&app).step,
        Step::Done {
            action: action.clone(),
            outcome: Err(refusal.into())
        }
    );
    // A reply that says it was not done is a refusal too.
    let mut app = switchover_shown(Instant::now());
    press(&mut app, KeyCode::Enter);
    typed(&mut app, "a1b2");
    press(&mut app, KeyCode::Enter);
    let mut reply = fake::switchover_done(R1);
    reply.done = false;
    reply.plan.reason = "it went away".into();
    app.update(Event::Reply(Reply::FailedOver {
        action: action.clone(),
        result: Ok(Box::new(FailoverDone::Switchover(reply))),
    }));
    assert!(
        matches!(&flow(&app).step, Step::Done { outcome: Err(e), .. } if e.ends_with("it went away"))
    );
}

#[test]
fn with_the_master_down_f_plans_a_promotion_of_a_replica() {
    let t0 = Instant::now();
    let mut app = fake::master_down_console(t0, false);
    let (generation, request) = plan_asked(&press(&mut app, KeyCode::Char('F')));
    assert_eq!(flow(&app).kind, FailoverKind::Promotion);
    assert_eq!(flow(&app).candidates, vec![member(R1), member(R2)]);
    assert_eq!(
        request,
        PlanRequest::Promotion {
            candidate: member(R1),
            force: false
        }
    );
    app.update(planned(
        generation,
        Plan::Promotion(fake::promotion_plan(R1, false)),
    ));
    // It loses writes: refused without --force, and Enter says so.
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(flow(&app).step, Step::Plan);
    assert!(
        flow(&app)
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with("this promotion loses 2 writes: f adds --force")),
        "{:?}",
        flow(&app).problem
    );
    // Another candidate: its own plan.
    let (_, request) = plan_asked(&press(&mut app, KeyCode::Down));
    assert_eq!(
        request,
        PlanRequest::Promotion {
            candidate: member(R2),
            force: false
        }
    );
    press(&mut app, KeyCode::Up);
    // f: the plan again, with --force.
    let (generation, request) = plan_asked(&press(&mut app, KeyCode::Char('f')));
    assert_eq!(
        request,
        PlanRequest::Promotion {
            candidate: member(R1),
            force: true
        }
    );
    assert!(flow(&app).force);
    app.update(planned(
        generation,
        Plan::Promotion(fake::promotion_plan(R1, true)),
    ));
    assert_eq!(flow(&app).blocked(), None);
    press(&mut app, KeyCode::Enter);
    // `f` is a character of the prefix here, not the toggle.
    typed(&mut app, "a1f");
    press(&mut app, KeyCode::Enter);
    assert!(flow(&app).problem.is_some());
    assert!(flow(&app).force);
    for _ in 0..3 {
        press(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "a1b2");
    let commands = press(&mut app, KeyCode::Enter);
    let action = FailoverAction::Promotion {
        candidate: member(R1),
        force: true,
        timeout: TEN,
    };
    assert_eq!(commands, vec![Command::Failover(action.clone())]);
    let command = "kvctl -e http://127.0.0.1:3001 promote a1b2c3d4-replica --force";
    assert_eq!(status_command(&app).as_deref(), Some(command));
    app.update(Event::Reply(Reply::FailedOver {
        action,
        result: Ok(Box::new(FailoverDone::Promotion(fake::promotion_done(R1)))),
    }));
    assert_eq!(
        status_text(&app),
        "promoted a1b2c3d4-replica at 127.0.0.1:3001: epoch 2; caught up 10 entries from \
         other replicas; 2 writes lost (forced)"
    );
    assert_eq!(status_command(&app).as_deref(), Some(command));
    assert!(matches!(
        &flow(&app).step,
        Step::Done { outcome: Ok(_), .. }
    ));
}

#[test]
fn a_plan_that_cannot_be_had_is_shown_and_asked_again_with_r() {
    let mut app = fake::master_down_console(Instant::now(), false);
    let (generation, _) = plan_asked(&press(&mut app, KeyCode::Char('F')));
    app.update(Event::Reply(Reply::Planned {
        generation,
        result: Err(Failure::unreachable(
            "cannot reach the node at 127.0.0.1:3001: Connection refused",
        )),
    }));
    assert!(matches!(&flow(&app).plan, PlanState::Failed(e) if e.contains("cannot reach")));
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert!(flow(&app).problem.is_some());
    let (later, _) = plan_asked(&press(&mut app, KeyCode::Char('r')));
    assert!(later > generation);
}

#[test]
fn read_only_refuses_the_failover() {
    let mut app = fake::console(Instant::now(), 30, true);
    assert_eq!(press(&mut app, KeyCode::Char('F')), vec![]);
    assert_eq!(app.popup, None);
    assert_eq!(status_text(&app), READ_ONLY);
    let mut app = fake::master_down_console(Instant::now(), true);
    assert_eq!(press(&mut app, KeyCode::Char('F')), vec![]);
    assert_eq!(app.popup, None);
}

#[test]
fn f_before_any_answer_and_from_another_screen() {
    let t0 = Instant::now();
    let mut app = App::new(fake::config(t0, false));
    assert_eq!(press(&mut app, KeyCode::Char('F')), vec![]);
    assert_eq!(app.popup, None);
    assert!(status_text(&app).starts_with("nothing is known of the cluster yet"));
    // From the Keys screen it opens on the Cluster screen.
    let mut app = fake::keys_console(t0, false);
    assert!(matches!(
        press(&mut app, KeyCode::Char('F')).as_slice(),
        [Command::Plan { .. }]
    ));
    assert_eq!(app.screen, Screen::Cluster);
}

#[test]
fn a_short_node_id_is_typed_whole() {
    let mut app = switchover_shown(Instant::now());
    if let Some(Popup::Failover(f)) = &mut app.popup {
        f.candidates[0].node_id = "r1".into();
        if let PlanState::Ready(Plan::Switchover(p)) = &mut f.plan {
            p.target = Some(Member {
                node_id: "r1".into(),
                address: R1.1.into(),
            });
        }
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(flow(&app).confirm_chars(), 2);
    typed(&mut app, "r");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    typed(&mut app, "1");
    assert!(matches!(
        press(&mut app, KeyCode::Enter).as_slice(),
        [Command::Failover(_)]
    ));
}
