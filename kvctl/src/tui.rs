//! `kvctl tui`: the operator console, a live view of the cluster, its shards, the replicas' lag
//! and the keys, in the style of The Elm Architecture (state, update, render).
//!
//! ```text
//!  input thread ──(keys, resize)──┐
//!  ticker task ───(every --refresh)┼──► mpsc ──► App::update (sync) ──► Commands ──► Worker
//!  worker tasks ──(RPC answers)────┘                 │                                │
//!        ▲                                           ▼                                │
//!        └──────── spawned, one per command ◄── ui::render(&App) ◄── draw when events │
//!                                                                    were handled     │
//!  kvd ◄──── tarpc (status, cluster_status, scan, get, put, delete, failover, promote)┘
//! ```
//!
//! The loop blocks on the event channel: it wakes for a key, a resize, a tick (one per
//! `--refresh`) or an RPC answer, handles every event already queued, then draws once. The UI
//! never awaits the network: every call runs in a spawned task ([`worker`]) that reports back
//! as an event. A lost connection is state (`disconnected, retrying`), never an error that ends
//! the console; the worker reconnects on the next tick.
//!
//! Layout of the module:
//!
//! ```text
//! tui.rs          Args, run(): logging, terminal set-up and restore (also on a panic), the loop
//! tui/event.rs    Event (what the loop reads) and the input thread and ticker that produce them
//! tui/app.rs      App: the whole state, `update(event) -> Vec<Command>`, no I/O
//! tui/app/failover.rs  the failover action (F): plan, pick, confirm, run, outcome
//! tui/browser.rs  the Keys screen's paged, filtered key list (part of the state)
//! tui/history.rs  samples over time: write rates, lag series, catch-up estimates
//! tui/input.rs    a one-line text field (filter, put form, failover confirmation)
//! tui/nodes.rs    every node as shown: role, epoch, state, merged from the refresh's sources
//! tui/shell.rs    the `kvctl …` command line equivalent to a write or failover, shell-quoted
//! tui/worker.rs   runs Commands in spawned tasks against kvd, reconnecting as needed
//! tui/ui.rs       render(&App): header, tabs, the screen, status bar, footer, popups
//! tui/ui/failover.rs  the failover popup
//! tui/screen/     one file per screen: cluster, shards, replication, keys
//! tui/widgets.rs  small shared widgets: text sparklines, popups, hex dumps, key hints
//! ```
//!
//! Logs go to a file only, never to the screen: `--log-file`, by default
//! `$XDG_STATE_HOME/kvctl/tui.log`, else `~/.local/state/kvctl/tui.log`, else `kvctl-tui.log`
//! in the temporary directory. `RUST_LOG` filters them (default `warn,kvctl=info,tarpc=off`:
//! the console reports tarpc's failures itself).

use std::{
    io::{self, IsTerminal as _},
    path::PathBuf,
    time::Duration,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor, execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use shared::client::Client;

use crate::{cli::Global, client::Error};

mod app;
mod browser;
mod event;
mod history;
mod input;
mod nodes;
mod screen;
mod shell;
mod ui;
mod widgets;
mod worker;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod snapshot_tests;

/// Longest wait for one answer in the console, whatever `--timeout` says, so a node that stops
/// answering shows as disconnected within a few refreshes instead of freezing the view.
const MAX_REQUEST_WAIT: Duration = Duration::from_secs(5);

/// Flags of `kvctl tui`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often to refresh the view: seconds (`1`, `0.5`) or with a unit (`250ms`, `2s`).
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = parse_refresh)]
    pub refresh: Duration,
    /// Disable every write (put, edit, delete, failover): a console that can only look.
    #[arg(long)]
    pub read_only: bool,
    /// Where the console writes its log (it never logs to the screen). Default:
    /// `$XDG_STATE_HOME/kvctl/tui.log`, else `~/.local/state/kvctl/tui.log`, else
    /// `kvctl-tui.log` in the temporary directory.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Shortest `--refresh`: faster than this only burns CPU on both ends.
const MIN_REFRESH: Duration = Duration::from_millis(100);
/// Longest `--refresh`.
const MAX_REFRESH: Duration = Duration::from_secs(3600);

/// Parses `--refresh`: seconds as a number (`1`, `0.5`) or with a unit (`250ms`, `2s`, `1m`).
fn parse_refresh(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let bad = || format!("{s:?} is not a refresh period: give seconds such as 1 or 0.5, or 250ms");
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let d = Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
    if d < MIN_REFRESH || d > MAX_REFRESH {
        return Err(format!(
            "{s:?}: the refresh period must be between 100ms and 1h"
        ));
    }
    Ok(d)
}

/// Where the log goes when `--log-file` is not given.
fn default_log_file() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        });
    match state {
        Some(dir) => dir.join("kvctl").join("tui.log"),
        None => std::env::temp_dir().join("kvctl-tui.log"),
    }
}

