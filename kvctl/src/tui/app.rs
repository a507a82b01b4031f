//! The console's state and its update function: `App::update(event) -> Vec<Command>`.
//!
//! `update` is synchronous and does no I/O: it changes the state and returns the RPC calls to
//! make ([`Command`]), which the loop hands to the worker; their answers come back later as
//! [`Reply`] events. Time comes in with the events (ticks and replies carry an `Instant`), so a
//! test can drive the whole console with made-up events and check the state and commands.
//!
//! Keys are handled from the top layer down: Ctrl-C always quits; an open popup (help, value,
//! confirmation, form, failover) takes every key; then the prefix filter being typed; then the
//! keys that work on every screen; then the current screen's keys.
//!
//! The failover action (`F`) has its own module, [`failover`]: its state, keys and replies.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use shared::{
    ClusterStatus, NodeStatus, ReplicaShardLag, ReplicaStatus, Role, Version, cluster::Member,
};

use crate::{
    output::display_bytes,
    tui::{
        browser::{Browser, ScanPlan},
        event::{Event, Failure, Reply, Snapshot},
        history::History,
        input::Input,
        nodes::{self, NodeView},
        shell,
    },
};

mod failover;

pub use failover::{FailoverAction, FailoverKind, Flow, Plan, PlanRequest, PlanState, Step};

/// What the console needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The endpoints as kvctl takes them: `http://host:port`, comma-separated.
    pub endpoint: String,
    /// The refresh period.
    pub refresh: Duration,
    /// Writes are disabled.
    pub read_only: bool,
    /// Where the log goes (shown in the help).
    pub log_file: String,
    /// The time the console starts at.
    pub now: Instant,
    /// The global `--timeout`: the time a switchover or a promotion is given (sent as its
    /// `timeout_ms`, as `kvctl failover` and `kvctl promote` do).
    pub timeout: Duration,
}

/// The status bar's message when a write is attempted in a read-only console.
pub const READ_ONLY: &str =
    "read-only console (--read-only): put, edit, delete and failover are disabled";

/// The four screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Nodes, roles, state, and write rates.
    Cluster,
    /// Per-shard figures and the replicas' lag on the selected shard.
    Shards,
    /// Lag per replica and shard, over time, with catch-up estimates.
    Replication,
    /// The key browser.
    Keys,
}

impl Screen {
    /// Every screen, in tab order (the number key is the position + 1).
    pub const ALL: [Self; 4] = [Self::Cluster, Self::Shards, Self::Replication, Self::Keys];

    /// The tab's name.
    pub fn title(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster",
            Self::Shards => "Shards",
            Self::Replication => "Replication",
            Self::Keys => "Keys",
        }
    }

    /// Position in [`Screen::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Cluster => 0,
            Self::Shards => 1,
            Self::Replication => 2,
            Self::Keys => 3,
        }
    }

    fn step(self, forward: bool) -> Self {
        let n = Self::ALL.len();
        let i = if forward {
            (self.index() + 1) % n
        } else {
            (self.index() + n - 1) % n
        };
        Self::ALL[i]
    }
}

/// The connection to the endpoint, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// No answer yet.
    Connecting,
    /// The last refresh was answered.
    Connected,
    /// The last refreshes failed; the worker tries again every tick.
    Disconnected {
        /// What the last attempt said.
        error: String,
        /// Failed refreshes in a row.
        attempts: u32,
    },
}

/// Why a value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To show it.
    View,
    /// To fill the edit form.
    Edit,
}

/// A write the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAction {
    /// A put; with `if_version` (an edit) only if the key is still at that version.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Compare-and-swap on the version the edit started from.
        if_version: Option<Version>,
    },
    /// A delete.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl WriteAction {
    /// The `kvctl` command line that does the same.
    pub fn command(&self, endpoint: &str) -> String {
        match self {
            Self::Put {
                key,
                value,
                if_version,
            } => shell::put(endpoint, key, value, *if_version),
            Self::Delete { key } => shell::delete(endpoint, key),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Self::Put { key, .. } | Self::Delete { key } => key,
        }
    }
}

