//! One shard's store: a fjall database with three keyspaces.
//!
//! - `data`: key -> version (u64 BE) ++ value
//! - `log`:  sequence (u64 BE) -> `LogRecord` (the replication log, trimmed to a retention bound)
//! - `meta`: `last_seq`, `keys` (u64 BE), written in the same batch as the data they describe
//!
//! Reads go straight to the engine (they never wait for the writer); writes go only through the
//! shard's writer thread (`writer.rs`), which is the single owner of `apply`.

use std::{ops::Bound, path::Path};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_bytes::ByteBuf;
use shared::Entry;

use super::{
    StorageError,
    format::{META_KEYS, META_LAST_SEQ, decode_data, decode_u64},
};

/// A shard's fjall database and keyspaces.
pub struct ShardStore {
    id: u32,
    path: std::path::PathBuf,
    db: Database,
    pub(super) data: Keyspace,
    pub(super) log: Keyspace,
    pub(super) meta: Keyspace,
}

/// What one scan of one shard found.
pub struct ShardScan {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// Whether the shard has more matching keys after the last entry.
    pub more: bool,
}

impl ShardStore {
    /// Opens (or creates) shard `id` under `path`; fjall replays its journal here.
    ///
    /// # Errors
    /// When the engine cannot open the directory.
    pub fn open(path: &Path, id: u32) -> Result<Self, StorageError> {
        let db = Database::builder(path).worker_threads(2).open()?;
        let data = db.keyspace("data", KeyspaceCreateOptions::default)?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            db,
            data,
            log,
            meta,
        })
    }

    /// The shard number.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// The value and version of `key`.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn get(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        match self.data.get(key)? {
            Some(raw) => {
                let (version, value) = decode_data(&raw)?;
                Ok(Some((version, value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// The version of `key`, without copying its value.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn version_of(&self, key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self.data.get(key)? {
            Some(raw) => Ok(Some(decode_data(&raw)?.0)),
            None => Ok(None),
        }
    }

    /// Up to `limit` entries with `prefix`, after `start_after`, in key order, stopping early
    /// once `byte_budget` bytes of keys and values are collected.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        keys_only: bool,
        byte_budget: usize,
    ) -> Result<ShardScan, StorageError> {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for guard in self.data.range::<Vec<u8>, _>((lower, Bound::Unbounded)) {
            let (key, raw) = guard.into_inner()?;
            if !key.starts_with(prefix) {
                return Ok(ShardScan {
                    entries,
                    more: false,
                });
            }
            if entries.len() >= limit || (bytes >= byte_budget && !entries.is_empty()) {
                return Ok(ShardScan {
                    entries,
                    more: true,
                });
            }
            let (version, value) = decode_data(&raw)?;
            let value = if keys_only {
                Vec::new()
            } else {
                value.to_vec()
            };
            bytes += key.len() + value.len();
            entries.push(Entry {
                key: ByteBuf::from(key.to_vec()),
                value: ByteBuf::from(value),
                version,
            });
        }
        Ok(ShardScan {
            entries,
            more: false,
        })
    }

    /// The last sequence number and live key count recorded in `meta`.
    ///
    /// # Errors
    /// On engine errors or a corrupt counter.
    pub fn counters(&self) -> Result<(u64, u64), StorageError> {
        let read = |k: &[u8], what| -> Result<u64, StorageError> {
            match self.meta.get(k)? {
                Some(raw) => decode_u64(&raw, what),
                None => Ok(0),
            }
        };
        Ok((
            read(META_LAST_SEQ, "meta last_seq")?,
            read(META_KEYS, "meta keys")?,
        ))
    }

    /// Removes log records older than `last_seq - retention` (after a restart with a lower
    /// retention; the writer trims as it goes otherwise).
    ///
    /// # Errors
    /// On engine errors.
    pub fn trim_log(&self, last_seq: u64, retention: u64) -> Result<u64, StorageError> {
        let cutoff = last_seq.saturating_sub(retention);
        let mut removed = 0;
        if cutoff == 0 {
            return Ok(0);
        }
        loop {
            let keys = self
                .log
                .range(..=cutoff.to_be_bytes())
                .take(10_000)
                .map(fjall::Guard::key)
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let mut batch = self.db.batch();
            for key in keys {
                batch.remove(&self.log, key);
                removed += 1;
            }
            batch.commit()?;
        }
    }

    /// Bytes the shard's files take on disk, counted like `du`: allocated blocks, so the
    /// journal fjall pre-sizes to 64 MiB counts for what it holds, not for its length.
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        du(&self.path)
    }

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// When the fsync fails.
    pub fn persist(&self) -> Result<(), StorageError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// Allocated bytes under `dir`, recursively; unreadable entries count as 0 (a file compaction
/// just removed, for instance).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => du(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
