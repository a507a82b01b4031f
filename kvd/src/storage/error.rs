//! Errors of the storage layer.

use std::path::PathBuf;

/// What can go wrong opening or writing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The engine failed.
    #[error("storage engine error: {0}")]
    Engine(#[from] fjall::Error),
    /// A file of the data directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory was created with another shard count.
    #[error(
        "the data directory {dir} holds {stored} shards, but --shard={requested} was given: \
         the shard count is fixed for the life of a data directory; start with --shard={stored} \
         or use another --data-dir"
    )]
    ShardCountMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The count recorded in it.
        stored: u32,
        /// The count asked for.
        requested: u32,
    },
    /// `--data-dir` does not exist and neither does its parent (a mount that failed?).
    #[error(
        "the data directory {dir} does not exist, and neither does its parent {parent}: \
         is a disk not mounted? kvd does not create it, so that a missing mount never starts \
         an empty node; create the directory first if it really is new"
    )]
    MissingParent {
        /// The data directory.
        dir: PathBuf,
        /// Its parent.
        parent: PathBuf,
    },
    /// Another process holds the directory.
    #[error("the data directory {0} is in use by another kvd process (its LOCK file is held)")]
    Locked(PathBuf),
    /// The shard's writer has stopped (shutdown).
    #[error("the writer of shard {0} has stopped")]
    Stopped(u32),
    /// A frame of the log is damaged before its tail: the node does not start on it.
    #[error(
        "the log is damaged in {file} at offset {offset}: {detail}; kvd does not skip it. \
         Restore this node from a replica (start it on an empty --data-dir with --replica) \
         or move the file aside knowing that the writes in it are lost"
    )]
    LogDamaged {
        /// The segment.
        file: PathBuf,
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Nothing was written for lack of disk space; writes resume once space is freed.
    #[error("the disk is full: {0}")]
    DiskFull(String),
    /// A write or fsync of the log failed: what it held may or may not be on disk.
    #[error("the log failed ({0}); the outcome of the writes in that commit is unknown")]
    LogFailed(String),
    /// A stored record does not decode.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}
