//! A fake node for tests: a real tarpc server on a loopback port whose answers are fixed by a
//! [`Fake`] value (a master or a replica naming its master, a slow node, a set of keys to scan,
//! the replicas a master lists, the digests a node answers, the plans of a failover), and
//! changed while it runs through its [`Live`] part (a switchover: the master becomes a replica
//! naming the new one; a connection that hangs up after a write arrived; a node that goes away).
//!
//! ```text
//!  test ──Fake{..}──► serve() ──► 127.0.0.1:<port> ◄──tcp── Client / Node under test
//!    │                  one task per connection: execute requests, or hang up, or shut down
//!    └── fake.live (shared by every connection): role, counters, hang-ups, wait(condition)
//! ```
//!
//! Built for the library's tests and, with the `testing` feature, for other crates' tests.
//! Only ever listens on 127.0.0.1.

#![allow(clippy::missing_panics_doc, clippy::must_use_candidate)]

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;
use serde_bytes::ByteBuf;
use tarpc::{
    context::Context,
    server::{BaseChannel, Channel as _},
};
use tokio::sync::{Notify, watch};

use crate::{
    ClusterStatus, Digest, Entry, JoinReply, JoinRequest, Kv, KvError, LinkState, MasterLink,
    MputRequest, NodeStatus, PullReply, PullRequest, PutRequest, ReplicaStatus, Role, ScanPage,
    ScanRequest, ShardStatus, SnapshotPage, SnapshotRequest, SyncPolicy, Version, Versioned,
    addr::Endpoint,
    cluster::{
        Epoch, FIRST_EPOCH, FailoverRecord, FailoverReply, FailoverRequest, HelloReply,
        HelloRequest, Member, PromoteReply, PromoteRequest, TakeOverRequest,
    },
};

/// The version the fake master answers every write with.
pub const MASTER_VERSION: Version = 42;

/// Most entries the fake returns per scan page, whatever the request asks (to force paging).
pub const FAKE_PAGE: usize = 3;

/// The sequence of the fake's first digest taken "now"; each such digest is one later.
pub const FIRST_DIGEST_SEQ: u64 = 100;

/// How many shards the fake has.
pub const FAKE_SHARDS: u32 = 2;

/// The cluster id every fake reports.
pub const FAKE_CLUSTER: &str = "c0ffee42-cluster";

/// What the fake node answers.
#[derive(Clone)]
pub struct Fake {
    /// The node id it reports (`n1` by default).
    pub node_id: String,
    /// The address it advertises in its status (`localhost:3000` by default; it is never
    /// connected to). Empty: the address it is served on.
    pub address: String,
    /// `Some`: behave as a replica naming this master (writes and `cluster_status` refused with
    /// `NotMaster`). Changed at run time with [`Live::become_replica`].
    pub master: Option<String>,
    /// The epoch it knows (1 by default).
    pub epoch: Epoch,
    /// As a master, whether it admits writes (writes are refused with `NotMaster { master:
    /// None }` when not, as during a switchover's pause).
    pub writable: bool,
    /// How long every call waits before answering.
    pub delay: Duration,
    /// How long writes (put, delete) and admin requests (failover, promote, forget) wait on
    /// top of `delay`, once they were applied or recorded.
    pub write_delay: Duration,
    /// The keys the node holds, in key order.
    pub entries: Arc<Vec<Entry>>,
    /// The replicas `cluster_status` lists (as a master).
    pub replicas: Arc<Vec<ReplicaStatus>>,
    /// What `digest` answers; shared by the clones a server makes, so counters add up.
    pub digests: Arc<Digests>,
    /// What `failover` answers (`Unsupported` when `None`).
    pub failover: Option<Result<FailoverReply, KvError>>,
    /// What `promote` answers (`Unsupported` when `None`).
    pub promote: Option<Result<PromoteReply, KvError>>,
    /// The last failover the status reports.
    pub last_failover: Option<FailoverRecord>,
    /// What changes while it runs, and what it counted; shared by every connection.
    pub live: Arc<Live>,
    /// Where and how it is served (set by [`serve`]).
    pub served: Served,
}

