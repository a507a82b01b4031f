//! The writer of one shard: a dedicated OS thread that owns every write to the shard.
//!
//! ```text
//!   submit() --WriteOp--> [bounded mpsc] --> loop {
//!                                              wait for one op, then take every op queued
//!                                              check conditions (seeing this batch's own writes)
//!                                              one WriteBatch: data + log + meta counters
//!                                              commit, fsync once (SyncPolicy::Always)
//!                                              publish last_seq, answer every op
//!                                            }
//! ```
//!
//! Because one thread applies every write, compare-and-swap is safe even though fjall's batches
//! are blind writes.
//!
//! Epochs: every write carries the epoch it was admitted in, and its log record is stamped with
//! it. The writer refuses a write whose epoch is below the node's (the `fence`, raised when the
//! node learns of a newer master), so nothing is committed for an epoch the node has left. The
//! shard's epoch history (the first sequence of each epoch) changes in the same batch as the
//! first entry of a new epoch. The batch is as large as the queue is at the moment the writer looks: it
//! never waits for more work, so a lone write is not delayed.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use fjall::PersistMode;
use serde_bytes::ByteBuf;
use shared::{
    Entry, KvError, LogEntry, PutCondition,
    cluster::{Epoch, LogPos},
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    DiskSpace, ShardStore, StorageError,
    format::{
        LoadedPayload, LogOp, LogOpRef, LogRecord, LogRecordRef, META_APPLIED, META_EPOCHS,
        META_KEYS, META_LAST_SEQ, META_RESYNC, TruncatePayload, decode_payload, encode_data,
        encode_history, encode_payload,
    },
    log::{self, Frame, Kind, Log, StoredFrame},
};
use crate::cluster::history::EpochHistory;

/// Most operations one group commit takes.
const MAX_BATCH_OPS: usize = 4096;
/// Most key and value bytes one group commit takes.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Queue depth per shard; senders wait when it is full (backpressure).
const QUEUE_DEPTH: usize = 16 * 1024;

/// A write to apply.
#[derive(Debug)]
pub enum WriteKind {
    /// Set a key (if the condition holds).
    Put {
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
        /// Compare-and-swap condition.
        condition: PutCondition,
    },
    /// Remove a key.
    Delete {
        /// Key bytes.
        key: Vec<u8>,
    },
}

impl WriteKind {
    fn key(&self) -> &[u8] {
        match self {
            Self::Put { key, .. } | Self::Delete { key } => key,
        }
    }

    fn size(&self) -> usize {
        match self {
            Self::Put { key, value, .. } => key.len() + value.len(),
            Self::Delete { key } => key.len(),
        }
    }
}

/// The answer to a write: the sequence number it was written at, or `None` for a delete of an
/// absent key (nothing was written).
pub type WriteResult = Result<Option<u64>, KvError>;

struct WriteOp {
    kind: WriteKind,
    /// The epoch the write was admitted in.
    epoch: Epoch,
    reply: oneshot::Sender<WriteResult>,
}

/// A key as a truncation leaves it: its value and version, or absent.
pub type Restore = (Vec<u8>, Option<(u64, Vec<u8>)>);

enum Msg {
    Write(WriteOp),
    /// Apply records of the master's log at their own sequence numbers (replica).
    Replicate(Vec<LogEntry>, oneshot::Sender<Result<u64, StorageError>>),
    /// Start a full resync: mark it durably, then empty the shard (replica).
    Reset(oneshot::Sender<Result<(), StorageError>>),
    /// Store one page of a shard copy (replica).
    Load(Vec<Entry>, oneshot::Sender<Result<(), StorageError>>),
    /// End a full resync at the copy's sequence, with the master's history up to it (replica).
    FinishLoad(u64, EpochHistory, oneshot::Sender<Result<(), StorageError>>),
    /// Undo the entries after a sequence: remove them from the log, set the keys they touched
    /// as given, cut the history (replica rejoining a new master).
    Truncate(
        u64,
        u64,
        Vec<Restore>,
        oneshot::Sender<Result<(), StorageError>>,
    ),
    /// Finish what is queued for the shard, refuse the rest, sync and stop (answered once done).
    Close(oneshot::Sender<()>),
}

/// Group commits remembered for "bytes behind": (last sequence of the commit, log bytes
/// written up to and including it).
const HISTORY_COMMITS: usize = 100_000;