/// An RPC call for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask the endpoints, the masters they name and the master for their status; when no
    /// master answers, ask `members` too (so a console given only the master's address still
    /// sees the replicas once it is gone).
    Refresh {
        /// Addresses of the members known from earlier cluster views.
        members: Vec<String>,
    },
    /// Ask a replica for its own status.
    PeerStatus {
        /// Its node id.
        node_id: String,
        /// Its advertised address.
        address: String,
    },
    /// Read a page of keys.
    Scan(ScanPlan),
    /// Read a value.
    Get {
        /// The key.
        key: Vec<u8>,
        /// Why.
        purpose: Purpose,
    },
    /// Write (following a replica's redirect to its master).
    Write(WriteAction),
    /// Ask for a failover plan (nothing changes).
    Plan {
        /// The failover flow's request number, sent back with the answer.
        generation: u64,
        /// Which plan, of whom.
        request: PlanRequest,
        /// Sent as the request's `timeout_ms`.
        timeout: Duration,
    },
    /// Run a switchover or a promotion.
    Failover(FailoverAction),
}

/// How the status bar shows its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// Neutral information.
    Info,
    /// A request is in flight.
    Pending,
    /// A write succeeded.
    Done,
    /// Something failed.
    Error,
}

/// The status bar's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// How to show it.
    pub kind: StatusKind,
    /// What happened.
    pub text: String,
    /// The equivalent `kvctl` command, for writes.
    pub command: Option<String>,
}

/// A value shown in a popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueView {
    /// The key.
    pub key: Vec<u8>,
    /// Its version.
    pub version: Version,
    /// The bytes.
    pub value: Vec<u8>,
    /// First line shown.
    pub scroll: usize,
}

/// Which field of the form has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The key.
    Key,
    /// The value.
    Value,
}

/// The put / edit form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// `Some(version)` when editing an existing key (the key is then fixed and the put is
    /// conditional on that version).
    pub edit: Option<Version>,
    /// The key.
    pub key: Input,
    /// When editing, the key's exact bytes (the field shows them as text, or as hex when they
    /// are not text, and is not editable then).
    pub edited_key: Option<Vec<u8>>,
    /// The value.
    pub value: Input,
    /// The field being typed in.
    pub focus: Field,
}

impl Form {
    /// The put this form makes as it stands.
    pub fn action(&self) -> WriteAction {
        WriteAction::Put {
            key: self
                .edited_key
                .clone()
                .unwrap_or_else(|| self.key.text().as_bytes().to_vec()),
            value: self.value.text().as_bytes().to_vec(),
            if_version: self.edit,
        }
    }
}

/// What covers the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    /// Every key.
    Help,
    /// A value.
    Value(ValueView),
    /// "Delete this key?"
    Confirm {
        /// The key to delete.
        key: Vec<u8>,
    },
    /// Put or edit.
    Form(Form),
    /// The failover action: plan, confirmation, progress, outcome (boxed: plans are large).
    Failover(Box<Flow>),
}

/// The whole state of the console.
#[derive(Debug, Clone)]
pub struct App {
    /// From the command line.
    pub config: Config,
    /// The screen shown.
    pub screen: Screen,
    /// The connection to the endpoint.
    pub conn: Conn,
    /// The last answered refresh (kept while disconnected, shown greyed).
    pub data: Option<Snapshot>,
    /// When `data` was taken.
    pub last_ok: Option<Instant>,
    /// The latest time an event carried.
    pub now: Instant,
    /// Rates and lag over time.
    pub history: History,
    /// Each replica's own status, by node id, as it last answered (or why it did not).
    pub peers: BTreeMap<String, Result<NodeStatus, String>>,
    /// Replicas whose status is being asked: not asked again until they answer.
    peers_asked: BTreeSet<String>,
    /// The status bar.
    pub status: Option<Status>,
    /// The popup, if one is open.
    pub popup: Option<Popup>,
    /// The prefix filter being typed (`/`), if it is.
    pub filter: Option<Input>,
    /// The Keys screen.
    pub browser: Browser,
    /// Selected row of the Shards screen.
    pub shard_selected: usize,
    /// Selected row of the Replication screen.
    pub replication_selected: usize,
    /// The members (and roles) of the last cluster view: shown, and asked, while no master
    /// answers.
    pub known: Vec<(Member, Role)>,
    /// A refresh is in flight: the next tick does not start another.
    refreshing: bool,
    /// The last failover plan request's number (answers to older ones are dropped).
    failover_generation: u64,
    /// A switchover or promotion sent and not answered yet (its popup may have been hidden).
    failover_running: Option<FailoverAction>,
    quit: bool,
}