/// What [`serve`] sets on the fake it serves; opaque to tests.
#[derive(Clone, Default)]
pub struct Served {
    /// The address it is served on.
    bound: Option<String>,
    /// This connection's hang-up signal (one per connection).
    hang_up: Option<Arc<Notify>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            node_id: "n1".into(),
            address: "localhost:3000".into(),
            master: None,
            epoch: FIRST_EPOCH,
            writable: true,
            delay: Duration::ZERO,
            write_delay: Duration::ZERO,
            entries: Arc::default(),
            replicas: Arc::default(),
            digests: Arc::default(),
            failover: None,
            promote: None,
            last_failover: None,
            live: Arc::default(),
            served: Served::default(),
        }
    }
}

/// The fake's digests: every shard has `keys` keys and hash `hash` at any sequence.
#[derive(Default)]
pub struct Digests {
    /// Keys reported.
    pub keys: u64,
    /// Hash reported.
    pub hash: String,
    /// Digests at a sequence (`at_seq: Some`) still to refuse with `SequenceUnavailable`.
    pub refuse: AtomicU32,
    /// Digests taken now (`at_seq: None`) so far.
    pub taken_now: AtomicU64,
}

impl Digests {
    /// Every shard with `keys` keys and this hash.
    pub fn new(keys: u64, hash: &str) -> Arc<Self> {
        Arc::new(Self {
            keys,
            hash: hash.to_string(),
            ..Self::default()
        })
    }

    /// As [`Digests::new`], refusing the first `refuse` digests asked at a sequence.
    pub fn refusing(keys: u64, hash: &str, refuse: u32) -> Arc<Self> {
        Arc::new(Self {
            keys,
            hash: hash.to_string(),
            refuse: AtomicU32::new(refuse),
            ..Self::default()
        })
    }
}

/// The role a fake has now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Now {
    /// `None`: master.
    master: Option<String>,
    epoch: Epoch,
    writable: bool,
}

/// A switchover a fake master does by itself (see [`Live::hand_over_after`]).
struct HandOver {
    after: u64,
    to: String,
    epoch: Epoch,
    to_live: Arc<Live>,
}

/// The part of a fake that changes while it runs, and what it saw.
pub struct Live {
    /// The role set at run time, over the [`Fake`]'s own fields.
    role: Mutex<Option<Now>>,
    /// Writes applied (put, delete).
    pub writes: AtomicU64,
    /// Writes refused with `NotMaster`.
    pub refused: AtomicU64,
    /// Reads answered (get, scan).
    pub reads: AtomicU64,
    /// Status calls answered.
    pub statuses: AtomicU64,
    /// Writes still to apply and then hang up on, without an answer.
    hang_up_writes: AtomicU32,
    /// Reads still to hang up on, unanswered.
    hang_up_reads: AtomicU32,
    /// Every failover request, with the time that was left to its deadline when it arrived.
    pub failovers: Mutex<Vec<(FailoverRequest, Duration)>>,
    /// Every promote request, with the time left to its deadline.
    pub promotes: Mutex<Vec<(PromoteRequest, Duration)>>,
    /// Every node `forget` was asked for.
    pub forgotten: Mutex<Vec<String>>,
    /// A switchover to do by itself once this many writes were applied (see
    /// [`Live::hand_over_after`]).
    hand_over: Mutex<Option<HandOver>>,
    /// Set to stop the server: no more connections, every open one closed.
    down: watch::Sender<bool>,
    /// Bumped on every change above, so tests wait on conditions instead of sleeping.
    changed: watch::Sender<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            role: Mutex::new(None),
            writes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
            hang_up_writes: AtomicU32::new(0),
            hang_up_reads: AtomicU32::new(0),
            failovers: Mutex::default(),
            promotes: Mutex::default(),
            forgotten: Mutex::default(),
            hand_over: Mutex::default(),
            down: watch::Sender::new(false),
            changed: watch::Sender::new(0),
        }
    }
}

impl Live {
    /// From now on a master of `epoch` that admits writes.
    pub fn become_master(&self, epoch: Epoch) {
        self.set(Now {
            master: None,
            epoch,
            writable: true,
        });
    }

