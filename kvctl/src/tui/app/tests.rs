//! The update logic driven by made-up events, with no terminal and no network: key handling,
//! screens, connection state, paging, the prefix filter, the delete confirmation, the put and
//! edit forms, and the read-only mode.

use std::time::{Duration, Instant};

use super::*;
use crate::tui::{
    event::KeyPage,
    fake::{self, answer_scan, fetched, key, keys_console, scan_generation, typed},
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.update(key(code))
}

/// A refresh that also asks `members` when no master answers.
fn refresh(members: &[&str]) -> Command {
    Command::Refresh {
        members: members.iter().map(ToString::to_string).collect(),
    }
}

/// The members of the fake cluster, as a refresh asks them.
const MEMBERS: [&str; 3] = ["127.0.0.1:3000", "127.0.0.1:3001", "127.0.0.1:3002"];

fn written(action: WriteAction, result: Result<Option<u64>, Failure>) -> Event {
    Event::Reply(Reply::Written { action, result })
}

fn selected_key(app: &App) -> Option<String> {
    app.browser
        .selected()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
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

#[test]
fn screens_switch_by_number_and_tab() {
    let mut app = fake::console(Instant::now(), 3, false);
    assert_eq!(app.screen, Screen::Cluster);
    assert_eq!(press(&mut app, KeyCode::Char('3')), vec![]);
    assert_eq!(app.screen, Screen::Replication);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.screen, Screen::Keys);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.screen, Screen::Cluster);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.screen, Screen::Keys);
    press(&mut app, KeyCode::Char('2'));
    assert_eq!(app.screen, Screen::Shards);
    // Keys outside 1-4 change nothing.
    press(&mut app, KeyCode::Char('5'));
    assert_eq!(app.screen, Screen::Shards);
    assert!(!app.should_quit());
}

#[test]
fn the_keys_screen_loads_its_page_when_shown_and_on_every_tick() {
    let t0 = Instant::now();
    let mut app = fake::console(t0, 3, false);
    let shown = press(&mut app, KeyCode::Char('4'));
    assert!(
        matches!(shown.as_slice(), [Command::Scan(p)] if p.start_after.is_none() && p.prefix.is_empty())
    );
    // While that page is in flight a tick only refreshes.
    let commands = app.update(Event::Tick(t0 + Duration::from_secs(10)));
    assert_eq!(commands, vec![refresh(&MEMBERS)]);
    answer_scan(&mut app, &shown, KeyPage::default());
    let commands = app.update(Event::Tick(t0 + Duration::from_secs(11)));
    // The refresh of the previous tick has not answered: only the page is asked again.
    assert!(
        matches!(commands.as_slice(), [Command::Scan(_)]),
        "{commands:?}"
    );
}

#[test]
fn quit_with_q_esc_or_ctrl_c_but_esc_closes_a_popup_first() {
    let mut app = fake::console(Instant::now(), 1, false);
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.popup, Some(Popup::Help));
    // Other keys do not go through the help to the screen below.
    press(&mut app, KeyCode::Char('3'));
    assert_eq!(app.screen, Screen::Cluster);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.popup, None);
    assert!(!app.should_quit());
    press(&mut app, KeyCode::Esc);
    assert!(app.should_quit());

    let mut app = fake::console(Instant::now(), 1, false);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());

    let mut app = fake::keys_console(Instant::now(), false);
    press(&mut app, KeyCode::Char('p'));
    app.update(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.should_quit(), "Ctrl-C quits even from a form");
}

#[test]
fn one_refresh_at_a_time() {
    let t0 = Instant::now();
    let mut app = App::new(fake::config(t0, false));
    assert_eq!(app.conn, Conn::Connecting);
    assert_eq!(app.update(Event::Tick(t0)), vec![refresh(&[])]);
    assert_eq!(app.update(Event::Tick(t0 + Duration::from_secs(1))), vec![]);
    assert_eq!(press(&mut app, KeyCode::Char('r')), vec![]);
    app.update(Event::Reply(Reply::Refreshed {
        at: t0 + Duration::from_secs(1),
        result: Ok(Box::new(fake::snapshot(0))),
    }));
    assert_eq!(app.conn, Conn::Connected);
    assert_eq!(press(&mut app, KeyCode::Char('r')), vec![refresh(&MEMBERS)]);
}

