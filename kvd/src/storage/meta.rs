//! `node.json`: what a data directory is (format, node id, shard count), and the `LOCK` file
//! that keeps two processes off one directory.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::StorageError;

const META_FILE: &str = "node.json";
const LOCK_FILE: &str = "LOCK";
/// The format this kvd writes; it migrates format 1 at start (`migrate.rs`).
pub const FORMAT: u32 = 2;

/// The identity of a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// On-disk format version.
    pub format: u32,
    /// Stable node id, made when the directory was created.
    pub node_id: String,
    /// Number of shards; fixed for the life of the directory.
    pub shards: u32,
}

/// Refuses a missing `dir` whose parent does not exist either, unless `create_parents`; run
/// before anything (the log files) creates directories under it.
///
/// # Errors
/// [`StorageError::MissingParent`].
pub fn check_data_dir(dir: &Path, create_parents: bool) -> Result<(), StorageError> {
    if create_parents || dir.exists() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if parent.is_dir() {
        Ok(())
    } else {
        Err(StorageError::MissingParent {
            dir: dir.to_path_buf(),
            parent: parent.to_path_buf(),
        })
    }
}

/// Holds the directory's lock while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub(crate) fn io_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { what, path, source }
}

impl NodeMeta {
    /// Locks `dir` and loads its metadata, creating both on first start. Refuses a directory made
    /// with another shard count.
    ///
    /// A missing `dir` is created only when its parent exists, unless `create_parents` (kvd's own
    /// default directory, `./data/node-<port>`): a `--data-dir` on a mount that failed must not
    /// silently become a new, empty node.
    ///
    /// # Errors
    /// On I/O errors, a held lock, a corrupt file, a shard-count mismatch or a missing parent.
    pub fn open(
        dir: &Path,
        shards: u32,
        create_parents: bool,
    ) -> Result<(Self, DirLock), StorageError> {
        if !dir.exists() {
            check_data_dir(dir, create_parents)?;
            fs::create_dir_all(dir).map_err(io_err("cannot create the data directory", dir))?;
            tracing::info!(data_dir = %dir.display(), "created a new, empty data directory");
        }
        let lock_path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("cannot open", &lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked(dir.to_path_buf()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &lock_path)(e)),
        }
        let lock = DirLock { _file: file };

        let path = dir.join(META_FILE);
        let meta = match fs::read(&path) {
            Ok(raw) => {
                let meta: NodeMeta =
                    serde_json::from_slice(&raw).map_err(|e| StorageError::Corrupt {
                        what: "node.json",
                        detail: format!("{}: {e}", path.display()),
                    })?;
                if !(1..=FORMAT).contains(&meta.format) {
                    return Err(StorageError::Corrupt {
                        what: "node.json",
                        detail: format!(
                            "{}: format {} is not supported: this kvd reads formats 1 (which it \
                             migrates) and {FORMAT}; is the directory from a newer kvd?",
                            path.display(),
                            meta.format
                        ),
                    });
                }
                if meta.shards != shards {
                    return Err(StorageError::ShardCountMismatch {
                        dir: dir.to_path_buf(),
                        stored: meta.shards,
                        requested: shards,
                    });
                }
                meta
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = NodeMeta {
                    format: FORMAT,
                    node_id: crate::random::uuid().to_string(),
                    shards,
                };
                write_json_atomically(&path, &meta, "node.json")?;
                meta
            }
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        Ok((meta, lock))
    }

    /// The node's fjall database (format 2): every shard's keyspaces.
    #[must_use]
    pub fn store_dir(dir: &Path) -> PathBuf {
        dir.join("store")
    }

    /// The directory of shard `i` (format 1: one fjall database per shard).
    #[must_use]
    pub fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
        dir.join(format!("shard-{shard}"))
    }
}

/// Writes `value` as JSON to a temporary file, syncs it, renames it over `path` and syncs the
/// directory: after a crash the file is either the old one or the new one, whole.
///
/// # Errors
/// On I/O errors.
pub fn write_json_atomically<T: Serialize>(
    path: &Path,
    value: &T,
    what: &'static str,
) -> Result<(), StorageError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Corrupt {
        what,
        detail: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
    f.write_all(&body).map_err(io_err("cannot write", &tmp))?;
    f.sync_all().map_err(io_err("cannot sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync", parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (meta, lock) = NodeMeta::open(dir.path(), 2, false).expect("create");
        assert_eq!(meta.shards, 2);
        // A second opener is refused while the first holds the lock.
        assert!(matches!(
            NodeMeta::open(dir.path(), 2, false),
            Err(StorageError::Locked(_))
        ));
        drop(lock);
        let (again, _lock) = NodeMeta::open(dir.path(), 2, false).expect("reopen");
        assert_eq!(again.node_id, meta.node_id);
    }

    #[test]
    fn a_missing_directory_is_made_only_under_an_existing_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("mnt").join("node-1");
        let e = NodeMeta::open(&nested, 2, false).expect_err("parent missing");
        assert!(matches!(e, StorageError::MissingParent { .. }), "{e}");
        assert!(e.to_string().contains("mnt"), "{e}");
        assert!(!nested.exists(), "nothing was created");
        drop(NodeMeta::open(&dir.path().join("node-2"), 2, false).expect("parent exists"));
        drop(NodeMeta::open(&nested, 2, true).expect("kvd's own default may create parents"));
    }

    #[test]
    fn other_shard_count_is_refused_naming_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(NodeMeta::open(dir.path(), 2, false).expect("create"));
        let err = NodeMeta::open(dir.path(), 3, false).expect_err("mismatch");
        let msg = err.to_string();
        assert!(
            msg.contains("holds 2 shards") && msg.contains("--shard=3"),
            "{msg}"
        );
    }
}
