//! `kvctl tui` in a pseudo-terminal against real nodes: the console is driven by key presses
//! written to the pty and checked by reading its screen, as a `vt100` terminal renders the
//! bytes it draws. Every wait is on a screen condition with a timeout, never a bare sleep.

use std::{
    io::{Read, Write},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use harness::{NodeProcess, client, ctx, kvctl, kvctl_bin, status, wait_caught_up, wait_until};
use nix::{sys::signal, unistd::Pid};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};
use shared::{PutRequest, Role};

const ROWS: u16 = 40;
const COLS: u16 = 120;
/// Longest wait for anything the console should show.
const SCREEN_WAIT: Duration = Duration::from_secs(30);

/// A running `kvctl tui` in a pty, and what a terminal would show of it.
struct Console {
    parser: Arc<Mutex<vt100::Parser>>,
    /// Every byte the console wrote, to check the escape sequences that restore the terminal.
    raw: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
}

impl Console {
    /// Starts `kvctl -e <endpoint> tui <args>` in a 120x40 pty, logging to `log`.
    fn start(endpoint: &str, args: &[&str], log: &Path) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pty");
        let mut cmd = CommandBuilder::new(kvctl_bin());
        cmd.args(["-e", endpoint, "tui", "--log-file"]);
        cmd.arg(log);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("KVCTL_ENDPOINT");
        let child = pair.slave.spawn_command(cmd).expect("spawn kvctl tui");
        drop(pair.slave);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let (screen, bytes) = (Arc::clone(&parser), Arc::clone(&raw));
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().process(&buf[..n]);
                bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().expect("pty writer");
        Self {
            parser,
            raw,
            writer,
            child,
            _master: pair.master,
        }
    }

    /// The screen as text, one line per row.
    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until the screen satisfies `cond`; panics with the screen after `timeout`.
    fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        if wait_until(timeout, || {
            last = self.screen();
            cond(&last)
        }) {
            return last;
        }
        panic!("the console did not show {what} within {timeout:?}; the screen:\n{last}");
    }

    /// Waits until the screen contains `text`.
    fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), SCREEN_WAIT, |s| s.contains(text))
    }

    /// Types `keys` (bytes as a terminal sends them: `\t` Tab, `\r` Enter).
    fn send(&mut self, keys: &str) {
        self.writer
            .write_all(keys.as_bytes())
            .expect("write to the pty");
        self.writer.flush().expect("flush the pty");
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("wait for kvctl");
            status.is_some()
        });
        status.expect("kvctl tui did not exit").success()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Replication screen's figures for `replica` (an address): (shard, ops behind) per row.
