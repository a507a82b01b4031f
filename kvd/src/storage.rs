//! Durable storage: one fjall database per shard, a writer thread per shard that group-commits,
//! and the node's metadata file.
//!
//! ```text
//!  <data-dir>/
//!    node.json        format, node id, shard count (fixed for the life of the directory)
//!    LOCK             held while a kvd runs on this directory
//!    shard-0/ ...     one fjall database per shard: keyspaces `data`, `log`, `meta`
//!
//!  RPC task --WriteOp--> mpsc --> writer thread (shard i) --one WriteBatch + fsync--> fjall
//!      ^                                 |
//!      +------- oneshot reply -----------+   (after the batch is durable)
//! ```
//!
//! Invariants: the data and its log record are in one atomic batch; a write is answered only
//! after the batch holding it is durable under the sync policy; a value's version is the
//! sequence number of the log record that wrote it. See `docs/storage-format.md`.

pub mod error;
pub mod format;
pub mod log;
pub mod meta;
pub mod migrate;
pub mod shard;
pub mod space;
pub mod writer;

pub use error::StorageError;
pub use meta::NodeMeta;
pub use shard::ShardStore;
pub use space::DiskSpace;
pub use writer::{ShardMetrics, WriteKind, WriterHandle, WriterStats};

/// Opens the node's log in `<data_dir>/log`, with its progress in the log when it is long.
///
/// # Errors
/// See [`log::Log::open`].
pub fn open_log(
    data_dir: &std::path::Path,
    shards: u32,
    retention: u64,
    sync: bool,
) -> Result<log::Log, StorageError> {
    let started = std::time::Instant::now();
    let mut last = started;
    let (log, report) = log::Log::open(
        &data_dir.join("log"),
        shards,
        retention,
        sync,
        |report, total| {
            if last.elapsed() >= std::time::Duration::from_secs(1) {
                last = std::time::Instant::now();
                tracing::info!(
                    segments = report.segments,
                    read_mib = format_args!("{:.0}", report.bytes as f64 / 1048576.0),
                    total_mib = format_args!("{:.0}", total as f64 / 1048576.0),
                    mib_per_s = format_args!(
                        "{:.0}",
                        report.bytes as f64 / 1048576.0 / started.elapsed().as_secs_f64()
                    ),
                    "reading the log"
                );
            }
        },
    )?;
    tracing::info!(
        segments = report.segments,
        frames = report.frames,
        bytes = report.bytes,
        retention = log.retention(),
        segment_bytes = log.segment_bytes(),
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "opened the log"
    );
    Ok(log)
}

/// The free space kept on the data directory's disk for a node with `log`: two segments and
/// room for the data store's journal and a memtable flush.
#[must_use]
pub fn reserve_for(log: &log::Log) -> u64 {
    2 * log.segment_bytes() + (32 << 20)
}

/// Log upkeep, run every few hundred milliseconds off the commit path: removes the segments
/// that fall out of retention once every shard's data store has durably applied them (it syncs
/// them first), and makes the spare segment the next roll renames.
///
/// # Errors
/// When a sync, a removal or the spare fails.
pub fn maintain(log: &log::Log, stores: &[std::sync::Arc<ShardStore>]) -> Result<(), StorageError> {
    // fjall rotates its journal at 64 MB and drops a sealed one only once every memtable it
    // covers is flushed: flush them as soon as there is one, so the database's journal stays
    // near one file (docs/storage-format.md).
    for store in stores {
        store.bound_journal()?;
    }
    if log.over_retention() {
        let safe = log.applied_everywhere();
        if log.removable(safe) {
            for store in stores {
                store.persist()?;
            }
            log.trim(safe)?;
        }
    }
    log.prepare_spare()
}
