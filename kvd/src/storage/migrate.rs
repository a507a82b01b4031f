//! Format 1 to format 2, in place, at start.
//!
//! Format 1 kept each shard in a fjall database of its own (`shard-<i>/`, keyspaces `data`, `log`,
//! `meta`), and fjall's journal was the journal. Format 2 has one log for the node (`log/`,
//! `log.rs`) and one fjall database for the data of every shard (`store/`, keyspaces
//! `data-<i>`, `meta-<i>`). The migration copies every shard's `log` keyspace, in sequence
//! order, into a new log under `log.migrating/`, and its `data` and `meta` into a new database
//! under `store.migrating/` (with `applied_lsn`: all of it), syncs both, renames them into place,
//! and only then writes `node.json` with format 2. A migration interrupted at any point leaves
//! `node.json` at format 1 and the old shards untouched, and is redone from the start; the old
//! shard directories are removed once format 2 is on disk.

use std::{fs, path::Path, time::Instant};

use fjall::{KeyspaceCreateOptions, PersistMode};

use super::{
    NodeMeta, StorageError,
    format::{
        LoadedPayload, META_APPLIED, META_EPOCHS, META_KEYS, META_LAST_SEQ, decode_history,
        decode_u64, encode_payload,
    },
    log::{Frame, Kind, Log},
    meta::{FORMAT, io_err, write_json_atomically},
    shard::open_db,
};
use crate::cluster::history::EpochHistory;

/// Frames appended (and fsynced) at a time.
const CHUNK: usize = 10_000;

/// Migrates the format-1 directory `dir` (whose `node.json` is `meta`) to format 2.
///
/// # Errors
/// On I/O or engine errors; the directory is then still format 1 and the next start redoes it.
pub fn run(dir: &Path, meta: &mut NodeMeta, retention: u64) -> Result<(), StorageError> {
    let started = Instant::now();
    tracing::info!(
        data_dir = %dir.display(),
        shards = meta.shards,
        from = meta.format,
        to = FORMAT,
        "migrating the data directory: each shard's log entries move into the node's one log \
         (an interrupted migration is redone at the next start)"
    );
    let tmp = dir.join("log.migrating");
    let done = dir.join("log");
    let tmp_store = dir.join("store.migrating");
    let store = NodeMeta::store_dir(dir);
    for stale in [&tmp, &done, &tmp_store, &store] {
        if stale.exists() {
            fs::remove_dir_all(stale).map_err(io_err("cannot remove the unfinished", stale))?;
        }
    }
    let mut entries = 0u64;
    let mut keys_copied = 0u64;
    {
        let (log, _) = Log::open(&tmp, meta.shards, retention, true, |_, _| {})?;
        let new_db = open_db(&tmp_store)?;
        for shard in 0..meta.shards {
            let db = open_db(&NodeMeta::shard_dir(dir, shard))?;
            let log_ks = db.keyspace("log", KeyspaceCreateOptions::default)?;
            let meta_ks = db.keyspace("meta", KeyspaceCreateOptions::default)?;
            let data_ks = db.keyspace("data", KeyspaceCreateOptions::default)?;
            let new_data =
                new_db.keyspace(&format!("data-{shard}"), KeyspaceCreateOptions::default)?;
            let new_meta =
                new_db.keyspace(&format!("meta-{shard}"), KeyspaceCreateOptions::default)?;
            // The data and the meta counters, as they are.
            for (from, to) in [(&data_ks, &new_data), (&meta_ks, &new_meta)] {
                let mut batch = new_db.batch();
                let mut n = 0;
                for guard in from.iter() {
                    let (key, value) = guard.into_inner()?;
                    batch.insert(to, key.to_vec(), value.to_vec());
                    n += 1;
                    if n % CHUNK == 0 {
                        batch.commit()?;
                        batch = new_db.batch();
                    }
                }
                batch.commit()?;
                if std::ptr::eq(from, &data_ks) {
                    keys_copied += n as u64;
                }
            }
            let read = |k: &[u8], what| -> Result<u64, StorageError> {
                match meta_ks.get(k)? {
                    Some(raw) => decode_u64(&raw, what),
                    None => Ok(0),
                }
            };
            let last_seq = read(META_LAST_SEQ, "meta last_seq")?;
            let keys = read(META_KEYS, "meta keys")?;
            let mut applied = 0u64;
            let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
            let mut flush = |chunk: &mut Vec<(u64, Vec<u8>)>| -> Result<(), StorageError> {
                if chunk.is_empty() {
                    return Ok(());
                }
                let frames: Vec<Frame<'_>> = chunk
                    .iter()
                    .map(|(seq, record)| Frame {
                        shard,
                        seq: *seq,
                        kind: Kind::Entry,
                        payload: record,
                    })
                    .collect();
                applied = log.append(&frames)?;
                entries += frames.len() as u64;
                chunk.clear();
                Ok(())
            };
            for guard in log_ks.iter() {
                let (key, value) = guard.into_inner()?;
                chunk.push((decode_u64(&key, "log key")?, value.to_vec()));
                if chunk.len() >= CHUNK {
                    flush(&mut chunk)?;
                }
            }
            flush(&mut chunk)?;
            if applied == 0 && last_seq > 0 {
                // No entry is kept: the log starts after the shard's last sequence.
                let epochs = match meta_ks.get(META_EPOCHS)? {
                    Some(raw) => decode_history(&raw)?,
                    None => EpochHistory::legacy(last_seq),
                };
                let payload = encode_payload(
                    &LoadedPayload {
                        keys,
                        epochs: epochs.starts().to_vec(),
                    },
                    "log resync end",
                )?;
                applied = log.append(&[Frame {
                    shard,
                    seq: last_seq,
                    kind: Kind::Loaded,
                    payload: &payload,
                }])?;
            }
            let mut batch = new_db.batch();
            batch.insert(&new_meta, META_APPLIED, applied.to_be_bytes());
            batch.commit()?;
        }
        new_db.persist(PersistMode::SyncAll)?;
    }
    fs::rename(&tmp, &done).map_err(io_err("cannot rename into place", &done))?;
    fs::rename(&tmp_store, &store).map_err(io_err("cannot rename into place", &store))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync", dir))?;
    meta.format = FORMAT;
    write_json_atomically(&dir.join("node.json"), meta, "node.json")?;
    remove_format1_shards(dir, meta.shards);
    tracing::info!(
        entries,
        keys = keys_copied,
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "migrated the data directory to format 2"
    );
    Ok(())
}

