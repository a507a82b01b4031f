//! Snapshots of every screen and popup, drawn into ratatui's `TestBackend` at 80x24 (the
//! smallest supported terminal) and 120x40, from the deterministic fake cluster in `fake.rs`
//! (fixed addresses, node ids, wall-clock times and times relative to one `Instant`, so
//! nothing needs filtering).
//!
//! The `.snap` files live in `tui/snapshots/`; after a deliberate change of the layout, run
//! `INSTA_UPDATE=always cargo test -p kvctl` and read the diff of the files before committing.

use std::time::{Duration, Instant};

use ratatui::{Terminal, backend::TestBackend, crossterm::event::KeyCode, style::Color};

use crate::tui::{
    app::{App, Command, FailoverAction, Plan, Purpose, WriteAction},
    event::{Event, FailoverDone, Failure, Probe, Reply},
    fake::{self, R1, fetched, key, keys_console, member, typed},
};

/// The sizes every scene is drawn at.
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .expect("draw");
    terminal
}

/// Snapshots `scene(t0)` at every size as `<name>_<width>x<height>`.
fn snapshot(name: &str, scene: impl Fn(Instant) -> App) {
    for (w, h) in SIZES {
        let app = scene(Instant::now());
        let terminal = draw(&app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

fn press(app: &mut App, code: KeyCode) {
    app.update(key(code));
}

#[test]
fn connecting() {
    snapshot("connecting", |t0| App::new(fake::config(t0, false)));
}

#[test]
fn cluster() {
    snapshot("cluster", |t0| fake::console(t0, 30, false));
}

#[test]
fn shards() {
    snapshot("shards", |t0| {
        let mut app = fake::console(t0, 30, false);
        press(&mut app, KeyCode::Char('2'));
        app
    });
}

#[test]
fn replication() {
    snapshot("replication", |t0| {
        let mut app = fake::console(t0, 30, false);
        press(&mut app, KeyCode::Char('3'));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        app
    });
}

#[test]
fn keys() {
    snapshot("keys", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Down);
        app
    });
}

#[test]
fn keys_filter_being_typed() {
    snapshot("keys_filter", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "user:00");
        app
    });
}

#[test]
fn disconnected() {
    snapshot("disconnected_cluster", |t0| {
        let mut app = fake::console(t0, 30, false);
        fake::disconnect(&mut app, t0, 30, 3);
        app
    });
    snapshot("disconnected_keys", |t0| {
        let mut app = keys_console(t0, false);
        fake::disconnect(&mut app, t0, 30, 1);
        app
    });
}

#[test]
fn a_replica_endpoint_whose_master_is_down() {
    for screen in ['1', '2'] {
        snapshot(&format!("replica_without_master_{screen}"), |t0| {
            let mut app = App::new(fake::config(t0, false));
            let (mut snapshot, peers) = fake::cluster_at(0);
            let refused = "cannot reach the node at 127.0.0.1:3000: Connection refused \
                           (os error 111)";
            snapshot.endpoint = peers[0].clone();
            snapshot.cluster = Err(refused.into());
            // Given only the replica: it answers, the master it names does not.
            snapshot.nodes = vec![
                Probe {
                    address: "127.0.0.1:3001".into(),
                    status: Ok(peers[0].clone()),
                },
                Probe {
                    address: "127.0.0.1:3000".into(),
                    status: Err(refused.into()),
                },
            ];
            app.update(Event::Reply(Reply::Refreshed {
                at: t0,
                result: Ok(Box::new(snapshot)),
            }));
            press(&mut app, KeyCode::Char(screen));
            app
        });
    }
}

#[test]
fn help() {
    snapshot("help", |t0| {
        let mut app = fake::console(t0, 30, false);
        press(&mut app, KeyCode::Char('?'));
        app
    });
}

#[test]
fn value_as_text_and_as_hex() {
    snapshot("value_text", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Enter);
        app.update(fetched(
            b"user:0001",
            Purpose::View,
            b"{\"name\": \"Ada\",\n \"email\": \"ada@example.com\",\n \"roles\": [\"admin\"]}",
            101,
        ));
        app
    });
    snapshot("value_hex", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Enter);
        let bytes: Vec<u8> = (0u8..=255).step_by(3).collect();
        app.update(fetched(&[0x00, 0xff, 0x10], Purpose::View, &bytes, 7));
        app
    });
}