fn key_text(key: &[u8]) -> String {
    display_bytes(key).into_owned()
}

impl App {
    /// A console that has not heard from the endpoint yet.
    pub fn new(config: Config) -> Self {
        Self {
            now: config.now,
            config,
            screen: Screen::Cluster,
            conn: Conn::Connecting,
            data: None,
            last_ok: None,
            history: History::default(),
            peers: BTreeMap::new(),
            peers_asked: BTreeSet::new(),
            status: None,
            popup: None,
            filter: None,
            browser: Browser::default(),
            shard_selected: 0,
            replication_selected: 0,
            known: Vec::new(),
            refreshing: false,
            failover_generation: 0,
            failover_running: None,
            quit: false,
        }
    }

    /// Whether the operator asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Shows an error in the status bar.
    pub fn report_error(&mut self, text: String) {
        self.set_status(StatusKind::Error, text, None);
    }

    fn set_status(&mut self, kind: StatusKind, text: String, command: Option<String>) {
        self.status = Some(Status {
            kind,
            text,
            command,
        });
    }

    /// The master's view of the cluster, when the last refresh had one.
    pub fn cluster(&self) -> Option<&ClusterStatus> {
        self.data.as_ref().and_then(|d| d.cluster.as_ref().ok())
    }

    /// Why the last refresh had no cluster view (the endpoint is a replica whose master did not
    /// answer).
    pub fn cluster_error(&self) -> Option<&str> {
        self.data
            .as_ref()
            .and_then(|d| d.cluster.as_ref().err())
            .map(String::as_str)
    }

    /// The master's status: from the cluster view, else the endpoint's own when it is the
    /// master.
    pub fn master(&self) -> Option<&NodeStatus> {
        self.cluster().map(|c| &c.master).or_else(|| {
            self.data
                .as_ref()
                .map(|d| &d.endpoint)
                .filter(|s| s.role == shared::Role::Master)
        })
    }