#[test]
fn a_lost_connection_keeps_the_data_and_recovers_by_itself() {
    let t0 = Instant::now();
    let mut app = fake::console(t0, 5, false);
    let before = app.data.clone();
    fake::disconnect(&mut app, t0, 5, 3);
    assert!(
        matches!(&app.conn, Conn::Disconnected { attempts: 3, error } if error.contains("cannot reach"))
    );
    assert!(app.stale());
    assert_eq!(app.data, before, "the last data is kept");
    assert_eq!(app.data_age(), Some(Duration::from_secs(3)));
    // Every tick while down asks again: recovering needs no key press.
    let commands = app.update(Event::Tick(t0 + Duration::from_secs(8)));
    assert_eq!(commands, vec![refresh(&MEMBERS)]);
    app.update(Event::Reply(Reply::Refreshed {
        at: t0 + Duration::from_secs(8),
        result: Ok(Box::new(fake::snapshot(8))),
    }));
    assert_eq!(app.conn, Conn::Connected);
    assert!(!app.stale());
    assert_eq!(app.data_age(), Some(Duration::ZERO));
}

#[test]
fn scan_failures_while_disconnected_stay_out_of_the_status_bar() {
    let mut app = keys_console(Instant::now(), false);
    let commands = press(&mut app, KeyCode::Char('r'));
    let generation = scan_generation(&commands);
    app.update(Event::Reply(Reply::Scanned {
        generation,
        result: Err(Failure::unreachable("cannot reach")),
    }));
    assert_eq!(app.status, None);
    assert!(!app.browser.loading);
    let commands = press(&mut app, KeyCode::Char('r'));
    app.update(Event::Reply(Reply::Scanned {
        generation: scan_generation(&commands),
        result: Err(Failure::refused("shard 1 is unavailable")),
    }));
    assert_eq!(
        status_text(&app),
        "cannot list keys: shard 1 is unavailable"
    );
    assert_eq!(app.browser.rows.len(), 41, "the rows shown are kept");
}

