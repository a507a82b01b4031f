//! The node's one log: the journal of every shard and the replication log, in segments.
//!
//! ```text
//!  <data-dir>/log/00000000000000000003.seg  segments, zero-filled to their size when made,
//!                 00000000000000000004.seg  so a commit overwrites allocated blocks and its
//!                 spare.tmp                 fdatasync carries no metadata; the next one, ready
//!
//!  frame: len u32 LE | !len u32 LE | xxh3_64(body) u64 LE | body
//!  body:  lsn u64 LE | shard u32 LE | seq u64 LE | kind u8 | payload
//! ```
//!
//! Every shard's writer hands its frames to [`Log::append`]; the first caller to find no commit
//! in progress becomes the leader, writes everything queued by all shards and fsyncs once, and
//! the others wait for it (group commit across shards). A frame is in the index, and readable,
//! once durable. Frames of one shard carry its sequence numbers; `lsn` numbers every frame of
//! the node and is how a shard's data store says how far it has applied the log.
//!
//! Opening scans every segment. A bad frame followed only by zeros (or the end of the file) in
//! the last segment is a torn tail, cut off and zeroed; any other bad frame stops the node with
//! the file and the offset ([`StorageError::LogDamaged`]). Retention is by bytes, in whole
//! segments, and only below what every shard's data store has durably applied.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File},
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, RwLock},
};

use serde_bytes::ByteBuf;
use shared::LogEntry;

use super::{StorageError, meta::io_err};

/// Bytes of a frame's header.
pub const HEADER: usize = 16;
/// Bytes of a body before its payload.
pub const BODY_FIXED: usize = 21;
/// The largest body a frame may have (a batch of one shard is at most 32 MiB of keys and values).
const MAX_BODY: usize = 256 * 1024 * 1024;
const SPARE: &str = "spare.tmp";
/// Zeros written at a time when a segment is made.
const ZERO_CHUNK: usize = 1024 * 1024;

/// What a frame records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A log entry at `seq`; the payload is the `LogRecord` as replication sends it.
    Entry,
    /// The shard was cut back to `seq`; the payload says how to restore the keys.
    Truncate,
    /// The shard was emptied for a full resync.
    Reset,
    /// A full resync ended at `seq`.
    Loaded,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::Entry => 0,
            Self::Truncate => 1,
            Self::Reset => 2,
            Self::Loaded => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Entry,
            1 => Self::Truncate,
            2 => Self::Reset,
            3 => Self::Loaded,
            _ => return None,
        })
    }
}

/// A frame to append.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Its shard.
    pub shard: u32,
    /// The shard's sequence number it records (see [`Kind`]).
    pub seq: u64,
    /// What it records.
    pub kind: Kind,
    /// Its payload.
    pub payload: &'a [u8],
}

/// A frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    /// Its log sequence number.
    pub lsn: u64,
    /// Its shard.
    pub shard: u32,
    /// The shard's sequence number.
    pub seq: u64,
    /// What it records.
    pub kind: Kind,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Where a durable frame is.
#[derive(Debug, Clone, Copy)]
struct Pos {
    segment: u64,
    offset: u32,
    len: u32,
}

/// One shard's durable entries, in sequence order: entry `base + 1 + i` is at `pos[i]`.
#[derive(Debug, Default)]
struct ShardIndex {
    base: u64,
    pos: VecDeque<Pos>,
    /// The lsn of the shard's last durable frame.
    last_lsn: u64,
}

impl ShardIndex {
    fn last_seq(&self) -> u64 {
        self.base + self.pos.len() as u64
    }

    /// Applies a durable frame; an entry must continue the sequence.
    fn apply(&mut self, lsn: u64, seq: u64, kind: Kind, pos: Pos) -> Result<(), String> {
        self.last_lsn = lsn;
        match kind {
            Kind::Entry => {
                if self.pos.is_empty() && self.base == 0 {
                    self.base = seq.saturating_sub(1);
                } else if seq != self.last_seq() + 1 {
                    return Err(format!(
                        "entry {seq} does not follow entry {}",
                        self.last_seq()
                    ));
                }
                self.pos.push_back(pos);
            }
            Kind::Truncate => {
                if seq < self.base {
                    self.pos.clear();
                    self.base = seq;
                } else {
                    let keep = usize::try_from(seq - self.base).unwrap_or(usize::MAX);
                    self.pos.truncate(keep);
                }
            }
            Kind::Reset => {
                self.pos.clear();
                self.base = 0;
            }
            Kind::Loaded => {
                self.pos.clear();
                self.base = seq;
            }
        }
        Ok(())
    }
}