/// Key bytes the version cache of one shard may hold before it starts over.
const VERSION_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Bytes counted per cache entry on top of its key (the map's own overhead, roughly).
const VERSION_CACHE_ENTRY_COST: usize = 48;

/// The versions of keys this writer has looked up or written (`None`: known absent).
///
/// Every write needs the key's current version (for compare-and-swap and the exact key count),
/// and a memtable lookup costs 9–18% of the node's CPU (docs/performance.md). Only this writer
/// changes the shard's data, so an entry stays exact: it is filled from committed state or
/// from a commit that succeeded, and emptied when a full resync empties the shard. It holds at
/// most [`VERSION_CACHE_BYTES`] of keys and starts over when full. It keeps std's randomly
/// keyed SipHash on purpose: the keys come from clients, and a fixed-seed hash would let them
/// craft collisions.
#[derive(Default)]
struct VersionCache {
    map: HashMap<Vec<u8>, Option<u64>>,
    bytes: usize,
}

impl VersionCache {
    fn get(&self, key: &[u8]) -> Option<Option<u64>> {
        self.map.get(key).copied()
    }

    fn record(&mut self, key: Vec<u8>, version: Option<u64>) {
        let cost = key.len() + VERSION_CACHE_ENTRY_COST;
        if !self.map.contains_key(&key) {
            if self.bytes + cost > VERSION_CACHE_BYTES {
                self.clear();
            }
            self.bytes += cost;
        }
        self.map.insert(key, version);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// The version of `key`: from the cache, else from the store (and then remembered).
    fn lookup(&mut self, store: &ShardStore, key: &[u8]) -> Result<Option<u64>, StorageError> {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let v = store.version_of(key)?;
        self.record(key.to_vec(), v);
        Ok(v)
    }
}

/// Histograms a writer records each group commit in.
pub struct ShardMetrics {
    /// Writes per commit.
    pub batch_size: prometheus::Histogram,
    /// Duration of the commit, fsync included.
    pub commit_seconds: prometheus::Histogram,
}

/// Counters the writer publishes; read without locks by status and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Group commits done.
    pub commits: AtomicU64,
    /// Operations applied (each got a sequence number).
    pub writes: AtomicU64,
    /// Live keys in the shard.
    pub keys: AtomicU64,
    /// Log record bytes written since the process started.
    pub log_bytes: AtomicU64,
}

/// The sending side of a shard's writer.
pub struct WriterHandle {
    shard: u32,
    tx: mpsc::Sender<(u32, Msg)>,
    last_seq: watch::Receiver<u64>,
    stats: Arc<WriterStats>,
    history: Arc<Mutex<VecDeque<(u64, u64)>>>,
    /// The shard's epoch history as of the last published commit.
    epochs: Arc<Mutex<EpochHistory>>,
    /// The committer when it runs inline (`crate::blocking::inline`): each send is followed by a
    /// pump on the caller's thread instead of a wake-up of the committer thread.
    inline: Option<Arc<Mutex<Inline>>>,
}

/// The committer run by its callers (the simulation).
struct Inline {
    committer: Committer,
    rx: mpsc::Receiver<(u32, Msg)>,
}

impl WriterHandle {
    /// One shard only: see [`WriterHandle::spawn_all`].
    ///
    /// # Errors
    /// See [`WriterHandle::spawn_all`].
    pub fn spawn(
        store: Arc<ShardStore>,
        metrics: Option<ShardMetrics>,
        fence: Arc<AtomicU64>,
        space: Arc<DiskSpace>,
    ) -> Result<Self, StorageError> {
        let mut handles = Self::spawn_all(vec![(store, metrics)], fence, space)?;
        handles.pop().ok_or(StorageError::Stopped(0))
    }

    /// Replays into each store's data what the log holds past what it has applied, then starts
    /// the one committer thread that owns every write of every shard (so that one log commit,
    /// one write and one fsync, takes what all shards have queued). `stores` are in shard
    /// order, shard `i` at index `i`.
    ///
    /// # Errors
    /// When a shard's counters cannot be read, the replay fails or the thread cannot be
    /// started.
    pub fn spawn_all(
        stores: Vec<(Arc<ShardStore>, Option<ShardMetrics>)>,
        fence: Arc<AtomicU64>,
        space: Arc<DiskSpace>,
    ) -> Result<Vec<Self>, StorageError> {
        let depth = QUEUE_DEPTH * stores.len().max(1);
        let (tx, rx) = mpsc::channel(depth);
        let mut handles = Vec::with_capacity(stores.len());
        let mut writers = Vec::with_capacity(stores.len());
        let mut log = None;
        for (store, metrics) in stores {
            let shard = store.id();
            let (last_seq, keys) = store.counters()?;
            let applied_lsn = store.applied_lsn()?;
            let epochs = store.epoch_history(last_seq)?;
            let shared_epochs = Arc::new(Mutex::new(epochs.clone()));
            let stats = Arc::new(WriterStats {
                keys: AtomicU64::new(keys),
                ..WriterStats::default()
            });
            let (seq_tx, seq_rx) = watch::channel(last_seq);
            let history = Arc::new(Mutex::new(VecDeque::from([(last_seq, 0)])));
            log = Some(Arc::clone(&store.log));
            let mut writer = Writer {
                epochs,
                shared_epochs: Arc::clone(&shared_epochs),
                fence: Arc::clone(&fence),
                versions: VersionCache::default(),
                metrics,
                history: Arc::clone(&history),
                store,
                last_seq,
                keys,
                applied_lsn,
                behind: false,
                space: Arc::clone(&space),
                stats: Arc::clone(&stats),
                seq_tx,
                closed: false,
            };
            writer.replay()?;
            writers.push(writer);
            handles.push(Self {
                shard,
                tx: tx.clone(),
                last_seq: seq_rx,
                stats,
                history,
                epochs: shared_epochs,
                inline: None,
            });
        }
        let Some(log) = log else {
            return Ok(handles);
        };
        let committer = Committer {
            writers,
            log,
            ops: Vec::new(),
            arena: Vec::with_capacity(256 * 1024),
        };
        if crate::blocking::inline() {
            let inline = Arc::new(Mutex::new(Inline { committer, rx }));
            for h in &mut handles {
                h.inline = Some(Arc::clone(&inline));
            }
        } else {
            std::thread::Builder::new()
                .name("kvd-writer".into())
                .spawn(move || committer.run(rx))
                .map_err(|source| StorageError::Io {
                    what: "cannot start the writer thread of",
                    path: "the shards".into(),
                    source,
                })?;
        }
        Ok(handles)
    }

    /// Inline only: handles what is queued, on this thread.
    fn pump(&self) {
        let Some(inline) = &self.inline else {
            return;
        };
        let mut guard = inline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inline { committer, rx } = &mut *guard;
        let mut next = None;
        loop {
            let msg = match next.take() {
                Some(msg) => msg,
                None => match rx.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => return,
                },
            };
            next = committer.handle(msg, rx);
        }
    }

    /// The shard's epoch history (as of the last commit).
    #[must_use]
    pub fn epochs(&self) -> EpochHistory {
        self.epochs
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The epoch of the entry at `seq` on this shard.
    #[must_use]
    pub fn epoch_at(&self, seq: u64) -> Epoch {
        match self.epochs.lock() {
            Ok(h) => h.epoch_at(seq),
            Err(p) => p.into_inner().epoch_at(seq),
        }
    }

    /// The position of the last entry.
    #[must_use]
    pub fn last_pos(&self) -> LogPos {
        let seq = *self.last_seq.borrow();
        LogPos {
            epoch: self.epoch_at(seq),
            seq,
        }
    }

    /// Queues a write and waits until it is durable (or refused).
    ///
    /// # Errors
    /// The write's own refusal (a failed condition), a storage failure, or `ShuttingDown` when the
    /// writer has stopped.
    pub async fn submit(&self, kind: WriteKind, epoch: Epoch) -> WriteResult {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((self.shard, Msg::Write(WriteOp { kind, epoch, reply })))
            .await
            .map_err(|_| KvError::ShuttingDown)?;
        self.pump();
        answer.await.map_err(|_| KvError::Storage {
            shard: self.shard,
            message: "the shard writer stopped before answering".into(),
        })?
    }

    async fn call<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, StorageError>>) -> Msg,
    ) -> Result<T, StorageError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StorageError::Stopped(self.shard);
        self.tx
            .send((self.shard, msg(reply)))
            .await
            .map_err(|_| stopped())?;
        self.pump();
        answer.await.map_err(|_| stopped())?
    }

    /// Applies records of the master's log, which must continue this shard's sequence; returns
    /// the new last sequence once durable.
    ///
    /// # Errors
    /// A gap in the sequence, an undecodable record, or a storage failure.
    pub async fn replicate(&self, entries: Vec<LogEntry>) -> Result<u64, StorageError> {
        self.call(|reply| Msg::Replicate(entries, reply)).await
    }

    /// Starts a full resync: durably marks it, then empties the shard.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn reset(&self) -> Result<(), StorageError> {
        self.call(Msg::Reset).await
    }

    /// Stores a page of a shard copy.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn load(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.call(|reply| Msg::Load(entries, reply)).await
    }

    /// Ends a full resync: the shard is now at `seq`, with the master's epoch `history` up to
    /// it.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn finish_load(&self, seq: u64, history: EpochHistory) -> Result<(), StorageError> {
        self.call(|reply| Msg::FinishLoad(seq, history, reply))
            .await
    }

    /// Undoes every entry after `to`: they leave the log, each key in `restore` is set as given
    /// (the caller lists every key those entries touched), the history is cut after `to`, and
    /// the shard is at `to`, all in one synced batch. The caller has saved the entries to the
    /// rollback file first.
    ///
    /// # Errors
    /// A storage failure.
    ///
    /// `last` is the sequence the caller read the entries up to: if the shard moved since, the
    /// truncation is refused (the caller reads again), so no entry leaves without its line in
    /// the rollback file.
    pub async fn truncate(
        &self,
        to: u64,
        last: u64,
        restore: Vec<Restore>,
    ) -> Result<(), StorageError> {
        self.call(|reply| Msg::Truncate(to, last, restore, reply))
            .await
    }

    /// Log bytes written after sequence `seq` (at group-commit granularity: the commit holding
    /// `seq` counts whole). Estimated from the average record size when `seq` is older than the
    /// remembered commits.
    #[must_use]
    pub fn bytes_after(&self, seq: u64) -> u64 {
        let Ok(history) = self.history.lock() else {
            return 0;
        };
        let Some(&(last_seq, last_bytes)) = history.back() else {
            return 0;
        };
        if seq >= last_seq {
            return 0;
        }
        let idx = history.partition_point(|&(s, _)| s <= seq);
        if idx == 0 {
            let (first_seq, first_bytes) = history[0];
            let span = last_seq.saturating_sub(first_seq).max(1);
            let avg = (last_bytes - first_bytes) / span;
            return (last_seq - seq) * avg.max(1);
        }
        last_bytes - history[idx - 1].1
    }

    /// The last sequence number made durable; changes are observable for long polls.
    #[must_use]
    pub fn last_seq(&self) -> watch::Receiver<u64> {
        self.last_seq.clone()
    }

    /// Commit counters.
    #[must_use]
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Stops taking writes, lets the writer finish what is queued, syncs, and waits for it.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        // An error means the writer has already stopped.
        if self.tx.send((self.shard, Msg::Close(reply))).await.is_ok() {
            self.pump();
            if done.await.is_err() {
                tracing::error!(
                    shard = self.shard,
                    "the shard writer stopped before its close"
                );
            }
        }
    }
}

