//! Snapshots of every screen and popup, drawn into ratatui's `TestBackend` at 80x24 (the
//! smallest supported terminal) and 120x40, from the deterministic fake cluster in `fake.rs`
//! (fixed addresses, node ids and times relative to one `Instant`, so nothing needs filtering).
//!
//! The `.snap` files live in `tui/snapshots/`; after a deliberate change of the layout, run
//! `INSTA_UPDATE=always cargo test -p kvctl` and read the diff of the files before committing.

use std::time::{Duration, Instant};

use ratatui::{Terminal, backend::TestBackend, crossterm::event::KeyCode, style::Color};

use crate::tui::{
    app::{App, Purpose, WriteAction},
    event::{Event, Reply},
    fake::{self, fetched, key, keys_console, typed},
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
            snapshot.endpoint = peers[0].clone();
            snapshot.cluster = Err(
                "cannot reach the node at 127.0.0.1:3000: Connection refused \
                                    (os error 111)"
                    .into(),
            );
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
}