#[test]
fn paging_forward_and_back() {
    let mut app = keys_console(Instant::now(), false);
    assert_eq!(app.browser.page(), 1);
    assert_eq!(selected_key(&app).as_deref(), Some("\0\u{fffd}\u{10}"));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(selected_key(&app).as_deref(), Some("user:0002"));
    press(&mut app, KeyCode::End);
    assert_eq!(selected_key(&app).as_deref(), Some("user:0040"));

    let commands = press(&mut app, KeyCode::PageDown);
    let [Command::Scan(plan)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(plan.start_after.as_deref(), Some(&b"user:0040"[..]));
    assert_eq!(app.browser.page(), 2);
    answer_scan(
        &mut app,
        &commands,
        KeyPage {
            rows: vec![(b"user:0041".to_vec(), 141)],
            next: None,
        },
    );
    assert_eq!(selected_key(&app).as_deref(), Some("user:0041"));
    assert_eq!(press(&mut app, KeyCode::Char('n')), vec![]);
    assert_eq!(status_text(&app), "this is the last page");

    let commands = press(&mut app, KeyCode::Left);
    let [Command::Scan(plan)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(plan.start_after, None);
    assert_eq!(app.browser.page(), 1);
    assert_eq!(press(&mut app, KeyCode::Char('b')), vec![]);
    assert_eq!(status_text(&app), "this is the first page");
}

#[test]
fn prefix_filter_is_typed_then_applied() {
    let mut app = keys_console(Instant::now(), false);
    assert_eq!(press(&mut app, KeyCode::Char('/')), vec![]);
    // While typing, letters are text: `q` does not quit, `4` does not switch screens.
    assert_eq!(typed(&mut app, "user:q4"), vec![]);
    assert!(!app.should_quit());
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Backspace);
    assert_eq!(app.filter.as_ref().map(Input::text), Some("user:"));
    let commands = press(&mut app, KeyCode::Enter);
    let [Command::Scan(plan)] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(plan.prefix, b"user:");
    assert_eq!(plan.start_after, None);
    assert_eq!(app.filter, None);
    assert_eq!(app.browser.prefix, b"user:");

    // Esc leaves the filter as it was.
    press(&mut app, KeyCode::Char('/'));
    typed(&mut app, "x");
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.browser.prefix, b"user:");
    assert!(!app.should_quit());

    // An empty prefix shows every key again.
    press(&mut app, KeyCode::Char('/'));
    app.update(Event::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    let commands = press(&mut app, KeyCode::Enter);
    assert!(matches!(commands.as_slice(), [Command::Scan(p)] if p.prefix.is_empty()));
}

#[test]
fn shard_filter_needs_the_shard_count() {
    let mut app = keys_console(Instant::now(), false);
    let commands = press(&mut app, KeyCode::Char('s'));
    assert!(matches!(commands.as_slice(), [Command::Scan(p)] if p.shard == Some((0, 2))));
    let mut fresh = App::new(fake::config(Instant::now(), false));
    fresh.screen = Screen::Keys;
    assert_eq!(press(&mut fresh, KeyCode::Char('s')), vec![]);
    assert_eq!(status_text(&fresh), "the shard count is not known yet");
}

#[test]
fn delete_asks_for_confirmation_naming_the_key() {
    let mut app = keys_console(Instant::now(), false);
    press(&mut app, KeyCode::Down);
    assert_eq!(press(&mut app, KeyCode::Char('d')), vec![]);
    assert_eq!(
        app.popup,
        Some(Popup::Confirm {
            key: b"user:0001".to_vec()
        })
    );
    // Keys other than y / n / Esc do nothing.
    assert_eq!(press(&mut app, KeyCode::Char('x')), vec![]);
    assert!(app.popup.is_some());
    assert_eq!(press(&mut app, KeyCode::Char('n')), vec![]);
    assert_eq!(app.popup, None);
    assert_eq!(status_text(&app), "delete of user:0001 cancelled");

    press(&mut app, KeyCode::Char('d'));
    let commands = press(&mut app, KeyCode::Char('y'));
    let action = WriteAction::Delete {
        key: b"user:0001".to_vec(),
    };
    assert_eq!(commands, vec![Command::Write(action.clone())]);
    assert_eq!(app.popup, None);
    assert_eq!(
        status_command(&app).as_deref(),
        Some("kvctl -e http://127.0.0.1:3000 delete user:0001")
    );
    assert_eq!(status_text(&app), "deleting user:0001…");

    let commands = app.update(written(action.clone(), Ok(Some(77))));
    assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Done));
    assert_eq!(status_text(&app), "deleted user:0001 (version 77)");
    assert_eq!(
        status_command(&app).as_deref(),
        Some("kvctl -e http://127.0.0.1:3000 delete user:0001")
    );
    assert!(
        commands.iter().any(|c| matches!(c, Command::Scan(_))),
        "the page is read again"
    );

    app.update(written(action.clone(), Ok(None)));
    assert_eq!(
        status_text(&app),
        "user:0001 did not exist: nothing deleted"
    );
    app.update(written(
        action,
        Err(Failure::unreachable("lost the connection")),
    ));
    assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Error));
    assert_eq!(
        status_text(&app),
        "delete user:0001 failed: lost the connection"
    );
}

#[test]
fn put_through_the_form_shows_the_kvctl_command() {
    let mut app = keys_console(Instant::now(), false);
    assert_eq!(press(&mut app, KeyCode::Char('p')), vec![]);
    assert!(
        matches!(&app.popup, Some(Popup::Form(f)) if f.edit.is_none() && f.focus == Field::Key)
    );
    // An empty key is refused, the form stays.
    assert_eq!(press(&mut app, KeyCode::Enter), vec![]);
    assert_eq!(status_text(&app), "the key is empty: type a key first");
    assert!(app.popup.is_some());
    // Letters are text in the form: `q`, `d` and `4` do not act.
    typed(&mut app, "user:q4d");
    press(&mut app, KeyCode::Tab);
    typed(&mut app, "hello tui");
    assert!(!app.should_quit());
    let commands = press(&mut app, KeyCode::Enter);
    let action = WriteAction::Put {
        key: b"user:q4d".to_vec(),
        value: b"hello tui".to_vec(),
        if_version: None,
    };
    assert_eq!(commands, vec![Command::Write(action.clone())]);
    assert_eq!(app.popup, None);
    let command = "kvctl -e http://127.0.0.1:3000 put user:q4d 'hello tui'";
    assert_eq!(status_command(&app).as_deref(), Some(command));
    app.update(written(action.clone(), Ok(Some(12))));
    assert_eq!(status_text(&app), "put user:q4d: version 12");
    assert_eq!(status_command(&app).as_deref(), Some(command));
    app.update(written(
        action,
        Err(Failure::refused("the value is 2 bytes, over the limit")),
    ));
    assert_eq!(
        status_text(&app),
        "put user:q4d failed: the value is 2 bytes, over the limit"
    );
    assert_eq!(status_command(&app).as_deref(), Some(command));

    press(&mut app, KeyCode::Char('p'));
    assert_eq!(press(&mut app, KeyCode::Esc), vec![]);
    assert_eq!(app.popup, None);
    assert_eq!(status_text(&app), "put cancelled");
    assert!(!app.should_quit());
}