struct Writer {
    /// The epoch history, as of the last commit.
    epochs: EpochHistory,
    /// Its copy for readers, replaced after each commit that changes it.
    shared_epochs: Arc<Mutex<EpochHistory>>,
    /// The node's epoch: a write admitted in an older one is refused.
    fence: Arc<AtomicU64>,
    versions: VersionCache,
    metrics: Option<ShardMetrics>,
    history: Arc<Mutex<VecDeque<(u64, u64)>>>,
    store: Arc<ShardStore>,
    last_seq: u64,
    keys: u64,
    /// The lsn of the last frame applied to the data store.
    applied_lsn: u64,
    /// The log holds frames of this shard the data store could not take (its commit failed):
    /// they are applied from the log before the next write.
    behind: bool,
    /// Refuses writes while the disk is nearly full.
    space: Arc<DiskSpace>,
    stats: Arc<WriterStats>,
    seq_tx: watch::Sender<u64>,
    /// The shard was closed: it takes nothing more.
    closed: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The answer to a write whose commit failed, by what is known of it.
fn refusal(shard: u32, e: &StorageError) -> KvError {
    match e {
        StorageError::DiskFull(why) => KvError::DiskFull {
            shard,
            message: why.clone(),
        },
        StorageError::LogFailed(why) => KvError::WriteOutcomeUnknown {
            shard,
            message: why.clone(),
        },
        other => KvError::Storage {
            shard,
            message: other.to_string(),
        },
    }
}

/// One planned entry of a batch: its sequence, the op it came from, its record in the arena.
struct Planned {
    seq: u64,
    op: usize,
    start: usize,
    end: usize,
}

/// The one thread that owns every write of every shard: it takes everything queued, checks
/// and encodes each shard's part, hands all of it to the log in one commit (one write, one
/// fsync), then applies each shard's part to its data store and answers.
struct Committer {
    /// Shard `i` at index `i`.
    writers: Vec<Writer>,
    log: Arc<Log>,
    /// Each shard's writes of the batch being built (kept to reuse their allocations).
    ops: Vec<Vec<WriteOp>>,
    /// Encoded log records of the batch being built.
    arena: Vec<u8>,
}

impl Committer {
    fn run(mut self, mut rx: mpsc::Receiver<(u32, Msg)>) {
        let mut next: Option<(u32, Msg)> = None;
        loop {
            let msg = match next.take() {
                Some(msg) => msg,
                None => match rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break,
                },
            };
            next = self.handle(msg, &mut rx);
            if self.writers.iter().all(|w| w.closed) {
                // Nothing more is taken; what was queued meanwhile is refused.
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    self.handle(msg, &mut rx);
                }
                break;
            }
        }
        for w in self.writers.iter_mut().filter(|w| !w.closed) {
            w.stopped();
        }
    }

    /// Handles `msg`: a write together with the writes of every shard queued behind it, in one
    /// commit. Returns the message read past the batch, if any.
    fn handle(
        &mut self,
        (shard, msg): (u32, Msg),
        rx: &mut mpsc::Receiver<(u32, Msg)>,
    ) -> Option<(u32, Msg)> {
        let writer = self.writers.get_mut(shard as usize)?;
        if writer.closed {
            // A write after the close is refused as the node's shutdown refuses it; any other
            // message is dropped with its reply, and its caller sees the writer stopped.
            if let Msg::Write(op) = msg {
                let _ = op.reply.send(Err(KvError::ShuttingDown));
            }
            return None;
        }
        match msg {
            Msg::Write(op) => {
                let mut ops = std::mem::take(&mut self.ops);
                ops.resize_with(self.writers.len(), Vec::new);
                let mut bytes = op.kind.size();
                let mut count = 1;
                ops[shard as usize].push(op);
                let mut next = None;
                while count < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok((s, Msg::Write(op))) if (s as usize) < ops.len() => {
                            bytes += op.kind.size();
                            count += 1;
                            ops[s as usize].push(op);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.commit(&mut ops);
                self.ops = ops;
                next
            }
            Msg::Close(reply) => {
                writer.stopped();
                writer.closed = true;
                let _ = reply.send(());
                None
            }
            other => {
                writer.handle_other(other);
                None
            }
        }
    }

    /// Commits `ops` (each shard's writes) with one log commit and answers every one of them.
    /// Empties `ops`.
    fn commit(&mut self, ops: &mut [Vec<WriteOp>]) {
        let mut arena = std::mem::take(&mut self.arena);
        arena.clear();
        let mut plans = Vec::new();
        for (shard, shard_ops) in ops.iter_mut().enumerate() {
            if shard_ops.is_empty() {
                continue;
            }
            if let Some(writer) = self.writers.get_mut(shard)
                && let Some(plan) = writer.plan(shard_ops, &mut arena)
            {
                plans.push((shard, plan));
            }
        }
        if plans.is_empty() {
            self.arena = arena;
            return;
        }
        let frames: Vec<Frame<'_>> = plans
            .iter()
            .flat_map(|(shard, plan)| {
                let arena = &arena;
                plan.planned.iter().map(move |p| Frame {
                    shard: u32::try_from(*shard).unwrap_or(u32::MAX),
                    seq: p.seq,
                    kind: Kind::Entry,
                    payload: &arena[p.start..p.end],
                })
            })
            .collect();
        let count = frames.len() as u64;
        let started = Instant::now();
        let appended = self.log.append(&frames);
        drop(frames);
        match appended {
            Ok(last) => {
                // The frames took consecutive lsns, in plan order.
                let mut lsn = last + 1 - count;
                for (shard, plan) in plans {
                    lsn += plan.planned.len() as u64;
                    if let Some(writer) = self.writers.get_mut(shard) {
                        writer.apply(plan, &mut ops[shard], lsn - 1, started);
                    }
                }
            }
            Err(e) => {
                if !matches!(e, StorageError::DiskFull(_)) {
                    tracing::error!(error = %e, "group commit failed");
                }
                for (shard, plan) in plans {
                    if let Some(writer) = self.writers.get_mut(shard) {
                        writer.refuse(plan, &mut ops[shard], &e);
                    }
                }
            }
        }
        self.arena = arena;
    }
}

/// What a shard's part of a commit will write, once the log has it.
struct Plan {
    results: Vec<WriteResult>,
    planned: Vec<Planned>,
    pending: HashMap<Vec<u8>, Option<u64>>,
    seq: u64,
    keys: u64,
    epochs: EpochHistory,
}

impl Writer {
    /// Handles a message other than a write or a close.
    fn handle_other(&mut self, msg: Msg) {
        match msg {
            Msg::Replicate(entries, reply) => {
                let _ = reply.send(self.caught_up().and_then(|()| self.replicate(entries)));
            }
            Msg::Reset(reply) => {
                let _ = reply.send(self.caught_up().and_then(|()| self.reset()));
            }
            Msg::Load(entries, reply) => {
                let _ = reply.send(self.load(entries));
            }
            Msg::FinishLoad(seq, history, reply) => {
                let _ = reply.send(self.finish_load(seq, history));
            }
            Msg::Truncate(to, last, restore, reply) => {
                let _ = reply.send(
                    self.caught_up()
                        .and_then(|()| self.truncate(to, last, restore)),
                );
            }
            Msg::Write(_) | Msg::Close(_) => {}
        }
    }