/// Removes the format-1 shard directories a migration left (it removes them itself once
/// `node.json` says format 2; a crash in between leaves them for the next start).
pub fn remove_format1_shards(dir: &Path, shards: u32) {
    for shard in 0..shards {
        let old = NodeMeta::shard_dir(dir, shard);
        if old.exists() {
            match fs::remove_dir_all(&old) {
                Ok(()) => tracing::info!(dir = %old.display(), "removed a migrated format-1 shard"),
                Err(e) => {
                    tracing::warn!(dir = %old.display(), error = %e, "cannot remove a migrated format-1 shard; it is tried at the next start")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_bytes::ByteBuf;

    use super::*;
    use crate::storage::{
        ShardStore,
        format::{LogOp, LogRecord, encode_data},
    };

    /// A format-1 shard as the previous release wrote it: `n` puts of `k<i>` at sequences
    /// 1..=n, every one still in the `log` keyspace.
    fn format1_shard(dir: &Path, shard: u32, n: u64) {
        let db = open_db(&NodeMeta::shard_dir(dir, shard)).expect("open");
        let data = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .expect("data");
        let log = db
            .keyspace("log", KeyspaceCreateOptions::default)
            .expect("log");
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .expect("meta");
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        for seq in 1..=n {
            let key = format!("s{shard}-k{seq}");
            let value = format!("v{seq}");
            batch.insert(&data, key.as_bytes(), encode_data(seq, value.as_bytes()));
            let record = LogRecord {
                epoch: 1,
                time_ms: 0,
                op: LogOp::Put {
                    key: ByteBuf::from(key.into_bytes()),
                    value: ByteBuf::from(value.into_bytes()),
                },
            };
            batch.insert(&log, seq.to_be_bytes(), record.encode().expect("encode"));
        }
        batch.insert(&meta, META_LAST_SEQ, n.to_be_bytes());
        batch.insert(&meta, META_KEYS, n.to_be_bytes());
        batch.commit().expect("commit");
    }

    #[test]
    fn an_interrupted_migration_is_redone_and_keeps_every_key_and_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut meta = NodeMeta {
            format: 1,
            node_id: "n1".into(),
            shards: 2,
        };
        write_json_atomically(&dir.path().join("node.json"), &meta, "node.json").expect("json");
        format1_shard(dir.path(), 0, 30);
        format1_shard(dir.path(), 1, 12);
        // What an earlier attempt left when it was killed: half-made directories, and even a
        // renamed log, while node.json still says format 1.
        for left in ["log.migrating", "store.migrating", "log"] {
            fs::create_dir_all(dir.path().join(left)).expect("mkdir");
            fs::write(dir.path().join(left).join("junk"), b"half written").expect("junk");
        }
        run(dir.path(), &mut meta, 8 << 20).expect("migrate");
        assert_eq!(meta.format, FORMAT);
        let on_disk: NodeMeta =
            serde_json::from_slice(&fs::read(dir.path().join("node.json")).expect("read"))
                .expect("json");
        assert_eq!(on_disk.format, FORMAT);
        assert!(
            !NodeMeta::shard_dir(dir.path(), 0).exists(),
            "format-1 shards removed"
        );
        assert!(!dir.path().join("log").join("junk").exists());

        let (log, _) =
            Log::open(&dir.path().join("log"), 2, 8 << 20, true, |_, _| {}).expect("log");
        let log = Arc::new(log);
        assert_eq!(log.range(0), (1, 30));
        assert_eq!(log.range(1), (1, 12));
        let path = NodeMeta::store_dir(dir.path());
        let db = open_db(&path).expect("store");
        let s0 = ShardStore::open(&db, &path, 0, Arc::clone(&log)).expect("shard 0");
        let s1 = ShardStore::open(&db, &path, 1, Arc::clone(&log)).expect("shard 1");
        assert_eq!(s0.counters().expect("counters"), (30, 30));
        assert_eq!(s1.counters().expect("counters"), (12, 12));
        assert_eq!(s0.get(b"s0-k7").expect("get"), Some((7, b"v7".to_vec())));
        assert_eq!(s1.get(b"s1-k12").expect("get"), Some((12, b"v12".to_vec())));
        // Every entry is applied: nothing is replayed over the copied data.
        assert_eq!(s0.applied_lsn().expect("lsn"), 30);
        assert_eq!(s1.applied_lsn().expect("lsn"), 42);
        let entries = s1.read_log(0, 12, usize::MAX, 100).expect("entries");
        assert_eq!(entries.len(), 12);
        assert_eq!(
            LogRecord::decode(&entries[3].record).expect("record").op,
            LogOp::Put {
                key: ByteBuf::from(b"s1-k4".to_vec()),
                value: ByteBuf::from(b"v4".to_vec()),
            }
        );
    }
}
