//! The replica's side: join the master, then one follower loop per shard that long-polls the
//! master's log and applies what it gets. The master checks on every pull that the replica's
//! last entry is of the epoch it says (same history); when it is not, the replica finds the
//! last position both share from the master's epoch history, moves its own entries past it to
//! the rollback file, and goes on from there. A full resync only when the master's log no
//! longer reaches back. Reads keep being served from local data throughout; a shard being
//! copied by a full resync refuses reads until the copy is complete.
//!
//! ```text
//!  run(address) ── loop: connect, join ─(another cluster: refused, retried; wrong shard count,
//!          │           │                 duplicate id: fatal, kvd exits)
//!          │           └─(unreachable, stepped down)──> link down, back off 100 ms .. 1 s, retry
//!          └─ every shard: pull(from = (epoch, seq)) ─ Entries ──> apply (one synced commit)
//!                                                    ─ Diverged ─> rollback file, truncate, pull
//!                                                    ─ FullResyncNeeded ─> copy the shard
//!  run(None): the master is not known ── hello every member each second until one names it
//! ```
//!
//! The follower never changes whom it follows by itself: what it learns (a higher epoch, a
//! redirect, a join) goes to the cluster state machine, whose `Follow` command restarts it.

use std::{
    collections::BTreeSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use serde_bytes::ByteBuf;
use shared::{
    Digest, JoinReply, JoinRequest, KvClient, KvError, LinkState, LogEntry, MasterLink, PullReply,
    PullRequest, SnapshotRequest,
    cluster::{Epoch, EpochStart, LogPos, Member},
    limits::MAX_BATCH_KEYS,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{PULL_MAX_BYTES, SNAPSHOT_PAGE_BYTES, rollback, unix_ms};
use crate::{
    cluster::{
        history::{EpochHistory, divergence},
        peers::{self, ctx},
        runtime::{self, notify},
        state::Event,
    },
    node::{Node, Shard},
    storage::format::LogRecord,
};

/// No digest is holding the follower.
const NO_HOLD: u64 = u64::MAX;
/// Longest a pull waits on the master when there is nothing new; half the replica timeout if
/// that is shorter, so a healthy master always answers well within the timeout.
const PULL_WAIT: Duration = Duration::from_secs(1);
/// First and last back-off between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Back-off after a refusal that needs the operator (a master of another cluster).
const BACKOFF_REFUSED: Duration = Duration::from_secs(5);
/// How often a replica that does not know its master asks the members.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

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
    master: Option<String>,
    master_id: Option<String>,
    state: LinkState,
    since_unix_ms: u64,
    last_error: Option<String>,
}

/// A replica's replication state (kept across role changes: a node that becomes a replica again
/// goes on counting).
#[derive(Debug)]
pub struct ReplicaState {
    link: Mutex<Link>,
    shards: Vec<ReplicaShard>,
    /// When an answer of the master last arrived (or this node started, or became a replica,
    /// or voted): auto failover stands only after the failover timeout of silence since.
    last_contact: Mutex<Instant>,
    /// The master's send time of the last answer received: sent back as the confirmation its
    /// lease rests on.
    confirms: AtomicU64,
}

/// Why a follower stopped.
enum Stop {
    /// The connection failed or the master stepped down: reconnect.
    Link(String),
    /// The master refused something: rejoin after a pause.
    Refused(KvError),
    /// Local storage failed.
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> Stop {
    Stop::Storage(e.to_string())
}

impl ReplicaState {
    /// State for `shards` shards; `resyncing[i]` marks shards whose full resync was interrupted
    /// (they refuse reads until it is redone).
    #[must_use]
    pub fn new(resyncing: &[bool]) -> Self {
        Self {
            link: Mutex::new(Link {
                master: None,
                master_id: None,
                state: LinkState::Down,
                since_unix_ms: unix_ms(),
                last_error: None,
            }),
            last_contact: Mutex::new(Instant::now()),
            confirms: AtomicU64::new(0),
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

    /// Time since the master was last heard from (or since the promise was renewed).
    #[must_use]
    pub fn since_contact(&self) -> Duration {
        self.last_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Renews the promise: as if the master had just answered (a start, a vote, a new role).
    pub fn touch(&self) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// An answer of the master arrived, sent at `sent_at` on its clock (0: not a timed answer).
    fn heard_master(&self, sent_at: u64) {
        self.touch();
        if sent_at > 0 {
            self.confirms.fetch_max(sent_at, Ordering::AcqRel);
        }
    }

    /// Starts over the confirmations for a new master (its clock is another one).
    fn new_master(&self) {
        self.confirms.store(0, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link as reported by status.
    #[must_use]
    pub fn link(&self) -> MasterLink {
        let link = self.lock();
        MasterLink {
            master: link.master.clone().unwrap_or_default(),
            state: link.state,
            since_unix_ms: link.since_unix_ms,
            last_error: link.last_error.clone(),
            master_id: link.master_id.clone(),
        }
    }

    fn set_master(&self, address: Option<&str>, id: Option<&str>) {
        let mut link = self.lock();
        link.master = address.map(str::to_string);
        link.master_id = id.map(str::to_string);
    }

    fn set_link(&self, state: LinkState, error: Option<String>) {
        let mut link = self.lock();
        let master = link.master.clone().unwrap_or_else(|| "unknown".into());
        if link.state != state {
            match state {
                LinkState::Up => tracing::info!(%master, "master link up"),
                LinkState::Down => tracing::warn!(
                    %master,
                    error = error.as_deref().unwrap_or(""),
                    "master link down; serving reads from local data, retrying"
                ),
            }
            link.state = state;
            link.since_unix_ms = unix_ms();
        } else if state == LinkState::Down && error.is_some() && error != link.last_error {
            tracing::warn!(%master, error = error.as_deref().unwrap_or(""), "master link still down");
        }
        if error.is_some() || state == LinkState::Up {
            link.last_error = error;
        }
    }
}

/// How long a pull may wait and how long the call may take with `timeout` the replica timeout;
/// with auto failover the wait is also at most a quarter of the failover timeout, so the
/// master's lease is confirmed several times within it.
fn pull_times(timeout: Duration, failover: Option<Duration>) -> (Duration, Duration) {
    let mut wait = PULL_WAIT.min(timeout / 2);
    if let Some(f) = failover {
        wait = wait.min(f / 4);
    }
    (wait, timeout.max(wait + Duration::from_millis(50)))
}

/// Runs the replica's replication toward `address` (or, with `None`, looks for the master)
/// until `cancel` fires.
///
/// # Errors
/// When the master refuses this replica for good (shard-count mismatch, duplicate node id);
/// kvd exits with that message.
pub async fn run(
    node: &Node,
    address: Option<String>,
    cancel: CancellationToken,
) -> Result<(), KvError> {
    let Some(address) = address else {
        discover(node, &cancel).await;
        return Ok(());
    };
    let state = node.replica();
    state.set_master(Some(&address), None);
    let mut backoff = BACKOFF_MIN;
    loop {
        let stop = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            stop = session(node, &address, &cancel) => stop,
        };
        let mut pause = backoff;
        match stop {
            Ok(()) => return Ok(()),
            Err(Stop::Refused(
                e @ (KvError::ShardCountMismatch { .. } | KvError::DuplicateNode { .. }),
            )) => {
                state.set_link(LinkState::Down, Some(e.to_string()));
                tracing::error!("the master refused this replica: {e}");
                return Err(e);
            }
            Err(Stop::Refused(e @ KvError::ClusterMismatch { .. })) => {
                tracing::error!("{e}");
                state.set_link(LinkState::Down, Some(e.to_string()));
                pause = BACKOFF_REFUSED;
            }
            Err(Stop::Link(e) | Stop::Storage(e)) => state.set_link(LinkState::Down, Some(e)),
            Err(Stop::Refused(e)) => state.set_link(LinkState::Down, Some(e.to_string())),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The master is not known: ask every member until one names it (the state machine then
/// restarts the follower toward it).
async fn discover(node: &Node, cancel: &CancellationToken) {
    let state = node.replica();
    state.set_master(None, None);
    state.set_link(
        LinkState::Down,
        Some("the master is not known; asking the members".into()),
    );
    loop {
        let others = node.cluster().others();
        let asks = others.iter().map(|m| runtime::say_hello(node, m));
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = futures::future::join_all(asks) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(DISCOVER_EVERY) => {}
        }
    }
}

/// The answer of a call, with `NotMaster` reported to the state machine as a redirect.
fn answer<T>(
    node: &Node,
    what: &str,
    reply: Result<Result<T, KvError>, tarpc::client::RpcError>,
) -> Result<T, Stop> {
    match reply {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(KvError::NotMaster { master, epoch })) => {
            runtime::tell(
                node,
                Event::Redirected {
                    epoch,
                    address: master.clone(),
                },
            );
            Err(Stop::Link(format!(
                "{what}: the node is not the master (epoch {epoch}){}",
                master.map_or_else(String::new, |m| format!("; it names {m}"))
            )))
        }
        Ok(Err(e)) => Err(Stop::Refused(e)),
        Err(e) => Err(Stop::Link(format!("{what}: {e}"))),
    }
}

/// One connection to the master: join, then follow every shard until something fails.
async fn session(node: &Node, address: &str, cancel: &CancellationToken) -> Result<(), Stop> {
    let timeout = node.config().replica_timeout;
    let client = peers::connect(node.peer_credentials(), address, timeout)
        .await
        .map_err(Stop::Link)?;
    let view = node.cluster().view();
    let join = JoinRequest {
        node_id: node.node_id().to_string(),
        address: node.advertised(),
        shards: node.config().shards,
        cluster_id: node.cluster().cluster_id(),
        epoch: view.epoch,
    };
    let reply = answer(node, "join", client.join(ctx(timeout), join).await)?;
    check_cluster(node, address, &reply).await?;
    let master = Member {
        node_id: reply.master_id.clone(),
        address: reply.master_address.clone(),
    };
    match notify(
        node,
        Event::Joined {
            master: master.clone(),
            epoch: reply.epoch,
        },
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e @ KvError::StaleEpoch { .. })) => {
            // A master of an older epoch: tell it, so it steps down, and look elsewhere.
            let _ = runtime::say_hello(node, &master).await;
            return Err(Stop::Refused(e));
        }
        Ok(Err(e)) => return Err(Stop::Refused(e)),
        Err(e) => return Err(storage(e)),
    }
    node.cluster()
        .update_file(|f| {
            let changed = f.member_list() != reply.members;
            if changed {
                f.adopt_members(0, &reply.members);
            }
            changed
        })
        .await
        .map_err(storage)?;
    let state = node.replica();
    state.set_master(Some(&reply.master_address), Some(&reply.master_id));
    state.new_master();
    state.heard_master(0);
    state.set_link(LinkState::Up, None);
    let followers =
        (0..node.config().shards).map(|shard| follow(node, &client, &master, shard, cancel));
    futures::future::try_join_all(followers).await.map(|_| ())
}

/// Refuses a master of another cluster (unless `--reseed`), adopts the cluster id of the
/// first master a new replica joins.
async fn check_cluster(node: &Node, address: &str, reply: &JoinReply) -> Result<(), Stop> {
    match node.cluster().cluster_id() {
        None => {
            let id = reply.cluster_id.clone();
            node.cluster()
                .update_file(move |f| {
                    f.cluster_id = Some(id);
                    true
                })
                .await
                .map_err(storage)?;
            tracing::info!(cluster_id = %reply.cluster_id, "joined the cluster");
            Ok(())
        }
        Some(mine) if mine == reply.cluster_id => Ok(()),
        Some(mine) if node.config().reseed => {
            tracing::warn!(
                master = %address,
                master_cluster = %reply.cluster_id,
                replica_cluster = %mine,
                "--reseed: discarding this replica's data to copy the master's"
            );
            for shard in 0..node.config().shards {
                let (local, repl) = node.replica_shard(shard).map_err(storage)?;
                repl.resyncing.store(true, Ordering::Release);
                local.writer.reset().await.map_err(storage)?;
            }
            let id = reply.cluster_id.clone();
            node.cluster()
                .update_file(move |f| {
                    f.cluster_id = Some(id);
                    f.epoch = 0;
                    f.master = None;
                    true
                })
                .await
                .map_err(storage)?;
            Ok(())
        }
        Some(mine) => Err(Stop::Refused(KvError::ClusterMismatch {
            master: address.to_string(),
            master_cluster: reply.cluster_id.clone(),
            replica_cluster: mine,
        })),
    }
}

/// Follows one shard's log until an error.
async fn follow(
    node: &Node,
    client: &KvClient,
    master: &Member,
    shard: u32,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let (local, repl) = node.replica_shard(shard).map_err(storage)?;
    if repl.resyncing.load(Ordering::Acquire) {
        full_resync(node, client, shard).await?;
    }
    let failover = node
        .config()
        .auto_failover
        .then_some(node.config().failover_timeout);
    let (wait, deadline) = pull_times(node.config().replica_timeout, failover);
    let mut first = true;
    // When the partial resync of this session started, and from where, until caught up.
    let mut catching_up: Option<(Instant, u64)> = None;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let from_seq = *local.writer.last_seq().borrow();
        let file = node.cluster().file();
        let req = PullRequest {
            node_id: node.node_id().to_string(),
            shard,
            from_seq,
            max_bytes: PULL_MAX_BYTES,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            from_epoch: local.writer.epoch_at(from_seq),
            epoch: node.cluster().view().epoch,
            members_version: file.members_version,
            catch_up: false,
            confirms: node.replica().confirms.load(Ordering::Acquire),
        };
        let reply = answer(node, "pull", client.pull(ctx(deadline), req).await)?;
        let sent_at = match &reply {
            PullReply::Entries { sent_at, .. } => *sent_at,
            _ => 0,
        };
        node.replica().heard_master(sent_at);
        match reply {
            PullReply::FullResyncNeeded {
                first_seq,
                master_seq,
                epoch,
            } => {
                repl.master_seq.store(master_seq, Ordering::Relaxed);
                heard(node, epoch, master);
                tracing::warn!(
                    shard,
                    from_seq,
                    first_seq,
                    master_seq,
                    "the master's log no longer reaches back to this replica: full resync"
                );
                full_resync(node, client, shard).await?;
            }
            PullReply::Diverged {
                history,
                master_seq,
                epoch,
            } => {
                repl.master_seq.store(master_seq, Ordering::Relaxed);
                give_up_diverged(node, client, shard, &history, master_seq, epoch).await?;
            }
            PullReply::Entries {
                entries,
                master_seq,
                epoch,
                members,
                ..
            } => {
                repl.master_seq.store(master_seq, Ordering::Relaxed);
                heard(node, epoch, master);
                if let Some((version, members)) = members {
                    node.cluster()
                        .update_file(|f| {
                            f.adopt_members(version, &members);
                            true
                        })
                        .await
                        .map_err(storage)?;
                    runtime::tell(node, Event::Members(members));
                }
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

/// The master's reply named an epoch: a higher one goes to the state machine.
fn heard(node: &Node, epoch: Epoch, master: &Member) {
    if epoch > node.cluster().view().epoch {
        runtime::tell(
            node,
            Event::Heard {
                epoch,
                master: Some(master.clone()),
            },
        );
    }
}

/// Applies pulled records, stopping at a digest's hold point until it is released.
async fn apply(
    local: &Shard,
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
        local.writer.replicate(now).await.map_err(storage)?;
    }
    Ok(())
}

/// The source's log does not have this replica's last entry: find the last position both
/// share, keep this replica's entries past it in the rollback file, and undo them. Each key
/// they touched takes the source's value if the source wrote it at or before that position
/// (then it is the value the shared history left), and is absent otherwise (the source's own
/// later write of it comes in the next pulls).
async fn give_up_diverged(
    node: &Node,
    client: &KvClient,
    shard: u32,
    theirs: &[EpochStart],
    their_last: u64,
    their_epoch: Epoch,
) -> Result<(), Stop> {
    let local = node.shard_at(shard).map_err(storage)?;
    let theirs = EpochHistory::new(theirs.to_vec())
        .map_err(|e| Stop::Refused(KvError::InvalidArgument(e.to_string())))?;
    let ours = local.writer.epochs();
    let our_last = *local.writer.last_seq().borrow();
    let to = divergence(&ours, our_last, &theirs, their_last);
    if to >= our_last {
        return Ok(());
    }
    let store = std::sync::Arc::clone(&local.store);
    let entries = crate::blocking::run(move || -> Result<_, crate::storage::StorageError> {
        let records = store.read_log(to, our_last, usize::MAX, usize::MAX)?;
        let mut given = Vec::with_capacity(records.len());
        for e in records {
            given.push(rollback::Given::from_record(
                e.seq,
                LogRecord::decode(&e.record)?,
            ));
        }
        if given.len() as u64 != our_last - to {
            // The local log no longer holds them all: keep the last value of each key instead.
            let logged: BTreeSet<u64> = given.iter().map(|g| g.version).collect();
            for (key, version, value) in store.versions_after(to)? {
                if !logged.contains(&version) {
                    given.push(rollback::Given {
                        version,
                        epoch: ours.epoch_at(version),
                        time_ms: 0,
                        key,
                        value: Some(value),
                    });
                }
            }
        }
        Ok(given)
    })
    .await
    .map_err(storage)?
    .map_err(storage)?;
    let data_dir = node.config().data_dir.clone();
    let to_save = entries.clone();
    let (path, written) =
        crate::blocking::run(move || rollback::append(&data_dir, their_epoch, shard, &to_save))
            .await
            .map_err(storage)?
            .map_err(storage)?;
    let keys: Vec<Vec<u8>> = entries
        .iter()
        .map(|g| g.key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut restore = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BATCH_KEYS) {
        let ask: Vec<ByteBuf> = chunk.iter().map(|k| ByteBuf::from(k.clone())).collect();
        let timeout = node.config().replica_timeout;
        let values = answer(
            node,
            "restore_mget",
            client.restore_mget(ctx(timeout), ask).await,
        )?;
        for (key, value) in chunk.iter().zip(values) {
            let state = value
                .filter(|v| v.version <= to)
                .map(|v| (v.version, v.value.into_vec()));
            restore.push((key.clone(), state));
        }
    }
    local
        .writer
        .truncate(to, our_last, restore)
        .await
        .map_err(storage)?;
    node.metrics().rollback_entries.inc_by(entries.len() as u64);
    tracing::warn!(
        shard,
        count = entries.len(),
        written,
        path = %path.display(),
        from = our_last,
        to,
        epoch = their_epoch,
        "gave up entries that the master's history does not have; they are kept in the rollback file"
    );
    Ok(())
}

/// Copies the whole shard from the master at one sequence, then returns to pulling from there.
async fn full_resync(node: &Node, client: &KvClient, shard: u32) -> Result<(), Stop> {
    let (local, repl) = node.replica_shard(shard).map_err(storage)?;
    let started = Instant::now();
    repl.resyncing.store(true, Ordering::Release);
    repl.full_resyncs.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        shard,
        "full resync started: reads of this shard are refused until it completes"
    );
    local.writer.reset().await.map_err(storage)?;
    let mut start_after = None;
    let mut seq = None;
    let mut history = None;
    let mut keys = 0usize;
    loop {
        let req = SnapshotRequest {
            node_id: node.node_id().to_string(),
            shard,
            start_after: start_after.take(),
            max_bytes: SNAPSHOT_PAGE_BYTES,
            epoch: node.cluster().view().epoch,
        };
        let page = answer(
            node,
            "snapshot",
            client.snapshot(ctx(Duration::from_secs(60)), req).await,
        )?;
        if *seq.get_or_insert(page.seq) != page.seq {
            return Err(Stop::Refused(KvError::ResyncExpired { shard }));
        }
        if history.is_none() {
            history = Some(
                EpochHistory::new(page.history.clone())
                    .map_err(|e| Stop::Refused(KvError::InvalidArgument(e.to_string())))?,
            );
        }
        keys += page.entries.len();
        local.writer.load(page.entries).await.map_err(storage)?;
        match page.next {
            Some(next) => start_after = Some(next),
            None => break,
        }
    }
    let seq = seq.unwrap_or(0);
    local
        .writer
        .finish_load(seq, history.unwrap_or_default())
        .await
        .map_err(storage)?;
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

/// Before a promotion, and for a new master from its majority: fetches the entries another node
/// (at `address`) has past this node's position on `shard`, up to `target`, with the same
/// divergence check as a follower (a candidate whose last entries are of an older epoch than
/// the target's gives them up first). Returns how many entries were applied.
///
/// # Errors
/// When the peer cannot be reached, its log does not reach back far enough, or `deadline`
/// passes first.
pub async fn catch_up(
    node: &Node,
    address: &str,
    shard: u32,
    target: LogPos,
    deadline: Instant,
) -> Result<u64, String> {
    let describe = |s: Stop| match s {
        Stop::Link(e) | Stop::Storage(e) => e,
        Stop::Refused(e) => e.to_string(),
    };
    let left = || deadline.saturating_duration_since(Instant::now());
    let client = peers::connect(node.peer_credentials(), address, left()).await?;
    let (local, repl) = node.replica_shard(shard).map_err(|e| e.to_string())?;
    let start = *local.writer.last_seq().borrow();
    let never = CancellationToken::new();
    loop {
        let from_seq = *local.writer.last_seq().borrow();
        if local.writer.last_pos() >= target {
            return Ok(from_seq.saturating_sub(start));
        }
        if left().is_zero() {
            return Err(format!(
                "shard {shard}: caught up to {from_seq} of {target} from {address} before the timeout"
            ));
        }
        let req = PullRequest {
            node_id: node.node_id().to_string(),
            shard,
            from_seq,
            max_bytes: PULL_MAX_BYTES,
            wait_ms: 0,
            from_epoch: local.writer.epoch_at(from_seq),
            epoch: node.cluster().view().epoch,
            members_version: u64::MAX,
            catch_up: true,
            confirms: 0,
        };
        let reply = client
            .pull(ctx(left()), req)
            .await
            .map_err(|e| format!("pull from {address}: {e}"))?
            .map_err(|e| format!("pull from {address}: {e}"))?;
        match reply {
            PullReply::Entries { entries, .. } => {
                if entries.is_empty() {
                    return Err(format!(
                        "shard {shard}: {address} has nothing after {from_seq} (target {target})"
                    ));
                }
                let entries: Vec<LogEntry> = entries
                    .into_iter()
                    .filter(|e| e.seq <= target.seq)
                    .collect();
                apply(local, repl, entries, &never)
                    .await
                    .map_err(describe)?;
            }
            PullReply::Diverged {
                history,
                master_seq,
                epoch,
            } => give_up_diverged(node, &client, shard, &history, master_seq, epoch)
                .await
                .map_err(describe)?,
            PullReply::FullResyncNeeded { first_seq, .. } => {
                return Err(format!(
                    "shard {shard}: {address}'s log starts at {first_seq}, past this node's {from_seq}"
                ));
            }
        }
    }
}

/// Holds a shard's follower at a sequence while it lives (a digest being taken).
struct Hold<'a>(&'a ReplicaShard);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.hold_at.store(NO_HOLD, Ordering::Release);
        self.0.hold_released.notify_waiters();
    }
}

/// The digest of `shard` exactly at `seq`, holding the follower there until it is taken.
///
/// # Errors
/// `SequenceUnavailable` when the shard is already past `seq` or does not reach it in `wait`.
pub async fn digest_at(
    node: &Node,
    shard: u32,
    seq: u64,
    wait: Duration,
) -> Result<Digest, KvError> {
    let (local, repl) = node.replica_shard(shard)?;
    let mut changes = local.writer.last_seq();
    repl.hold_at.store(seq, Ordering::Release);
    // Released on every way out, including a caller that goes away mid-wait.
    let _hold = Hold(repl);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let applied = *changes.borrow_and_update();
        if applied > seq {
            return Err(KvError::SequenceUnavailable {
                shard,
                current: applied,
                requested: seq,
            });
        }
        if applied == seq {
            return match node.digest_now(shard).await {
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
            return Err(KvError::SequenceUnavailable {
                shard,
                current: applied,
                requested: seq,
            });
        }
    }
}
