//! One shard's store: two keyspaces of the node's fjall database, and the node's log.
//!
//! - `data-<shard>`: key -> version (u64 BE) ++ value
//! - `meta-<shard>`: `last_seq`, `keys`, `applied_lsn` (u64 BE), written in the same batch as
//!   the data they describe
//!
//! The shard's log entries are in the node's one log (`log.rs`). Reads go straight to the engine
//! (they never wait for the writer); writes go only through the shard's writer thread
//! (`writer.rs`).

use std::{ops::Bound, path::Path, sync::Arc};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};
use serde_bytes::ByteBuf;
use shared::{Entry, LogEntry};

use super::{
    StorageError,
    format::{
        META_APPLIED, META_EPOCHS, META_KEYS, META_LAST_SEQ, META_RESYNC, decode_data,
        decode_history, decode_u64,
    },
    log::Log,
};
use crate::cluster::history::EpochHistory;

/// A shard's fjall database and keyspaces.
pub struct ShardStore {
    id: u32,
    pub(super) path: std::path::PathBuf,
    db: Database,
    pub(super) data: Keyspace,
    pub(super) meta: Keyspace,
    pub(super) log: Arc<Log>,
    /// When upkeep last flushed the memtables to let fjall drop a journal.
    last_flush: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A key, its version and its value.
pub type KeyVersion = (Vec<u8>, u64, Vec<u8>);

/// What one scan of one shard found.
pub struct ShardScan {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// Whether the shard has more matching keys after the last entry.
    pub more: bool,
}

impl ShardStore {
    /// Opens (or creates) shard `id` in the node's database `db` (at `path`), whose entries are
    /// in `log` (the writer replays what `log` holds past what the database applied).
    ///
    /// The data store is not the journal any more: upkeep keeps its journal near one file
    /// ([`ShardStore::bound_journal`], docs/storage-format.md).
    ///
    /// # Errors
    /// When the engine cannot open the keyspaces.
    pub fn open(db: &Database, path: &Path, id: u32, log: Arc<Log>) -> Result<Self, StorageError> {
        let data = db.keyspace(&format!("data-{id}"), KeyspaceCreateOptions::default)?;
        let meta = db.keyspace(&format!("meta-{id}"), KeyspaceCreateOptions::default)?;
        Ok(Self {
            id,
            path: path.to_path_buf(),
            db: db.clone(),
            data,
            meta,
            log,
            last_flush: std::sync::Mutex::new(None),
        })
    }

    /// The node's log.
    #[must_use]
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The lsn of the last log frame this shard's data store has applied.
    ///
    /// # Errors
    /// On engine errors or a corrupt counter.
    pub fn applied_lsn(&self) -> Result<u64, StorageError> {
        match self.meta.get(META_APPLIED)? {
            Some(raw) => decode_u64(&raw, "meta applied_lsn"),
            None => Ok(0),
        }
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

    /// The shard's epoch history; a shard written before epochs existed has all of its
    /// entries in epoch 1.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn epoch_history(&self, last_seq: u64) -> Result<EpochHistory, StorageError> {
        match self.meta.get(META_EPOCHS)? {
            Some(raw) => decode_history(&raw),
            None => Ok(EpochHistory::legacy(last_seq)),
        }
    }

    /// Keys of `data` whose version is above `seq`, with their versions (what a truncation to
    /// `seq` must undo when the local log no longer holds those entries).
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn versions_after(&self, seq: u64) -> Result<Vec<KeyVersion>, StorageError> {
        let mut out = Vec::new();
        for guard in self.data.iter() {
            let (key, raw) = guard.into_inner()?;
            let (version, value) = decode_data(&raw)?;
            if version > seq {
                out.push((key.to_vec(), version, value.to_vec()));
            }
        }
        Ok(out)
    }

    /// Up to `max_entries` log records after `after` and up to `upto`, stopping once `max_bytes`
    /// are collected (at least one record is returned when any exists).
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn read_log(
        &self,
        after: u64,
        upto: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.log.read(self.id, after, upto, max_bytes, max_entries)
    }

    /// The oldest sequence still in the log.
    ///
    /// # Errors
    /// Never; kept for the callers' sake.
    pub fn first_log_seq(&self) -> Result<Option<u64>, StorageError> {
        let (first, last) = self.log.range(self.id);
        Ok((first <= last).then_some(first))
    }