    /// From now on a replica of `epoch` naming `master` (`None`: not known yet).
    pub fn become_replica(&self, master: Option<String>, epoch: Epoch) {
        self.set(Now {
            master,
            epoch,
            writable: false,
        });
    }

    /// As a master, admit writes or not (a switchover's pause); the rest of the role stays.
    pub fn set_writable(&self, writable: bool, fake: &Fake) {
        let now = Now {
            writable,
            ..fake.now()
        };
        self.set(now);
    }

    fn set(&self, now: Now) {
        *self.role.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        self.bump();
    }

    /// A switchover at an exact point: once `after` writes were applied here, the next write
    /// finds this node a replica of `to` at `epoch`, and `to_live`'s node its master.
    pub fn hand_over_after(&self, after: u64, to: &Endpoint, epoch: Epoch, to_live: Arc<Self>) {
        *self
            .hand_over
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(HandOver {
            after,
            to: to.to_string(),
            epoch,
            to_live,
        });
    }

    /// Does the switchover of [`Live::hand_over_after`] when its time has come.
    fn maybe_hand_over(&self) {
        let mut pending = self
            .hand_over
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending
            .as_ref()
            .is_some_and(|h| self.writes.load(Ordering::SeqCst) >= h.after)
            && let Some(h) = pending.take()
        {
            drop(pending);
            h.to_live.become_master(h.epoch);
            self.become_replica(Some(h.to), h.epoch);
        }
    }

    /// Apply the next `n` writes, then hang up on each without answering.
    pub fn hang_up_on_writes(&self, n: u32) {
        self.hang_up_writes.store(n, Ordering::SeqCst);
    }

    /// Hang up on the next `n` reads without answering.
    pub fn hang_up_on_reads(&self, n: u32) {
        self.hang_up_reads.store(n, Ordering::SeqCst);
    }

    /// Stops the server: the port closes and every connection is dropped.
    pub fn shut_down(&self) {
        self.down.send_replace(true);
    }