#[test]
fn delete_confirmation() {
    snapshot("confirm_delete", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('d'));
        app
    });
}

#[test]
fn put_form_and_its_outcome() {
    snapshot("put_form", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Char('p'));
        typed(&mut app, "user:0100");
        press(&mut app, KeyCode::Tab);
        typed(&mut app, "hello tui");
        app
    });
    snapshot("put_done", |t0| {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Char('p'));
        typed(&mut app, "user:0100");
        press(&mut app, KeyCode::Tab);
        typed(&mut app, "hello tui");
        press(&mut app, KeyCode::Enter);
        app.update(Event::Reply(Reply::Written {
            action: WriteAction::Put {
                key: b"user:0100".to_vec(),
                value: b"hello tui".to_vec(),
                if_version: None,
            },
            result: Ok(Some(5321)),
        }));
        app
    });
}

#[test]
fn read_only() {
    snapshot("read_only_keys", |t0| {
        let mut app = keys_console(t0, true);
        press(&mut app, KeyCode::Char('d'));
        app
    });
}

/// Answers the plan request among `commands` with `plan`.
fn answer_plan(app: &mut App, commands: &[Command], plan: Plan) {
    let generation = commands
        .iter()
        .find_map(|c| match c {
            Command::Plan { generation, .. } => Some(*generation),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no plan asked in {commands:?}"));
    app.update(Event::Reply(Reply::Planned {
        generation,
        result: Ok(plan),
    }));
}

/// The console with the master's switchover plan shown.
fn switchover_plan(t0: Instant) -> App {
    let mut app = fake::console(t0, 30, false);
    let commands = app.update(key(KeyCode::Char('F')));
    answer_plan(
        &mut app,
        &commands,
        Plan::Switchover(fake::switchover_plan(None)),
    );
    app
}

/// The switchover confirmed with `prefix`, running since `t0 + 30s`, answered after 1.5 s.
fn switchover_running(t0: Instant, prefix: &str) -> App {
    let mut app = switchover_plan(t0);
    press(&mut app, KeyCode::Enter);
    typed(&mut app, prefix);
    press(&mut app, KeyCode::Enter);
    app.update(Event::Tick(t0 + Duration::from_millis(31_500)));
    app
}

fn switchover_to_r1() -> FailoverAction {
    FailoverAction::Switchover {
        to: member(R1),
        timeout: Duration::from_secs(10),
    }
}

#[test]
fn cluster_after_a_switchover_and_with_the_master_down() {
    snapshot("cluster_switched_over", |t0| {
        let mut app = fake::console(t0, 30, false);
        for i in 30..40 {
            let at = t0 + Duration::from_secs(i);
            app.update(Event::Tick(at));
            let (snapshot, peers) = fake::switched_over(t0, i);
            for c in app.update(Event::Reply(Reply::Refreshed {
                at,
                result: Ok(Box::new(snapshot)),
            })) {
                if let Command::PeerStatus { node_id, .. } = c {
                    let status = peers.iter().find(|p| p.node_id == node_id).cloned();
                    app.update(Event::Reply(Reply::PeerStatus {
                        result: status.map(Box::new).ok_or_else(|| "unknown".to_string()),
                        node_id,
                    }));
                }
            }
        }
        app
    });
    snapshot("cluster_master_down", |t0| {
        fake::master_down_console(t0, false)
    });
}

#[test]
fn automatic_failover_the_lease_and_an_election() {
    snapshot("cluster_auto_lease", |t0| {
        fake::console_of(t0, 30, false, fake::auto_at)
    });
    snapshot("cluster_auto_election", fake::electing_console);
}

#[test]
fn switchover_plan_confirm_and_outcome() {
    snapshot("failover_plan", switchover_plan);
    snapshot("failover_plan_other_pick", |t0| {
        let mut app = switchover_plan(t0);
        let commands = app.update(key(KeyCode::Down));
        answer_plan(
            &mut app,
            &commands,
            Plan::Switchover(fake::switchover_plan(Some(fake::R2.0))),
        );
        app
    });
    snapshot("failover_confirm", |t0| {
        let mut app = switchover_plan(t0);
        press(&mut app, KeyCode::Enter);
        typed(&mut app, "a1b");
        app
    });
    snapshot("failover_confirm_wrong_prefix", |t0| {
        let mut app = switchover_plan(t0);
        press(&mut app, KeyCode::Enter);
        typed(&mut app, "a1bX");
        press(&mut app, KeyCode::Enter);
        app
    });
    snapshot("failover_running", |t0| switchover_running(t0, "a1b2"));
    snapshot("failover_done", |t0| {
        let mut app = switchover_running(t0, "a1b2");
        app.update(Event::Reply(Reply::FailedOver {
            action: switchover_to_r1(),
            result: Ok(Box::new(FailoverDone::Switchover(fake::switchover_done(
                R1,
            )))),
        }));
        app
    });
    snapshot("failover_refused", |t0| {
        let mut app = switchover_running(t0, "a1b2");
        app.update(Event::Reply(Reply::FailedOver {
            action: switchover_to_r1(),
            result: Err(Failure::refused(
                "replica a1b2c3d4-replica did not catch up within 10000 ms: shard 0 at 4990 \
                 of 5010",
            )),
        }));
        app
    });
}

#[test]
fn promotion_plan_force_and_outcome() {
    let promotion = |t0: Instant, force: bool| {
        let mut app = fake::master_down_console(t0, false);
        let commands = app.update(key(KeyCode::Char('F')));
        answer_plan(
            &mut app,
            &commands,
            Plan::Promotion(fake::promotion_plan(R1, false)),
        );
        if force {
            let commands = app.update(key(KeyCode::Char('f')));
            answer_plan(
                &mut app,
                &commands,
                Plan::Promotion(fake::promotion_plan(R1, true)),
            );
        }
        app
    };
    snapshot("promotion_plan", |t0| {
        let mut app = promotion(t0, false);
        // Enter on a plan that loses writes, without --force: refused, and says why.
        press(&mut app, KeyCode::Enter);
        app
    });
    snapshot("promotion_forced_confirm", |t0| {
        let mut app = promotion(t0, true);
        press(&mut app, KeyCode::Enter);
        typed(&mut app, "a1b2");
        app
    });
    snapshot("promotion_done", |t0| {
        let mut app = promotion(t0, true);
        press(&mut app, KeyCode::Enter);
        typed(&mut app, "a1b2");
        press(&mut app, KeyCode::Enter);
        app.update(Event::Reply(Reply::FailedOver {
            action: FailoverAction::Promotion {
                candidate: member(R1),
                force: true,
                timeout: Duration::from_secs(10),
            },
            result: Ok(Box::new(FailoverDone::Promotion(fake::promotion_done(R1)))),
        }));
        app
    });
}

#[test]
fn disconnected_data_is_greyed_and_connected_data_is_not() {
    let t0 = Instant::now();
    let mut app = fake::console(t0, 30, false);
    let grey = |app: &App| {
        let terminal = draw(app, 80, 24);
        let buf = terminal.backend().buffer().clone();
        // Rows 3.. are the body (the first body row is the banner when disconnected).
        (4..18u16)
            .flat_map(|y| (0..80u16).map(move |x| (x, y)))
            .filter(|&(x, y)| buf[(x, y)].symbol() != " ")
            .all(|(x, y)| buf[(x, y)].fg == Color::DarkGray)
    };
    assert!(!grey(&app));
    fake::disconnect(&mut app, t0, 30, 1);
    assert!(grey(&app));
    app.update(Event::Reply(Reply::Refreshed {
        at: t0 + Duration::from_secs(31),
        result: Ok(Box::new(fake::snapshot(31))),
    }));
    assert!(!grey(&app));
}

#[test]
fn every_size_from_the_smallest_up_draws_without_panicking() {
    let t0 = Instant::now();
    for code in ['1', '2', '3', '4', '?'] {
        let mut app = keys_console(t0, false);
        press(&mut app, KeyCode::Char(code));
        for (w, h) in [(20, 5), (80, 24), (81, 25), (200, 60)] {
            draw(&app, w, h);
        }
    }
    let scenes = [
        switchover_plan(t0),
        switchover_running(t0, "a1b2"),
        fake::master_down_console(t0, false),
    ];
    for mut app in scenes {
        for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24), (200, 60)] {
            draw(&app, w, h);
        }
        press(&mut app, KeyCode::Char('F'));
        draw(&app, 20, 5);
        draw(&app, 80, 24);
    }
}