struct Segment {
    number: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Allocated bytes (its length).
    size: u64,
    /// The lsn of its last frame (0: none yet).
    last_lsn: u64,
}

/// A frame queued for the next commit.
struct Queued {
    lsn: u64,
    shard: u32,
    seq: u64,
    kind: Kind,
    offset: usize,
    len: usize,
}

struct Active {
    segment: u64,
    file: Arc<File>,
    path: PathBuf,
    /// Where the next frame goes.
    offset: u64,
    size: u64,
}

struct State {
    next_lsn: u64,
    /// Frames queued for the next commit, encoded.
    buf: Vec<u8>,
    queued: Vec<Queued>,
    /// The number of the batch now filling; the leader takes it.
    open_batch: u64,
    /// The last batch finished (written or failed).
    finished: u64,
    failed: VecDeque<(u64, Failure)>,
    leading: bool,
    active: Active,
    /// Set after a failed write or fsync: what the segment holds past `active.offset` is not
    /// known, so nothing more is appended until the node restarts.
    broken: Option<String>,
    /// A commit's spare buffers, reused.
    spare_buf: Vec<u8>,
    spare_queued: Vec<Queued>,
}

/// Why a batch failed, for each caller in it.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Nothing was written (a new segment could not be made: the disk is full).
    NotWritten(String),
    /// The write or the fsync failed: the frames may or may not be on disk.
    Unknown(String),
}

/// What opening the log found.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Segments scanned.
    pub segments: usize,
    /// Frames found.
    pub frames: u64,
    /// Bytes of frames found.
    pub bytes: u64,
    /// Where a torn tail was cut (file, offset), if one was.
    pub torn: Option<(PathBuf, u64)>,
}

/// The log.
pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    retention: u64,
    sync: bool,
    state: Mutex<State>,
    done: Condvar,
    index: RwLock<Vec<ShardIndex>>,
    segments: RwLock<BTreeMap<u64, Segment>>,
    /// Lsn up to which every frame is durable.
    durable: std::sync::atomic::AtomicU64,
    /// Per shard, the lsn its data store has applied (set by its writer after each commit).
    applied: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.seg"))
}

/// Encodes one frame onto `buf`.
fn encode(buf: &mut Vec<u8>, lsn: u64, f: &Frame<'_>) -> usize {
    let body_len = BODY_FIXED + f.payload.len();
    let start = buf.len();
    let len = u32::try_from(body_len).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&(!len).to_le_bytes());
    buf.extend_from_slice(&[0u8; 8]);
    let body = buf.len();
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&f.shard.to_le_bytes());
    buf.extend_from_slice(&f.seq.to_le_bytes());
    buf.push(f.kind.byte());
    buf.extend_from_slice(f.payload);
    let sum = xxhash_rust::xxh3::xxh3_64(&buf[body..]);
    buf[start + 8..start + 16].copy_from_slice(&sum.to_le_bytes());
    buf.len() - start
}

/// What is at an offset of a segment.
enum Parsed<'a> {
    Frame {
        lsn: u64,
        shard: u32,
        seq: u64,
        kind: Kind,
        payload: &'a [u8],
        len: usize,
    },
    /// Zeros to the end: the segment's data ends here.
    End,
    /// Not a frame: why, and where the bad frame would end.
    Bad(String, usize),
}

fn parse(data: &[u8], at: usize) -> Parsed<'_> {
    let rest = &data[at..];
    if rest.iter().all(|&b| b == 0) {
        return Parsed::End;
    }
    if rest.len() < HEADER {
        return Parsed::Bad(
            format!("{} bytes are too short for a frame header", rest.len()),
            data.len(),
        );
    }
    let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let (len, check) = (word(0), word(4));
    if check != !len {
        return Parsed::Bad(
            format!("the frame length {len} does not match its check {check:#x}"),
            at + HEADER,
        );
    }
    let len = len as usize;
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return Parsed::Bad(
            format!("a frame of {len} bytes is out of range"),
            at + HEADER,
        );
    }
    let end = at + HEADER + len;
    if end > data.len() {
        return Parsed::Bad(
            format!(
                "the frame of {len} bytes runs past the end of the file ({} bytes)",
                data.len()
            ),
            data.len(),
        );
    }
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&rest[8..16]);
    let body = &rest[HEADER..HEADER + len];
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(sum) {
        return Parsed::Bad("the frame's checksum does not match".into(), end);
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let Some(kind) = Kind::from_byte(body[20]) else {
        return Parsed::Bad(format!("unknown frame kind {}", body[20]), end);
    };
    Parsed::Frame {
        lsn: u64_at(0),
        shard: u32::from_le_bytes([body[8], body[9], body[10], body[11]]),
        seq: u64_at(12),
        kind,
        payload: &body[BODY_FIXED..],
        len: HEADER + len,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync the directory", dir))
}

/// Makes a zero-filled file of `size` bytes at `path` and syncs it.
fn make_zeroed(path: &Path, size: u64) -> std::io::Result<File> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(ZERO_CHUNK as u64)).unwrap_or(ZERO_CHUNK);
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// Whether an I/O error means the disk is full.
#[must_use]
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28 | 122)) // ENOSPC, EDQUOT
}