    /// Whether a full resync of this shard was started and not finished.
    ///
    /// # Errors
    /// On engine errors.
    pub fn resync_pending(&self) -> Result<bool, StorageError> {
        Ok(self.meta.contains_key(META_RESYNC)?)
    }

    /// A consistent read view and the sequence it shows (the meta counter is in the same
    /// atomic batches as the data it describes).
    ///
    /// # Errors
    /// On engine errors or a corrupt counter.
    pub fn snapshot(&self) -> Result<(Snapshot, u64), StorageError> {
        let snap = self.db.snapshot();
        let seq = match snap.get(&self.meta, META_LAST_SEQ)? {
            Some(raw) => decode_u64(&raw, "meta last_seq")?,
            None => 0,
        };
        Ok((snap, seq))
    }

    /// One page of `snap`'s data after `start_after`, of about `max_bytes`; the key to continue
    /// after, or `None` at the end.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn snapshot_page(
        &self,
        snap: &Snapshot,
        start_after: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, Option<ByteBuf>), StorageError> {
        let lower = match start_after {
            Some(after) => Bound::Excluded(after.to_vec()),
            None => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        let mut bytes = 0;
        for guard in snap.range::<Vec<u8>, _>(&self.data, (lower, Bound::Unbounded)) {
            if bytes >= max_bytes && !entries.is_empty() {
                let next = entries.last().map(|e: &Entry| e.key.clone());
                return Ok((entries, next));
            }
            let (key, raw) = guard.into_inner()?;
            let (version, value) = decode_data(&raw)?;
            bytes += key.len() + value.len();
            entries.push(Entry {
                key: ByteBuf::from(key.to_vec()),
                value: ByteBuf::from(value.to_vec()),
                version,
            });
        }
        Ok((entries, None))
    }

    /// The order-independent digest of `snap`'s data: the key count and the wrapping sum of
    /// xxh3-128 over (key length as u32 LE, key, version as u64 LE, value) of every key.
    ///
    /// # Errors
    /// On engine errors or a corrupt record.
    pub fn digest(&self, snap: &Snapshot) -> Result<(u64, u128), StorageError> {
        let mut keys = 0u64;
        let mut sum = 0u128;
        let mut buf = Vec::new();
        for guard in snap.iter(&self.data) {
            let (key, raw) = guard.into_inner()?;
            let (version, value) = decode_data(&raw)?;
            buf.clear();
            buf.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
            buf.extend_from_slice(&key);
            buf.extend_from_slice(&version.to_le_bytes());
            buf.extend_from_slice(value);
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(&buf));
            keys += 1;
        }
        Ok((keys, sum))
    }

    /// Bytes the shard's tables take on disk (its part of the database; the database's journal
    /// is the node's, see [`ShardStore::journal_bytes`]).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.data.disk_space() + self.meta.disk_space()
    }

    /// Bytes the node's database journal takes on disk, counted like `du` (allocated blocks).
    #[must_use]
    pub fn journal_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path).map_or(0, |entries| {
            use std::os::unix::fs::MetadataExt;
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
    }

    /// Flushes the shard's memtables while fjall keeps a sealed journal, so that it can drop
    /// it (the node's log is the journal; fjall's only costs disk).
    ///
    /// # Errors
    /// On engine errors.
    pub fn bound_journal(&self) -> Result<(), StorageError> {
        // fjall seals its journal at the first flush past 64,000,000 bytes written: ask for that
        // flush once the journal holds that much (allocated blocks: fjall sizes the file ahead,
        // so its length says nothing), and flush again while a sealed one remains, at most
        // four times a second (each flush makes a table that compaction merges).
        let due = self.db.journal_count() > 1 || self.journal_bytes() > 64_000_000;
        let mut last = self
            .last_flush
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due && last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(250)) {
            *last = Some(std::time::Instant::now());
            self.data.rotate_memtable()?;
            self.meta.rotate_memtable()?;
        }
        Ok(())
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

/// Opens a fjall database: the node's (`<data-dir>/store`), or a format-1 shard's.
pub fn open_db(path: &Path) -> Result<Database, StorageError> {
    // The node's log is the journal: fjall's own is never fsynced by a commit, only before
    // the log is trimmed and at shutdown; what a crash loses of it is replayed from the log.
    // (Handed to the OS per commit, so the allocated size upkeep reads follows what is written.)
    Ok(Database::builder(path)
        .worker_threads(2)
        .max_journaling_size(64 << 20)
        .manual_journal_persist(false)
        .open()?)
}
