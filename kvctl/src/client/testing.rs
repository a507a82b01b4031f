//! A fake node for tests: a real tarpc server on a loopback port whose answers are fixed by a
//! [`Fake`] value (a replica that names a master, a slow node, a set of keys to scan, the
//! replicas a master lists, the digests a node answers).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;
use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, Digest, Entry, JoinReply, JoinRequest, Kv, KvError, LinkState, MasterLink,
    MputRequest, NodeStatus, PullReply, PullRequest, PutRequest, ReplicaStatus, Role, ScanPage,
    ScanRequest, ShardStatus, SnapshotPage, SnapshotRequest, SyncPolicy, Version, Versioned,
    addr::Endpoint,
};
use tarpc::{
    context::Context,
    server::{BaseChannel, Channel as _},
};

/// The version the fake master answers every write with.
pub const MASTER_VERSION: Version = 42;

/// Most entries the fake returns per scan page, whatever the request asks (to force paging).
pub const FAKE_PAGE: usize = 3;

/// The sequence of the fake's first digest taken "now"; each such digest is one later.
pub const FIRST_DIGEST_SEQ: u64 = 100;

/// How many shards the fake has.
pub const FAKE_SHARDS: u32 = 2;

/// What the fake node answers.
#[derive(Clone, Default)]
pub struct Fake {
    /// `Some`: behave as a replica naming this master (writes and `cluster_status` refused with
    /// `NotMaster`).
    pub master: Option<String>,
    /// How long every call waits before answering.
    pub delay: Duration,
    /// The keys the node holds, in key order.
    pub entries: Arc<Vec<Entry>>,
    /// The replicas `cluster_status` lists (as a master).
    pub replicas: Arc<Vec<ReplicaStatus>>,
    /// What `digest` answers; shared by the clones a server makes, so counters add up.
    pub digests: Arc<Digests>,
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

impl Fake {
    /// Adds a key at version `number of keys so far + 1`, keeping the keys in order.
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

    fn node_status(&self) -> NodeStatus {
        let replica = self.master.is_some();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        NodeStatus {
            node_id: "n1".into(),
            role: if replica { Role::Replica } else { Role::Master },
            address: "localhost:3000".into(),
            version: "0.1.0".into(),
            uptime_secs: 3725,
            reads: 0,
            sync: SyncPolicy::Always,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: vec![
                ShardStatus {
                    shard: 0,
                    keys: 10,
                    last_seq: 12,
                    disk_bytes: 2048,
                    resyncing: false,
                    partial_resyncs: u64::from(replica),
                    full_resyncs: 0,
                },
                ShardStatus {
                    shard: 1,
                    keys: 1500,
                    last_seq: 1502,
                    disk_bytes: 3 << 20,
                    resyncing: replica,
                    partial_resyncs: 0,
                    full_resyncs: u64::from(replica),
                },
            ],
            master_link: self.master.as_ref().map(|m| MasterLink {
                master: m.clone(),
                state: LinkState::Up,
                since_unix_ms: now_ms.saturating_sub(12_000),
                last_error: None,
            }),
        }
    }

    fn refuse_writes(&self) -> Result<(), KvError> {
        match &self.master {
            Some(m) => Err(KvError::NotMaster {
                master: Some(m.clone()),
            }),
            None => Ok(()),
        }
    }
}

impl Kv for Fake {
    async fn get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        tokio::time::sleep(self.delay).await;
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
        Ok((key.as_slice() != b"absent").then_some(MASTER_VERSION))
    }

    async fn scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        tokio::time::sleep(self.delay).await;
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
        Ok(self.node_status())
    }

    async fn cluster_status(self, _: Context) -> Result<ClusterStatus, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_writes()?;
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
}

/// Serves `fake` on a fresh loopback port until the test's runtime ends, with the frame limit
/// of a node running with default key and value limits.
pub async fn serve(fake: Fake) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let max_frame = shared::limits::server_max_frame_bytes(
        shared::limits::DEFAULT_MAX_KEY_BYTES,
        shared::limits::DEFAULT_MAX_VALUE_BYTES,
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let transport =
                shared::transport::server_transport(stream, max_frame).expect("transport");
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(channel.execute(fake.clone().serve()).for_each(|f| async {
                tokio::spawn(f);
            }));
        }
    });
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}