impl Log {
    /// The size of a segment for a retention of `retention` bytes: an eighth of it, within
    /// 32 KiB and 64 MiB.
    #[must_use]
    pub fn segment_size_for(retention: u64) -> u64 {
        (retention / 8).clamp(32 << 10, 64 << 20)
    }

    /// Opens (or creates) the log in `dir` for `shards` shards: scans every segment, cuts a torn
    /// tail, and builds the index. `progress` is called after each segment.
    ///
    /// # Errors
    /// [`StorageError::LogDamaged`] for a bad frame before the tail, I/O errors otherwise.
    pub fn open(
        dir: &Path,
        shards: u32,
        retention: u64,
        sync: bool,
        mut progress: impl FnMut(&OpenReport, u64),
    ) -> Result<(Self, OpenReport), StorageError> {
        fs::create_dir_all(dir).map_err(io_err("cannot create the log directory", dir))?;
        let segment_bytes = Self::segment_size_for(retention);
        let mut numbers = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(dir).map_err(io_err("cannot list the log directory", dir))? {
            let entry = entry.map_err(io_err("cannot list the log directory", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == SPARE {
                let _ = fs::remove_file(entry.path());
            } else if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut report = OpenReport::default();
        let mut index: Vec<ShardIndex> = (0..shards).map(|_| ShardIndex::default()).collect();
        let mut segments = BTreeMap::new();
        let mut last_lsn = 0u64;
        let mut active = None;
        for (i, &number) in numbers.iter().enumerate() {
            let path = segment_path(dir, number);
            let is_last = i + 1 == numbers.len();
            let data = fs::read(&path).map_err(io_err("cannot read the log segment", &path))?;
            let mut at = 0usize;
            let mut seg_last = 0u64;
            let damaged = |offset: usize, detail: String| StorageError::LogDamaged {
                file: path.clone(),
                offset: offset as u64,
                detail,
            };
            loop {
                match parse(&data, at) {
                    Parsed::End => break,
                    Parsed::Frame {
                        lsn,
                        shard,
                        seq,
                        kind,
                        len,
                        ..
                    } => {
                        if lsn <= last_lsn {
                            return Err(damaged(
                                at,
                                format!("frame {lsn} comes after frame {last_lsn}"),
                            ));
                        }
                        let Some(ix) = index.get_mut(shard as usize) else {
                            return Err(damaged(
                                at,
                                format!("a frame of shard {shard}, but the node has {shards}"),
                            ));
                        };
                        let pos = Pos {
                            segment: number,
                            offset: u32::try_from(at).unwrap_or(u32::MAX),
                            len: u32::try_from(len).unwrap_or(u32::MAX),
                        };
                        ix.apply(lsn, seq, kind, pos)
                            .map_err(|e| damaged(at, format!("shard {shard}: {e}")))?;
                        last_lsn = lsn;
                        seg_last = lsn;
                        report.frames += 1;
                        report.bytes += len as u64;
                        at += len;
                    }
                    Parsed::Bad(why, end) => {
                        let torn = is_last && data[end.min(data.len())..].iter().all(|&b| b == 0);
                        if !torn {
                            return Err(damaged(at, why));
                        }
                        tracing::warn!(
                            file = %path.display(),
                            offset = at,
                            reason = %why,
                            "the log ends in a torn write (a crash during a commit that was \
                             never acknowledged); it is cut off here"
                        );
                        report.torn = Some((path.clone(), at as u64));
                        break;
                    }
                }
            }
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err("cannot open the log segment", &path))?;
            if report.torn.is_some() {
                // Zero what the torn write left, so no remnant follows the next frames.
                let zeros = vec![0u8; data.len() - at];
                file.write_all_at(&zeros, at as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err("cannot cut the torn tail of", &path))?;
            }
            let file = Arc::new(file);
            report.segments += 1;
            progress(&report, total);
            if is_last {
                active = Some(Active {
                    segment: number,
                    file: Arc::clone(&file),
                    path: path.clone(),
                    offset: at as u64,
                    size: data.len() as u64,
                });
            }
            segments.insert(
                number,
                Segment {
                    number,
                    path,
                    file,
                    size: data.len() as u64,
                    last_lsn: seg_last,
                },
            );
        }
        let active = match active {
            Some(a) => a,
            None => {
                let path = segment_path(dir, 1);
                let file = Arc::new(
                    make_zeroed(&path, segment_bytes)
                        .map_err(io_err("cannot make the log segment", &path))?,
                );
                sync_dir(dir)?;
                segments.insert(
                    1,
                    Segment {
                        number: 1,
                        path: path.clone(),
                        file: Arc::clone(&file),
                        size: segment_bytes,
                        last_lsn: 0,
                    },
                );
                Active {
                    segment: 1,
                    file,
                    path,
                    offset: 0,
                    size: segment_bytes,
                }
            }
        };
        let applied = index.iter().map(|i| i.last_lsn).collect();
        let log = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            retention,
            sync,
            state: Mutex::new(State {
                next_lsn: last_lsn + 1,
                buf: Vec::with_capacity(1 << 20),
                queued: Vec::new(),
                open_batch: 1,
                finished: 0,
                failed: VecDeque::new(),
                leading: false,
                active,
                broken: None,
                spare_buf: Vec::with_capacity(1 << 20),
                spare_queued: Vec::new(),
            }),
            done: Condvar::new(),
            index: RwLock::new(index),
            segments: RwLock::new(segments),
            durable: std::sync::atomic::AtomicU64::new(last_lsn),
            applied: Mutex::new(applied),
        };
        Ok((log, report))
    }

    /// Appends `frames` and waits until they are durable (written and, under `--sync=always`,
    /// fsynced) together with whatever other shards queued meanwhile. Returns the lsn of each
    /// frame's successor position: the last lsn of `frames`.
    ///
    /// # Errors
    /// [`StorageError::DiskFull`] when nothing was written for lack of space,
    /// [`StorageError::LogFailed`] when the outcome is unknown.
    pub fn append(&self, frames: &[Frame<'_>]) -> Result<u64, StorageError> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.broken {
            return Err(StorageError::LogFailed(why.clone()));
        }
        let mut last = 0;
        for f in frames {
            let lsn = st.next_lsn;
            st.next_lsn += 1;
            let offset = st.buf.len();
            let mut buf = std::mem::take(&mut st.buf);
            let len = encode(&mut buf, lsn, f);
            st.buf = buf;
            st.queued.push(Queued {
                lsn,
                shard: f.shard,
                seq: f.seq,
                kind: f.kind,
                offset,
                len,
            });
            last = lsn;
        }
        let mine = st.open_batch;
        loop {
            if st.finished >= mine {
                return match st.failed.iter().find(|(b, _)| *b == mine) {
                    None => Ok(last),
                    Some((_, Failure::NotWritten(why))) => Err(StorageError::DiskFull(why.clone())),
                    Some((_, Failure::Unknown(why))) => Err(StorageError::LogFailed(why.clone())),
                };
            }
            if st.leading {
                st = self
                    .done
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st = self.lead(st);
        }
    }

    /// Writes the open batch as the leader; returns with the state locked again.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let batch = st.open_batch;
        st.open_batch += 1;
        st.leading = true;
        let mut buf = std::mem::take(&mut st.spare_buf);
        let mut queued = std::mem::take(&mut st.spare_queued);
        std::mem::swap(&mut buf, &mut st.buf);
        std::mem::swap(&mut queued, &mut st.queued);
        let need = buf.len() as u64;
        let mut target = (
            st.active.segment,
            Arc::clone(&st.active.file),
            st.active.offset,
        );
        let roll = st.active.offset + need > st.active.size && st.active.offset > 0;
        drop(st);

        let mut made = None;
        let result = (|| -> Result<(), Failure> {
            if roll {
                let next = target.0 + 1;
                let path = segment_path(&self.dir, next);
                let size = self.segment_bytes.max(need);
                let file = self.make_segment(&path, size).map_err(|e| {
                    Failure::NotWritten(format!(
                        "cannot make the log segment {} of {} MiB: {e}",
                        path.display(),
                        size >> 20
                    ))
                })?;
                let file = Arc::new(file);
                target = (next, Arc::clone(&file), 0);
                made = Some((next, path, file, size));
            }
            target
                .1
                .write_all_at(&buf, target.2)
                .map_err(|e| Failure::Unknown(format!("the log write failed: {e}")))?;
            if self.sync {
                target
                    .1
                    .sync_data()
                    .map_err(|e| Failure::Unknown(format!("the log fsync failed: {e}")))?;
            }
            Ok(())
        })();

        let mut st = lock(&self.state);
        match &result {
            Ok(()) => {
                if let Some((number, path, file, size)) = made {
                    if let Ok(mut segs) = self.segments.write() {
                        segs.insert(
                            number,
                            Segment {
                                number,
                                path: path.clone(),
                                file: Arc::clone(&file),
                                size,
                                last_lsn: 0,
                            },
                        );
                    }
                    st.active = Active {
                        segment: number,
                        file,
                        path,
                        offset: 0,
                        size,
                    };
                }
                st.active.offset = target.2 + need;
                let last = queued.last().map_or(0, |q| q.lsn);
                if let Ok(mut segs) = self.segments.write()
                    && let Some(s) = segs.get_mut(&target.0)
                    && last > 0
                {
                    s.last_lsn = last;
                }
                if let Ok(mut index) = self.index.write() {
                    for q in &queued {
                        let pos = Pos {
                            segment: target.0,
                            offset: u32::try_from(target.2 + q.offset as u64).unwrap_or(u32::MAX),
                            len: u32::try_from(q.len).unwrap_or(u32::MAX),
                        };
                        if let Some(ix) = index.get_mut(q.shard as usize)
                            && let Err(e) = ix.apply(q.lsn, q.seq, q.kind, pos)
                        {
                            tracing::error!(shard = q.shard, error = %e, "log index out of order");
                        }
                    }
                }
                if last > 0 {
                    self.durable
                        .store(last, std::sync::atomic::Ordering::Release);
                }
            }
            Err(f) => {
                if let Failure::Unknown(why) = f {
                    tracing::error!(error = %why, file = %st.active.path.display(), "the log failed; no more writes are taken until kvd restarts");
                    st.broken = Some(why.clone());
                }
                if st.failed.len() >= 64 {
                    st.failed.pop_front();
                }
                st.failed.push_back((batch, f.clone()));
            }
        }
        buf.clear();
        queued.clear();
        st.spare_buf = buf;
        st.spare_queued = queued;
        st.finished = batch;
        st.leading = false;
        self.done.notify_all();
        st
    }

    /// A new segment at `path`: the spare renamed if there is one of the size, else made now.
    fn make_segment(&self, path: &Path, size: u64) -> std::io::Result<File> {
        let spare = self.dir.join(SPARE);
        let file = match fs::metadata(&spare) {
            Ok(m) if m.len() == size => {
                fs::rename(&spare, path)?;
                File::options().read(true).write(true).open(path)?
            }
            _ => {
                let tmp = self.dir.join("segment.tmp");
                let file = make_zeroed(&tmp, size)?;
                fs::rename(&tmp, path)?;
                file
            }
        };
        File::open(&self.dir)?.sync_all()?;
        Ok(file)
    }

    /// Makes the spare segment if it is missing (so a roll is a rename); run off the commit path.
    ///
    /// # Errors
    /// When the disk is full or the file cannot be written.
    pub fn prepare_spare(&self) -> Result<(), StorageError> {
        let spare = self.dir.join(SPARE);
        if fs::metadata(&spare).is_ok_and(|m| m.len() == self.segment_bytes) {
            return Ok(());
        }
        let tmp = self.dir.join("spare.part");
        make_zeroed(&tmp, self.segment_bytes)
            .and_then(|_| fs::rename(&tmp, &spare))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                if is_disk_full(&e) {
                    StorageError::DiskFull(format!(
                        "cannot make the next log segment of {} MiB in {}: {e}",
                        self.segment_bytes >> 20,
                        self.dir.display()
                    ))
                } else {
                    io_err("cannot make the spare log segment", &tmp)(e)
                }
            })
    }

    /// Up to `max_entries` entries of `shard` after `after` and up to `upto`, stopping once
    /// `max_bytes` are collected (at least one is returned when any exists).
    ///
    /// # Errors
    /// When a segment cannot be read or a frame is not what the index says.
    pub fn read(
        &self,
        shard: u32,
        after: u64,
        upto: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let mut wanted = Vec::new();
        {
            let index = self.index.read().map_err(|_| poisoned())?;
            let Some(ix) = index.get(shard as usize) else {
                return Ok(Vec::new());
            };
            let first = after.max(ix.base) + 1;
            let last = upto.min(ix.last_seq());
            let mut bytes = 0usize;
            let mut seq = first;
            while seq <= last
                && wanted.len() < max_entries
                && (bytes < max_bytes || wanted.is_empty())
            {
                let i = usize::try_from(seq - ix.base - 1).unwrap_or(usize::MAX);
                let Some(pos) = ix.pos.get(i) else { break };
                bytes += pos.len as usize;
                wanted.push((seq, *pos));
                seq += 1;
            }
        }
        let mut out = Vec::with_capacity(wanted.len());
        let segs = self.segments.read().map_err(|_| poisoned())?;
        let mut i = 0;
        while i < wanted.len() {
            // One read for a run of frames in one segment, up to 1 MiB apart.
            let (_, first) = wanted[i];
            let mut j = i + 1;
            while j < wanted.len() {
                let p = wanted[j].1;
                if p.segment != first.segment
                    || u64::from(p.offset) + u64::from(p.len) - u64::from(first.offset) > 1 << 20
                    || p.offset < first.offset
                {
                    break;
                }
                j += 1;
            }
            let end = wanted[i..j]
                .iter()
                .map(|(_, p)| p.offset + p.len)
                .max()
                .unwrap_or(first.offset);
            let Some(seg) = segs.get(&first.segment) else {
                return Err(StorageError::Corrupt {
                    what: "log",
                    detail: format!("segment {} is gone", first.segment),
                });
            };
            let mut chunk = vec![0u8; (end - first.offset) as usize];
            seg.file
                .read_exact_at(&mut chunk, u64::from(first.offset))
                .map_err(io_err("cannot read the log segment", &seg.path))?;
            for &(seq, p) in &wanted[i..j] {
                let at = (p.offset - first.offset) as usize;
                match parse(&chunk[..at + p.len as usize], at) {
                    Parsed::Frame {
                        shard: s,
                        seq: q,
                        kind: Kind::Entry,
                        payload,
                        ..
                    } if s == shard && q == seq => out.push(LogEntry {
                        seq,
                        record: ByteBuf::from(payload.to_vec()),
                    }),
                    _ => {
                        return Err(StorageError::LogDamaged {
                            file: seg.path.clone(),
                            offset: u64::from(p.offset),
                            detail: format!("entry {seq} of shard {shard} is not there"),
                        });
                    }
                }
            }
            i = j;
        }
        Ok(out)
    }

    /// Every frame after `after_lsn`, in order (start-up replay); `f` returns an error to stop.
    ///
    /// # Errors
    /// When a segment cannot be read, or `f`'s error.
    pub fn scan(
        &self,
        after_lsn: u64,
        mut f: impl FnMut(StoredFrame, u64) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let paths: Vec<(PathBuf, u64)> = {
            let segs = self.segments.read().map_err(|_| poisoned())?;
            segs.values()
                .filter(|s| s.last_lsn > after_lsn)
                .map(|s| (s.path.clone(), s.last_lsn))
                .collect()
        };
        for (path, seg_last) in paths {
            let data = fs::read(&path).map_err(io_err("cannot read the log segment", &path))?;
            let mut at = 0;
            while let Parsed::Frame {
                lsn,
                shard,
                seq,
                kind,
                payload,
                len,
            } = parse(&data, at)
            {
                if lsn > seg_last {
                    break;
                }
                if lsn > after_lsn {
                    f(
                        StoredFrame {
                            lsn,
                            shard,
                            seq,
                            kind,
                            payload: payload.to_vec(),
                        },
                        len as u64,
                    )?;
                }
                at += len;
            }
        }
        Ok(())
    }

    /// The first and last entry of `shard` in the log: `(first, last)`, `first > last` when
    /// none is kept.
    #[must_use]
    pub fn range(&self, shard: u32) -> (u64, u64) {
        match self.index.read() {
            Ok(index) => index
                .get(shard as usize)
                .map_or((1, 0), |ix| (ix.base + 1, ix.last_seq())),
            Err(_) => (1, 0),
        }
    }

    /// The last durable lsn.
    #[must_use]
    pub fn durable_lsn(&self) -> u64 {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Bytes the log's segments take (allocated).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .read()
            .map_or(0, |s| s.values().map(|s| s.size).sum())
            + fs::metadata(self.dir.join(SPARE)).map_or(0, |m| m.len())
    }

    /// The retention, in bytes.
    #[must_use]
    pub fn retention(&self) -> u64 {
        self.retention
    }

    /// The segment size.
    #[must_use]
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Records that `shard`'s data store has applied every frame of it up to `lsn`.
    pub fn applied(&self, shard: u32, lsn: u64) {
        let mut applied = lock(&self.applied);
        if let Some(a) = applied.get_mut(shard as usize) {
            *a = (*a).max(lsn);
        }
    }

    /// The lsn below which every shard's data store has applied everything (once its data
    /// store is synced): a shard with nothing unapplied counts as having applied all that is
    /// durable.
    #[must_use]
    pub fn applied_everywhere(&self) -> u64 {
        let durable = self.durable_lsn();
        let applied = lock(&self.applied).clone();
        let index = match self.index.read() {
            Ok(i) => i,
            Err(_) => return 0,
        };
        applied
            .iter()
            .zip(index.iter())
            .map(|(&a, ix)| if a >= ix.last_lsn { durable } else { a })
            .min()
            .unwrap_or(durable)
    }

    /// Removes the oldest segments while the log is over its retention, never the active one
    /// and never one holding a frame after `safe_lsn` (what every data store has durably
    /// applied). Returns the bytes removed.
    ///
    /// # Errors
    /// When a segment cannot be removed.
    pub fn trim(&self, safe_lsn: u64) -> Result<u64, StorageError> {
        let active = lock(&self.state).active.segment;
        let mut removed = 0;
        loop {
            let victim = {
                let segs = self.segments.read().map_err(|_| poisoned())?;
                let total: u64 = segs.values().map(|s| s.size).sum();
                match segs.values().next() {
                    Some(s)
                        if total + self.segment_bytes > self.retention
                            && s.number != active
                            && s.last_lsn <= safe_lsn =>
                    {
                        Some((s.number, s.path.clone(), s.size))
                    }
                    _ => None,
                }
            };
            let Some((number, path, size)) = victim else {
                return Ok(removed);
            };
            if let Ok(mut index) = self.index.write() {
                for ix in index.iter_mut() {
                    while ix.pos.front().is_some_and(|p| p.segment <= number) {
                        ix.pos.pop_front();
                        ix.base += 1;
                    }
                }
            }
            if let Ok(mut segs) = self.segments.write() {
                segs.remove(&number);
            }
            fs::remove_file(&path).map_err(io_err("cannot remove the log segment", &path))?;
            removed += size;
        }
    }

    /// Whether the oldest segment could be removed below `safe_lsn` (see [`Log::trim`]).
    #[must_use]
    pub fn removable(&self, safe_lsn: u64) -> bool {
        let active = lock(&self.state).active.segment;
        self.segments.read().is_ok_and(|segs| {
            segs.values()
                .next()
                .is_some_and(|s| s.number != active && s.last_lsn <= safe_lsn)
        })
    }

    /// Whether the log is over its retention (a trim would remove a segment if it may).
    #[must_use]
    pub fn over_retention(&self) -> bool {
        self.segments.read().is_ok_and(|s| {
            s.values().map(|s| s.size).sum::<u64>() + self.segment_bytes > self.retention
        })
    }

    /// Why no write is taken, if the log broke.
    #[must_use]
    pub fn broken(&self) -> Option<String> {
        lock(&self.state).broken.clone()
    }
}

