//! The node: a cheap-to-clone handle over the shards, the configuration, the cluster state and
//! the lifecycle state. The RPC layer (`rpc.rs`) is a thin adapter over these methods.
//!
//! Reads go straight to a shard's store; writes pass the cluster's write gate (which says
//! whether this node is the master, in which epoch) and go through the shard's writer. Every
//! request holds an [`InFlight`] guard so shutdown can wait for the requests it already accepted.
//!
//! The role is not decided here: `cluster/` owns it (the state machine and its runtime), and
//! the node only reads its view. The master's registry and the replica's state both live as
//! long as the node, since the role changes at run time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, Digest, Entry, JoinReply, JoinRequest, KvError, MputRequest, NodeStatus,
    PullReply, PullRequest, PutRequest, Role, ScanPage, ScanRequest, ShardStatus, SnapshotPage,
    SnapshotRequest, Version, Versioned,
    cluster::{FIRST_EPOCH, Member},
    limits::{DEFAULT_SCAN_LIMIT, MAX_BATCH_KEYS, MAX_SCAN_LIMIT, scan_page_bytes},
    routing::shard_for,
};

use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{
        Cluster,
        persist::ClusterFile,
        runtime,
        state::{Event, Gate},
    },
    config::Config,
    metrics::Metrics,
    replication::{
        MAX_PULL_WAIT_MS, MasterState, PULL_MAX_ENTRIES, ReplicaState, replica::ReplicaShard,
    },
    storage::{NodeMeta, ShardStore, StorageError, WriteKind, WriterHandle, meta::DirLock},
};

