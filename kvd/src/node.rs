//! The node: a cheap-to-clone handle over the shards, the configuration and the lifecycle
//! state. The RPC layer (`rpc.rs`) is a thin adapter over these methods.
//!
//! Reads go straight to a shard's store; writes go through the shard's writer. Every request
//! holds an [`InFlight`] guard so shutdown can wait for the requests it already accepted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, Digest, Entry, JoinReply, JoinRequest, KvError, MputRequest, NodeStatus,
    PullReply, PullRequest, PutRequest, Role, ScanPage, ScanRequest, ShardStatus, SnapshotPage,
    SnapshotRequest, Version, Versioned,
    limits::{DEFAULT_SCAN_LIMIT, MAX_BATCH_KEYS, MAX_SCAN_LIMIT, scan_page_bytes},
    routing::shard_for,
};

use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    metrics::Metrics,
    replication::{MAX_PULL_WAIT_MS, MasterState, PULL_MAX_ENTRIES, ReplicaState},
    storage::{NodeMeta, ShardStore, StorageError, WriteKind, WriterHandle, meta::DirLock},
};

/// A handle to the node; clones share everything.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    role: RoleState,
    /// Fires at shutdown: long polls and followers stop waiting.
    cancel: CancellationToken,
    cfg: Config,
    meta: NodeMeta,
    /// Keeps other processes off the data directory while the node lives.
    _lock: DirLock,
    shards: Vec<Shard>,
    started: Instant,
    advertised: std::sync::OnceLock<String>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    idle: tokio::sync::Notify,
    /// Keys read since start (get, mget, scan), for the read rate operators see.
    reads: AtomicU64,
}

/// What differs between a master and a replica.
enum RoleState {
    Master(MasterState),
    Replica(ReplicaState),
}

/// One shard: its store (reads) and its writer (every write).
pub struct Shard {
    /// The store.
    pub store: Arc<ShardStore>,
    /// The writer.
    pub writer: WriterHandle,
}

/// Counts a request as in flight until dropped.
pub struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last request in flight ended: wake a shutdown waiting in `drain` (cheap when
            // nobody waits).
            self.0.idle.notify_waiters();
        }
    }
}

/// Runs storage work on the blocking pool, off the async workers; a storage error, or a panic
/// of the task, becomes a `Storage` error naming the shard.
async fn blocking<T: Send + 'static>(
    shard: u32,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KvError::Storage {
            shard,
            message: e.to_string(),
        })?
        .map_err(storage_err(shard))
}

fn storage_err(shard: u32) -> impl Fn(StorageError) -> KvError {
    move |e| KvError::Storage {
        shard,
        message: e.to_string(),
    }
}