    /// The last sync and the summary, once the queue has ended.
    fn stopped(&self) {
        if let Err(e) = self.store.persist() {
            tracing::error!(shard = self.store.id(), error = %e, "final sync of the shard failed");
        }
        let commits = self.stats.commits.load(Ordering::Relaxed);
        let writes = self.stats.writes.load(Ordering::Relaxed);
        tracing::info!(
            shard = self.store.id(),
            commits,
            writes,
            avg_batch = format_args!("{:.1}", writes as f64 / commits.max(1) as f64),
            last_seq = self.last_seq,
            "shard writer stopped"
        );
    }

    /// At start: applies what the log holds of this shard past what the data store has applied
    /// (after a crash, what fjall's unsynced journal did not keep), with its progress in the log.
    fn replay(&mut self) -> Result<(), StorageError> {
        let shard = self.store.id();
        let log = Arc::clone(&self.store.log);
        if log.durable_lsn() <= self.applied_lsn {
            self.store.log.applied(shard, self.applied_lsn);
            return Ok(());
        }
        let started = Instant::now();
        let mut last_report = started;
        let (mut frames, mut bytes, mut scanned) = (Vec::new(), 0u64, 0u64);
        let mut outcome = Ok(());
        log.scan(self.applied_lsn, |frame, len| {
            scanned += len;
            if frame.shard == shard {
                bytes += len;
                frames.push(frame);
            }
            if frames.len() >= 50_000 {
                outcome = self.apply_frames(std::mem::take(&mut frames));
                outcome.as_ref().map_err(|e| StorageError::Corrupt {
                    what: "log replay",
                    detail: e.to_string(),
                })?;
            }
            if last_report.elapsed() >= std::time::Duration::from_secs(1) {
                last_report = Instant::now();
                tracing::info!(
                    shard,
                    scanned_mib = format_args!("{:.1}", scanned as f64 / 1048576.0),
                    mib_per_s = format_args!(
                        "{:.0}",
                        scanned as f64 / 1048576.0 / started.elapsed().as_secs_f64()
                    ),
                    "replaying the log into the shard's data store"
                );
            }
            Ok(())
        })?;
        outcome?;
        let count = frames.len();
        self.apply_frames(frames)?;
        self.store.log.applied(shard, self.applied_lsn);
        if bytes > 0 || count > 0 {
            tracing::info!(
                shard,
                replayed_bytes = bytes,
                scanned_bytes = scanned,
                last_seq = self.last_seq,
                took_ms = started.elapsed().as_millis() as u64,
                "replayed the log into the shard's data store"
            );
        }
        Ok(())
    }

    /// Applies to the data store what the log holds of this shard past what it has applied
    /// (after a failed data-store commit).
    fn caught_up(&mut self) -> Result<(), StorageError> {
        if !self.behind {
            return Ok(());
        }
        let shard = self.store.id();
        let log = Arc::clone(&self.store.log);
        let mut frames = Vec::new();
        log.scan(self.applied_lsn, |frame, _| {
            if frame.shard == shard {
                frames.push(frame);
            }
            Ok(())
        })?;
        self.apply_frames(frames)?;
        self.behind = false;
        tracing::info!(
            shard,
            applied_lsn = self.applied_lsn,
            "the data store caught up with the log"
        );
        Ok(())
    }

    /// Applies frames read back from the log (replay) to the data store, in batches.
    fn apply_frames(&mut self, frames: Vec<StoredFrame>) -> Result<(), StorageError> {
        let mut batch = self.store.db().batch();
        let mut pending: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut in_batch = 0usize;
        let mut seq = self.last_seq;
        let mut keys = self.keys;
        let mut epochs = self.epochs.clone();
        let mut lsn = self.applied_lsn;
        let flush = |this: &mut Self,
                     batch: fjall::OwnedWriteBatch,
                     pending: &mut HashMap<Vec<u8>, Option<u64>>,
                     seq: u64,
                     keys: u64,
                     epochs: &EpochHistory,
                     lsn: u64|
         -> Result<(), StorageError> {
            let mut batch = batch;
            batch.insert(&this.store.meta, META_LAST_SEQ, seq.to_be_bytes());
            batch.insert(&this.store.meta, META_KEYS, keys.to_be_bytes());
            batch.insert(&this.store.meta, META_EPOCHS, encode_history(epochs)?);
            batch.insert(&this.store.meta, META_APPLIED, lsn.to_be_bytes());
            batch.commit()?;
            for (key, version) in pending.drain() {
                this.versions.record(key, version);
            }
            this.set_epochs(epochs.clone());
            this.last_seq = seq;
            this.keys = keys;
            this.applied_lsn = lsn;
            this.stats.keys.store(keys, Ordering::Relaxed);
            this.store.log.applied(this.store.id(), lsn);
            Ok(())
        };
        for frame in frames {
            match frame.kind {
                Kind::Entry => {
                    let record = LogRecord::decode(&frame.payload)?;
                    epochs
                        .note(record.epoch, frame.seq)
                        .map_err(|e| StorageError::Corrupt {
                            what: "log",
                            detail: e.to_string(),
                        })?;
                    seq = frame.seq;
                    self.stage(&mut batch, seq, record.op, &mut pending, &mut keys)?;
                    lsn = frame.lsn;
                    in_batch += 1;
                    if in_batch >= 10_000 {
                        flush(self, batch, &mut pending, seq, keys, &epochs, lsn)?;
                        batch = self.store.db().batch();
                        in_batch = 0;
                    }
                }
                Kind::Truncate | Kind::Reset | Kind::Loaded => {
                    flush(self, batch, &mut pending, seq, keys, &epochs, lsn)?;
                    in_batch = 0;
                    match frame.kind {
                        Kind::Truncate => {
                            let restore: TruncatePayload =
                                decode_payload(&frame.payload, "log truncation")?;
                            let restore = restore
                                .into_iter()
                                .map(|(k, s)| (k.into_vec(), s.map(|(v, b)| (v, b.into_vec()))))
                                .collect();
                            self.apply_truncate(frame.seq, restore, frame.lsn)?;
                        }
                        Kind::Reset => self.apply_reset(frame.lsn)?,
                        _ => {
                            let loaded: LoadedPayload =
                                decode_payload(&frame.payload, "log resync end")?;
                            let history = EpochHistory::new(loaded.epochs).map_err(|e| {
                                StorageError::Corrupt {
                                    what: "log resync end",
                                    detail: e.to_string(),
                                }
                            })?;
                            self.keys = loaded.keys;
                            self.apply_loaded(frame.seq, history, frame.lsn)?;
                        }
                    }
                    seq = self.last_seq;
                    keys = self.keys;
                    epochs = self.epochs.clone();
                    lsn = self.applied_lsn;
                    batch = self.store.db().batch();
                }
            }
        }
        if lsn != self.applied_lsn {
            flush(self, batch, &mut pending, seq, keys, &epochs, lsn)?;
        }
        self.history_restart();
        self.seq_tx.send_replace(self.last_seq);
        Ok(())
    }