    /// Waits until `condition` holds, at most `timeout`; panics naming `what` otherwise.
    pub async fn wait(&self, what: &str, timeout: Duration, condition: impl Fn(&Self) -> bool) {
        let mut changes = self.changed.subscribe();
        let waited = tokio::time::timeout(timeout, changes.wait_for(|_| condition(self))).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "{what}: not within {timeout:?}"
        );
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.bump();
    }

    /// Takes one from `budget` if it is not zero.
    fn take(budget: &AtomicU32) -> bool {
        budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Fake {
    /// Adds a key at version `number of keys so far + 1`, keeping the keys in order.
    #[must_use]
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let entries = Arc::make_mut(&mut self.entries);
        let version = entries.len() as u64 + 1;
        entries.push(Entry {
            key: ByteBuf::from(key.as_ref()),
            value: ByteBuf::from(value.as_ref()),
            version,
        });
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// A master named `node_id` (its status says so; the address it is served on is its own).
    pub fn master(node_id: &str) -> Self {
        Self {
            node_id: node_id.into(),
            ..Self::default()
        }
    }

    /// A replica named `node_id` that names `master` as its master.
    pub fn replica(node_id: &str, master: &Endpoint) -> Self {
        Self {
            node_id: node_id.into(),
            master: Some(master.to_string()),
            ..Self::default()
        }
    }

    fn now(&self) -> Now {
        self.live
            .role
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Now {
                master: self.master.clone(),
                epoch: self.epoch,
                writable: self.writable,
            })
    }

    fn node_status(&self) -> NodeStatus {
        let now = self.now();
        let replica = now.master.is_some();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let shard = |shard: u32, keys: u64, last_seq: u64, disk_bytes: u64| ShardStatus {
            shard,
            keys,
            last_seq,
            disk_bytes,
            resyncing: replica && shard == 1,
            partial_resyncs: u64::from(replica && shard == 0),
            full_resyncs: u64::from(replica && shard == 1),
            last_epoch: now.epoch,
            master_seq: last_seq,
        };
        let master = match &now.master {
            Some(m) => Some(Member {
                node_id: "master".into(),
                address: m.clone(),
            }),
            None => self.served.bound.as_ref().map(|address| Member {
                node_id: self.node_id.clone(),
                address: address.clone(),
            }),
        };
        NodeStatus {
            node_id: self.node_id.clone(),
            role: if replica { Role::Replica } else { Role::Master },
            address: self.address.clone(),
            version: "0.1.0".into(),
            uptime_secs: 3725,
            reads: 0,
            sync: SyncPolicy::Always,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: vec![shard(0, 10, 12, 2048), shard(1, 1500, 1502, 3 << 20)],
            master_link: now.master.as_ref().map(|m| MasterLink {
                master: m.clone(),
                state: LinkState::Up,
                since_unix_ms: now_ms.saturating_sub(12_000),
                last_error: None,
                master_id: None,
            }),
            cluster_id: FAKE_CLUSTER.into(),
            epoch: now.epoch,
            master,
            writable: !replica && now.writable,
            last_failover: self.last_failover.clone(),
            storage: crate::StorageStatus {
                log_disk_bytes: 64 << 20,
                log_retention_bytes: 256 << 20,
                log_segment_bytes: 32 << 20,
                store_journal_bytes: 40 << 20,
                problem: None,
            },
            failover: crate::cluster::FailoverStatus::manual(),
        }
    }

    /// `Err(NotMaster)` unless this is a master admitting writes.
    fn refuse_writes(&self) -> Result<(), KvError> {
        self.live.maybe_hand_over();
        let now = self.now();
        let refusal = match now.master {
            Some(m) => Some(Some(m)),
            None if !now.writable => Some(None),
            None => None,
        };
        match refusal {
            Some(master) => {
                self.live.count(&self.live.refused);
                Err(KvError::NotMaster {
                    master,
                    epoch: now.epoch,
                })
            }
            None => Ok(()),
        }
    }

    /// `Err(NotMaster)` unless this is a master (writable or not).
    fn refuse_unless_master(&self) -> Result<(), KvError> {
        let now = self.now();
        match now.master {
            Some(m) => Err(KvError::NotMaster {
                master: Some(m),
                epoch: now.epoch,
            }),
            None => Ok(()),
        }
    }

    /// A write was applied: counts it, and hangs up instead of answering if asked to.
    async fn applied(&self) {
        self.live.count(&self.live.writes);
        if Live::take(&self.live.hang_up_writes) {
            self.hang_up().await;
        }
        tokio::time::sleep(self.write_delay).await;
    }

    async fn read(&self) {
        if Live::take(&self.live.hang_up_reads) {
            self.hang_up().await;
        }
        self.live.count(&self.live.reads);
    }

    /// Closes this connection and never answers.
    async fn hang_up(&self) {
        if let Some(h) = &self.served.hang_up {
            h.notify_one();
        }
        std::future::pending::<()>().await;
    }
}

/// The time left to a request's deadline.
fn left(ctx: &Context) -> Duration {
    ctx.deadline.saturating_duration_since(Instant::now())
}

