//! The replica's side: join the master, then one follower loop per shard that long-polls the
//! master's log and applies what it gets; a full resync when the master says the log no longer
//! reaches back far enough. Reads keep being served from local data throughout; a shard being
//! copied by a full resync refuses reads until the copy is complete.
//!
//! ```text
//!  run ── loop: connect, join ──(refused: shard count / duplicate id)──> fatal, kvd exits
//!          │        └─(unreachable)──> link down, back off 100 ms .. 1 s, retry
//!          └─ try_join_all(follow(shard) for every shard) ──(link error)──> link down, retry
//! ```

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shared::{
    Digest, JoinRequest, KvClient, KvError, LinkState, LogEntry, MasterLink, PullReply,
    PullRequest, SnapshotRequest, addr::Endpoint, transport,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{MAX_PULL_WAIT_MS, PULL_MAX_BYTES, SNAPSHOT_PAGE_BYTES, unix_ms};
use crate::node::Node;

/// No digest is holding the follower.
const NO_HOLD: u64 = u64::MAX;
/// How long a pull may wait on the master when there is nothing new.
const PULL_WAIT_MS: u32 = 1_000;
/// First and last back-off between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Per-shard replication state of a replica.
#[derive(Debug)]
pub struct ReplicaShard {
    /// A full resync is copying the shard: reads are refused.
    pub resyncing: AtomicBool,
    /// Times the follower resumed from its own position.
    pub partial_resyncs: AtomicU64,
    /// Times it copied the whole shard.
    pub full_resyncs: AtomicU64,
    /// The master's last sequence on the shard as of the last pull.
    pub master_seq: AtomicU64,
    /// A digest waiting at this sequence: the follower applies nothing past it meanwhile.
    hold_at: AtomicU64,
    hold_released: Notify,
}

#[derive(Debug)]
struct Link {
    state: LinkState,
    since_unix_ms: u64,
    last_error: Option<String>,
}

/// A replica's replication state.
#[derive(Debug)]
pub struct ReplicaState {
    /// The master's endpoint.
    pub master: Endpoint,
    link: Mutex<Link>,
    shards: Vec<ReplicaShard>,
}

/// Why a follower stopped.
enum Stop {
    /// The connection failed: reconnect.
    Link(String),
    /// The master refused something: rejoin after a pause.
    Refused(KvError),
    /// Local storage failed.
    Storage(String),
}

impl ReplicaState {
    /// State for `shards` shards following `master`; `resyncing[i]` marks shards whose full
    /// resync was interrupted (they refuse reads until it is redone).
    #[must_use]
    pub fn new(master: Endpoint, resyncing: &[bool]) -> Self {
        Self {
            master,
            link: Mutex::new(Link {
                state: LinkState::Down,
                since_unix_ms: unix_ms(),
                last_error: None,
            }),
            shards: resyncing
                .iter()
                .map(|&r| ReplicaShard {
                    resyncing: AtomicBool::new(r),
                    partial_resyncs: AtomicU64::new(0),
                    full_resyncs: AtomicU64::new(0),
                    master_seq: AtomicU64::new(0),
                    hold_at: AtomicU64::new(NO_HOLD),
                    hold_released: Notify::new(),
                })
                .collect(),
        }
    }

    /// The state of shard `i`.
    #[must_use]
    pub fn shard(&self, i: u32) -> Option<&ReplicaShard> {
        self.shards.get(i as usize)
    }

    /// The link as reported by status.
    #[must_use]
    pub fn link(&self) -> MasterLink {
        let link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        MasterLink {
            master: self.master.to_string(),
            state: link.state,
            since_unix_ms: link.since_unix_ms,
            last_error: link.last_error.clone(),
        }
    }

    fn set_link(&self, state: LinkState, error: Option<String>) {
        let mut link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if link.state != state {
            match state {
                LinkState::Up => tracing::info!(master = %self.master, "master link up"),
                LinkState::Down => tracing::warn!(
                    master = %self.master,
                    error = error.as_deref().unwrap_or(""),
                    "master link down; serving reads from local data, retrying"
                ),
            }
            link.state = state;
            link.since_unix_ms = unix_ms();
        }
        if error.is_some() || state == LinkState::Up {
            link.last_error = error;
        }
    }
}

fn ctx(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// Runs the replica's replication until `cancel` fires.
///
/// # Errors
/// When the master refuses this replica for good (shard-count mismatch, duplicate node id);
/// kvd exits with that message.
pub async fn run(
    node: Node,
    state: &ReplicaState,
    cancel: CancellationToken,
) -> Result<(), KvError> {
    let mut backoff = BACKOFF_MIN;
    loop {
        let stop = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            stop = session(&node, state, &cancel) => stop,
        };
        match stop {
            Ok(()) => return Ok(()),
            Err(Stop::Refused(
                e @ (KvError::ShardCountMismatch { .. } | KvError::DuplicateNode { .. }),
            )) => {
                state.set_link(LinkState::Down, Some(e.to_string()));
                return Err(e);
            }
            Err(Stop::Link(e) | Stop::Storage(e)) => state.set_link(LinkState::Down, Some(e)),
            Err(Stop::Refused(e)) => state.set_link(LinkState::Down, Some(e.to_string())),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // A session that got as far as following resets the back-off (see `session`).
        if state.link().state == LinkState::Up {
            backoff = BACKOFF_MIN;
        }
    }
}

/// One connection to the master: join, then follow every shard until something fails.
async fn session(
    node: &Node,
    state: &ReplicaState,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let client = tokio::time::timeout(Duration::from_secs(5), transport::connect(&state.master))
        .await
        .map_err(|_| Stop::Link(format!("connecting to {} timed out", state.master)))?
        .map_err(|e| Stop::Link(format!("cannot connect to {}: {e}", state.master)))?;
    let join = JoinRequest {
        node_id: node.node_id().to_string(),
        address: node.advertised(),
        shards: node.config().shards,
    };
    client
        .join(ctx(Duration::from_secs(10)), join)
        .await
        .map_err(|e| Stop::Link(format!("join: {e}")))?
        .map_err(Stop::Refused)?;
    state.set_link(LinkState::Up, None);
    let followers =
        (0..node.config().shards).map(|shard| follow(node, state, &client, shard, cancel));
    futures::future::try_join_all(followers).await.map(|_| ())
}

/// The local shard and its replication state.
fn parts<'a>(
    node: &'a Node,
    state: &'a ReplicaState,
    shard: u32,
) -> Result<(&'a crate::node::Shard, &'a ReplicaShard), Stop> {
    let local = node
        .shard_at(shard)
        .map_err(|e| Stop::Storage(e.to_string()))?;
    let repl = state
        .shard(shard)
        .ok_or_else(|| Stop::Storage(format!("no shard {shard}")))?;
    Ok((local, repl))
}

/// Follows one shard's log until an error.
async fn follow(
    node: &Node,
    state: &ReplicaState,
    client: &KvClient,
    shard: u32,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let (local, repl) = parts(node, state, shard)?;
    if repl.resyncing.load(Ordering::Acquire) {
        full_resync(node, state, client, shard).await?;
    }
    let mut first = true;
    // When the partial resync of this session started, and from where, until caught up.
    let mut catching_up: Option<(Instant, u64)> = None;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let from_seq = *local.writer.last_seq().borrow();
        let req = PullRequest {
            node_id: node.node_id().to_string(),
            shard,
            from_seq,
            max_bytes: PULL_MAX_BYTES,
            wait_ms: PULL_WAIT_MS,
        };
        let timeout = Duration::from_millis(u64::from(MAX_PULL_WAIT_MS.max(PULL_WAIT_MS)))
            + Duration::from_secs(10);
        let reply = client
            .pull(ctx(timeout), req)
            .await
            .map_err(|e| Stop::Link(format!("pull: {e}")))?
            .map_err(Stop::Refused)?;
        match reply {
            PullReply::FullResyncNeeded {
                first_seq,
                master_seq,
            } => {
                repl.master_seq.store(master_seq, Ordering::Relaxed);
                tracing::info!(
                    shard,
                    from_seq,
                    first_seq,
                    master_seq,
                    "the master's log no longer reaches back to this replica"
                );
                full_resync(node, state, client, shard).await?;
            }
            PullReply::Entries {
                entries,
                master_seq,
            } => {
                repl.master_seq.store(master_seq, Ordering::Relaxed);
                if first && from_seq > 0 {
                    repl.partial_resyncs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        shard,
                        from_seq,
                        master_seq,
                        "partial resync started: resuming from this replica's position"
                    );
                    catching_up = Some((Instant::now(), from_seq));
                }
                first = false;
                apply(local, repl, entries, cancel).await?;
                let applied = *local.writer.last_seq().borrow();
                if let Some((since, from)) = catching_up
                    && applied >= master_seq
                {
                    tracing::info!(
                        shard,
                        from_seq = from,
                        applied,
                        entries = applied - from,
                        secs = since.elapsed().as_secs_f64(),
                        "partial resync finished: caught up with the master"
                    );
                    catching_up = None;
                }
            }
        }
    }
}