/// A handle to the node; clones share everything.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    /// Tokens and roles (`--auth-file`).
    auth: crate::auth::Auth,
    /// What this node presents to the others.
    peer_creds: shared::transport::Credentials,
    /// Role, epoch, membership: the one owner of "is this node the master?".
    cluster: Cluster,
    /// The registry of replicas, used while this node is master.
    master: MasterState,
    /// The follower's state, used while this node is a replica.
    replica: ReplicaState,
    /// Fires at shutdown: long polls and followers stop waiting.
    cancel: CancellationToken,
    cfg: Config,
    meta: NodeMeta,
    /// Keeps other processes off the data directory while the node lives.
    _lock: DirLock,
    shards: Vec<Shard>,
    /// The node's one log (journal and replication log of every shard).
    log: Arc<crate::storage::log::Log>,
    /// Refuses writes while the disk is nearly full.
    space: Arc<crate::storage::DiskSpace>,
    started: Instant,
    advertised: String,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    idle: tokio::sync::Notify,
    /// Keys read since start (get, mget, scan), for the read rate operators see.
    reads: AtomicU64,
    /// Set when the node must stop (a master refused this replica for good).
    fatal: std::sync::Mutex<Option<KvError>>,
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
    crate::blocking::run(work)
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
    /// Opens the data directory and every shard (replaying their journals), starts the shard
    /// writers, and loads the cluster state; `advertised` is the address the node is reached at.
    /// The role starts with [`Node::run_background`].
    ///
    /// # Errors
    /// When the directory is locked, made for another shard count, or a shard or
    /// `cluster.json` fails to open.
    pub fn open(
        cfg: Config,
        metrics: Arc<Metrics>,
        advertised: String,
    ) -> Result<Self, StorageError> {
        let auth = crate::auth::Auth::open(cfg.auth_file.as_deref()).map_err(|detail| {
            StorageError::Corrupt {
                what: "--auth-file",
                detail,
            }
        })?;
        let (mut meta, lock) = NodeMeta::open(&cfg.data_dir, cfg.shards, cfg.data_dir_is_default)?;
        if meta.format < crate::storage::meta::FORMAT {
            crate::storage::migrate::run(&cfg.data_dir, &mut meta, cfg.log_retention)?;
        } else {
            crate::storage::migrate::remove_format1_shards(&cfg.data_dir, cfg.shards);
        }
        let log = Arc::new(crate::storage::open_log(
            &cfg.data_dir,
            cfg.shards,
            cfg.log_retention,
            cfg.sync == shared::SyncPolicy::Always,
        )?);
        let space = Arc::new(crate::storage::DiskSpace::new(
            &cfg.data_dir,
            crate::storage::reserve_for(&log),
        ));
        let fence = Arc::new(AtomicU64::new(0));
        let mut shards = Vec::with_capacity(cfg.shards as usize);
        let mut resyncing = Vec::with_capacity(cfg.shards as usize);
        let mut has_data = false;
        let mut stores = Vec::with_capacity(cfg.shards as usize);
        let store_dir = NodeMeta::store_dir(&cfg.data_dir);
        let db = crate::storage::shard::open_db(&store_dir)?;
        for id in 0..cfg.shards {
            let store = Arc::new(ShardStore::open(&db, &store_dir, id, Arc::clone(&log))?);
            resyncing.push(store.resync_pending()?);
            stores.push((store, Some(metrics.shard(id))));
        }
        let keep: Vec<Arc<ShardStore>> = stores.iter().map(|(s, _)| Arc::clone(s)).collect();
        let writers = WriterHandle::spawn_all(stores, Arc::clone(&fence), Arc::clone(&space))?;
        for (store, writer) in keep.into_iter().zip(writers) {
            has_data |= *writer.last_seq().borrow() > 0;
            shards.push(Shard { store, writer });
        }
        let me = Member {
            node_id: meta.node_id.clone(),
            address: advertised.clone(),
        };
        let file = Self::cluster_file(&cfg, &me, has_data)?;
        let seed = cfg.master.as_ref().map(ToString::to_string);
        let cluster = Cluster::new(
            me,
            cfg.data_dir.clone(),
            file,
            seed,
            fence,
            cfg.auto_failover,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                metrics,
                auth,
                peer_creds: shared::transport::Credentials {
                    token: cfg.peer_token.as_ref().map(|s| s.0.clone()),
                    tls: cfg.peer_tls.clone(),
                },
                cluster,
                master: MasterState::new(cfg.shards, cfg.replica_timeout),
                replica: ReplicaState::new(&resyncing),
                cancel: CancellationToken::new(),
                cfg,
                meta,
                _lock: lock,
                shards,
                log,
                space,
                started: Instant::now(),
                advertised,
                shutting_down: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                reads: AtomicU64::new(0),
                fatal: std::sync::Mutex::new(None),
            }),
        })
    }

    /// `cluster.json` as the node starts with it: as stored; or, the first time, a new cluster
    /// of one for a master (epoch 1, also for a data directory written before epochs existed)
    /// and an empty state for a replica, which learns it from its master.
    fn cluster_file(
        cfg: &Config,
        me: &Member,
        has_data: bool,
    ) -> Result<ClusterFile, StorageError> {
        let mut file = match ClusterFile::load(&cfg.data_dir)? {
            Some(file) => {
                if file
                    .master
                    .as_ref()
                    .is_some_and(|m| m.node_id == me.node_id)
                    && cfg.master.is_some()
                {
                    tracing::warn!(
                        epoch = file.epoch,
                        "this node is the master of its epoch (cluster.json), so --replica and --master are not followed"
                    );
                } else if let (Some(m), None) = (&file.master, &cfg.master)
                    && m.node_id != me.node_id
                {
                    tracing::info!(
                        epoch = file.epoch,
                        master = %m.address,
                        "this node is a replica of the master of its epoch (cluster.json), though started as a master"
                    );
                }
                file
            }
            None if cfg.master.is_none() => {
                let mut file = ClusterFile::empty();
                let id = crate::random::uuid().to_string();
                tracing::info!(
                    cluster_id = %id,
                    upgraded = has_data,
                    "a new cluster: this node is its master at epoch 1"
                );
                file.cluster_id = Some(id);
                file.epoch = FIRST_EPOCH;
                file.master = Some(me.clone());
                file.established = true;
                file
            }
            None => ClusterFile::empty(),
        };
        let mut changed = file.upsert(me);
        if file
            .master
            .as_ref()
            .is_some_and(|m| m.node_id == me.node_id && m.address != me.address)
        {
            file.master = Some(me.clone());
            changed = true;
        }
        if changed || !ClusterFile::path(&cfg.data_dir).exists() {
            file.save(&cfg.data_dir)?;
        }
        Ok(file)
    }

    /// The cluster state: role, epoch, membership, the write gate.
    #[must_use]
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The master's registry of replicas.
    #[must_use]
    pub fn master(&self) -> &MasterState {
        &self.inner.master
    }

    /// The replica's state.
    #[must_use]
    pub fn replica(&self) -> &ReplicaState {
        &self.inner.replica
    }

    /// A local shard and its replication state.
    ///
    /// # Errors
    /// `NoSuchShard` when out of range.
    pub fn replica_shard(&self, shard: u32) -> Result<(&Shard, &ReplicaShard), KvError> {
        let local = self.shard_at(shard)?;
        let repl = self
            .inner
            .replica
            .shard(shard)
            .ok_or(KvError::NoSuchShard {
                shard,
                shards: self.inner.cfg.shards,
            })?;
        Ok((local, repl))
    }

    /// Time since the process started.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// What this node presents to the other nodes: `--master-token-file`, and TLS with
    /// `--master-ca`.
    #[must_use]
    pub fn peer_credentials(&self) -> &shared::transport::Credentials {
        &self.inner.peer_creds
    }

    /// Tokens and roles (`--auth-file`).
    #[must_use]
    pub fn auth(&self) -> &crate::auth::Auth {
        &self.inner.auth
    }

    /// This node's monotonic clock: nanoseconds since it started (the lease's timestamps).
    #[must_use]
    pub fn clock_ns(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// On a master in automatic failover that has replicas: how long its lease still runs
    /// (zero: ended). `None` where no lease applies (manual mode, a replica, a master alone).
    #[must_use]
    pub fn lease_left(&self) -> Option<Duration> {
        self.lease().map(|(left, _)| left)
    }

    /// Replicas a majority needs besides this master, where a lease applies (a master in
    /// automatic failover with three members or more).
    fn lease_quorum(&self) -> Option<usize> {
        if !self.inner.cfg.auto_failover || self.role() != Role::Master {
            return None;
        }
        // With fewer than three members no election can happen (a majority of two is both),
        // so nothing needs the old master to stop: it keeps serving without a lease.
        let members = self.inner.cluster.file().members.len().max(1);
        if members < 3 {
            return None;
        }
        Some((members / 2 + 1).saturating_sub(1))
    }

    /// The lease: how long it still runs, and how long ago it ended (one of them zero).
    fn lease(&self) -> Option<(Duration, Duration)> {
        let needed = self.lease_quorum()?;
        let length = crate::cluster::lease::length(self.inner.cfg.failover_timeout);
        let end = crate::cluster::lease::end(&self.inner.master.confirmations(), needed, length);
        let now = self.clock_ns();
        Some(match end {
            Some(e) if e > now => (Duration::from_nanos(e - now), Duration::ZERO),
            Some(e) => (Duration::ZERO, Duration::from_nanos(now - e)),
            None => (Duration::ZERO, self.uptime()),
        })
    }

    /// Refuses a write or a read of a master whose lease ended (auto failover).
    fn check_lease(&self) -> Result<(), KvError> {
        if crate::cluster::lease::ignored() {
            return Ok(());
        }
        match self.lease() {
            Some((left, ago)) if left.is_zero() => Err(KvError::NoLease {
                epoch: self.inner.cluster.view().epoch,
                since_ms: u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
            }),
            _ => Ok(()),
        }
    }

    /// Where a lease applies: waits until everything `shards` held when a read was taken is on
    /// a majority, so that no read answers what a new master may not have (a write still
    /// waiting for its acknowledgements, an `acks=0` write not yet pulled). Without writes in
    /// flight it returns at once; it gives up, with `NoLease`, when the lease ends.
    async fn committed(&self, shards: impl IntoIterator<Item = u32>) -> Result<(), KvError> {
        let Some(needed) = self.lease_quorum() else {
            return Ok(());
        };
        if crate::cluster::lease::ignored() {
            return Ok(());
        }
        let needed = u32::try_from(needed).unwrap_or(u32::MAX);
        for id in shards {
            let Some(shard) = self.inner.shards.get(id as usize) else {
                continue;
            };
            let seq = *shard.writer.last_seq().borrow();
            if self.inner.master.acked(id, seq) >= needed {
                continue;
            }
            let left = self.lease_left().unwrap_or_default();
            if self
                .inner
                .master
                .wait_acks(id, seq, needed, left)
                .await
                .is_err()
            {
                self.check_lease()?;
                return Err(KvError::NoLease {
                    epoch: self.inner.cluster.view().epoch,
                    since_ms: 0,
                });
            }
        }
        Ok(())
    }

    /// Stops the node with `error` (a master refused this replica for good).
    pub fn fail(&self, error: KvError) {
        *self
            .inner
            .fatal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
        self.inner.cancel.cancel();
    }

    /// The address this node advertises.
    #[must_use]
    pub fn advertised(&self) -> String {
        self.inner.advertised.clone()
    }

    /// The node's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// On a replica, per shard: operations behind the master's sequence as of the last pull.
    #[must_use]
    pub fn replica_lag(&self) -> Vec<u64> {
        let r = &self.inner.replica;
        match self.role() {
            Role::Master => Vec::new(),
            Role::Replica => (0..self.inner.cfg.shards)
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
        if let Some((_, reason)) = self.storage_problem() {
            return Err(reason);
        }
        let view = self.inner.cluster.view();
        if view.role == Role::Master {
            return match view.gate {
                Gate::Open => Ok(()),
                _ => Err(format!(
                    "the master of epoch {} does not admit writes yet (a switchover, or it is \
                     asking its replicas for their epoch)",
                    view.epoch
                )),
            };
        }
        let r = &self.inner.replica;
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

    /// The role now.
    #[must_use]
    pub fn role(&self) -> Role {
        self.inner.cluster.role()
    }

    /// Fires when the node shuts down.
    #[must_use]
    pub fn cancelled(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Starts the node's role (as `cluster.json` and the flags say) and runs until shutdown.
    ///
    /// # Errors
    /// The master's refusal of this replica for good (shard count, duplicate id).
    pub async fn run_background(&self) -> Result<(), KvError> {
        runtime::start(self).await;
        tokio::spawn(Self::keep_log(
            Arc::clone(&self.inner.log),
            self.inner
                .shards
                .iter()
                .map(|s| Arc::clone(&s.store))
                .collect(),
            self.inner.cancel.child_token(),
        ));
        if self.inner.cfg.auto_failover {
            let node = self.clone();
            let cancel = self.inner.cancel.child_token();
            tokio::spawn(crate::cluster::election::run(node, cancel));
        }
        self.inner.cancel.cancelled().await;
        let fatal = self
            .inner
            .fatal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Why the node's storage cannot take writes, if it cannot: `("disk_full", why)` while the
    /// disk is nearly full (it recovers by itself once space is freed), `("log_failed", why)`
    /// after a failed write or fsync of the log (it needs a restart).
    #[must_use]
    pub fn storage_problem(&self) -> Option<(&'static str, String)> {
        if let Some(why) = self.inner.log.broken() {
            return Some((
                "log_failed",
                format!("a write or fsync of the log failed ({why}); restart kvd"),
            ));
        }
        self.inner.space.refuses().map(|why| ("disk_full", why))
    }

    /// The node's log.
    #[must_use]
    pub fn log(&self) -> &crate::storage::log::Log {
        &self.inner.log
    }

    /// Keeps the log within its retention and a spare segment ready, off the commit path.
    async fn keep_log(
        log: Arc<crate::storage::log::Log>,
        stores: Vec<Arc<ShardStore>>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None::<String>;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (log, stores) = (Arc::clone(&log), stores.clone());
            let done = crate::blocking::run(move || crate::storage::maintain(&log, &stores)).await;
            let error = match done {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if error != last_error {
                match &error {
                    Some(e) => tracing::warn!(error = %e, "log upkeep failed; it is tried again"),
                    None if last_error.is_some() => tracing::info!("log upkeep works again"),
                    None => {}
                }
                last_error = error;
            }
        }
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

    /// Stops the role's tasks, lets every writer finish its queue, syncs every shard and stops
    /// the writers.
    pub async fn close_storage(&self) {
        if self.role() == Role::Master {
            runtime::save_last_seen(self).await;
        }
        self.inner.cluster.stop_tasks().await;
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

    /// Runs `read` only as the master, and answers only if this node is still the master of the
    /// same epoch afterwards (a master deposed while it read answers `NotMaster`, not what it
    /// held as a master). The master reads of the client library (`ReadFrom::Master`).
    ///
    /// # Errors
    /// `NotMaster` naming the master as this node knows it, or the read's own error.
    pub async fn as_master<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        let before = self.inner.cluster.view();
        if before.role != Role::Master {
            return Err(self.not_master());
        }
        let out = read.await?;
        let after = self.inner.cluster.view();
        if after.role != Role::Master || after.epoch != before.epoch {
            return Err(self.not_master());
        }
        Ok(out)
    }

    fn not_master(&self) -> KvError {
        let view = self.inner.cluster.view();
        KvError::NotMaster {
            // Before its first join a replica knows its master only by the address it follows.
            master: view
                .master
                .map(|m| m.address)
                .or_else(|| self.inner.cluster.following()),
            epoch: view.epoch,
        }
    }

    fn master_state(&self) -> Result<&MasterState, KvError> {
        match self.role() {
            Role::Master => Ok(&self.inner.master),
            Role::Replica => Err(self.not_master()),
        }
    }

    /// Admits a write at the cluster's gate (it may wait out a pause), in the epoch it is
    /// admitted in.
    async fn admit_write(&self) -> Result<crate::cluster::gate::Ticket<'_>, KvError> {
        let ticket = self
            .inner
            .cluster
            .gate()
            .admit()
            .await
            .map_err(|e| self.named(e))?;
        self.check_lease()?;
        Ok(ticket)
    }

    /// A refusal from the writer or the gate without the master's address gets the one the
    /// node knows.
    fn named(&self, e: KvError) -> KvError {
        match e {
            KvError::NotMaster { master: None, .. } => self.not_master(),
            other => other,
        }
    }

    /// Refuses reads of a shard a full resync is copying.
    fn readable(&self, shard: u32) -> Result<(), KvError> {
        if self
            .inner
            .replica
            .shard(shard)
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
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, KvError> {
        self.check_lease()?;
        let found = self.get_unleased(key)?;
        self.committed([self.shard(key).store.id()]).await?;
        // Checked again once read: a master frozen in between must not answer stale data.
        self.check_lease()?;
        Ok(found)
    }

    fn get_unleased(&self, key: &[u8]) -> Result<Option<Versioned>, KvError> {
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
        let ticket = self.admit_write().await?;
        let seq = shard
            .writer
            .submit(kind, ticket.epoch)
            .await
            .map_err(|e| self.named(e))?;
        drop(ticket);
        let seq = seq.ok_or_else(|| KvError::Storage {
            shard: shard.store.id(),
            message: "a put was not given a version".into(),
        })?;
        if let Some((acks, timeout)) = self.acks_wanted(req.acks, req.acks_timeout_ms) {
            // Boxed: only writes that ask for acks carry its state.
            Box::pin(
                self.inner
                    .master
                    .wait_acks(shard.store.id(), seq, acks, timeout),
            )
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
    pub async fn mget(&self, keys: &[ByteBuf]) -> Result<Vec<Option<Versioned>>, KvError> {
        self.check_lease()?;
        let found = self.mget_unleased(keys)?;
        let shards: std::collections::BTreeSet<u32> =
            keys.iter().map(|k| self.shard(k).store.id()).collect();
        self.committed(shards).await?;
        self.check_lease()?;
        Ok(found)
    }

    /// `mget` whatever the lease: for a replica's truncation (`restore_mget`).
    ///
    /// # Errors
    /// Too many keys, an invalid key, or a storage failure.
    pub fn mget_unleased(&self, keys: &[ByteBuf]) -> Result<Vec<Option<Versioned>>, KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::InvalidArgument(format!(
                "mget asks for {} keys; the limit is {MAX_BATCH_KEYS} per call",
                keys.len()
            )));
        }
        keys.iter().map(|k| self.get_unleased(k)).collect()
    }

    /// Writes many keys: all are checked first, then every shard's writer gets its share at
    /// once, so they share group commits. Answers once all are durable (and acknowledged by
    /// the replicas asked for).
    ///
    /// # Errors
    /// Too many keys, an invalid key or value (nothing is written then), `NotMaster` on a
    /// replica, a storage failure, or too few acknowledgements.
    pub async fn mput(&self, req: MputRequest) -> Result<Vec<Version>, KvError> {
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
        let ticket = self.admit_write().await?;
        let epoch = ticket.epoch;
        let writes = req.entries.into_iter().map(|kv| {
            let shard = self.shard(&kv.key);
            let kind = WriteKind::Put {
                key: kv.key.into_vec(),
                value: kv.value.into_vec(),
                condition: shared::PutCondition::None,
            };
            async move { (shard.store.id(), shard.writer.submit(kind, epoch).await) }
        });
        let results = futures::future::join_all(writes).await;
        drop(ticket);
        let mut versions = Vec::new();
        let mut highest: Vec<u64> = vec![0; self.inner.shards.len()];
        for (shard, result) in results {
            let version = result
                .map_err(|e| self.named(e))?
                .ok_or_else(|| KvError::Storage {
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
                    self.inner.master.wait_acks(shard, seq, acks, left).await?;
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
        self.check_key(&key)?;
        let ticket = self.admit_write().await?;
        let result = self
            .shard(&key)
            .writer
            .submit(WriteKind::Delete { key }, ticket.epoch)
            .await;
        drop(ticket);
        result.map_err(|e| self.named(e))
    }

    /// One page of keys in order across every shard.
    ///
    /// # Errors
    /// A prefix longer than the key limit, or a storage failure.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanPage, KvError> {
        self.check_lease()?;
        let page = self.scan_unleased(req).await?;
        self.committed(0..self.inner.cfg.shards).await?;
        self.check_lease()?;
        Ok(page)
    }

    async fn scan_unleased(&self, req: ScanRequest) -> Result<ScanPage, KvError> {
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
        crate::blocking::run(move || node.scan_blocking(&req))
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
        let view = self.inner.cluster.view();
        let shards = self
            .inner
            .shards
            .iter()
            .map(|s| {
                let id = s.store.id();
                let repl = self.inner.replica.shard(id);
                let pos = s.writer.last_pos();
                ShardStatus {
                    shard: id,
                    keys: s.writer.stats().keys.load(Ordering::Relaxed),
                    last_seq: pos.seq,
                    disk_bytes: s.store.disk_bytes(),
                    resyncing: repl.is_some_and(|r| r.resyncing.load(Ordering::Acquire)),
                    partial_resyncs: repl.map_or(0, |r| r.partial_resyncs.load(Ordering::Relaxed)),
                    full_resyncs: repl.map_or(0, |r| r.full_resyncs.load(Ordering::Relaxed)),
                    last_epoch: pos.epoch,
                    master_seq: if view.role == Role::Master {
                        pos.seq
                    } else {
                        repl.map_or(0, |r| r.master_seq.load(Ordering::Relaxed))
                    },
                }
            })
            .collect();
        let file = self.inner.cluster.file();
        NodeStatus {
            node_id: self.inner.meta.node_id.clone(),
            role: view.role,
            cluster_id: file.cluster_id.clone().unwrap_or_default(),
            epoch: view.epoch,
            master: view.master.clone(),
            writable: view.role == Role::Master
                && view.gate == Gate::Open
                && self.lease_left().is_none_or(|l| !l.is_zero()),
            failover: shared::cluster::FailoverStatus {
                mode: if cfg.auto_failover { "auto" } else { "manual" }.into(),
                timeout_ms: u64::try_from(cfg.failover_timeout.as_millis()).unwrap_or(u64::MAX),
                lease_ms: self
                    .lease_left()
                    .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
                election: self.inner.cluster.election(),
                note: match file.members.len() {
                    _ if !cfg.auto_failover => None,
                    0 | 1 => Some("no other member known yet: nobody to elect".to_string()),
                    2 => Some(
                        "two members: a majority is both, so it never elects a new master on its \
                         own"
                        .to_string(),
                    ),
                    _ => None,
                },
            },
            last_failover: file.last_failover,
            storage: shared::StorageStatus {
                log_disk_bytes: self.inner.log.disk_bytes(),
                log_retention_bytes: self.inner.log.retention(),
                log_segment_bytes: self.inner.log.segment_bytes(),
                store_journal_bytes: self
                    .inner
                    .shards
                    .first()
                    .map_or(0, |s| s.store.journal_bytes()),
                problem: self.storage_problem().map(|(_, why)| why),
            },
            address: self.inner.advertised.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            reads: self.inner.reads.load(Ordering::Relaxed),
            sync: cfg.sync,
            max_key_bytes: cfg.max_key_bytes as u64,
            max_value_bytes: cfg.max_value_bytes as u64,
            shards,
            master_link: match view.role {
                Role::Replica => Some(self.inner.replica.link()),
                Role::Master => None,
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

    /// Hears the epoch a peer's request carries: a higher one is adopted (a master steps down).
    async fn hear(&self, epoch: u64) -> Result<(), KvError> {
        if epoch > self.inner.cluster.view().epoch {
            runtime::handle(
                self,
                Event::Heard {
                    epoch,
                    master: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Registers a replica (master only) and adds it to the persisted membership.
    ///
    /// # Errors
    /// `NotMaster` on a replica; `ClusterMismatch` for a replica of another cluster; the
    /// registry's refusals; `DuplicateNode` when another live node answers as that node id.
    pub async fn join(&self, req: &JoinRequest) -> Result<JoinReply, KvError> {
        self.hear(req.epoch).await?;
        let master = self.master_state()?;
        let mine = self.inner.cluster.cluster_id().unwrap_or_default();
        if let Some(theirs) = &req.cluster_id
            && *theirs != mine
        {
            tracing::warn!(
                node_id = %req.node_id,
                address = %req.address,
                replica_cluster = %theirs,
                "refused a replica of another cluster"
            );
            return Err(KvError::ClusterMismatch {
                master: self.advertised(),
                master_cluster: mine,
                replica_cluster: theirs.clone(),
            });
        }
        if let Some(old) = master.check_join(req, self.node_id(), &self.advertised())? {
            // Who is at the old address? The same node id there is a copied data directory; no
            // answer, or another node, means the replica moved.
            match crate::cluster::peers::status(
                self.peer_credentials(),
                &old,
                Duration::from_secs(1),
            )
            .await
            {
                Ok(s) if s.node_id == req.node_id => {
                    return Err(KvError::DuplicateNode {
                        node_id: req.node_id.clone(),
                        existing: old,
                    });
                }
                _ => tracing::info!(
                    node_id = %req.node_id,
                    from = %old,
                    to = %req.address,
                    "replica came back at a new address"
                ),
            }
        }
        master.join(req);
        let member = Member {
            node_id: req.node_id.clone(),
            address: req.address.clone(),
        };
        let before = self.inner.cluster.file().members_version;
        let file = self
            .inner
            .cluster
            .update_file(|f| f.upsert(&member))
            .await?;
        if file.members_version != before {
            runtime::handle(self, Event::Members(file.member_list())).await?;
        }
        let view = self.inner.cluster.view();
        Ok(JoinReply {
            master_id: self.node_id().to_string(),
            master_address: self.advertised(),
            cluster_id: mine,
            epoch: view.epoch,
            members: file.member_list(),
        })
    }

    /// Serves a follower's long poll (master only), or a promotion candidate's catch-up (any
    /// node). The entry at `from_seq` must be of `from_epoch` here too, else the answer is
    /// `Diverged` with this shard's epoch history.
    ///
    /// # Errors
    /// `NotMaster` on a replica, `NotJoined`, `NoSuchShard`, or a storage failure.
    pub async fn pull(&self, req: PullRequest) -> Result<PullReply, KvError> {
        self.hear(req.epoch).await?;
        let master = if req.catch_up {
            None
        } else {
            let view = self.inner.cluster.view();
            if view.role == Role::Master && !view.serving {
                return Err(KvError::NotReady {
                    reason: format!(
                        "this node is taking epoch {} and first catches up from the members that \
                         accepted it",
                        view.epoch
                    ),
                });
            }
            Some(self.master_state()?)
        };
        let shard = self.shard_at(req.shard)?;
        let mut changes = shard.writer.last_seq();
        let master_seq = *changes.borrow_and_update();
        let epoch = self.inner.cluster.view().epoch;
        if req.from_seq > master_seq || shard.writer.epoch_at(req.from_seq) != req.from_epoch {
            // Not the same history: acknowledge nothing, and say where the epochs begin here.
            if let Some(m) = master {
                m.record_diverged(&req.node_id, req.shard)?;
            }
            tracing::info!(
                node_id = %req.node_id,
                shard = req.shard,
                from = %shared::cluster::LogPos { epoch: req.from_epoch, seq: req.from_seq },
                here = %shared::cluster::LogPos { epoch: shard.writer.epoch_at(req.from_seq.min(master_seq)), seq: master_seq },
                "the replica's history diverged from this node's"
            );
            return Ok(PullReply::Diverged {
                history: shard.writer.epochs().starts().to_vec(),
                master_seq,
                epoch,
            });
        }
        let note = match master {
            Some(m) => {
                let note = m.record_pull(&req.node_id, req.shard, req.from_seq, master_seq)?;
                m.confirm(&req.node_id, req.confirms);
                Some(note)
            }
            None => None,
        };
        let resync = |first: Option<u64>| PullReply::FullResyncNeeded {
            first_seq: first.unwrap_or(master_seq + 1),
            master_seq,
            epoch,
        };
        if req.from_seq == master_seq && req.wait_ms > 0 {
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
        if note.is_some_and(|n| n.first_since_join) && from > 0 {
            self.inner.master.count_partial(&req.node_id, req.shard);
            tracing::info!(node_id = %req.node_id, shard = req.shard, from_seq = from, master_seq = now_seq, "replica resumes by partial resync");
        }
        let file = self.inner.cluster.file();
        let members = (!req.catch_up && req.members_version != file.members_version)
            .then(|| (file.members_version, file.member_list()));
        Ok(PullReply::Entries {
            entries,
            master_seq: now_seq,
            epoch,
            members,
            sent_at: self.clock_ns(),
        })
    }

    /// Serves a page of a full-resync copy (master only).
    ///
    /// # Errors
    /// `NotMaster` on a replica, `NotJoined`, `ResyncExpired`, or a storage failure.
    pub async fn snapshot(&self, req: SnapshotRequest) -> Result<SnapshotPage, KvError> {
        self.hear(req.epoch).await?;
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
        let history = shard.writer.epochs().up_to(seq).starts().to_vec();
        Ok(SnapshotPage {
            seq,
            entries,
            next,
            history,
            epoch: self.inner.cluster.view().epoch,
        })
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
        match (at_seq, self.role()) {
            (None, _) => self.digest_now(shard).await,
            (Some(seq), Role::Replica) => {
                crate::replication::replica::digest_at(self, shard, seq, wait).await
            }
            (Some(seq), Role::Master) => {
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