impl Kv for Fake {
    async fn get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        tokio::time::sleep(self.delay).await;
        self.read().await;
        Ok(self
            .entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| Versioned {
                value: e.value.clone(),
                version: e.version,
            }))
    }

    /// Acknowledged by as many replicas as `replicas` lists: asking for more is an
    /// `AcksTimeout` that echoes the request's `acks` and `acks_timeout_ms`.
    async fn put(self, _: Context, req: PutRequest) -> Result<Version, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_writes()?;
        self.applied().await;
        let acked = u32::try_from(self.replicas.len()).unwrap_or(u32::MAX);
        if req.acks > acked {
            return Err(KvError::AcksTimeout {
                version: MASTER_VERSION,
                acked,
                required: req.acks,
                timeout_ms: u64::from(req.acks_timeout_ms),
            });
        }
        Ok(MASTER_VERSION)
    }

    async fn delete(self, _: Context, key: ByteBuf) -> Result<Option<Version>, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_writes()?;
        self.applied().await;
        Ok((key.as_slice() != b"absent").then_some(MASTER_VERSION))
    }

    async fn scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        tokio::time::sleep(self.delay).await;
        self.read().await;
        let page = usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .min(FAKE_PAGE);
        let mut matching = self.entries.iter().filter(|e| {
            e.key.starts_with(&req.prefix) && req.start_after.as_ref().is_none_or(|s| e.key > *s)
        });
        let mut entries: Vec<Entry> = matching.by_ref().take(page).cloned().collect();
        if req.keys_only {
            for e in &mut entries {
                e.value = ByteBuf::new();
            }
        }
        let more = matching.next().is_some();
        let next = entries.last().filter(|_| more).map(|e| e.key.clone());
        Ok(ScanPage { entries, next })
    }

    async fn status(self, _: Context) -> Result<NodeStatus, KvError> {
        tokio::time::sleep(self.delay).await;
        self.live.count(&self.live.statuses);
        Ok(self.node_status())
    }

    async fn cluster_status(self, _: Context) -> Result<ClusterStatus, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_unless_master()?;
        Ok(ClusterStatus {
            master: self.node_status(),
            replicas: self.replicas.to_vec(),
        })
    }

    async fn digest(
        self,
        _: Context,
        shard: u32,
        at_seq: Option<u64>,
        _wait_ms: u32,
    ) -> Result<Digest, KvError> {
        tokio::time::sleep(self.delay).await;
        if shard >= FAKE_SHARDS {
            return Err(KvError::NoSuchShard {
                shard,
                shards: FAKE_SHARDS,
            });
        }
        let d = &self.digests;
        let seq = match at_seq {
            None => FIRST_DIGEST_SEQ + d.taken_now.fetch_add(1, Ordering::SeqCst),
            Some(s) => {
                let refused = d
                    .refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refused {
                    return Err(KvError::SequenceUnavailable {
                        shard,
                        current: s + 1,
                        requested: s,
                    });
                }
                s
            }
        };
        Ok(Digest {
            shard,
            seq,
            keys: d.keys,
            hash: d.hash.clone(),
        })
    }

    async fn join(self, _: Context, _req: JoinRequest) -> Result<JoinReply, KvError> {
        Err(KvError::Unsupported("join".into()))
    }

    async fn pull(self, _: Context, _req: PullRequest) -> Result<PullReply, KvError> {
        Err(KvError::Unsupported("pull".into()))
    }

    async fn snapshot(self, _: Context, _req: SnapshotRequest) -> Result<SnapshotPage, KvError> {
        Err(KvError::Unsupported("snapshot".into()))
    }

    async fn mget(
        self,
        _: Context,
        _keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        Err(KvError::Unsupported("mget".into()))
    }

    async fn mput(self, _: Context, _req: MputRequest) -> Result<Vec<Version>, KvError> {
        Err(KvError::Unsupported("mput".into()))
    }

    async fn hello(self, _: Context, _req: HelloRequest) -> Result<HelloReply, KvError> {
        Err(KvError::Unsupported("hello".into()))
    }

    async fn take_over(self, _: Context, _req: TakeOverRequest) -> Result<(), KvError> {
        Err(KvError::Unsupported("take_over".into()))
    }

    async fn vote(
        self,
        _: Context,
        _req: crate::cluster::VoteRequest,
    ) -> Result<crate::cluster::VoteReply, KvError> {
        Err(KvError::Unsupported("vote".into()))
    }

    async fn failover(self, ctx: Context, req: FailoverRequest) -> Result<FailoverReply, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_unless_master()?;
        self.live
            .failovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((req, left(&ctx)));
        self.live.bump();
        tokio::time::sleep(self.write_delay).await;
        self.failover
            .clone()
            .unwrap_or_else(|| Err(KvError::Unsupported("failover".into())))
    }

    async fn promote(self, ctx: Context, req: PromoteRequest) -> Result<PromoteReply, KvError> {
        tokio::time::sleep(self.delay).await;
        self.live
            .promotes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((req, left(&ctx)));
        self.live.bump();
        tokio::time::sleep(self.write_delay).await;
        self.promote
            .clone()
            .unwrap_or_else(|| Err(KvError::Unsupported("promote".into())))
    }

    /// Forgets a replica it lists, by node id, unique prefix or address.
    async fn forget(self, _: Context, node: String) -> Result<Member, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_unless_master()?;
        let member = |r: &ReplicaStatus| Member {
            node_id: r.node_id.clone(),
            address: r.address.clone(),
        };
        let exact: Vec<Member> = self
            .replicas
            .iter()
            .filter(|r| r.node_id == node || r.address == node)
            .map(member)
            .collect();
        let found = if exact.is_empty() {
            self.replicas
                .iter()
                .filter(|r| r.node_id.starts_with(&node))
                .map(member)
                .collect()
        } else {
            exact
        };
        let name = |m: &Member| format!("{} at {}", m.node_id, m.address);
        match found.as_slice() {
            [one] => {
                self.live
                    .forgotten
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(node);
                self.live.bump();
                Ok(one.clone())
            }
            [] => Err(KvError::UnknownNode {
                node,
                known: self.replicas.iter().map(|r| name(&member(r))).collect(),
            }),
            several => Err(KvError::AmbiguousNode {
                node,
                matches: several.iter().map(name).collect(),
            }),
        }
    }

    async fn master_get(self, ctx: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        self.refuse_unless_master()?;
        self.get(ctx, key).await
    }

    async fn master_mget(
        self,
        ctx: Context,
        keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        self.refuse_unless_master()?;
        self.mget(ctx, keys).await
    }

    async fn restore_mget(
        self,
        _: Context,
        _keys: Vec<ByteBuf>,
    ) -> Result<Vec<Option<Versioned>>, KvError> {
        Err(KvError::Unsupported("restore_mget".into()))
    }

    async fn master_scan(self, ctx: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        self.refuse_unless_master()?;
        self.scan(ctx, req).await
    }
}