    /// Checks `ops` against the shard and encodes what they write onto `arena`: the plan of
    /// the shard's part of a commit, or `None` when every op is answered already (refused, or
    /// nothing to write).
    fn plan(&mut self, ops: &mut Vec<WriteOp>, arena: &mut Vec<u8>) -> Option<Plan> {
        let shard = self.store.id();
        if let Err(e) = self.caught_up() {
            self.fail(ops, &refusal(shard, &e));
            return None;
        }
        if let Some(why) = self.space.refuses() {
            self.fail(
                ops,
                &KvError::DiskFull {
                    shard,
                    message: why,
                },
            );
            return None;
        }
        // Versions written earlier in this batch: key -> Some(version) or None (deleted).
        let mut pending: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
        let mut planned: Vec<Planned> = Vec::with_capacity(ops.len());
        let mut seq = self.last_seq;
        let mut keys = self.keys;
        let time_ms = now_ms();
        let fence = self.fence.load(Ordering::Acquire);
        let mut epochs = self.epochs.clone();

        for (i, op) in ops.iter().enumerate() {
            if op.epoch < fence || op.epoch < epochs.last_epoch() {
                // Admitted in an epoch this node has left: another master owns the writes now.
                results.push(Err(KvError::NotMaster {
                    master: None,
                    epoch: fence.max(epochs.last_epoch()),
                }));
                continue;
            }
            let key = op.kind.key();
            let current = match pending.get(key) {
                Some(v) => Ok(*v),
                None => self.versions.lookup(&self.store, key),
            };
            let current = match current {
                Ok(v) => v,
                Err(e) => {
                    results.push(Err(KvError::Storage {
                        shard,
                        message: e.to_string(),
                    }));
                    continue;
                }
            };
            let op_ref = match &op.kind {
                WriteKind::Put {
                    key,
                    value,
                    condition,
                } => {
                    match (condition, current) {
                        (PutCondition::IfVersion(want), actual) if actual != Some(*want) => {
                            results.push(Err(KvError::VersionMismatch {
                                expected: *want,
                                actual,
                            }));
                            continue;
                        }
                        (PutCondition::IfAbsent, Some(version)) => {
                            results.push(Err(KvError::AlreadyExists { version }));
                            continue;
                        }
                        _ => {}
                    }
                    if current.is_none() {
                        keys += 1;
                    }
                    LogOpRef::Put {
                        key: serde_bytes::Bytes::new(key),
                        value: serde_bytes::Bytes::new(value),
                    }
                }
                WriteKind::Delete { key } => {
                    if current.is_none() {
                        results.push(Ok(None));
                        continue;
                    }
                    keys -= 1;
                    LogOpRef::Delete {
                        key: serde_bytes::Bytes::new(key),
                    }
                }
            };
            seq += 1;
            if let Err(e) = epochs.note(op.epoch, seq) {
                tracing::error!(shard, error = %e, "a write out of epoch order; the batch is refused");
                self.fail(
                    ops,
                    &KvError::Storage {
                        shard,
                        message: e.to_string(),
                    },
                );
                return None;
            }
            let is_put = matches!(op_ref, LogOpRef::Put { .. });
            let start = arena.len();
            let record = LogRecordRef {
                epoch: op.epoch,
                time_ms,
                op: op_ref,
            };
            if let Err(e) = record.encode_into(arena) {
                // Cannot happen with bincode into a Vec; refuse the whole batch to be safe.
                tracing::error!(shard, error = %e, "cannot encode a log record");
                self.fail(ops, &refusal(shard, &e));
                return None;
            }
            planned.push(Planned {
                seq,
                op: i,
                start,
                end: arena.len(),
            });
            pending.insert(key.to_vec(), is_put.then_some(seq));
            results.push(Ok(Some(seq)));
        }

        if planned.is_empty() {
            for (op, result) in ops.drain(..).zip(results) {
                let _ = op.reply.send(result);
            }
            return None;
        }
        Some(Plan {
            results,
            planned,
            pending,
            seq,
            keys,
            epochs,
        })
    }

    /// Answers the ops of `plan` whose commit failed with `e` (a refused op keeps its answer).
    fn refuse(&mut self, plan: Plan, ops: &mut Vec<WriteOp>, e: &StorageError) {
        let refused = refusal(self.store.id(), e);
        for (op, result) in ops.drain(..).zip(plan.results) {
            let _ = op.reply.send(match result {
                Ok(Some(_)) => Err(refused.clone()),
                other => other,
            });
        }
    }

    /// The log holds `plan` up to `lsn`: applies it to the data store (no fsync), publishes it
    /// and answers every op.
    fn apply(&mut self, plan: Plan, ops: &mut Vec<WriteOp>, lsn: u64, started: Instant) {
        let shard = self.store.id();
        let Plan {
            mut results,
            planned,
            pending,
            seq,
            keys,
            epochs,
        } = plan;
        {
            let log_bytes: u64 = planned
                .iter()
                .map(|p| (p.end - p.start + log::HEADER + log::BODY_FIXED) as u64)
                .sum();
            // Durable in the log: now the data store, without its own fsync.
            let mut batch = self.store.db().batch();
            for p in &planned {
                match &ops[p.op].kind {
                    WriteKind::Put { key, value, .. } => {
                        batch.insert(&self.store.data, key.as_slice(), encode_data(p.seq, value));
                    }
                    WriteKind::Delete { key } => batch.remove(&self.store.data, key.as_slice()),
                }
            }
            batch.insert(&self.store.meta, META_LAST_SEQ, seq.to_be_bytes());
            batch.insert(&self.store.meta, META_KEYS, keys.to_be_bytes());
            batch.insert(&self.store.meta, META_APPLIED, lsn.to_be_bytes());
            let mut applied = true;
            if epochs != self.epochs {
                match encode_history(&epochs) {
                    Ok(raw) => batch.insert(&self.store.meta, META_EPOCHS, raw),
                    Err(_) => applied = false,
                }
            }
            if applied && let Err(e) = batch.commit() {
                tracing::error!(shard, error = %e, "the data store did not take a commit that is durable in the log; it is applied from the log before the next write");
                applied = false;
            }
            let written = planned.len() as u64;
            self.set_epochs(epochs);
            self.observe(written, started);
            if applied {
                self.applied_lsn = lsn;
                self.store.log.applied(shard, lsn);
                self.published(seq, keys, written, log_bytes);
                for (key, version) in pending {
                    self.versions.record(key, version);
                }
            } else {
                // The log has the writes: they are there after a restart, and applied from the
                // log before the next write; but they are not visible yet.
                self.behind = true;
                self.versions.clear();
                self.last_seq = seq;
                self.keys = keys;
                for r in &mut results {
                    if matches!(r, Ok(Some(_))) {
                        *r = Err(KvError::WriteOutcomeUnknown {
                            shard,
                            message: "the write is in the log, but the shard's data store \
                                      failed to take it"
                                .into(),
                        });
                    }
                }
            }
        }
        for (op, result) in ops.drain(..).zip(results) {
            // The caller may have gone (deadline); the write stands either way.
            let _ = op.reply.send(result);
        }
    }