#[test]
fn edit_reads_the_value_then_puts_it_at_that_version() {
    let mut app = keys_console(Instant::now(), false);
    press(&mut app, KeyCode::Down);
    let commands = press(&mut app, KeyCode::Char('e'));
    assert_eq!(
        commands,
        vec![Command::Get {
            key: b"user:0001".to_vec(),
            purpose: Purpose::Edit
        }]
    );
    app.update(fetched(b"user:0001", Purpose::Edit, b"old", 101));
    let Some(Popup::Form(form)) = &app.popup else {
        panic!("no form: {:?}", app.popup)
    };
    assert_eq!((form.edit, form.focus), (Some(101), Field::Value));
    assert_eq!((form.key.text(), form.value.text()), ("user:0001", "old"));
    // The key is fixed while editing.
    press(&mut app, KeyCode::Tab);
    assert!(matches!(&app.popup, Some(Popup::Form(f)) if f.focus == Field::Value));
    press(&mut app, KeyCode::Backspace);
    typed(&mut app, "d!");
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::Write(WriteAction::Put {
            key: b"user:0001".to_vec(),
            value: b"old!".to_vec(),
            if_version: Some(101)
        })]
    );
    assert_eq!(
        status_command(&app).as_deref(),
        Some("kvctl -e http://127.0.0.1:3000 put --if-version 101 user:0001 'old!'")
    );

    // Binary or multi-line values are not edited in a one-line form.
    press(&mut app, KeyCode::Char('e'));
    app.update(fetched(b"user:0001", Purpose::Edit, b"a\nb", 102));
    assert_eq!(app.popup, None);
    assert!(
        status_text(&app).contains("cannot edit"),
        "{}",
        status_text(&app)
    );
    // A key deleted meanwhile.
    press(&mut app, KeyCode::Char('e'));
    app.update(Event::Reply(Reply::Fetched {
        key: b"user:0001".to_vec(),
        purpose: Purpose::Edit,
        result: Ok(None),
    }));
    assert_eq!(status_text(&app), "user:0001 no longer exists");
}

#[test]
fn enter_views_the_value_and_esc_closes_it() {
    let mut app = keys_console(Instant::now(), false);
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::Get {
            key: vec![0x00, 0xff, 0x10],
            purpose: Purpose::View
        }]
    );
    app.update(fetched(&[0x00, 0xff, 0x10], Purpose::View, &[1, 2, 3], 7));
    assert!(matches!(&app.popup, Some(Popup::Value(v)) if v.value == [1, 2, 3] && v.version == 7));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::PageDown);
    assert!(matches!(&app.popup, Some(Popup::Value(v)) if v.scroll == 11));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.popup, None);
    assert!(!app.should_quit());
    // An answer that arrives after the operator left the screen opens nothing.
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('1'));
    app.update(fetched(&[0x00, 0xff, 0x10], Purpose::View, &[1], 7));
    assert_eq!(app.popup, None);
}

#[test]
fn read_only_disables_every_write() {
    let mut app = keys_console(Instant::now(), true);
    press(&mut app, KeyCode::Down);
    for code in [KeyCode::Char('p'), KeyCode::Char('e'), KeyCode::Char('d')] {
        assert_eq!(press(&mut app, code), vec![], "{code:?}");
        assert_eq!(app.popup, None, "{code:?}");
        assert_eq!(status_text(&app), READ_ONLY);
        assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Error));
    }
    // Reading still works.
    assert!(matches!(
        press(&mut app, KeyCode::Enter).as_slice(),
        [Command::Get {
            purpose: Purpose::View,
            ..
        }]
    ));
}