/// Sends `tracing` to `path` (appending), and nowhere else. Returns why it could not, in which
/// case the console runs without a log.
fn init_logging(path: &std::path::Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,kvctl=info,tarpc=off"));
    // A blocking writer: the console logs little, and a panic can exit right after logging
    // without a guard to flush.
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file)),
        )
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call twice.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// On a panic anywhere (the loop or a worker task): restore the terminal first, so the message
/// is readable and the shell usable, log it, print it, and end the process. A panic in a
/// spawned task would otherwise leave the console drawing on a restored terminal.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        tracing::error!("panic: {info}");
        previous(info);
        std::process::exit(101);
    }));
}

/// Restores the terminal when dropped: on every way out of [`run`], including errors.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the console until the operator quits.
///
/// # Errors
/// When stdout is not a terminal or the terminal cannot be set up or drawn on. A node that
/// cannot be reached is not an error: the console shows it and keeps retrying.
pub async fn run(args: Args, global: &Global) -> Result<(), Error> {
    if !io::stdout().is_terminal() {
        return Err(Error::Usage(
            "kvctl tui needs a terminal on stdout; for scripts use status, replicas and scan"
                .into(),
        ));
    }
    let log_file = args.log_file.clone().unwrap_or_else(default_log_file);
    let log_problem = init_logging(&log_file).err();
    let endpoints = global.endpoint_list();
    tracing::info!(%endpoints, refresh = ?args.refresh, read_only = args.read_only, "kvctl tui starting");

    let timeout = global.timeout.min(MAX_REQUEST_WAIT);
    let client = Client::builder(global.endpoints.iter().cloned())
        .timeout(timeout)
        .token(global.token()?)
        .tls(global.tls()?)
        .build()?;
    let mut app = app::App::new(app::Config {
        endpoint: global
            .endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect::<Vec<_>>()
            .join(","),
        refresh: args.refresh,
        read_only: args.read_only,
        log_file: log_file.display().to_string(),
        now: std::time::Instant::now(),
        timeout: global.timeout,
    });
    if let Some(problem) = log_problem {
        app.report_error(format!("no log file: {problem}"));
    }

    install_panic_hook();
    terminal::enable_raw_mode().map_err(Error::Output)?;
    let _guard = TerminalGuard;
    // Cleared here rather than with `Terminal::clear`, which asks the terminal where its cursor
    // is and fails on terminals that do not answer.
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        cursor::Hide,
        terminal::Clear(terminal::ClearType::All)
    )
    .map_err(Error::Output)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout())).map_err(Error::Output)?;

    let mut events = event::Events::start(args.refresh);
    let worker = worker::Worker::new(client, events.sender());
    // The worker's tasks are local to this thread (see `Worker::run`).
    let result = tokio::task::LocalSet::new()
        .run_until(event_loop(&mut terminal, &mut app, &mut events, &worker))
        .await;
    drop(terminal);
    restore_terminal();
    tracing::info!("kvctl tui stopped");
    result
}

/// Draw, wait for at least one event, handle every queued one, repeat until the app quits.
async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<io::Stdout>>,
    app: &mut app::App,
    events: &mut event::Events,
    worker: &worker::Worker,
) -> Result<(), Error> {
    loop {
        terminal
            .draw(|frame| frame.render_widget(&*app, frame.area()))
            .map_err(Error::Output)?;
        let Some(first) = events.next().await else {
            return Ok(());
        };
        let mut pending = Some(first);
        while let Some(ev) = pending {
            let was = app.conn.clone();
            for command in app.update(ev) {
                worker.run(command);
            }
            log_connection_change(&was, &app.conn);
            if app.should_quit() {
                return Ok(());
            }
            pending = events.try_next();
        }
    }
}

/// Logs when the connection goes down or comes back (not every failed retry).
fn log_connection_change(was: &app::Conn, now: &app::Conn) {
    use app::Conn;
    match (was, now) {
        (Conn::Connected, Conn::Connected)
        | (Conn::Disconnected { .. }, Conn::Disconnected { .. }) => {}
        (_, Conn::Connected) => tracing::info!("connected"),
        (_, Conn::Disconnected { error, .. }) => tracing::warn!(%error, "disconnected, retrying"),
        (_, Conn::Connecting) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_periods() {
        assert_eq!(parse_refresh("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_refresh("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_refresh("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_refresh("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_refresh("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0", "50ms", "-1", "x", "NaN", "2h", "1e30"] {
            assert!(parse_refresh(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_log_file_is_under_the_state_directory() {
        let path = default_log_file();
        assert!(
            path.ends_with("tui.log") || path.ends_with("kvctl-tui.log"),
            "{path:?}"
        );
    }
}