    fn observe(&self, writes: u64, started: Instant) {
        if let Some(m) = &self.metrics {
            m.batch_size.observe(writes as f64);
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Makes a durable commit visible: counters, history, and the sequence watchers wait on.
    fn published(&mut self, seq: u64, keys: u64, written: u64, log_bytes: u64) {
        self.last_seq = seq;
        self.keys = keys;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.writes.fetch_add(written, Ordering::Relaxed);
        self.stats.keys.store(keys, Ordering::Relaxed);
        let total = self.stats.log_bytes.fetch_add(log_bytes, Ordering::Relaxed) + log_bytes;
        if let Ok(mut history) = self.history.lock() {
            if history.len() >= HISTORY_COMMITS {
                history.pop_front();
            }
            history.push_back((seq, total));
        }
        self.seq_tx.send_replace(seq);
    }

    fn replicate(&mut self, entries: Vec<LogEntry>) -> Result<u64, StorageError> {
        if entries.is_empty() {
            return Ok(self.last_seq);
        }
        let shard = self.store.id();
        let mut seq = self.last_seq;
        let mut epochs = self.epochs.clone();
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            if entry.seq != seq + 1 {
                return Err(StorageError::Corrupt {
                    what: "replicated log",
                    detail: format!("expected sequence {}, got {}", seq + 1, entry.seq),
                });
            }
            seq = entry.seq;
            let record = LogRecord::decode(&entry.record)?;
            epochs
                .note(record.epoch, seq)
                .map_err(|e| StorageError::Corrupt {
                    what: "replicated log",
                    detail: e.to_string(),
                })?;
            records.push(record);
        }
        if let Some(why) = self.space.refuses() {
            return Err(StorageError::DiskFull(why));
        }
        let frames: Vec<Frame<'_>> = entries
            .iter()
            .map(|e| Frame {
                shard,
                seq: e.seq,
                kind: Kind::Entry,
                payload: &e.record,
            })
            .collect();
        let started = Instant::now();
        let lsn = self.store.log.append(&frames)?;
        drop(frames);
        let log_bytes: u64 = entries.iter().map(|e| e.record.len() as u64).sum();
        let count = entries.len() as u64;
        let mut batch = self.store.db().batch();
        let mut pending: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut keys = self.keys;
        for (entry, record) in entries.iter().zip(records) {
            self.stage(&mut batch, entry.seq, record.op, &mut pending, &mut keys)?;
        }
        batch.insert(&self.store.meta, META_LAST_SEQ, seq.to_be_bytes());
        batch.insert(&self.store.meta, META_KEYS, keys.to_be_bytes());
        batch.insert(&self.store.meta, META_APPLIED, lsn.to_be_bytes());
        if epochs != self.epochs {
            batch.insert(&self.store.meta, META_EPOCHS, encode_history(&epochs)?);
        }
        if let Err(e) = batch.commit() {
            // Durable in the log; applied from it before the next change.
            self.behind = true;
            self.versions.clear();
            return Err(e.into());
        }
        self.set_epochs(epochs);
        self.observe(count, started);
        self.applied_lsn = lsn;
        self.store.log.applied(shard, lsn);
        self.published(seq, keys, count, log_bytes);
        for (key, version) in pending {
            self.versions.record(key, version);
        }
        Ok(seq)
    }

    /// Puts one log entry's operation at `seq` into `batch`, counting the key in `keys` and
    /// noting its version in `pending` (replicated entries and replay alike).
    fn stage(
        &mut self,
        batch: &mut fjall::OwnedWriteBatch,
        seq: u64,
        op: LogOp,
        pending: &mut HashMap<Vec<u8>, Option<u64>>,
        keys: &mut u64,
    ) -> Result<(), StorageError> {
        let (key, after) = match op {
            LogOp::Put { key, value } => {
                batch.insert(&self.store.data, key.as_slice(), encode_data(seq, &value));
                (key.into_vec(), true)
            }
            LogOp::Delete { key } => {
                batch.remove(&self.store.data, key.as_slice());
                (key.into_vec(), false)
            }
        };
        let before = match pending.get(&key) {
            Some(v) => v.is_some(),
            None => self.versions.lookup(&self.store, &key)?.is_some(),
        };
        match (before, after) {
            (false, true) => *keys += 1,
            (true, false) => *keys = keys.saturating_sub(1),
            _ => {}
        }
        pending.insert(key, after.then_some(seq));
        Ok(())
    }

    /// Remembered commits start over at the current sequence.
    fn history_restart(&self) {
        if let Ok(mut history) = self.history.lock() {
            history.clear();
            history.push_back((self.last_seq, self.stats.log_bytes.load(Ordering::Relaxed)));
        }
    }

    fn marker(&self, kind: Kind, seq: u64, payload: &[u8]) -> Result<u64, StorageError> {
        self.store.log.append(&[Frame {
            shard: self.store.id(),
            seq,
            kind,
            payload,
        }])
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        let lsn = self.marker(Kind::Reset, 0, &[])?;
        self.apply_reset(lsn)?;
        self.seq_tx.send_replace(0);
        Ok(())
    }

    /// The data-store side of a reset (live and in replay).
    fn apply_reset(&mut self, lsn: u64) -> Result<(), StorageError> {
        let mut batch = self
            .store
            .db()
            .batch()
            .durability(Some(PersistMode::SyncAll));
        batch.insert(&self.store.meta, META_RESYNC, [1u8]);
        batch.insert(&self.store.meta, META_LAST_SEQ, 0u64.to_be_bytes());
        batch.insert(&self.store.meta, META_KEYS, 0u64.to_be_bytes());
        batch.insert(
            &self.store.meta,
            META_EPOCHS,
            encode_history(&EpochHistory::default())?,
        );
        batch.insert(&self.store.meta, META_APPLIED, lsn.to_be_bytes());
        batch.commit()?;
        self.set_epochs(EpochHistory::default());
        self.versions.clear();
        self.store.data.clear()?;
        self.store.persist()?;
        self.last_seq = 0;
        self.keys = 0;
        self.applied_lsn = lsn;
        self.store.log.applied(self.store.id(), lsn);
        self.stats.keys.store(0, Ordering::Relaxed);
        self.history_restart();
        Ok(())
    }

    fn load(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let mut batch = self.store.db().batch();
        let n = entries.len() as u64;
        for e in entries {
            batch.insert(
                &self.store.data,
                e.key.into_vec(),
                encode_data(e.version, &e.value),
            );
        }
        self.keys += n;
        batch.insert(&self.store.meta, META_KEYS, self.keys.to_be_bytes());
        batch.commit()?;
        self.stats.keys.store(self.keys, Ordering::Relaxed);
        Ok(())
    }

    fn finish_load(&mut self, seq: u64, history: EpochHistory) -> Result<(), StorageError> {
        let history = history.up_to(seq);
        // The copy is durable before the log says it is complete.
        self.store.persist()?;
        let payload = encode_payload(
            &LoadedPayload {
                keys: self.keys,
                epochs: history.starts().to_vec(),
            },
            "log resync end",
        )?;
        let lsn = self.marker(Kind::Loaded, seq, &payload)?;
        self.apply_loaded(seq, history, lsn)?;
        self.seq_tx.send_replace(seq);
        Ok(())
    }

    /// The data-store side of the end of a full resync (live and in replay).
    fn apply_loaded(
        &mut self,
        seq: u64,
        history: EpochHistory,
        lsn: u64,
    ) -> Result<(), StorageError> {
        let mut batch = self.store.db().batch();
        batch.insert(&self.store.meta, META_LAST_SEQ, seq.to_be_bytes());
        batch.insert(&self.store.meta, META_KEYS, self.keys.to_be_bytes());
        batch.insert(&self.store.meta, META_EPOCHS, encode_history(&history)?);
        batch.insert(&self.store.meta, META_APPLIED, lsn.to_be_bytes());
        batch.remove(&self.store.meta, META_RESYNC);
        batch.commit()?;
        self.set_epochs(history);
        self.last_seq = seq;
        self.applied_lsn = lsn;
        self.store.log.applied(self.store.id(), lsn);
        self.stats.keys.store(self.keys, Ordering::Relaxed);
        self.history_restart();
        Ok(())
    }

    fn set_epochs(&mut self, epochs: EpochHistory) {
        if epochs != self.epochs {
            match self.shared_epochs.lock() {
                Ok(mut h) => h.clone_from(&epochs),
                Err(p) => p.into_inner().clone_from(&epochs),
            }
            self.epochs = epochs;
        }
    }

    /// See [`WriterHandle::truncate`].
    fn truncate(&mut self, to: u64, last: u64, restore: Vec<Restore>) -> Result<(), StorageError> {
        if last != self.last_seq {
            return Err(StorageError::Corrupt {
                what: "truncation",
                detail: format!(
                    "the shard moved to {} since its entries up to {last} were saved; read again",
                    self.last_seq
                ),
            });
        }
        if to >= self.last_seq {
            return Ok(());
        }
        let payload: TruncatePayload = restore
            .iter()
            .map(|(k, s)| {
                (
                    ByteBuf::from(k.clone()),
                    s.as_ref().map(|(v, b)| (*v, ByteBuf::from(b.clone()))),
                )
            })
            .collect();
        let lsn = self.marker(
            Kind::Truncate,
            to,
            &encode_payload(&payload, "log truncation")?,
        )?;
        self.apply_truncate(to, restore, lsn)?;
        self.seq_tx.send_replace(to);
        Ok(())
    }

    /// The data-store side of a truncation (live and in replay).
    fn apply_truncate(
        &mut self,
        to: u64,
        restore: Vec<Restore>,
        lsn: u64,
    ) -> Result<(), StorageError> {
        let mut batch = self.store.db().batch();
        let mut keys = self.keys;
        let mut pending = Vec::with_capacity(restore.len());
        for (key, state) in restore {
            let before = self.versions.lookup(&self.store, &key)?.is_some();
            match &state {
                Some((version, value)) => {
                    batch.insert(
                        &self.store.data,
                        key.as_slice(),
                        encode_data(*version, value),
                    );
                }
                None => batch.remove(&self.store.data, key.as_slice()),
            }
            match (before, state.is_some()) {
                (false, true) => keys += 1,
                (true, false) => keys = keys.saturating_sub(1),
                _ => {}
            }
            pending.push((key, state.map(|(v, _)| v)));
        }
        let epochs = self.epochs.up_to(to);
        batch.insert(&self.store.meta, META_LAST_SEQ, to.to_be_bytes());
        batch.insert(&self.store.meta, META_KEYS, keys.to_be_bytes());
        batch.insert(&self.store.meta, META_EPOCHS, encode_history(&epochs)?);
        batch.insert(&self.store.meta, META_APPLIED, lsn.to_be_bytes());
        batch.commit()?;
        for (key, version) in pending {
            self.versions.record(key, version);
        }
        self.set_epochs(epochs);
        self.last_seq = to;
        self.keys = keys;
        self.applied_lsn = lsn;
        self.store.log.applied(self.store.id(), lsn);
        self.stats.keys.store(keys, Ordering::Relaxed);
        self.history_restart();
        Ok(())
    }

    fn fail(&self, ops: &mut Vec<WriteOp>, error: &KvError) {
        for op in ops.drain(..) {
            let _ = op.reply.send(Err(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::Log;

    fn put(key: &str, value: &str, condition: PutCondition) -> WriteKind {
        WriteKind::Put {
            key: key.into(),
            value: value.into(),
            condition,
        }
    }

    /// One entry of a full-resync page: key `a` = `1` at version 7.
    fn page_entry() -> Entry {
        Entry {
            key: ByteBuf::from(b"a".to_vec()),
            value: ByteBuf::from(b"1".to_vec()),
            version: 7,
        }
    }

    fn fence(epoch: u64) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(epoch))
    }

    /// The shard store of `dir` (shard 0 of a one-shard node, its log in `dir/log`).
    fn store(dir: &std::path::Path) -> Arc<ShardStore> {
        let (log, _) =
            Log::open(&dir.join("log"), 1, 8 << 20, true, |_, _| {}).expect("open the log");
        let path = dir.join("store");
        let db = crate::storage::shard::open_db(&path).expect("open the database");
        Arc::new(ShardStore::open(&db, &path, 0, Arc::new(log)).expect("open"))
    }

    fn spawn(store: &Arc<ShardStore>, fence: Arc<AtomicU64>) -> WriterHandle {
        let space = Arc::new(DiskSpace::new(store.path.as_path(), 0));
        WriterHandle::spawn(Arc::clone(store), None, fence, space).expect("spawn")
    }

    fn open(dir: &std::path::Path) -> (Arc<ShardStore>, WriterHandle) {
        let store = store(dir);
        let writer = spawn(&store, fence(1));
        (store, writer)
    }

    #[tokio::test]
    async fn versions_conditions_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        assert_eq!(
            w.submit(put("a", "1", PutCondition::None), 1).await,
            Ok(Some(1))
        );
        assert_eq!(
            w.submit(put("a", "2", PutCondition::IfVersion(1)), 1).await,
            Ok(Some(2))
        );
        assert_eq!(
            w.submit(put("a", "3", PutCondition::IfVersion(1)), 1).await,
            Err(KvError::VersionMismatch {
                expected: 1,
                actual: Some(2)
            })
        );
        assert_eq!(
            w.submit(put("a", "4", PutCondition::IfAbsent), 1).await,
            Err(KvError::AlreadyExists { version: 2 })
        );
        assert_eq!(
            w.submit(put("b", "x", PutCondition::IfAbsent), 1).await,
            Ok(Some(3))
        );
        assert_eq!(store.get(b"a").expect("get"), Some((2, b"2".to_vec())));
        assert_eq!(
            w.submit(WriteKind::Delete { key: "a".into() }, 1).await,
            Ok(Some(4))
        );
        assert_eq!(
            w.submit(WriteKind::Delete { key: "a".into() }, 1).await,
            Ok(None)
        );
        assert_eq!(w.stats().keys.load(Ordering::Relaxed), 1);
        assert_eq!(*w.last_seq().borrow(), 4);
        w.close().await;
        assert_eq!(store.counters().expect("counters"), (4, 1));
    }

    #[tokio::test]
    async fn a_write_after_the_close_is_refused_as_shutting_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        w.submit(put("a", "1", PutCondition::None), 1)
            .await
            .expect("put");
        w.close().await;
        assert_eq!(
            w.submit(put("b", "1", PutCondition::None), 1).await,
            Err(KvError::ShuttingDown)
        );
        assert_eq!(store.get(b"b").expect("get"), None);
    }

    #[tokio::test]
    async fn versions_stay_exact_across_a_reset_and_replicated_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        // The writer now remembers k at version 1.
        assert_eq!(
            w.submit(put("k", "v", PutCondition::None), 1).await,
            Ok(Some(1))
        );
        // A full resync empties the shard; k must count as a new key again.
        w.reset().await.expect("reset");
        let record = |op: LogOp| {
            LogRecord {
                epoch: 1,
                time_ms: 0,
                op,
            }
            .encode()
            .expect("encode")
        };
        let entry = |seq, op| LogEntry {
            seq,
            record: ByteBuf::from(record(op)),
        };
        let k = || ByteBuf::from(b"k".to_vec());
        w.replicate(vec![
            entry(
                1,
                LogOp::Put {
                    key: k(),
                    value: ByteBuf::from(b"a".to_vec()),
                },
            ),
            entry(
                2,
                LogOp::Put {
                    key: k(),
                    value: ByteBuf::from(b"b".to_vec()),
                },
            ),
        ])
        .await
        .expect("replicate");
        assert_eq!(w.stats().keys.load(Ordering::Relaxed), 1);
        w.replicate(vec![entry(3, LogOp::Delete { key: k() })])
            .await
            .expect("delete");
        assert_eq!(w.stats().keys.load(Ordering::Relaxed), 0);
        // And a gap is refused.
        assert!(
            w.replicate(vec![entry(5, LogOp::Delete { key: k() })])
                .await
                .is_err()
        );
        w.close().await;
        assert_eq!(store.counters().expect("counters"), (3, 0));
    }