fn lag_rows(screen: &str, replica: &str) -> Vec<(u32, u64)> {
    screen
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line
                .trim_matches(|c: char| c == '│' || c.is_whitespace())
                .split_whitespace()
                .collect();
            match cols.as_slice() {
                [addr, shard, "up" | "down", ops, ..] if *addr == replica => {
                    Some((shard.parse().ok()?, ops.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether a table row starts with `first` and shows `address`.
fn has_row(screen: &str, first: &str, address: &str) -> bool {
    screen.lines().any(|line| {
        let cells = line.trim_start_matches(['│', ' ']);
        cells.starts_with(first) && cells.contains(address)
    })
}

/// Sends `sig` to a node this test started.
fn signal_node(node: &NodeProcess, sig: signal::Signal) {
    let pid = Pid::from_raw(i32::try_from(node.pid()).unwrap());
    signal::kill(pid, sig).expect("signal the replica");
}

/// Resumes a stopped node even when the test fails half-way, so it can be stopped at the end.
struct Resume<'a>(&'a NodeProcess);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        signal_node(self.0, signal::Signal::SIGCONT);
    }
}

#[test]
fn console_shows_the_cluster_and_lag_puts_and_deletes_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &master.endpoint(), &[]);
    let (m, m_addr, r_addr) = (
        master.endpoint(),
        master.addr.to_string(),
        replica.addr.to_string(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));

    let mut tui = Console::start(&m, &["--refresh", "250ms"], &dir.path().join("tui.log"));

    // Cluster: both nodes.
    tui.wait("both nodes, connected", SCREEN_WAIT, |s| {
        s.contains("● connected") && has_row(s, "master", &m_addr) && has_row(s, "replica", &r_addr)
    });

    // Replication: stop the replica, write, and see how far behind it is.
    {
        signal_node(&replica, signal::Signal::SIGSTOP);
        let _resume = Resume(&replica);
        rt.block_on(async {
            let c = client(&m).await;
            for i in 0..20 {
                let req = PutRequest::new(format!("lag:{i}"), "v");
                c.put(ctx(), req).await.unwrap().unwrap();
            }
        });
        tui.send("3");
        let screen = tui.wait("the replica's lag", SCREEN_WAIT, |s| {
            let rows = lag_rows(s, &r_addr);
            rows.len() == 2 && rows.iter().map(|&(_, ops)| ops).sum::<u64>() == 20
        });
        assert!(screen.contains("Operations behind per replica"), "{screen}");
    }
    tui.wait("the replica caught up", SCREEN_WAIT, |s| {
        let rows = lag_rows(s, &r_addr);
        rows.len() == 2 && rows.iter().all(|&(_, ops)| ops == 0) && s.contains("caught up")
    });

    // Keys: put through the form; the status bar shows the same kvctl command.
    tui.send("4");
    tui.wait_for("Keys · all shards");
    tui.send("p");
    tui.wait_for("Put a key");
    tui.send("tui:key1\thello tui\r");
    let command = format!("kvctl -e {m} put tui:key1 'hello tui'");
    tui.wait("the put and its command", SCREEN_WAIT, |s| {
        s.contains("✔ put tui:key1: version") && s.contains(&command)
    });
    let out = kvctl(&m, &["get", "tui:key1"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello tui");

    // Delete through the confirmation, which names the key.
    tui.send("/tui:\r");
    tui.wait("the filtered page", SCREEN_WAIT, |s| {
        s.contains("prefix \"tui:\"") && s.contains("keys 1–1")
    });
    tui.send("d");
    tui.wait_for("Delete the key tui:key1?");
    tui.send("y");
    tui.wait_for("✔ deleted tui:key1 (version");
    tui.wait_for(&format!("kvctl -e {m} delete tui:key1"));
    let out = kvctl(&m, &["get", "tui:key1"], None);
    assert_eq!(out.status.code(), Some(1), "deleted: {out:?}");

    // Quit: the terminal is back to the main screen with the cursor shown.
    tui.send("q");
    assert!(tui.wait_exit(Duration::from_secs(10)), "kvctl tui exits 0");
    // Let the reader thread take the last bytes.
    wait_until(Duration::from_secs(5), || {
        !tui.parser.lock().unwrap().screen().alternate_screen()
    });
    let parser = tui.parser.lock().unwrap();
    assert!(
        !parser.screen().alternate_screen(),
        "left the alternate screen"
    );
    assert!(!parser.screen().hide_cursor(), "the cursor is shown again");
    let raw = tui.raw.lock().unwrap();
    assert!(
        raw.windows(8).any(|w| w == b"\x1b[?1049l"),
        "the alternate screen was left explicitly"
    );
}

#[test]
fn a_killed_master_shows_disconnected_within_3s_and_a_restart_brings_the_data_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let m = master.endpoint();
    let m_addr = master.addr.to_string();
    let out = kvctl(&m, &["put", "survivor", "still here"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The default refresh period (1 s).
    let mut tui = Console::start(&m, &[], &dir.path().join("tui.log"));
    tui.wait_for("● connected");
    tui.send("4");
    tui.wait("the key on the Keys screen", SCREEN_WAIT, |s| {
        s.contains("survivor") && s.contains("● connected")
    });

    master.kill9();
    let killed = Instant::now();
    let screen = tui.wait("the disconnected state", Duration::from_secs(3), |s| {
        s.contains("disconnected, retrying")
    });
    assert!(killed.elapsed() <= Duration::from_secs(3));
    assert!(screen.contains("survivor"), "the last data stays: {screen}");
    // It keeps retrying on its own (attempts count up) without freezing.
    tui.wait("a second attempt", SCREEN_WAIT, |s| {
        s.contains("attempt 2:")
    });

    // Restarted on the same port: connected again with the data back, no key pressed.
    master.restart();
    let screen = tui.wait("the reconnection", SCREEN_WAIT, |s| {
        s.contains("● connected") && s.contains("survivor") && !s.contains("disconnected")
    });
    assert!(screen.contains(&m_addr), "{screen}");

    tui.send("q");
    assert!(tui.wait_exit(Duration::from_secs(10)), "kvctl tui exits 0");
}

#[test]
fn a_switchover_from_the_console_makes_the_replica_the_master_at_epoch_2() {
    let dir = tempfile::tempdir().unwrap();
    let master = NodeProcess::master(&dir.path().join("m"), 2, &[]);
    let replica = NodeProcess::replica(&dir.path().join("r"), 2, &master.endpoint(), &[]);
    let (m, r) = (master.endpoint(), replica.endpoint());
    let (m_addr, r_addr) = (master.addr.to_string(), replica.addr.to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client(&m).await;
        for i in 0..10 {
            let req = PutRequest::new(format!("before:{i}"), "v");
            c.put(ctx(), req).await.unwrap().unwrap();
        }
    });
    rt.block_on(wait_caught_up(&m, 1, Duration::from_secs(60)));
    let r_id = rt.block_on(status(&r)).node_id;

    // The console is given the master only: it follows the mastership by itself.
    let mut tui = Console::start(&m, &["--refresh", "250ms"], &dir.path().join("tui.log"));
    tui.wait("both nodes at epoch 1", SCREEN_WAIT, |s| {
        s.contains("● connected")
            && s.contains("epoch 1")
            && has_row(s, "master", &m_addr)
            && has_row(s, "replica", &r_addr)
    });

    // F: the master's plan, its target the replica.
    tui.send("F");
    let target = format!("target      {r_id} at {r_addr}");
    tui.wait("the switchover plan", SCREEN_WAIT, |s| {
        s.contains("Switchover") && s.contains(&target)
    });
    tui.send("\r");
    tui.wait_for("to confirm, type the first 4 or more characters of its node id");
    // A wrong prefix does nothing but say so.
    tui.send("zzzz\r");
    tui.wait_for("its node id does not start with \"zzzz\": nothing was done");
    assert_eq!(
        rt.block_on(status(&m)).role,
        Role::Master,
        "nothing was done"
    );
    // The right one runs it.
    tui.send("\x7f\x7f\x7f\x7f");
    tui.send(&r_id[..6]);
    tui.send("\r");
    let command = format!("kvctl -e {m} failover --to {r_id}");
    let done = tui.wait("the outcome", SCREEN_WAIT, |s| {
        s.contains("✔ switched over") && s.contains(&command)
    });
    assert!(done.contains("epoch       2"), "{done}");
    assert!(
        done.contains(&format!("new master  {r_id} at {r_addr}")),
        "{done}"
    );

    // Closed: the Cluster screen shows the new master as master and the old as a replica.
    tui.send("\r");
    let screen = tui.wait("the new roles at epoch 2", SCREEN_WAIT, |s| {
        s.contains("epoch 2")
            && has_row(s, "master", &r_addr)
            && has_row(s, "replica", &m_addr)
            && s.contains("last failover: epoch 2, switchover")
    });
    assert!(screen.contains("master writable"), "{screen}");

    // And it really is so, asked over RPC.
    let new = rt.block_on(status(&r));
    assert_eq!((new.role, new.epoch, new.writable), (Role::Master, 2, true));
    let old = rt.block_on(status(&m));
    assert_eq!((old.role, old.epoch), (Role::Replica, 2));
    assert_eq!(
        old.master.map(|x| x.node_id).as_deref(),
        Some(r_id.as_str())
    );

    tui.send("q");
    assert!(tui.wait_exit(Duration::from_secs(10)), "kvctl tui exits 0");
}