impl Node {
    /// Opens the data directory and every shard (replaying their journals) and starts the
    /// shard writers.
    ///
    /// # Errors
    /// When the directory is locked, made for another shard count, or a shard fails to open.
    pub fn open(cfg: Config, metrics: Arc<Metrics>) -> Result<Self, StorageError> {
        let (meta, lock) = NodeMeta::open(&cfg.data_dir, cfg.shards)?;
        let mut shards = Vec::with_capacity(cfg.shards as usize);
        let mut resyncing = Vec::with_capacity(cfg.shards as usize);
        for id in 0..cfg.shards {
            let store = Arc::new(ShardStore::open(
                &NodeMeta::shard_dir(&cfg.data_dir, id),
                id,
            )?);
            resyncing.push(store.resync_pending()?);
            let writer = WriterHandle::spawn(
                Arc::clone(&store),
                cfg.sync,
                cfg.log_retention,
                Some(metrics.shard(id)),
            )?;
            shards.push(Shard { store, writer });
        }
        let role = match &cfg.master {
            Some(master) => RoleState::Replica(ReplicaState::new(master.clone(), &resyncing)),
            None => RoleState::Master(MasterState::new(cfg.shards, cfg.replica_timeout)),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                metrics,
                role,
                cancel: CancellationToken::new(),
                cfg,
                meta,
                _lock: lock,
                shards,
                started: Instant::now(),
                advertised: std::sync::OnceLock::new(),
                shutting_down: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                reads: AtomicU64::new(0),
            }),
        })
    }

    /// The address this node advertises.
    #[must_use]
    pub fn advertised(&self) -> String {
        self.inner.advertised.get().cloned().unwrap_or_default()
    }

    /// The node's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// On a replica, per shard: operations behind the master's sequence as of the last pull.
    #[must_use]
    pub fn replica_lag(&self) -> Vec<u64> {
        match &self.inner.role {
            RoleState::Master(_) => Vec::new(),
            RoleState::Replica(r) => (0..self.inner.cfg.shards)
                .map(|i| {
                    let applied = self
                        .inner
                        .shards
                        .get(i as usize)
                        .map_or(0, |s| *s.writer.last_seq().borrow());
                    r.shard(i).map_or(0, |s| {
                        s.master_seq.load(Ordering::Relaxed).saturating_sub(applied)
                    })
                })
                .collect(),
        }
    }

    /// Whether the node can do its job: a master whose storage is open always can; a replica
    /// needs its master link up, no shard in a full resync, and every shard within
    /// `--ready-max-lag` operations of the master.
    ///
    /// # Errors
    /// A short reason when it cannot.
    pub fn readiness(&self) -> Result<(), String> {
        let RoleState::Replica(r) = &self.inner.role else {
            return Ok(());
        };
        let link = r.link();
        if link.state != shared::LinkState::Up {
            let secs = crate::replication::unix_ms().saturating_sub(link.since_unix_ms) / 1000;
            return Err(format!(
                "master link to {} down for {secs}s: {}",
                link.master,
                link.last_error
                    .unwrap_or_else(|| "not connected yet".into())
            ));
        }
        for i in 0..self.inner.cfg.shards {
            if r.shard(i)
                .is_some_and(|s| s.resyncing.load(Ordering::Acquire))
            {
                return Err(format!("shard {i} is being copied by a full resync"));
            }
        }
        let max = self.inner.cfg.ready_max_lag;
        for (i, lag) in self.replica_lag().into_iter().enumerate() {
            if lag > max {
                return Err(format!(
                    "shard {i} is {lag} operations behind the master (--ready-max-lag {max})"
                ));
            }
        }
        Ok(())
    }

    /// The role.
    #[must_use]
    pub fn role(&self) -> Role {
        match self.inner.role {
            RoleState::Master(_) => Role::Master,
            RoleState::Replica(_) => Role::Replica,
        }
    }

    /// Fires when the node shuts down.
    #[must_use]
    pub fn cancelled(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Runs the role's background work until shutdown: a replica's replication (whose error
    /// means the master refused this replica for good), a master's sweep of silent replicas.
    ///
    /// # Errors
    /// The master's refusal of this replica.
    pub async fn run_background(&self) -> Result<(), KvError> {
        let cancel = self.inner.cancel.clone();
        match &self.inner.role {
            RoleState::Replica(state) => {
                crate::replication::replica::run(self.clone(), state, cancel).await
            }
            RoleState::Master(state) => {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        _ = tick.tick() => state.sweep(),
                    }
                }
            }
        }
    }

    /// Records the address this node advertises (known once the listener is bound).
    pub fn set_advertised(&self, address: String) {
        let _ = self.inner.advertised.set(address);
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The node id from the data directory.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.inner.meta.node_id
    }

    /// Admits a request, or refuses it once shutdown began.
    ///
    /// # Errors
    /// `ShuttingDown` after [`Node::begin_shutdown`].
    pub fn admit(&self) -> Result<InFlight<'_>, KvError> {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(&self.inner);
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(KvError::ShuttingDown);
        }
        Ok(guard)
    }

    /// Refuses new requests from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.cancel.cancel();
    }

    /// Waits until no admitted request is running, or `timeout` passes; returns how many remain.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let idle = async {
            loop {
                let woken = self.inner.idle.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                woken.await;
            }
        };
        // On timeout the caller learns how many are still running.
        let _ = tokio::time::timeout(timeout, idle).await;
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Lets every writer finish its queue, syncs every shard and stops the writers.
    pub async fn close_storage(&self) {
        for shard in &self.inner.shards {
            shard.writer.close().await;
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        let max = self.inner.cfg.max_key_bytes;
        if key.len() > max {
            return Err(KvError::KeyTooLarge {
                len: key.len() as u64,
                max: max as u64,
            });
        }
        Ok(())
    }

    fn shard(&self, key: &[u8]) -> &Shard {
        let n = self.inner.shards.len();
        let i = shard_for(key, u32::try_from(n).unwrap_or(u32::MAX)) as usize;
        // shard_for returns a value below n.
        &self.inner.shards[i.min(n - 1)]
    }

    /// The shard that owns `key`.
    #[must_use]
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        shard_for(key, self.inner.cfg.shards)
    }

    /// Shard number `id`.
    ///
    /// # Errors
    /// `NoSuchShard` when out of range.
    pub fn shard_at(&self, id: u32) -> Result<&Shard, KvError> {
        self.inner
            .shards
            .get(id as usize)
            .ok_or(KvError::NoSuchShard {
                shard: id,
                shards: self.inner.cfg.shards,
            })
    }

    fn master_state(&self) -> Result<&MasterState, KvError> {
        match &self.inner.role {
            RoleState::Master(m) => Ok(m),
            RoleState::Replica(r) => Err(KvError::NotMaster {
                master: Some(r.master.to_string()),
            }),
        }
    }

    fn writable(&self) -> Result<&MasterState, KvError> {
        self.master_state()
    }

    /// Refuses reads of a shard a full resync is copying.
    fn readable(&self, shard: u32) -> Result<(), KvError> {
        if let RoleState::Replica(r) = &self.inner.role
            && r.shard(shard)
                .is_some_and(|s| s.resyncing.load(Ordering::Acquire))
        {
            return Err(KvError::ShardUnavailable {
                shard,
                reason: "a full resync from the master is copying it".into(),
            });
        }
        Ok(())
    }

    /// Reads a key.
    ///
    /// # Errors
    /// An invalid key or a storage failure.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, KvError> {
        self.check_key(key)?;
        let shard = self.shard(key);
        self.readable(shard.store.id())?;
        let found = shard
            .store
            .get(key)
            .map_err(storage_err(shard.store.id()))?;
        self.inner.reads.fetch_add(1, Ordering::Relaxed);
        Ok(found.map(|(version, value)| Versioned {
            value: ByteBuf::from(value),
            version,
        }))
    }

    /// Writes a key once its condition holds; answers when durable.
    ///
    /// # Errors
    /// Invalid sizes, a failed condition, `NotMaster` on a replica, or a storage failure.
    pub async fn put(&self, req: PutRequest) -> Result<Version, KvError> {
        let master = self.writable()?;
        self.check_key(&req.key)?;
        let max = self.inner.cfg.max_value_bytes;
        if req.value.len() > max {
            return Err(KvError::ValueTooLarge {
                len: req.value.len() as u64,
                max: max as u64,
            });
        }
        let shard = self.shard(&req.key);
        let kind = WriteKind::Put {
            key: req.key.into_vec(),
            value: req.value.into_vec(),
            condition: req.condition,
        };
        let seq = shard.writer.submit(kind).await?;
        let seq = seq.ok_or_else(|| KvError::Storage {
            shard: shard.store.id(),
            message: "a put was not given a version".into(),
        })?;
        if let Some((acks, timeout)) = self.acks_wanted(req.acks, req.acks_timeout_ms) {
            master
                .wait_acks(shard.store.id(), seq, acks, timeout)
                .await?;
        }
        Ok(seq)
    }

    /// The acknowledgements a write waits for and how long: its own figures, else the master's
    /// defaults; `None` when it waits for none.
    fn acks_wanted(&self, acks: u32, timeout_ms: u32) -> Option<(u32, Duration)> {
        let acks = if acks > 0 {
            acks
        } else {
            self.inner.cfg.min_acks
        };
        let timeout = match timeout_ms {
            0 => self.inner.cfg.acks_timeout,
            ms => Duration::from_millis(u64::from(ms)),
        };
        (acks > 0).then_some((acks, timeout))
    }

    /// Reads many keys, in the order asked.
    ///
    /// # Errors
    /// Too many keys, an invalid key, or a storage failure.
    pub fn mget(&self, keys: &[ByteBuf]) -> Result<Vec<Option<Versioned>>, KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::InvalidArgument(format!(
                "mget asks for {} keys; the limit is {MAX_BATCH_KEYS} per call",
                keys.len()
            )));
        }
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Writes many keys: all are checked first, then every shard's writer gets its share at
    /// once, so they share group commits. Answers once all are durable (and acknowledged by
    /// the replicas asked for).
    ///
    /// # Errors
    /// Too many keys, an invalid key or value (nothing is written then), `NotMaster` on a
    /// replica, a storage failure, or too few acknowledgements.
    pub async fn mput(&self, req: MputRequest) -> Result<Vec<Version>, KvError> {
        let master = self.writable()?;
        if req.entries.len() > MAX_BATCH_KEYS {
            return Err(KvError::InvalidArgument(format!(
                "mput carries {} keys; the limit is {MAX_BATCH_KEYS} per call",
                req.entries.len()
            )));
        }
        let max = self.inner.cfg.max_value_bytes;
        for kv in &req.entries {
            self.check_key(&kv.key)?;
            if kv.value.len() > max {
                return Err(KvError::ValueTooLarge {
                    len: kv.value.len() as u64,
                    max: max as u64,
                });
            }
        }
        let writes = req.entries.into_iter().map(|kv| {
            let shard = self.shard(&kv.key);
            let kind = WriteKind::Put {
                key: kv.key.into_vec(),
                value: kv.value.into_vec(),
                condition: shared::PutCondition::None,
            };
            async move { (shard.store.id(), shard.writer.submit(kind).await) }
        });
        let mut versions = Vec::new();
        let mut highest: Vec<u64> = vec![0; self.inner.shards.len()];
        for (shard, result) in futures::future::join_all(writes).await {
            let version = result?.ok_or_else(|| KvError::Storage {
                shard,
                message: "a put was not given a version".into(),
            })?;
            if let Some(h) = highest.get_mut(shard as usize) {
                *h = (*h).max(version);
            }
            versions.push(version);
        }
        if let Some((acks, timeout)) = self.acks_wanted(req.acks, req.acks_timeout_ms) {
            let deadline = Instant::now() + timeout;
            for (shard, seq) in (0u32..).zip(highest) {
                if seq > 0 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    master.wait_acks(shard, seq, acks, left).await?;
                }
            }
        }
        Ok(versions)
    }

    /// Deletes a key; `None` when it was absent.
    ///
    /// # Errors
    /// An invalid key, `NotMaster` on a replica, or a storage failure.
    pub async fn delete(&self, key: Vec<u8>) -> Result<Option<Version>, KvError> {
        self.writable()?;
        self.check_key(&key)?;
        self.shard(&key)
            .writer
            .submit(WriteKind::Delete { key })
            .await
    }

    /// One page of keys in order across every shard.
    ///
    /// # Errors
    /// A prefix longer than the key limit, or a storage failure.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanPage, KvError> {
        for id in 0..self.inner.cfg.shards {
            self.readable(id)?;
        }
        let max = self.inner.cfg.max_key_bytes;
        for bytes in std::iter::once(&req.prefix).chain(req.start_after.as_ref()) {
            if bytes.len() > max {
                return Err(KvError::KeyTooLarge {
                    len: bytes.len() as u64,
                    max: max as u64,
                });
            }
        }
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.scan_blocking(&req))
            .await
            .map_err(|e| KvError::InvalidArgument(format!("scan failed: {e}")))?
    }

    fn scan_blocking(&self, req: &ScanRequest) -> Result<ScanPage, KvError> {
        let limit = match req.limit {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(MAX_SCAN_LIMIT),
        } as usize;
        let budget = scan_page_bytes(self.inner.cfg.max_key_bytes, self.inner.cfg.max_value_bytes);
        let mut all: Vec<Entry> = Vec::new();
        let mut any_more = false;
        for shard in &self.inner.shards {
            let part = shard
                .store
                .scan(
                    &req.prefix,
                    req.start_after.as_deref().map(|b| &b[..]),
                    limit,
                    req.keys_only,
                    budget,
                )
                .map_err(storage_err(shard.store.id()))?;
            any_more |= part.more;
            all.extend(part.entries);
        }
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        // Keep a prefix of the merged order within the entry and byte limits.
        let mut bytes = 0usize;
        let mut keep = 0usize;
        for e in &all {
            if keep >= limit || (bytes >= budget && keep > 0) {
                break;
            }
            bytes += e.key.len() + e.value.len();
            keep += 1;
        }
        let truncated = keep < all.len();
        all.truncate(keep);
        let next = if truncated || any_more {
            all.last().map(|e| e.key.clone())
        } else {
            None
        };
        self.inner
            .reads
            .fetch_add(all.len() as u64, Ordering::Relaxed);
        Ok(ScanPage { entries: all, next })
    }

    /// The node's role, address and shard figures.
    #[must_use]
    pub fn status(&self) -> NodeStatus {
        let cfg = &self.inner.cfg;
        let shards = self
            .inner
            .shards
            .iter()
            .map(|s| {
                let id = s.store.id();
                let repl = match &self.inner.role {
                    RoleState::Replica(r) => r.shard(id),
                    RoleState::Master(_) => None,
                };
                ShardStatus {
                    shard: id,
                    keys: s.writer.stats().keys.load(Ordering::Relaxed),
                    last_seq: *s.writer.last_seq().borrow(),
                    disk_bytes: s.store.disk_bytes(),
                    resyncing: repl.is_some_and(|r| r.resyncing.load(Ordering::Acquire)),
                    partial_resyncs: repl.map_or(0, |r| r.partial_resyncs.load(Ordering::Relaxed)),
                    full_resyncs: repl.map_or(0, |r| r.full_resyncs.load(Ordering::Relaxed)),
                }
            })
            .collect();
        NodeStatus {
            node_id: self.inner.meta.node_id.clone(),
            role: if cfg.master.is_some() {
                Role::Replica
            } else {
                Role::Master
            },
            address: self.inner.advertised.get().cloned().unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            reads: self.inner.reads.load(Ordering::Relaxed),
            sync: cfg.sync,
            max_key_bytes: cfg.max_key_bytes as u64,
            max_value_bytes: cfg.max_value_bytes as u64,
            shards,
            master_link: match &self.inner.role {
                RoleState::Replica(r) => Some(r.link()),
                RoleState::Master(_) => None,
            },
        }
    }

    /// The master's view of the cluster.
    ///
    /// # Errors
    /// `NotMaster` on a replica.
    pub fn cluster_status(&self) -> Result<ClusterStatus, KvError> {
        let master = self.master_state()?;
        let replicas = master.status(
            |shard| {
                self.inner
                    .shards
                    .get(shard as usize)
                    .map_or(0, |s| *s.writer.last_seq().borrow())
            },
            |shard, seq| {
                self.inner
                    .shards
                    .get(shard as usize)
                    .map_or(0, |s| s.writer.bytes_after(seq))
            },
        );
        Ok(ClusterStatus {
            master: self.status(),
            replicas,
        })
    }

    /// Registers a replica (master only).
    ///
    /// # Errors
    /// `NotMaster` on a replica; the registry's refusals.
    pub fn join(&self, req: &JoinRequest) -> Result<JoinReply, KvError> {
        self.master_state()?
            .join(req, self.node_id(), &self.advertised())
    }

    /// Serves a follower's long poll (master only).
    ///
    /// # Errors
    /// `NotMaster` on a replica, `NotJoined`, `NoSuchShard`, or a storage failure.
    pub async fn pull(&self, req: PullRequest) -> Result<PullReply, KvError> {
        let master = self.master_state()?;
        let shard = self.shard_at(req.shard)?;
        let mut changes = shard.writer.last_seq();
        let master_seq = *changes.borrow_and_update();
        let note = master.record_pull(&req.node_id, req.shard, req.from_seq, master_seq)?;
        let resync = |first: Option<u64>| PullReply::FullResyncNeeded {
            first_seq: first.unwrap_or(master_seq + 1),
            master_seq,
        };
        if req.from_seq > master_seq {
            // The replica has writes this master does not: histories diverged.
            return Ok(resync(
                shard
                    .store
                    .first_log_seq()
                    .map_err(storage_err(req.shard))?,
            ));
        }
        if req.from_seq == master_seq {
            let wait = Duration::from_millis(u64::from(req.wait_ms.min(MAX_PULL_WAIT_MS)));
            tokio::select! {
                _ = tokio::time::timeout(wait, changes.changed()) => {}
                () = self.inner.cancel.cancelled() => {}
            }
        }
        // Only what is published: a batch is readable in the engine a moment before its
        // sequence is published, and a replica must never get ahead of the master's sequence.
        let now_seq = *shard.writer.last_seq().borrow();
        let store = Arc::clone(&shard.store);
        let (from, max_bytes) = (req.from_seq, req.max_bytes as usize);
        let entries = blocking(req.shard, move || {
            store.read_log(from, now_seq, max_bytes, PULL_MAX_ENTRIES)
        })
        .await?;
        let gap = match entries.first() {
            Some(e) => e.seq != from + 1,
            None => now_seq > from,
        };
        if gap {
            // Trimmed past the replica's position.
            return Ok(resync(
                shard
                    .store
                    .first_log_seq()
                    .map_err(storage_err(req.shard))?,
            ));
        }
        if note.first_since_join && from > 0 {
            master.count_partial(&req.node_id, req.shard);
            tracing::info!(node_id = %req.node_id, shard = req.shard, from_seq = from, master_seq = now_seq, "replica resumes by partial resync");
        }
        Ok(PullReply::Entries {
            entries,
            master_seq: now_seq,
        })
    }

    /// Serves a page of a full-resync copy (master only).
    ///
    /// # Errors
    /// `NotMaster` on a replica, `NotJoined`, `ResyncExpired`, or a storage failure.
    pub async fn snapshot(&self, req: SnapshotRequest) -> Result<SnapshotPage, KvError> {
        let master = self.master_state()?;
        let shard = self.shard_at(req.shard)?;
        let (snap, seq) = match &req.start_after {
            None => {
                let (snap, seq) = shard.store.snapshot().map_err(storage_err(req.shard))?;
                master.start_copy(&req.node_id, req.shard, snap.clone(), seq)?;
                (snap, seq)
            }
            Some(_) => master.copy(&req.node_id, req.shard)?,
        };
        let store = Arc::clone(&shard.store);
        let max = (req.max_bytes as usize).clamp(64 * 1024, 16 * 1024 * 1024);
        let after = req.start_after.map(serde_bytes::ByteBuf::into_vec);
        let (entries, next) = blocking(req.shard, move || {
            store.snapshot_page(&snap, after.as_deref(), max)
        })
        .await?;
        if next.is_none() {
            master.end_copy(&req.node_id, req.shard);
        }
        Ok(SnapshotPage { seq, entries, next })
    }

    /// The digest of a shard now.
    ///
    /// # Errors
    /// `NoSuchShard`, a shard being copied, or a storage failure.
    pub async fn digest_now(&self, shard: u32) -> Result<Digest, KvError> {
        self.readable(shard)?;
        let store = Arc::clone(&self.shard_at(shard)?.store);
        blocking(shard, move || {
            let (snap, seq) = store.snapshot()?;
            let (keys, hash) = store.digest(&snap)?;
            Ok(Digest {
                shard,
                seq,
                keys,
                hash: format!("{hash:032x}"),
            })
        })
        .await
    }

    /// The digest of a shard, now or exactly at `at_seq` (a replica waits up to `wait` to get
    /// there and holds its follower at that point meanwhile).
    ///
    /// # Errors
    /// `SequenceUnavailable` when the shard is past `at_seq` or does not reach it in time.
    pub async fn digest(
        &self,
        shard: u32,
        at_seq: Option<u64>,
        wait: Duration,
    ) -> Result<Digest, KvError> {
        self.shard_at(shard)?;
        match (at_seq, &self.inner.role) {
            (None, _) => self.digest_now(shard).await,
            (Some(seq), RoleState::Replica(state)) => {
                crate::replication::replica::digest_at(self, state, shard, seq, wait).await
            }
            (Some(seq), RoleState::Master(_)) => {
                let d = self.digest_now(shard).await?;
                if d.seq == seq {
                    Ok(d)
                } else {
                    Err(KvError::SequenceUnavailable {
                        shard,
                        current: d.seq,
                        requested: seq,
                    })
                }
            }
        }
    }
}