    #[tokio::test]
    async fn an_interrupted_full_resync_is_still_marked_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, w) = open(dir.path());
            w.submit(put("old", "v", PutCondition::None), 1)
                .await
                .expect("put");
            w.reset().await.expect("reset");
            w.load(vec![page_entry()]).await.expect("load");
            // The process dies here, before `finish_load`.
            w.close().await;
            assert!(store.resync_pending().expect("marker"));
        }
        let (store, w) = open(dir.path());
        assert!(
            store.resync_pending().expect("marker"),
            "the restart knows the copy is incomplete"
        );
        assert_eq!(
            store.get(b"old").expect("get"),
            None,
            "the shard was emptied before the copy"
        );
        w.reset().await.expect("reset again");
        w.load(vec![page_entry()]).await.expect("load");
        w.finish_load(9, EpochHistory::default())
            .await
            .expect("finish");
        assert!(!store.resync_pending().expect("marker"));
        assert_eq!(store.get(b"a").expect("get"), Some((7, b"1".to_vec())));
        assert_eq!(*w.last_seq().borrow(), 9);
        w.close().await;
        assert_eq!(store.counters().expect("counters"), (9, 1));
    }

    #[test]
    fn the_version_cache_starts_over_when_full() {
        let mut c = VersionCache::default();
        c.record(b"a".to_vec(), Some(1));
        c.record(b"a".to_vec(), Some(2));
        assert_eq!(c.get(b"a"), Some(Some(2)));
        assert_eq!(c.bytes, 1 + VERSION_CACHE_ENTRY_COST, "a key counts once");
        let big = vec![0u8; VERSION_CACHE_BYTES - 10];
        c.record(big, None);
        assert_eq!(c.get(b"a"), None, "full: it started over");
        assert_eq!(c.map.len(), 1);
    }

    #[tokio::test]
    async fn a_batch_sees_its_own_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        let w = Arc::new(w);
        // Queue many conditional writes at once: exactly one if_absent may win per key.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let w = Arc::clone(&w);
            tasks.push(tokio::spawn(async move {
                w.submit(put(&format!("k{}", i % 10), "v", PutCondition::IfAbsent), 1)
                    .await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.expect("join").is_ok() {
                wins += 1;
            }
        }
        assert_eq!(wins, 10);
        assert_eq!(store.counters().expect("counters"), (10, 10));
        assert!(w.stats().commits.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn a_lost_data_store_is_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (_, w) = open(dir.path());
            for i in 0..20 {
                w.submit(put(&format!("k{i}"), "v", PutCondition::None), 1)
                    .await
                    .expect("put");
            }
            w.submit(WriteKind::Delete { key: "k3".into() }, 1)
                .await
                .expect("delete");
            w.close().await;
        }
        // The data store is gone (its unsynced journal lost, say): the log has every write.
        std::fs::remove_dir_all(dir.path().join("store")).expect("remove");
        let (store, w) = open(dir.path());
        assert_eq!(store.counters().expect("counters"), (21, 19));
        assert_eq!(store.get(b"k7").expect("get"), Some((8, b"v".to_vec())));
        assert_eq!(store.get(b"k3").expect("get"), None);
        assert_eq!(
            w.submit(put("k0", "new", PutCondition::IfVersion(1)), 1)
                .await,
            Ok(Some(22))
        );
        w.close().await;
    }

    #[tokio::test]
    async fn records_carry_their_epoch_and_the_history_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fence = fence(1);
        {
            let store = store(dir.path());
            let w = spawn(&store, Arc::clone(&fence));
            w.submit(put("a", "1", PutCondition::None), 1)
                .await
                .expect("put");
            w.submit(put("b", "1", PutCondition::None), 1)
                .await
                .expect("put");
            // The node moved to epoch 3 (say, a promotion): a write admitted in 1 is refused.
            fence.store(3, Ordering::Release);
            assert_eq!(
                w.submit(put("c", "1", PutCondition::None), 1).await,
                Err(KvError::NotMaster {
                    master: None,
                    epoch: 3
                })
            );
            assert_eq!(
                w.submit(put("c", "1", PutCondition::None), 3).await,
                Ok(Some(3))
            );
            assert_eq!(w.last_pos(), LogPos { epoch: 3, seq: 3 });
            let log = store.read_log(0, 3, usize::MAX, 10).expect("log");
            let epochs: Vec<u64> = log
                .iter()
                .map(|e| LogRecord::decode(&e.record).expect("record").epoch)
                .collect();
            assert_eq!(epochs, vec![1, 1, 3]);
            w.close().await;
        }
        let store = store(dir.path());
        let w = spawn(&store, fence);
        let starts: Vec<(u64, u64)> = w
            .epochs()
            .starts()
            .iter()
            .map(|s| (s.epoch, s.first_seq))
            .collect();
        assert_eq!(starts, vec![(1, 1), (3, 3)]);
        assert_eq!((w.epoch_at(2), w.epoch_at(3)), (1, 3));
        // The writer never writes behind its history, even when the fence is lower.
        w.submit(put("d", "1", PutCondition::None), 3)
            .await
            .expect("put");
        w.close().await;
    }

    #[tokio::test]
    async fn a_legacy_shard_is_all_epoch_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        w.submit(put("a", "1", PutCondition::None), 1)
            .await
            .expect("put");
        w.close().await;
        // A shard written before epochs existed has no history key.
        store.meta.remove(META_EPOCHS).expect("remove");
        assert_eq!(
            store.epoch_history(1).expect("history"),
            EpochHistory::legacy(1)
        );
        assert_eq!(EpochHistory::legacy(1).epoch_at(1), 1);
    }

    #[tokio::test]
    async fn truncation_undoes_the_entries_after_a_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, w) = open(dir.path());
        w.submit(put("a", "1", PutCondition::None), 1)
            .await
            .expect("1");
        w.submit(put("b", "1", PutCondition::None), 1)
            .await
            .expect("2");
        // Entries 3..=5 are the ones a new master never had.
        w.submit(put("a", "2", PutCondition::None), 1)
            .await
            .expect("3");
        w.submit(put("c", "1", PutCondition::None), 1)
            .await
            .expect("4");
        w.submit(WriteKind::Delete { key: "b".into() }, 1)
            .await
            .expect("5");
        assert_eq!(w.stats().keys.load(Ordering::Relaxed), 2);
        assert!(
            w.truncate(2, 4, Vec::new()).await.is_err(),
            "the shard is at 5, not 4: refused"
        );
        w.truncate(
            2,
            5,
            vec![
                (b"a".to_vec(), Some((1, b"1".to_vec()))),
                (b"b".to_vec(), Some((2, b"1".to_vec()))),
                (b"c".to_vec(), None),
            ],
        )
        .await
        .expect("truncate");
        assert_eq!(*w.last_seq().borrow(), 2);
        assert_eq!(store.get(b"a").expect("a"), Some((1, b"1".to_vec())));
        assert_eq!(store.get(b"b").expect("b"), Some((2, b"1".to_vec())));
        assert_eq!(store.get(b"c").expect("c"), None);
        assert_eq!(
            store.read_log(0, 10, usize::MAX, 100).expect("log").len(),
            2
        );
        assert_eq!(w.stats().keys.load(Ordering::Relaxed), 2);
        // The shard goes on from 2, and the version cache knows a is at 1 again.
        assert_eq!(
            w.submit(put("a", "x", PutCondition::IfVersion(1)), 1).await,
            Ok(Some(3))
        );
        w.close().await;
        assert_eq!(store.counters().expect("counters"), (3, 2));
    }
}
