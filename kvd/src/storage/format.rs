//! On-disk encodings of the `data`, `log` and `meta` keyspaces (documented in
//! `docs/storage-format.md`). Integers in keys are big-endian so they sort numerically.

use bincode::Options;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use shared::cluster::EpochStart;

use super::StorageError;
use crate::cluster::history::EpochHistory;

/// `meta` key holding the last sequence number written (u64 big-endian).
pub const META_LAST_SEQ: &[u8] = b"last_seq";
/// `meta` key holding the number of live keys (u64 big-endian).
pub const META_KEYS: &[u8] = b"keys";
/// `meta` key holding the lsn of the last frame of the node's log applied to this shard's data.
pub const META_APPLIED: &[u8] = b"applied_lsn";
/// `meta` key present while a full resync of the shard is incomplete.
pub const META_RESYNC: &[u8] = b"resync";
/// `meta` key holding the shard's epoch history (bincode of `Vec<EpochStart>`); absent in a
/// shard written before epochs existed, whose entries are all of epoch 1.
pub const META_EPOCHS: &[u8] = b"epochs";

/// A `data` value: the version (u64 big-endian) followed by the value bytes.
#[must_use]
pub fn encode_data(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a `data` value into its version and value bytes.
///
/// # Errors
/// When the record is shorter than its version header.
pub fn decode_data(raw: &[u8]) -> Result<(u64, &[u8]), StorageError> {
    let (head, value) = raw
        .split_first_chunk::<8>()
        .ok_or_else(|| StorageError::Corrupt {
            what: "data",
            detail: format!("record of {} bytes has no version header", raw.len()),
        })?;
    Ok((u64::from_be_bytes(*head), value))
}

/// Decodes a big-endian u64 (sequence keys and meta counters).
///
/// # Errors
/// When the slice is not 8 bytes long.
pub fn decode_u64(raw: &[u8], what: &'static str) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| StorageError::Corrupt {
        what,
        detail: format!("expected 8 bytes, found {}", raw.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// One operation of the replication log. It carries the resulting value, never a delta, so
/// replaying from any point over a copy converges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOp {
    /// The key now holds this value.
    Put {
        /// The key.
        key: ByteBuf,
        /// The value.
        value: ByteBuf,
    },
    /// The key was removed.
    Delete {
        /// The key.
        key: ByteBuf,
    },
}

/// A `log` value (key: the sequence number, u64 big-endian).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The master's epoch when it was written.
    pub epoch: u64,
    /// Commit time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What was done.
    pub op: LogOp,
}

/// A [`LogOp`] over borrowed bytes: encodes to exactly the same bytes, without copying the key
/// and the value first.
#[derive(Serialize)]
pub enum LogOpRef<'a> {
    /// See [`LogOp::Put`].
    Put {
        /// The key.
        key: &'a serde_bytes::Bytes,
        /// The value.
        value: &'a serde_bytes::Bytes,
    },
    /// See [`LogOp::Delete`].
    Delete {
        /// The key.
        key: &'a serde_bytes::Bytes,
    },
}

/// A [`LogRecord`] over borrowed bytes (same encoding).
#[derive(Serialize)]
pub struct LogRecordRef<'a> {
    /// See [`LogRecord::epoch`].
    pub epoch: u64,
    /// See [`LogRecord::time_ms`].
    pub time_ms: u64,
    /// See [`LogRecord::op`].
    pub op: LogOpRef<'a>,
}

impl LogRecordRef<'_> {
    /// Appends the record's encoding to `out`.
    ///
    /// # Errors
    /// Never in practice (bincode into a `Vec`).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), StorageError> {
        options()
            .serialize_into(out, self)
            .map_err(|e| StorageError::Corrupt {
                what: "log",
                detail: e.to_string(),
            })
    }
}

/// The payload of a `Truncate` frame: every key the cut entries touched, as it is after the cut.
pub type TruncatePayload = Vec<(ByteBuf, Option<(u64, ByteBuf)>)>;

/// The payload of a `Loaded` frame: the shard's key count and epoch history at the copy's end.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadedPayload {
    /// Live keys.
    pub keys: u64,
    /// The epoch history up to the copy's sequence.
    pub epochs: Vec<EpochStart>,
}

/// Encodes a frame payload.
///
/// # Errors
/// Never in practice (bincode into a `Vec`).
pub fn encode_payload<T: Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, StorageError> {
    options()
        .serialize(value)
        .map_err(|e| StorageError::Corrupt {
            what,
            detail: e.to_string(),
        })
}

