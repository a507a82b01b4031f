//! Format 1 to format 2, in place, at start.
//!
//! Format 1 kept each shard's replication log in its fjall database (keyspace `log`), and fjall's
//! journal was the journal. Format 2 has one log for the node (`log.rs`). The migration copies
//! every shard's `log` keyspace, in sequence order, into a new log under `log.migrating/`,
//! records in each shard's `meta` that its data has applied all of it, renames the directory to
//! `log/`, and only then writes `node.json` with format 2. A migration interrupted at any point
//! leaves `node.json` at format 1 and is redone from the start; the old keyspaces are dropped
//! once format 2 is on disk.

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
    for stale in [&tmp, &done] {
        if stale.exists() {
            fs::remove_dir_all(stale).map_err(io_err("cannot remove the unfinished", stale))?;
        }
    }
    let mut entries = 0u64;
    {
        let (log, _) = Log::open(&tmp, meta.shards, retention, true, |_, _| {})?;
        for shard in 0..meta.shards {
            let db = open_db(&NodeMeta::shard_dir(dir, shard))?;
            let log_ks = db.keyspace("log", KeyspaceCreateOptions::default)?;
            let meta_ks = db.keyspace("meta", KeyspaceCreateOptions::default)?;
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
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&meta_ks, META_APPLIED, applied.to_be_bytes());
            batch.commit()?;
        }
    }
    fs::rename(&tmp, &done).map_err(io_err("cannot rename into place", &done))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync", dir))?;
    meta.format = FORMAT;
    write_json_atomically(&dir.join("node.json"), meta, "node.json")?;
    for shard in 0..meta.shards {
        if let Err(e) = drop_old_log(dir, shard) {
            tracing::warn!(shard, error = %e, "cannot drop the format-1 log keyspace; it is tried at the next start");
        }
    }
    tracing::info!(
        entries,
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "migrated the data directory to format 2"
    );
    Ok(())
}

/// Drops a shard's format-1 `log` keyspace, if it is still there.
///
/// # Errors
/// On engine errors.
pub fn drop_old_log(dir: &Path, shard: u32) -> Result<(), StorageError> {
    let db = open_db(&NodeMeta::shard_dir(dir, shard))?;
    if db.keyspace_exists("log") {
        let ks = db.keyspace("log", KeyspaceCreateOptions::default)?;
        db.delete_keyspace(ks)?;
    }
    Ok(())
}
