//! The node: a cheap-to-clone handle over the shards, the configuration and the lifecycle
//! state. The RPC layer (`rpc.rs`) is a thin adapter over these methods.
//!
//! Reads go straight to a shard's store; writes go through the shard's writer. Every request
//! holds an [`InFlight`] guard so shutdown can wait for the requests it already accepted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_bytes::ByteBuf;
use shared::{
    Entry, KvError, NodeStatus, PutRequest, Role, ScanPage, ScanRequest, ShardStatus, Version,
    Versioned,
    limits::{DEFAULT_SCAN_LIMIT, MAX_SCAN_LIMIT, scan_page_bytes},
    routing::shard_for,
};

use crate::{
    config::Config,
    storage::{NodeMeta, ShardStore, StorageError, WriteKind, WriterHandle, meta::DirLock},
};

/// A handle to the node; clones share everything.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    meta: NodeMeta,
    /// Keeps other processes off the data directory while the node lives.
    _lock: DirLock,
    shards: Vec<Shard>,
    started: Instant,
    advertised: std::sync::OnceLock<String>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
}

struct Shard {
    store: Arc<ShardStore>,
    writer: WriterHandle,
}

/// Counts a request as in flight until dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
    pub fn open(cfg: Config) -> Result<Self, StorageError> {
        let (meta, lock) = NodeMeta::open(&cfg.data_dir, cfg.shards)?;
        let mut shards = Vec::with_capacity(cfg.shards as usize);
        for id in 0..cfg.shards {
            let store = Arc::new(ShardStore::open(
                &NodeMeta::shard_dir(&cfg.data_dir, id),
                id,
            )?);
            let writer = WriterHandle::spawn(Arc::clone(&store), cfg.sync, cfg.log_retention)?;
            shards.push(Shard { store, writer });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                meta,
                _lock: lock,
                shards,
                started: Instant::now(),
                advertised: std::sync::OnceLock::new(),
                shutting_down: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
            }),
        })
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
        let guard = InFlight(&self.inner.in_flight);
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(KvError::ShuttingDown);
        }
        Ok(guard)
    }

    /// Refuses new requests from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Waits until no admitted request is running, or `timeout` passes; returns how many remain.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.inner.in_flight.load(Ordering::Acquire);
            if n == 0 || Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

    fn writable(&self) -> Result<(), KvError> {
        match &self.inner.cfg.master {
            Some(master) => Err(KvError::NotMaster {
                master: Some(master.to_string()),
            }),
            None => Ok(()),
        }
    }

    /// Reads a key.
    ///
    /// # Errors
    /// An invalid key or a storage failure.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, KvError> {
        self.check_key(key)?;
        let shard = self.shard(key);
        let found = shard
            .store
            .get(key)
            .map_err(storage_err(shard.store.id()))?;
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
        self.writable()?;
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
        seq.ok_or_else(|| KvError::Storage {
            shard: shard.store.id(),
            message: "a put was not given a version".into(),
        })
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
            .map(|s| ShardStatus {
                shard: s.store.id(),
                keys: s.writer.stats().keys.load(Ordering::Relaxed),
                last_seq: *s.writer.last_seq().borrow(),
                disk_bytes: s.store.disk_bytes(),
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
            sync: cfg.sync,
            max_key_bytes: cfg.max_key_bytes as u64,
            max_value_bytes: cfg.max_value_bytes as u64,
            shards,
        }
    }
}