/// Serves `fake` on a fresh loopback port until the test's runtime ends (or
/// [`Live::shut_down`]), with the frame limit of a node running with default key and value
/// limits.
pub async fn serve(mut fake: Fake) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    fake.served.bound = Some(endpoint.to_string());
    if fake.address.is_empty() {
        fake.address = endpoint.to_string();
    }
    let max_frame = crate::limits::server_max_frame_bytes(
        crate::limits::DEFAULT_MAX_KEY_BYTES,
        crate::limits::DEFAULT_MAX_VALUE_BYTES,
    );
    let mut down = fake.live.down.subscribe();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => break,
                },
                _ = down.wait_for(|d| *d) => break,
            };
            let mut stream: crate::net::Stream = Box::new(crate::net::TcpConn::from(stream));
            // A fake takes every token, as a node without --auth-file does.
            if crate::transport::read_hello(&mut stream).await.is_err() {
                continue;
            }
            let welcome = crate::transport::Welcome::Accepted {
                role: "admin".into(),
            };
            if crate::transport::send_welcome(&mut stream, &welcome)
                .await
                .is_err()
            {
                continue;
            }
            let transport = crate::transport::server_transport(stream, max_frame);
            let channel = BaseChannel::with_defaults(transport);
            let hang_up = Arc::new(Notify::new());
            let mut conn = fake.clone();
            conn.served.hang_up = Some(Arc::clone(&hang_up));
            let mut down = fake.live.down.subscribe();
            tokio::spawn(async move {
                let requests = channel.execute(conn.serve()).for_each(|f| async {
                    tokio::spawn(f);
                });
                tokio::select! {
                    () = requests => {}
                    () = hang_up.notified() => {}
                    _ = down.wait_for(|d| *d) => {}
                }
            });
        }
    });
    endpoint
}

/// A loopback port nothing listens on, reserved for the life of the test process.
pub fn closed_port() -> u16 {
    // Bound but never listening: a connection to it is refused, and the port stays taken for
    // the life of the test process, so no other test's listener can be given it (a listener
    // bound and dropped frees its port for the next bind, which made tests flaky).
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(socket);
    port
}

/// A loopback endpoint nothing listens on.
pub fn closed_endpoint() -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: closed_port(),
    }
}
