//! Everything the console's loop reacts to, merged into one channel.
//!
//! ```text
//!  input thread:  crossterm::event::read() (blocking) ── Key / Resize ──┐
//!  ticker task:   tokio interval, every --refresh ──────── Tick ────────┼──► Events::next()
//!  worker tasks:  one per RPC command ───────────────────── Reply ──────┘
//! ```
//!
//! Nothing here polls: the input thread blocks in `read`, the ticker sleeps until the next
//! period, and the loop sleeps in [`Events::next`] until one of them sends. That is what keeps
//! the console's CPU use near zero when nothing happens.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self as term, KeyEvent, KeyEventKind};
use shared::{
    ClusterStatus, NodeStatus, Version, Versioned,
    cluster::{FailoverReply, PromoteReply},
};
use tokio::sync::mpsc;

use crate::{
    client::{Error, Exit},
    tui::app::{FailoverAction, Plan, Purpose, WriteAction},
};

/// One thing that happened.
#[derive(Debug)]
pub enum Event {
    /// A key was pressed (releases are dropped by the input thread).
    Key(KeyEvent),
    /// The terminal changed size: the next draw lays the screen out again.
    Resize,
    /// A refresh period passed; carries the time, so the state never reads the clock itself.
    Tick(Instant),
    /// A background task finished.
    Reply(Reply),
    /// The terminal's input failed: nothing more can be read, so the console ends.
    InputClosed(String),
}

/// Why a call failed, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The message, naming the node and what to check.
    pub message: String,
    /// The node could not be reached (connection refused, lost, timed out): the console shows
    /// the connection as down instead of an action error.
    pub unreachable: bool,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self {
            unreachable: e.exit() == Exit::Unreachable,
            message: e.to_string(),
        }
    }
}

impl Failure {
    /// A failure that is not about reaching the node.
    #[cfg(test)]
    pub fn refused(message: &str) -> Self {
        Self {
            message: message.to_string(),
            unreachable: false,
        }
    }

    /// A failure to reach the node.
    #[cfg(test)]
    pub fn unreachable(message: &str) -> Self {
        Self {
            message: message.to_string(),
            unreachable: true,
        }
    }
}

/// What one refresh saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The node the console talks to: the first of the endpoints (`-e`) that answered, else
    /// (none of them did) the first other node that did.
    pub endpoint: NodeStatus,
    /// The master's view of the cluster: asked of the master of the highest epoch, wherever
    /// it is now. `Err` when no master answers (the replicas' own statuses in `nodes` then say
    /// what they see).
    pub cluster: Result<ClusterStatus, String>,
    /// Every node asked for its own status in this refresh: the endpoints, the masters they
    /// name, and, when no master answers, the members known from earlier views.
    pub nodes: Vec<Probe>,
    /// Whether one of the endpoints (`-e`) answered (else only members known from before did).
    pub endpoints_answered: bool,
    /// The wall clock when the answers were in (milliseconds since the Unix epoch), to say how
    /// long ago a failover was; the nodes' records carry the same kind of time.
    pub at_unix_ms: u64,
}

/// One node asked for its own status during a refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Where it was asked (`host:port`).
    pub address: String,
    /// Its status, or why it did not answer.
    pub status: Result<NodeStatus, String>,
}

/// One page of keys, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys and the versions that wrote them.
    pub rows: Vec<(Vec<u8>, Version)>,
    /// Start the next page after this key; `None` on the last page.
    pub next: Option<Vec<u8>>,
}

/// What a finished background task reports.
#[derive(Debug)]
pub enum Reply {
    /// A refresh: the status of the endpoint, the cluster and the replicas.
    Refreshed {
        /// When the answers were in.
        at: Instant,
        /// What was seen, or why the endpoint did not answer.
        result: Result<Box<Snapshot>, Failure>,
    },
    /// A replica's own status (uptime, keys, disk), asked of the replica directly.
    PeerStatus {
        /// The replica's node id.
        node_id: String,
        /// Its status (boxed: a status is large, most events are small), or why it did not
        /// answer.
        result: Result<Box<NodeStatus>, String>,
    },
    /// A page of the key browser.
    Scanned {
        /// The browser's request number, so that answers to superseded requests are dropped.
        generation: u64,
        /// The page.
        result: Result<KeyPage, Failure>,
    },
    /// A value read to view or edit it.
    Fetched {
        /// The key.
        key: Vec<u8>,
        /// Why it was read.
        purpose: Purpose,
        /// The value and its version; `None` when the key no longer exists.
        result: Result<Option<Versioned>, Failure>,
    },
    /// A put or a delete finished.
    Written {
        /// What was asked.
        action: WriteAction,
        /// The new version (put), the delete's sequence or `None` when the key was absent.
        result: Result<Option<Version>, Failure>,
    },
    /// A failover plan (`plan_only`) came back.
    Planned {
        /// The failover flow's request number: answers to superseded requests are dropped.
        generation: u64,
        /// The plan, or why the node did not give one.
        result: Result<Plan, Failure>,
    },
    /// A switchover or a promotion finished.
    FailedOver {
        /// What was run.
        action: FailoverAction,
        /// What the node answered (boxed: a plan is large), or why it refused.
        result: Result<Box<FailoverDone>, Failure>,
    },
}

/// The node's answer to a switchover or a promotion that was run.
#[derive(Debug, Clone, PartialEq)]
pub enum FailoverDone {
    /// The master's answer to `failover`.
    Switchover(FailoverReply),
    /// The candidate's answer to `promote`.
    Promotion(PromoteReply),
}

/// The receiving end of the loop's channel, with the producers running.
pub struct Events {
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// Starts the input thread and the ticker (the first tick comes at once, so the first
    /// refresh does not wait a period).
    pub fn start(refresh: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let input = tx.clone();
        // A plain thread: crossterm's `read` blocks, and must not hold a runtime thread.
        let spawned = std::thread::Builder::new()
            .name("kvctl-tui-input".into())
            .spawn(move || read_input(&input));
        if let Err(e) = spawned {
            let _ = tx.send(Event::InputClosed(format!(
                "cannot start the input thread: {e}"
            )));
        }
        let ticks = tx.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(refresh);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let at = interval.tick().await;
                if ticks.send(Event::Tick(at.into_std())).is_err() {
                    break;
                }
            }
        });
        Self { tx, rx }
    }

    /// A sender for the worker's replies.
    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Waits for the next event.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Reads the terminal until the channel closes or the input fails.
fn read_input(tx: &mpsc::UnboundedSender<Event>) {
    loop {
        let event = match term::read() {
            Ok(term::Event::Key(key)) if key.kind != KeyEventKind::Release => Event::Key(key),
            Ok(term::Event::Resize(..)) => Event::Resize,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Event::InputClosed(format!("cannot read the terminal: {e}")));
                return;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}
