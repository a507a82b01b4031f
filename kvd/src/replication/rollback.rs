//! The rollback file: every entry a node gives up when it rejoins a master whose history does
//! not have it, kept for the operator instead of dropped.
//!
//! `<data-dir>/rollback/epoch-<E>-shard-<S>.jsonl`, where E is the epoch of the master the node
//! rejoined; one JSON object per line:
//! `{"version", "epoch", "op", "key" | "key_base64", "value" | "value_base64", "time_ms"}`.
//! Appending is made durable (file and directory fsync) before the truncation that removes the
//! entries is committed, and an entry already in the file (same version and epoch) is not
//! written twice, so a crash between the two steps neither loses nor repeats anything.

use std::{
    collections::HashSet,
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shared::cluster::Epoch;

use crate::storage::{
    StorageError,
    format::{LogOp, LogRecord},
    meta::io_err,
};

/// One entry given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// Its sequence (the version it wrote).
    pub version: u64,
    /// The epoch it was written in.
    pub epoch: Epoch,
    /// When it was committed (milliseconds since the Unix epoch; 0 when unknown).
    pub time_ms: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value written, `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl Given {
    /// From a log record at `seq`.
    #[must_use]
    pub fn from_record(seq: u64, record: LogRecord) -> Self {
        let (key, value) = match record.op {
            LogOp::Put { key, value } => (key.into_vec(), Some(value.into_vec())),
            LogOp::Delete { key } => (key.into_vec(), None),
        };
        Self {
            version: seq,
            epoch: record.epoch,
            time_ms: record.time_ms,
            key,
            value,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    version: u64,
    epoch: Epoch,
    op: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value_base64: Option<String>,
    time_ms: u64,
}

fn text_or_base64(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

impl From<&Given> for Line {
    fn from(g: &Given) -> Self {
        let (key, key_base64) = text_or_base64(&g.key);
        let (value, value_base64) = match &g.value {
            Some(v) => text_or_base64(v),
            None => (None, None),
        };
        Self {
            version: g.version,
            epoch: g.epoch,
            op: if g.value.is_some() { "put" } else { "delete" }.to_string(),
            key,
            key_base64,
            value,
            value_base64,
            time_ms: g.time_ms,
        }
    }
}

/// The file for entries given up on `shard` when rejoining the master of `epoch`.
#[must_use]
pub fn path(data_dir: &Path, epoch: Epoch, shard: u32) -> PathBuf {
    data_dir
        .join("rollback")
        .join(format!("epoch-{epoch}-shard-{shard}.jsonl"))
}

/// Appends `entries` to the file (durably), skipping those already in it; returns the path and
/// how many were written.
///
/// # Errors
/// On I/O errors.
pub fn append(
    data_dir: &Path,
    epoch: Epoch,
    shard: u32,
    entries: &[Given],
) -> Result<(PathBuf, usize), StorageError> {
    let file_path = path(data_dir, epoch, shard);
    let dir = file_path
        .parent()
        .map_or_else(|| data_dir.to_path_buf(), Path::to_path_buf);
    fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    let present = already_written(&file_path)?;
    let mut body = Vec::new();
    if ends_torn(&file_path)? {
        // Finish the torn line so the next one starts clean.
        body.push(b'\n');
    }
    let mut written = 0;
    for g in entries {
        if present.contains(&(g.version, g.epoch)) {
            continue;
        }
        serde_json::to_writer(&mut body, &Line::from(g)).map_err(|e| StorageError::Corrupt {
            what: "rollback file",
            detail: e.to_string(),
        })?;
        body.push(b'\n');
        written += 1;
    }
    if written > 0 {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file_path)
            .map_err(io_err("cannot open", &file_path))?;
        f.write_all(&body)
            .map_err(io_err("cannot write", &file_path))?;
        f.sync_all().map_err(io_err("cannot sync", &file_path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync", &dir))?;
    }
    Ok((file_path, written))
}

/// Whether the file exists and does not end with a newline (a crash while appending).
fn ends_torn(path: &Path) -> Result<bool, StorageError> {
    match fs::read(path) {
        Ok(raw) => Ok(raw.last().is_some_and(|&b| b != b'\n')),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("cannot read", path)(e)),
    }
}

/// The (version, epoch) of every entry in the file; a torn last line (a crash while appending)
/// counts as absent, so it is written again whole.
fn already_written(path: &Path) -> Result<HashSet<(u64, Epoch)>, StorageError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io_err("cannot read", path)(e)),
    };
    let mut out = HashSet::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io_err("cannot read", path))?;
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            out.insert((l.version, l.epoch));
        }
    }
    Ok(out)
}

/// Reads every entry of a rollback file back (for tests and tools); a torn line left by a crash
/// while appending is skipped (its entry was written again whole after it).
///
/// # Errors
/// On I/O errors.
pub fn read(path: &Path) -> Result<Vec<Given>, StorageError> {
    let raw = fs::read_to_string(path).map_err(io_err("cannot read", path))?;
    let decode = |s: Option<String>, b: Option<String>| -> Option<Vec<u8>> {
        s.map(String::into_bytes)
            .or_else(|| b.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()))
    };
    Ok(raw
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .map(|line| Given {
            version: line.version,
            epoch: line.epoch,
            time_ms: line.time_ms,
            key: decode(line.key, line.key_base64).unwrap_or_default(),
            value: if line.op == "delete" {
                None
            } else {
                Some(decode(line.value, line.value_base64).unwrap_or_default())
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(version: u64, key: &[u8], value: Option<&[u8]>) -> Given {
        Given {
            version,
            epoch: 2,
            time_ms: 7,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn entries_are_kept_once_text_or_base64() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = vec![
            given(5, b"k", Some(b"v")),
            given(6, &[0xff, 0], Some(&[1, 2, 255])),
            given(7, b"k", None),
        ];
        let (p, n) = append(dir.path(), 3, 1, &entries).expect("append");
        assert_eq!(n, 3);
        assert!(
            p.ends_with("rollback/epoch-3-shard-1.jsonl"),
            "{}",
            p.display()
        );
        // A crash before the truncation committed: the same entries again are not repeated.
        let (_, n) = append(dir.path(), 3, 1, &entries).expect("again");
        assert_eq!(n, 0);
        assert_eq!(read(&p).expect("read"), entries);
        let text = std::fs::read_to_string(&p).expect("text");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("line")).expect("json");
        assert_eq!(
            first,
            serde_json::json!({"version": 5, "epoch": 2, "op": "put", "key": "k", "value": "v", "time_ms": 7})
        );
        assert!(text.contains("\"key_base64\":\"/wA=\""), "{text}");
        assert!(
            text.lines()
                .nth(2)
                .expect("line")
                .contains("\"op\":\"delete\"")
        );
    }

    #[test]
    fn a_torn_last_line_is_written_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), 3, 0);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, b"{\"version\":5,\"epo").expect("torn");
        let (_, n) = append(dir.path(), 3, 0, &[given(5, b"k", Some(b"v"))]).expect("append");
        assert_eq!(n, 1);
        assert_eq!(read(&p).expect("read"), vec![given(5, b"k", Some(b"v"))]);
    }
}
