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
const FORMAT: u32 = 1;

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

/// Holds the directory's lock while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { what, path, source }
}

impl NodeMeta {
    /// Locks `dir` and loads its metadata, creating both on first start. Refuses a directory made
    /// with another shard count.
    ///
    /// # Errors
    /// On I/O errors, a held lock, a corrupt file or a shard-count mismatch.
    pub fn open(dir: &Path, shards: u32) -> Result<(Self, DirLock), StorageError> {
        fs::create_dir_all(dir).map_err(io_err("cannot create the data directory", dir))?;
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
                if meta.format != FORMAT {
                    return Err(StorageError::Corrupt {
                        what: "node.json",
                        detail: format!(
                            "format {} is not supported (this kvd reads {FORMAT})",
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
                    node_id: uuid::Uuid::new_v4().to_string(),
                    shards,
                };
                write_atomically(&path, &meta)?;
                meta
            }
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        Ok((meta, lock))
    }

    /// The directory of shard `i`.
    #[must_use]
    pub fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
        dir.join(format!("shard-{shard}"))
    }
}

/// Writes a temporary file, syncs it, renames it over `path` and syncs the directory.
fn write_atomically(path: &Path, meta: &NodeMeta) -> Result<(), StorageError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(meta).map_err(|e| StorageError::Corrupt {
        what: "node.json",
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
        let (meta, lock) = NodeMeta::open(dir.path(), 2).expect("create");
        assert_eq!(meta.shards, 2);
        // A second opener is refused while the first holds the lock.
        assert!(matches!(
            NodeMeta::open(dir.path(), 2),
            Err(StorageError::Locked(_))
        ));
        drop(lock);
        let (again, _lock) = NodeMeta::open(dir.path(), 2).expect("reopen");
        assert_eq!(again.node_id, meta.node_id);
    }

    #[test]
    fn other_shard_count_is_refused_naming_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(NodeMeta::open(dir.path(), 2).expect("create"));
        let err = NodeMeta::open(dir.path(), 3).expect_err("mismatch");
        let msg = err.to_string();
        assert!(
            msg.contains("holds 2 shards") && msg.contains("--shard=3"),
            "{msg}"
        );
    }
}