    /// Every node the console knows of, as it shows them (see [`nodes`]); empty before the
    /// first answer.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.data
            .as_ref()
            .map(|d| nodes::build(d, &self.peers, &self.known))
            .unwrap_or_default()
    }

    /// The status a replica answered itself, if it did.
    pub fn replica_status(&self, node_id: &str) -> Option<&Result<NodeStatus, String>> {
        self.peers.get(node_id)
    }

    /// The number of shards, once known.
    pub fn shard_count(&self) -> Option<u32> {
        self.data
            .as_ref()
            .and_then(|d| u32::try_from(d.endpoint.shards.len()).ok())
    }

    /// The Replication screen's rows: every replica and shard, in the master's order.
    pub fn replication_rows(&self) -> Vec<(&ReplicaStatus, &ReplicaShardLag)> {
        self.cluster()
            .map(|c| {
                c.replicas
                    .iter()
                    .flat_map(|r| r.shards.iter().map(move |s| (r, s)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the data shown is not current (greyed).
    pub fn stale(&self) -> bool {
        !matches!(self.conn, Conn::Connected)
    }

    /// How old the data shown is.
    pub fn data_age(&self) -> Option<Duration> {
        self.last_ok.map(|t| self.now.saturating_duration_since(t))
    }

    /// Applies one event; returns the calls to make.
    pub fn update(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Key(key) => self.on_key(key),
            Event::Resize => Vec::new(),
            Event::Tick(at) => self.on_tick(at),
            Event::Reply(reply) => self.on_reply(reply),
            Event::InputClosed(why) => {
                self.report_error(why);
                self.quit = true;
                Vec::new()
            }
        }
    }

    /// A refresh, unless one is in flight.
    fn refresh(&mut self) -> Option<Command> {
        if self.refreshing {
            return None;
        }
        self.refreshing = true;
        Some(Command::Refresh {
            members: self.known.iter().map(|(m, _)| m.address.clone()).collect(),
        })
    }

    fn on_tick(&mut self, at: Instant) -> Vec<Command> {
        self.now = self.now.max(at);
        let mut commands: Vec<Command> = self.refresh().into_iter().collect();
        if self.screen == Screen::Keys && !self.browser.loading {
            commands.push(self.browser.request());
        }
        commands
    }

    fn on_reply(&mut self, reply: Reply) -> Vec<Command> {
        match reply {
            Reply::Refreshed { at, result } => {
                self.refreshing = false;
                self.now = self.now.max(at);
                match result {
                    Ok(snapshot) => {
                        if let Ok(cluster) = &snapshot.cluster {
                            self.history.record(at, cluster);
                            self.known =
                                std::iter::once((member_of(&cluster.master), cluster.master.role))
                                    .chain(cluster.replicas.iter().map(|r| {
                                        (
                                            Member {
                                                node_id: r.node_id.clone(),
                                                address: r.address.clone(),
                                            },
                                            Role::Replica,
                                        )
                                    }))
                                    .collect();
                        }
                        let endpoint = &snapshot.endpoint;
                        self.history
                            .record_reads(at, &endpoint.node_id, endpoint.reads);
                        self.data = Some(*snapshot);
                        self.last_ok = Some(at);
                        self.conn = Conn::Connected;
                        self.clamp_selections();
                        return self.ask_peers();
                    }
                    Err(failure) => {
                        let attempts = match &self.conn {
                            Conn::Disconnected { attempts, .. } => attempts + 1,
                            _ => 1,
                        };
                        self.conn = Conn::Disconnected {
                            error: failure.message,
                            attempts,
                        };
                    }
                }
                Vec::new()
            }
            Reply::PeerStatus { node_id, result } => {
                self.peers_asked.remove(&node_id);
                if let Ok(status) = &result {
                    self.history.record_reads(self.now, &node_id, status.reads);
                }
                self.peers.insert(node_id, result.map(|status| *status));
                Vec::new()
            }
            Reply::Scanned { generation, result } => {
                match result {
                    Ok(page) => {
                        self.browser.apply(generation, page);
                    }
                    Err(failure) => {
                        // Unreachable shows in the header; other refusals here.
                        if self.browser.failed(generation) && !failure.unreachable {
                            self.report_error(format!("cannot list keys: {}", failure.message));
                        }
                    }
                }
                Vec::new()
            }
            Reply::Fetched {
                key,
                purpose,
                result,
            } => {
                self.on_fetched(key, purpose, result);
                Vec::new()
            }
            Reply::Written { action, result } => self.on_written(&action, result),
            Reply::Planned { generation, result } => {
                self.on_planned(generation, result);
                Vec::new()
            }
            Reply::FailedOver { action, result } => self.on_failed_over(action, result),
        }
    }

    fn on_fetched(
        &mut self,
        key: Vec<u8>,
        purpose: Purpose,
        result: Result<Option<shared::Versioned>, Failure>,
    ) {
        let name = key_text(&key);
        let found = match result {
            Err(f) => return self.report_error(format!("cannot read {name}: {}", f.message)),
            Ok(None) => return self.report_error(format!("{name} no longer exists")),
            Ok(Some(found)) => found,
        };
        if self.popup.is_some() || self.screen != Screen::Keys {
            // The operator moved on meanwhile.
            self.status = None;
            return;
        }
        let value = found.value.into_vec();
        match purpose {
            Purpose::View => {
                self.status = None;
                self.popup = Some(Popup::Value(ValueView {
                    key,
                    version: found.version,
                    value,
                    scroll: 0,
                }));
            }
            Purpose::Edit => match std::str::from_utf8(&value) {
                Ok(text) if !text.chars().any(char::is_control) => {
                    self.status = None;
                    self.popup = Some(Popup::Form(Form {
                        edit: Some(found.version),
                        key: Input::new(name),
                        edited_key: Some(key),
                        value: Input::new(text),
                        focus: Field::Value,
                    }));
                }
                _ => self.report_error(format!(
                    "{name} holds binary or multi-line data, which the form cannot edit; use \
                     kvctl put {} --file PATH",
                    shell::word(&key)
                )),
            },
        }
    }

    fn on_written(
        &mut self,
        action: &WriteAction,
        result: Result<Option<Version>, Failure>,
    ) -> Vec<Command> {
        let name = key_text(action.key());
        let command = Some(action.command(&self.config.endpoint));
        match (action, result) {
            (WriteAction::Put { .. }, Ok(version)) => {
                let v = version.map_or(String::new(), |v| format!(": version {v}"));
                self.set_status(StatusKind::Done, format!("put {name}{v}"), command);
            }
            (WriteAction::Delete { .. }, Ok(Some(v))) => {
                self.set_status(
                    StatusKind::Done,
                    format!("deleted {name} (version {v})"),
                    command,
                );
            }
            (WriteAction::Delete { .. }, Ok(None)) => {
                self.set_status(
                    StatusKind::Error,
                    format!("{name} did not exist: nothing deleted"),
                    command,
                );
            }
            (WriteAction::Put { .. }, Err(f)) => {
                self.set_status(
                    StatusKind::Error,
                    format!("put {name} failed: {}", f.message),
                    command,
                );
            }
            (WriteAction::Delete { .. }, Err(f)) => {
                self.set_status(
                    StatusKind::Error,
                    format!("delete {name} failed: {}", f.message),
                    command,
                );
            }
        }
        // Show the change at once rather than at the next tick.
        let mut commands = vec![self.browser.request()];
        commands.extend(self.refresh());
        commands
    }

    /// Asks every replica the master lists for its own status, except those already being
    /// asked; a status this refresh already has (the endpoint's, a node the discovery asked)
    /// stands for itself.
    fn ask_peers(&mut self) -> Vec<Command> {
        let Some(data) = &self.data else {
            return Vec::new();
        };
        let Ok(cluster) = &data.cluster else {
            return Vec::new();
        };
        let listed: BTreeSet<&str> = cluster
            .replicas
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        self.peers.retain(|id, _| listed.contains(id.as_str()));
        let mut commands = Vec::new();
        for r in &cluster.replicas {
            let fresh = std::iter::once(&data.endpoint)
                .chain(data.nodes.iter().filter_map(|p| p.status.as_ref().ok()))
                .find(|s| s.node_id == r.node_id);
            if let Some(status) = fresh {
                self.peers.insert(r.node_id.clone(), Ok(status.clone()));
            } else if self.peers_asked.insert(r.node_id.clone()) {
                commands.push(Command::PeerStatus {
                    node_id: r.node_id.clone(),
                    address: r.address.clone(),
                });
            }
        }
        commands
    }

    fn clamp_selections(&mut self) {
        let shards = self.master().map_or(0, |m| m.shards.len());
        self.shard_selected = self.shard_selected.min(shards.saturating_sub(1));
        let rows = self.replication_rows().len();
        self.replication_selected = self.replication_selected.min(rows.saturating_sub(1));
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        if let Some(popup) = self.popup.take() {
            return self.on_popup_key(popup, key);
        }
        if let Some(mut filter) = self.filter.take() {
            return match key.code {
                KeyCode::Enter => vec![self.browser.set_prefix(filter.text().as_bytes().to_vec())],
                KeyCode::Esc => Vec::new(),
                _ => {
                    filter.handle(key);
                    self.filter = Some(filter);
                    Vec::new()
                }
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => {
                self.quit = true;
                Vec::new()
            }
            KeyCode::Char('?') => {
                self.popup = Some(Popup::Help);
                Vec::new()
            }
            KeyCode::Tab => self.switch(self.screen.step(true)),
            KeyCode::BackTab => self.switch(self.screen.step(false)),
            KeyCode::Char(c @ '1'..='4') => {
                let i = usize::from(u8::try_from(c).unwrap_or(b'1') - b'1');
                self.switch(Screen::ALL[i])
            }
            KeyCode::Char('F') => self.open_failover(),
            KeyCode::Char('r') => {
                let mut commands: Vec<Command> = self.refresh().into_iter().collect();
                if self.screen == Screen::Keys {
                    commands.push(self.browser.request());
                }
                commands
            }
            _ => match self.screen {
                Screen::Cluster => Vec::new(),
                Screen::Shards => {
                    let n = self.master().map_or(0, |m| m.shards.len());
                    self.shard_selected = move_selection(self.shard_selected, n, key.code);
                    Vec::new()
                }
                Screen::Replication => {
                    let n = self.replication_rows().len();
                    self.replication_selected =
                        move_selection(self.replication_selected, n, key.code);
                    Vec::new()
                }
                Screen::Keys => self.on_keys_key(key),
            },
        }
    }

    fn switch(&mut self, screen: Screen) -> Vec<Command> {
        self.screen = screen;
        if screen == Screen::Keys && !self.browser.loading {
            vec![self.browser.request()]
        } else {
            Vec::new()
        }
    }

    fn on_keys_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let writes = matches!(
            key.code,
            KeyCode::Char('p' | 'e' | 'd') if key.modifiers.difference(KeyModifiers::SHIFT).is_empty()
        );
        if writes && self.config.read_only {
            self.report_error(READ_ONLY.into());
            return Vec::new();
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.browser.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.browser.move_by(1),
            KeyCode::End | KeyCode::Char('G') => self.browser.select_edge(true),
            KeyCode::PageDown | KeyCode::Right | KeyCode::Char('n') => {
                return match self.browser.next_page() {
                    Some(c) => vec![c],
                    None => {
                        self.set_status(StatusKind::Info, "this is the last page".into(), None);
                        Vec::new()
                    }
                };
            }
            KeyCode::PageUp | KeyCode::Left | KeyCode::Char('b') => {
                return match self.browser.prev_page() {
                    Some(c) => vec![c],
                    None => {
                        self.set_status(StatusKind::Info, "this is the first page".into(), None);
                        Vec::new()
                    }
                };
            }
            KeyCode::Home | KeyCode::Char('g') => return vec![self.browser.first_page()],
            KeyCode::Char('/') => {
                self.filter = Some(Input::new(key_text(&self.browser.prefix)));
            }
            KeyCode::Char('s') => {
                return match self.shard_count() {
                    Some(n) => vec![self.browser.cycle_shard(n)],
                    None => {
                        self.report_error("the shard count is not known yet".into());
                        Vec::new()
                    }
                };
            }
            KeyCode::Enter => {
                if let Some((k, _)) = self.browser.selected() {
                    let key = k.clone();
                    self.set_status(
                        StatusKind::Pending,
                        format!("reading {}…", key_text(&key)),
                        None,
                    );
                    return vec![Command::Get {
                        key,
                        purpose: Purpose::View,
                    }];
                }
            }
            KeyCode::Char('p') => {
                self.popup = Some(Popup::Form(Form {
                    edit: None,
                    key: Input::default(),
                    edited_key: None,
                    value: Input::default(),
                    focus: Field::Key,
                }));
            }
            KeyCode::Char('e') => {
                if let Some((k, _)) = self.browser.selected() {
                    let key = k.clone();
                    self.set_status(
                        StatusKind::Pending,
                        format!("reading {} to edit it…", key_text(&key)),
                        None,
                    );
                    return vec![Command::Get {
                        key,
                        purpose: Purpose::Edit,
                    }];
                }
                self.report_error("no key selected to edit".into());
            }
            KeyCode::Char('d') => {
                if let Some((k, _)) = self.browser.selected() {
                    self.popup = Some(Popup::Confirm { key: k.clone() });
                } else {
                    self.report_error("no key selected to delete".into());
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_popup_key(&mut self, popup: Popup, key: KeyEvent) -> Vec<Command> {
        match popup {
            Popup::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?' | 'q')
                ) {
                    self.popup = Some(Popup::Help);
                }
                Vec::new()
            }
            Popup::Value(mut view) => {
                match key.code {
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => return Vec::new(),
                    KeyCode::Up | KeyCode::Char('k') => view.scroll = view.scroll.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        view.scroll = view.scroll.saturating_add(1)
                    }
                    KeyCode::PageUp => view.scroll = view.scroll.saturating_sub(10),
                    KeyCode::PageDown => view.scroll = view.scroll.saturating_add(10),
                    KeyCode::Home | KeyCode::Char('g') => view.scroll = 0,
                    _ => {}
                }
                self.popup = Some(Popup::Value(view));
                Vec::new()
            }
            Popup::Confirm { key: target } => match key.code {
                KeyCode::Char('y' | 'Y') => self.write(WriteAction::Delete { key: target }),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.set_status(
                        StatusKind::Info,
                        format!("delete of {} cancelled", key_text(&target)),
                        None,
                    );
                    Vec::new()
                }
                _ => {
                    self.popup = Some(Popup::Confirm { key: target });
                    Vec::new()
                }
            },
            Popup::Failover(flow) => self.on_failover_key(*flow, key),
            Popup::Form(mut form) => match key.code {
                KeyCode::Esc => {
                    self.set_status(StatusKind::Info, "put cancelled".into(), None);
                    Vec::new()
                }
                KeyCode::Enter => {
                    if form.key.text().is_empty() {
                        form.focus = Field::Key;
                        self.report_error("the key is empty: type a key first".into());
                        self.popup = Some(Popup::Form(form));
                        return Vec::new();
                    }
                    self.write(form.action())
                }
                KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                    if form.edit.is_none() {
                        form.focus = match form.focus {
                            Field::Key => Field::Value,
                            Field::Value => Field::Key,
                        };
                    }
                    self.popup = Some(Popup::Form(form));
                    Vec::new()
                }
                _ => {
                    match form.focus {
                        Field::Key => form.key.handle(key),
                        Field::Value => form.value.handle(key),
                    };
                    self.popup = Some(Popup::Form(form));
                    Vec::new()
                }
            },
        }
    }

    fn write(&mut self, action: WriteAction) -> Vec<Command> {
        if self.config.read_only {
            self.report_error(READ_ONLY.into());
            return Vec::new();
        }
        let name = key_text(action.key());
        let verb = match action {
            WriteAction::Put { .. } => "putting",
            WriteAction::Delete { .. } => "deleting",
        };
        self.set_status(
            StatusKind::Pending,
            format!("{verb} {name}…"),
            Some(action.command(&self.config.endpoint)),
        );
        vec![Command::Write(action)]
    }
}

/// A node's status as a member (node id and address).
fn member_of(s: &NodeStatus) -> Member {
    Member {
        node_id: s.node_id.clone(),
        address: s.address.clone(),
    }
}

/// A list selection after an Up/Down/Home/End key, within `0..len`.
fn move_selection(selected: usize, len: usize, code: KeyCode) -> usize {
    let last = len.saturating_sub(1);
    match code {
        KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => (selected + 1).min(last),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => last,
        KeyCode::PageUp => selected.saturating_sub(10),
        KeyCode::PageDown => (selected + 10).min(last),
        _ => selected.min(last),
    }
}

#[cfg(test)]
mod tests;