/// Applies pulled records, stopping at a digest's hold point until it is released.
async fn apply(
    local: &crate::node::Shard,
    repl: &ReplicaShard,
    mut rest: Vec<LogEntry>,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    while !rest.is_empty() {
        let released = repl.hold_released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let hold = repl.hold_at.load(Ordering::Acquire);
        let applied = *local.writer.last_seq().borrow();
        if hold != NO_HOLD && hold <= applied {
            tokio::select! {
                () = released => {}
                () = cancel.cancelled() => return Ok(()),
                // A digest never holds a follower for long; this bounds a lost wake-up.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let cut = if hold == NO_HOLD {
            rest.len()
        } else {
            rest.partition_point(|e| e.seq <= hold)
        };
        let now: Vec<LogEntry> = rest.drain(..cut).collect();
        local
            .writer
            .replicate(now)
            .await
            .map_err(|e| Stop::Storage(e.to_string()))?;
    }
    Ok(())
}

/// Copies the whole shard from the master at one sequence, then returns to pulling from there.
async fn full_resync(
    node: &Node,
    state: &ReplicaState,
    client: &KvClient,
    shard: u32,
) -> Result<(), Stop> {
    let (local, repl) = parts(node, state, shard)?;
    let started = Instant::now();
    repl.resyncing.store(true, Ordering::Release);
    repl.full_resyncs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        shard,
        "full resync started: reads of this shard are refused until it completes"
    );
    local
        .writer
        .reset()
        .await
        .map_err(|e| Stop::Storage(e.to_string()))?;
    let mut start_after = None;
    let mut seq = None;
    let mut keys = 0usize;
    loop {
        let req = SnapshotRequest {
            node_id: node.node_id().to_string(),
            shard,
            start_after: start_after.take(),
            max_bytes: SNAPSHOT_PAGE_BYTES,
        };
        let page = client
            .snapshot(ctx(Duration::from_secs(60)), req)
            .await
            .map_err(|e| Stop::Link(format!("snapshot: {e}")))?
            .map_err(Stop::Refused)?;
        if *seq.get_or_insert(page.seq) != page.seq {
            return Err(Stop::Refused(KvError::ResyncExpired { shard }));
        }
        keys += page.entries.len();
        local
            .writer
            .load(page.entries)
            .await
            .map_err(|e| Stop::Storage(e.to_string()))?;
        match page.next {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    let seq = seq.unwrap_or(0);
    local
        .writer
        .finish_load(seq)
        .await
        .map_err(|e| Stop::Storage(e.to_string()))?;
    repl.resyncing.store(false, Ordering::Release);
    tracing::info!(
        shard,
        seq,
        keys,
        secs = started.elapsed().as_secs_f64(),
        "full resync finished"
    );
    Ok(())
}

/// The digest of `shard` exactly at `seq`, holding the follower there until it is taken.
///
/// # Errors
/// `SequenceUnavailable` when the shard is already past `seq` or does not reach it in `wait`.
pub async fn digest_at(
    node: &Node,
    state: &ReplicaState,
    shard: u32,
    seq: u64,
    wait: Duration,
) -> Result<Digest, KvError> {
    let repl = state.shard(shard).ok_or(KvError::NoSuchShard {
        shard,
        shards: node.config().shards,
    })?;
    let local = node.shard_at(shard)?;
    let mut changes = local.writer.last_seq();
    repl.hold_at.store(seq, Ordering::Release);
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        let applied = *changes.borrow_and_update();
        if applied > seq {
            break Err(KvError::SequenceUnavailable {
                shard,
                current: applied,
                requested: seq,
            });
        }
        if applied == seq {
            break match node.digest_now(shard).await {
                Ok(d) if d.seq == seq => Ok(d),
                Ok(d) => Err(KvError::SequenceUnavailable {
                    shard,
                    current: d.seq,
                    requested: seq,
                }),
                Err(e) => Err(e),
            };
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            break Err(KvError::SequenceUnavailable {
                shard,
                current: applied,
                requested: seq,
            });
        }
    };
    repl.hold_at.store(NO_HOLD, Ordering::Release);
    repl.hold_released.notify_waiters();
    result
}