fn poisoned() -> StorageError {
    StorageError::LogFailed("a lock of the log was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn open(dir: &Path) -> Result<(Log, OpenReport), StorageError> {
        Log::open(dir, 2, 8 * MIB, true, |_, _| {})
    }

    fn entry(shard: u32, seq: u64, payload: &[u8]) -> Frame<'_> {
        Frame {
            shard,
            seq,
            kind: Kind::Entry,
            payload,
        }
    }

    fn seqs(log: &Log, shard: u32) -> Vec<u64> {
        log.read(shard, 0, u64::MAX, usize::MAX, usize::MAX)
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn entries_come_back_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (log, _) = open(dir.path()).expect("open");
            log.append(&[entry(0, 1, b"a"), entry(1, 1, b"b")])
                .expect("append");
            log.append(&[entry(0, 2, b"c")]).expect("append");
            assert_eq!(seqs(&log, 0), vec![1, 2]);
            let e = log.read(0, 1, 2, usize::MAX, 10).expect("read");
            assert_eq!(&e[0].record[..], b"c");
        }
        let (log, report) = open(dir.path()).expect("reopen");
        assert_eq!(report.frames, 3);
        assert!(report.torn.is_none());
        assert_eq!(seqs(&log, 0), vec![1, 2]);
        assert_eq!(seqs(&log, 1), vec![1]);
        assert_eq!(log.range(1), (1, 1));
        assert_eq!(log.append(&[entry(1, 2, b"d")]).expect("append"), 4);
    }

    /// The file and offset of the last frame of the active segment, after writing `n` frames.
    fn written(dir: &Path, n: u64) -> (PathBuf, usize, usize) {
        let (log, _) = open(dir).expect("open");
        for seq in 1..=n {
            log.append(&[entry(0, seq, format!("value {seq}").as_bytes())])
                .expect("append");
        }
        let st = lock(&log.state);
        let path = st.active.path.clone();
        let end = st.active.offset as usize;
        drop(st);
        let last = log.read(0, n - 1, n, usize::MAX, 1).expect("read");
        let frame = HEADER + BODY_FIXED + last[0].record.len();
        (path, end - frame, end)
    }

    #[test]
    fn a_torn_last_frame_is_cut_at_every_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, start, end) = written(dir.path(), 5);
        let whole = fs::read(&path).expect("read");
        for cut in start..end {
            // The file ends inside the last frame (a shorter file) ...
            fs::write(&path, &whole[..cut]).expect("truncate");
            let (log, report) = open(dir.path()).expect("a torn tail opens");
            assert_eq!(seqs(&log, 0), vec![1, 2, 3, 4], "cut at {cut}");
            // (A cut at the frame's first byte is a clean end.)
            let torn = (cut > start).then_some(start as u64);
            assert_eq!(report.torn.as_ref().map(|t| t.1), torn, "cut at {cut}");
            drop(log);
            // ... or the rest of it is zeros (the preallocated segment).
            let mut zeroed = whole.clone();
            zeroed[cut..end].fill(0);
            fs::write(&path, &zeroed).expect("zero");
            let (log, _) = open(dir.path()).expect("a torn tail opens");
            assert_eq!(seqs(&log, 0), vec![1, 2, 3, 4], "zeroed from {cut}");
            // The cut tail was zeroed: a new frame there reads back after another reopen.
            log.append(&[entry(0, 5, b"again")]).expect("append");
            drop(log);
            let (log, report) = open(dir.path()).expect("reopen");
            assert_eq!(seqs(&log, 0), vec![1, 2, 3, 4, 5]);
            assert!(report.torn.is_none());
            drop(log);
        }
    }

    #[test]
    fn a_flipped_byte_before_the_tail_stops_the_open_with_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, last_start, _) = written(dir.path(), 5);
        let whole = fs::read(&path).expect("read");
        // Every byte of every frame but the last.
        for at in 0..last_start {
            let mut bad = whole.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).expect("flip");
            let err = match open(dir.path()) {
                Err(e) => e,
                Ok(_) => panic!("a flipped byte at {at} was not found"),
            };
            let StorageError::LogDamaged { file, offset, .. } = &err else {
                panic!("{err}");
            };
            assert_eq!(file, &path);
            assert!(*offset <= at as u64, "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        fs::write(&path, &whole).expect("restore");
        assert!(open(dir.path()).is_ok());
    }

    #[test]
    fn segments_roll_and_retention_trims_whole_segments_below_what_is_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = Log::open(dir.path(), 1, 8 * MIB, false, |_, _| {}).expect("open");
        assert_eq!(log.segment_bytes(), MIB);
        let value = vec![7u8; 10_000];
        for seq in 1..=2000 {
            log.append(&[entry(0, seq, &value)]).expect("append");
        }
        let before = log.disk_bytes();
        assert!(before > 8 * MIB, "{before}");
        // Nothing is applied: nothing may go.
        assert_eq!(log.trim(0).expect("trim"), 0);
        log.applied(0, log.durable_lsn());
        let removed = log.trim(log.applied_everywhere()).expect("trim");
        assert!(removed > 0);
        assert!(log.disk_bytes() <= 8 * MIB, "{}", log.disk_bytes());
        let (first, last) = log.range(0);
        assert_eq!(last, 2000);
        assert!(first > 1);
        assert_eq!(seqs(&log, 0).first().copied(), Some(first));
        drop(log);
        let (log, _) = Log::open(dir.path(), 1, 8 * MIB, false, |_, _| {}).expect("reopen");
        assert_eq!(log.range(0), (first, 2000));
    }

    #[test]
    fn markers_cut_and_rebase_a_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (log, _) = open(dir.path()).expect("open");
            for seq in 1..=5 {
                log.append(&[entry(0, seq, b"v")]).expect("append");
            }
            let marker = |kind, seq| Frame {
                shard: 0,
                seq,
                kind,
                payload: b"",
            };
            log.append(&[marker(Kind::Truncate, 3)]).expect("cut");
            assert_eq!(seqs(&log, 0), vec![1, 2, 3]);
            log.append(&[entry(0, 4, b"w")]).expect("append");
            log.append(&[marker(Kind::Reset, 0), marker(Kind::Loaded, 40)])
                .expect("resync");
            log.append(&[entry(0, 41, b"x")]).expect("append");
        }
        let (log, _) = open(dir.path()).expect("reopen");
        assert_eq!(seqs(&log, 0), vec![41]);
        assert_eq!(log.range(0), (41, 41));
    }

    #[test]
    fn concurrent_appends_share_commits_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = Log::open(dir.path(), 4, 64 * MIB, true, |_, _| {}).expect("open");
        let log = Arc::new(log);
        let threads: Vec<_> = (0..4u32)
            .map(|shard| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for seq in 1..=200 {
                        log.append(&[entry(shard, seq, b"payload")])
                            .expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        for shard in 0..4 {
            assert_eq!(seqs(&log, shard).len(), 200);
        }
        assert_eq!(log.durable_lsn(), 800);
    }
}