#[test]
fn selections_stay_within_their_lists() {
    let mut app = fake::console(Instant::now(), 3, false);
    press(&mut app, KeyCode::Char('2'));
    for _ in 0..5 {
        press(&mut app, KeyCode::Down);
    }
    assert_eq!(app.shard_selected, 1, "two shards");
    press(&mut app, KeyCode::Char('g'));
    assert_eq!(app.shard_selected, 0);
    press(&mut app, KeyCode::Char('3'));
    press(&mut app, KeyCode::Char('G'));
    assert_eq!(app.replication_selected, 3, "two replicas times two shards");
    press(&mut app, KeyCode::Up);
    assert_eq!(app.replication_selected, 2);
}

#[test]
fn closed_input_ends_the_console() {
    let mut app = fake::console(Instant::now(), 1, false);
    app.update(Event::InputClosed("cannot read the terminal".into()));
    assert!(app.should_quit());
}

#[test]
fn replicas_are_asked_for_their_own_status_one_call_at_a_time() {
    let t0 = Instant::now();
    let mut app = App::new(fake::config(t0, false));
    app.update(Event::Tick(t0));
    let (snapshot, _) = fake::cluster_at(0);
    let asked = app.update(Event::Reply(Reply::Refreshed {
        at: t0,
        result: Ok(Box::new(snapshot.clone())),
    }));
    assert_eq!(
        asked,
        vec![
            Command::PeerStatus {
                node_id: "a1b2c3d4-replica".into(),
                address: "127.0.0.1:3001".into()
            },
            Command::PeerStatus {
                node_id: "9e8d7c6b-replica".into(),
                address: "127.0.0.1:3002".into()
            },
        ]
    );
    // The first replica answers, the second hangs: the next refresh asks only the first.
    app.update(Event::Reply(Reply::PeerStatus {
        node_id: "a1b2c3d4-replica".into(),
        result: Err("no answer".into()),
    }));
    app.update(Event::Tick(t0 + Duration::from_secs(1)));
    let asked = app.update(Event::Reply(Reply::Refreshed {
        at: t0 + Duration::from_secs(1),
        result: Ok(Box::new(snapshot)),
    }));
    assert_eq!(
        asked,
        vec![Command::PeerStatus {
            node_id: "a1b2c3d4-replica".into(),
            address: "127.0.0.1:3001".into()
        }]
    );
    assert_eq!(
        app.replica_status("a1b2c3d4-replica"),
        Some(&Err("no answer".to_string()))
    );
}

#[test]
fn an_endpoint_that_is_a_replica_stands_for_itself() {
    let t0 = Instant::now();
    let mut app = App::new(fake::config(t0, false));
    let (mut snapshot, peers) = fake::cluster_at(0);
    snapshot.endpoint = peers[1].clone();
    let asked = app.update(Event::Reply(Reply::Refreshed {
        at: t0,
        result: Ok(Box::new(snapshot)),
    }));
    assert!(
        matches!(asked.as_slice(), [Command::PeerStatus { node_id, .. }] if node_id == "a1b2c3d4-replica"),
        "{asked:?}"
    );
    assert_eq!(
        app.replica_status("9e8d7c6b-replica"),
        Some(&Ok(peers[1].clone()))
    );
}

#[test]
fn editing_a_binary_key_writes_that_exact_key() {
    let mut app = keys_console(Instant::now(), false);
    // The first row is the binary key 00 ff 10, shown as hex.
    press(&mut app, KeyCode::Char('e'));
    app.update(fetched(&[0x00, 0xff, 0x10], Purpose::Edit, b"text", 7));
    assert!(matches!(&app.popup, Some(Popup::Form(f)) if f.key.text() == "0x00ff10"));
    typed(&mut app, "!");
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::Write(WriteAction::Put {
            key: vec![0x00, 0xff, 0x10],
            value: b"text!".to_vec(),
            if_version: Some(7)
        })]
    );
    assert_eq!(
        status_command(&app).as_deref(),
        Some(r"kvctl -e http://127.0.0.1:3000 put --if-version 7 $'\x00\xff\x10' 'text!'")
    );
}