/// Decodes a frame payload.
///
/// # Errors
/// When the bytes are not a payload of the kind.
pub fn decode_payload<T: serde::de::DeserializeOwned>(
    raw: &[u8],
    what: &'static str,
) -> Result<T, StorageError> {
    options()
        .deserialize(raw)
        .map_err(|e| StorageError::Corrupt {
            what,
            detail: e.to_string(),
        })
}

fn options() -> impl Options + Copy {
    bincode::DefaultOptions::new()
}

impl LogRecord {
    /// Encodes the record.
    ///
    /// # Errors
    /// Never in practice (bincode into a `Vec`); kept as a `Result` to avoid a panic path.
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        options()
            .serialize(self)
            .map_err(|e| StorageError::Corrupt {
                what: "log",
                detail: e.to_string(),
            })
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// When the bytes are not a record.
    pub fn decode(raw: &[u8]) -> Result<Self, StorageError> {
        options()
            .deserialize(raw)
            .map_err(|e| StorageError::Corrupt {
                what: "log",
                detail: e.to_string(),
            })
    }
}

/// Encodes an epoch history for `meta`.
///
/// # Errors
/// Never in practice (bincode into a `Vec`).
pub fn encode_history(history: &EpochHistory) -> Result<Vec<u8>, StorageError> {
    options()
        .serialize(history.starts())
        .map_err(|e| StorageError::Corrupt {
            what: "meta epochs",
            detail: e.to_string(),
        })
}

/// Decodes an epoch history from `meta`.
///
/// # Errors
/// When the bytes are not a valid history.
pub fn decode_history(raw: &[u8]) -> Result<EpochHistory, StorageError> {
    let starts: Vec<EpochStart> =
        options()
            .deserialize(raw)
            .map_err(|e| StorageError::Corrupt {
                what: "meta epochs",
                detail: e.to_string(),
            })?;
    EpochHistory::new(starts).map_err(|e| StorageError::Corrupt {
        what: "meta epochs",
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip() {
        let raw = encode_data(42, b"hello");
        assert_eq!(&raw[..8], &42u64.to_be_bytes());
        let (v, value) = decode_data(&raw).expect("decode");
        assert_eq!((v, value), (42, &b"hello"[..]));
        assert!(decode_data(b"short").is_err());
        assert_eq!(decode_data(&encode_data(1, b"")).expect("decode").1, b"");
    }

    #[test]
    fn log_round_trip() {
        let rec = LogRecord {
            epoch: 1,
            time_ms: 5,
            op: LogOp::Put {
                key: ByteBuf::from(b"k".to_vec()),
                value: ByteBuf::from(vec![0, 1, 255]),
            },
        };
        assert_eq!(
            LogRecord::decode(&rec.encode().expect("encode")).expect("decode"),
            rec
        );
        assert!(LogRecord::decode(&[9, 9]).is_err());
    }

    #[test]
    fn a_borrowed_record_encodes_like_an_owned_one() {
        for op in [
            LogOp::Put {
                key: ByteBuf::from(b"key".to_vec()),
                value: ByteBuf::from(vec![1u8; 300]),
            },
            LogOp::Delete {
                key: ByteBuf::from(b"gone".to_vec()),
            },
        ] {
            let owned = LogRecord {
                epoch: 7,
                time_ms: 123_456,
                op: op.clone(),
            };
            let op_ref = match &op {
                LogOp::Put { key, value } => LogOpRef::Put {
                    key: serde_bytes::Bytes::new(key),
                    value: serde_bytes::Bytes::new(value),
                },
                LogOp::Delete { key } => LogOpRef::Delete {
                    key: serde_bytes::Bytes::new(key),
                },
            };
            let mut out = vec![9u8];
            LogRecordRef {
                epoch: 7,
                time_ms: 123_456,
                op: op_ref,
            }
            .encode_into(&mut out)
            .expect("encode");
            assert_eq!(out[1..], owned.encode().expect("encode")[..]);
        }
    }

    #[test]
    fn history_round_trip() {
        let mut h = EpochHistory::default();
        h.note(1, 1).expect("note");
        h.note(4, 30).expect("note");
        let raw = encode_history(&h).expect("encode");
        assert_eq!(decode_history(&raw).expect("decode"), h);
        assert!(
            decode_history(&[2, 5, 9, 1, 3]).is_err(),
            "epochs out of order"
        );
    }
}
