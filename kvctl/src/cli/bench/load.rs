//! The load itself: closed-loop clients over a few multiplexed connections, and the optional
//! prefill that writes the keyspace first.
//!
//! ```text
//!  one Client (the client library), --connections connections to the node, taken in turn
//!  client 0, 1, … --clients-1: each runs --pipeline slots; a slot is a loop:
//!    take call number n from the shared counter (stop at --requests), stop past the
//!    deadline, put if ratio.is_put(n) else get, time it, record
//!
//!  every slot of client c records into Recorder c mod --connections (a Mutex that slots hold
//!  only to add one sample); the recorders are merged once the last slot has stopped
//! ```
//!
//! Bounds: no call starts after `--requests` calls were started or after `--duration`, and
//! every call takes at most `--timeout` (plus the acks timeout for puts), finding the master
//! again after a failover included; so a run ends at most one timeout after its duration. A
//! slot stops at once when no node can be reached at all (a refused connection fails fast),
//! so a dead node ends the run instead of spinning on errors.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use hdrhistogram::Histogram;
use serde_bytes::ByteBuf;
use shared::{
    KeyValue, KvError, MputRequest, PutCondition, PutRequest,
    client::{self, Client},
};

use super::args::{KEY_LEN, Plan};
use crate::client::Error;

/// Largest latency kept apart in the histograms (an hour, the longest `--timeout`), in µs.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Keys per `mput` call of the prefill (fewer when values are large, see [`prefill_batch`]).
const PREFILL_BATCH: u64 = 256;

/// Most concurrent prefill calls.
const PREFILL_WORKERS: u64 = 32;

/// Bytes one prefill call may carry.
const PREFILL_CALL_BYTES: u64 = 4 * 1024 * 1024;

/// What the run is doing, for the progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the connections.
    Connecting = 0,
    /// Writing the keyspace.
    Prefill = 1,
    /// The measured run.
    Measuring = 2,
    /// Finished.
    Done = 3,
}

/// Counters the load updates and the progress display reads.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    /// Calls started (also the source of call numbers).
    pub started: AtomicU64,
    /// Calls that succeeded.
    pub done: AtomicU64,
    /// Calls that failed.
    pub failed: AtomicU64,
    /// Keys written by the prefill.
    pub prefilled: AtomicU64,
    /// Set to stop the load early (Ctrl-C); slots stop before their next call.
    pub stop: AtomicBool,
}

impl Progress {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Connecting,
            1 => Phase::Prefill,
            2 => Phase::Measuring,
            _ => Phase::Done,
        }
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

/// Why the run stopped; the strongest reason over all slots wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopReason {
    /// Every slot lost its connection.
    ConnectionLost,
    /// `--duration` passed.
    Duration,
    /// `--requests` calls were started.
    Requests,
    /// The user interrupted the run.
    Interrupted,
}

impl StopReason {
    /// The name used in text and JSON output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionLost => "connection_lost",
            Self::Duration => "duration",
            Self::Requests => "requests",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One kind of error: how often, and the first message seen (for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// Occurrences.
    pub count: u64,
    /// The first message of this kind.
    pub example: String,
}

/// Samples and counts of one part of the load (one connection's slots, or the whole run once
/// merged).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of successful puts (`put` or `mput` calls), µs.
    pub put: Histogram<u64>,
    /// Latency of successful gets (`get` or `mget` calls), µs.
    pub get: Histogram<u64>,
    /// Keys the gets found.
    pub keys_found: u64,
    /// Keys the gets did not find (absent: a run without --prefill reads keys never written).
    pub keys_missing: u64,
    /// Failed calls by kind (see [`kv_error_kind`] and [`error_kind`]).
    pub errors: BTreeMap<String, ErrorCount>,
}

impl Recorder {
    /// An empty recorder.
    ///
    /// # Errors
    /// Only if hdrhistogram refuses its own smallest configuration.
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        let histogram = || {
            // Auto-resizing: memory grows with the largest latency seen, not with the bound.
            Histogram::<u64>::new(3)
        };
        Ok(Self {
            put: histogram()?,
            get: histogram()?,
            keys_found: 0,
            keys_missing: 0,
            errors: BTreeMap::new(),
        })
    }

    /// Records one successful call that took `elapsed`.
    pub fn record(&mut self, op: Op, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        let h = match op {
            Op::Put => &mut self.put,
            Op::Get => &mut self.get,
        };
        if h.record(micros).is_err() {
            // Only when the histogram cannot grow; keep the sample at the largest value it has.
            h.saturating_record(micros);
        }
    }

    /// Counts one failed call.
    pub fn error(&mut self, kind: String, message: impl FnOnce() -> String) {
        self.errors
            .entry(kind)
            .and_modify(|e| e.count += 1)
            .or_insert_with(|| ErrorCount {
                count: 1,
                example: message(),
            });
    }

    /// Adds another recorder's samples and counts.
    ///
    /// # Errors
    /// Only if a histogram cannot grow to hold the other's values.
    pub fn merge(&mut self, other: &Self) -> Result<(), hdrhistogram::AdditionError> {
        self.put.add(&other.put)?;
        self.get.add(&other.get)?;
        self.keys_found += other.keys_found;
        self.keys_missing += other.keys_missing;
        for (kind, e) in &other.errors {
            self.errors
                .entry(kind.clone())
                .and_modify(|mine| mine.count += e.count)
                .or_insert_with(|| e.clone());
        }
        Ok(())
    }

    /// Successful calls.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.put.len() + self.get.len()
    }

    /// Failed calls.
    #[must_use]
    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

/// A call's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put`, or `mput` with --batch.
    Put,
    /// `get`, or `mget` with --batch.
    Get,
}

/// The error kind of a node's refusal: its `KvError` variant in snake case (`not_master`,
/// `value_too_large`, `acks_timeout`, …).
#[must_use]
pub fn kv_error_kind(e: &KvError) -> String {
    // `KvError` is non-exhaustive, so its variant name comes from `Debug` (`NotMaster { .. }`,
    // `InvalidArgument(..)`, `ShuttingDown`) rather than from a match that would miss new ones.
    let debug = format!("{e:?}");
    let name: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let mut kind = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                kind.push('_');
            }
            kind.push(c.to_ascii_lowercase());
        } else {
            kind.push(c);
        }
    }
    kind
}

/// The error kind of a failed call, and whether no node can be reached at all (the slot
/// stops).
#[must_use]
pub fn error_kind(e: &client::Error) -> (String, bool) {
    use client::Error as E;
    let kind = match e {
        E::Kv(kv) => return (kv_error_kind(kv), false),
        E::OutcomeUnknown { .. } => "outcome_unknown",
        E::TimedOut { .. } => "rpc_timeout",
        E::ConnectionLost { .. } => "rpc_connection_lost",
        E::Aborted { .. } => "rpc_aborted",
        E::NoMaster { .. } => "no_master",
        E::ValueOverFrameLimit { .. } => "value_over_frame_limit",
        E::Unreachable { .. } | E::NoEndpointAnswered { .. } => {
            return ("unreachable".to_string(), e.is_unreachable());
        }
        _ => "client_error",
    };
    (kind.to_string(), false)
}

/// `key:` and the number in 12 digits: 16 bytes, like redis-benchmark's `key:__rand_int__`.
#[must_use]
pub fn key(n: u64) -> Vec<u8> {
    let key = format!("key:{n:012}").into_bytes();
    debug_assert!(key.len() == KEY_LEN || n >= 1_000_000_000_000);
    key
}

/// A small, fast pseudo-random generator (SplitMix64): each slot draws its own keys without
/// sharing state, and a run is the same given the same flags.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is negligible for keyspaces far
    /// below 2^64.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// What a slot needs; cheap to clone (a handle and a few `Arc`s).
#[derive(Clone)]
struct Slot {
    client: Client,
    plan: Arc<Plan>,
    value: Arc<[u8]>,
    progress: Arc<Progress>,
    recorder: Arc<Mutex<Recorder>>,
    deadline: Instant,
}

/// How one call went.
enum Outcome {
    Ok {
        found: u64,
        missing: u64,
    },
    Failed {
        kind: String,
        message: String,
        lost: bool,
    },
}

impl Slot {
    /// Runs calls until a bound is reached.
    async fn run(self, seed: u64) -> StopReason {
        let mut rng = SplitMix64::new(seed);
        loop {
            if self.progress.stop.load(Ordering::Relaxed) {
                return StopReason::Interrupted;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return StopReason::Duration;
            }
            let n = self.progress.started.fetch_add(1, Ordering::Relaxed);
            if n >= self.plan.requests {
                return StopReason::Requests;
            }
            let op = if self.plan.ratio.is_put(n) {
                Op::Put
            } else {
                Op::Get
            };
            let started = Instant::now();
            let outcome = self.call(op, &mut rng).await;
            let elapsed = started.elapsed();
            let lost = self.account(op, elapsed, outcome);
            if lost {
                return StopReason::ConnectionLost;
            }
        }
    }

    /// Records the outcome; returns whether the connection is gone.
    fn account(&self, op: Op, elapsed: Duration, outcome: Outcome) -> bool {
        let mut recorder = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Outcome::Ok { found, missing } => {
                recorder.record(op, elapsed);
                recorder.keys_found += found;
                recorder.keys_missing += missing;
                drop(recorder);
                self.progress.done.fetch_add(1, Ordering::Relaxed);
                false
            }
            Outcome::Failed {
                kind,
                message,
                lost,
            } => {
                recorder.error(kind, || message);
                drop(recorder);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
                lost
            }
        }
    }

    fn value(&self) -> ByteBuf {
        ByteBuf::from(self.value.to_vec())
    }

    async fn call(&self, op: Op, rng: &mut SplitMix64) -> Outcome {
        let keyspace = self.plan.keyspace;
        let batch = self.plan.batch;
        match (op, batch) {
            (Op::Put, 1) => {
                let req = PutRequest {
                    key: ByteBuf::from(key(rng.below(keyspace))),
                    value: self.value(),
                    condition: PutCondition::None,
                    acks: self.plan.acks,
                    acks_timeout_ms: self.plan.acks_timeout_ms,
                };
                outcome(self.client.put(req).await, |_| (0, 0))
            }
            (Op::Get, 1) => {
                let k = key(rng.below(keyspace));
                outcome(self.client.get(&k).await, |v| {
                    if v.is_some() { (1, 0) } else { (0, 1) }
                })
            }
            (Op::Put, _) => {
                let entries = (0..batch)
                    .map(|_| KeyValue {
                        key: ByteBuf::from(key(rng.below(keyspace))),
                        value: self.value(),
                    })
                    .collect();
                let req = MputRequest {
                    entries,
                    acks: self.plan.acks,
                    acks_timeout_ms: self.plan.acks_timeout_ms,
                };
                outcome(self.client.mput(req).await, |_| (0, 0))
            }
            (Op::Get, _) => {
                let keys = (0..batch)
                    .map(|_| ByteBuf::from(key(rng.below(keyspace))))
                    .collect();
                outcome(self.client.mget(keys).await, |values| {
                    let found = values.iter().filter(|v| v.is_some()).count() as u64;
                    (found, values.len() as u64 - found)
                })
            }
        }
    }
}

/// Turns a reply into an [`Outcome`]; `hits` counts the keys a get found and missed.
fn outcome<T>(reply: Result<T, client::Error>, hits: impl FnOnce(&T) -> (u64, u64)) -> Outcome {
    match reply {
        Ok(v) => {
            let (found, missing) = hits(&v);
            Outcome::Ok { found, missing }
        }
        Err(e) => {
            let (kind, lost) = error_kind(&e);
            Outcome::Failed {
                kind,
                message: e.to_string(),
                lost,
            }
        }
    }
}

/// The measured run's result.
#[derive(Debug)]
pub struct Measured {
    /// Every slot's samples and counts.
    pub recorder: Recorder,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Why it stopped.
    pub stop: StopReason,
}

/// Runs the measured load through `client` and returns what it recorded.
///
/// # Errors
/// Only if a histogram cannot be created or merged (see [`Recorder`]).
pub async fn measure(
    plan: Arc<Plan>,
    client: &Client,
    progress: Arc<Progress>,
) -> Result<Measured, String> {
    let value: Arc<[u8]> = vec![b'x'; plan.value_size].into();
    let recorders = (0..plan.connections.max(1))
        .map(|_| Recorder::new().map(|r| Arc::new(Mutex::new(r))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot create a histogram: {e}"))?;
    progress.set_phase(Phase::Measuring);
    let start = Instant::now();
    let deadline = start.checked_add(plan.duration).unwrap_or(start);
    let mut tasks = Vec::new();
    for c in 0..plan.clients {
        let conn = usize::try_from(c).unwrap_or(0) % recorders.len().max(1);
        let Some(recorder) = recorders.get(conn) else {
            continue;
        };
        let slot = Slot {
            client: client.clone(),
            plan: Arc::clone(&plan),
            value: Arc::clone(&value),
            progress: Arc::clone(&progress),
            recorder: Arc::clone(recorder),
            deadline,
        };
        // One task per client; its --pipeline slots run concurrently inside it.
        tasks.push(tokio::spawn(async move {
            let slots = (0..slot.plan.pipeline).map(|p| {
                let seed = (u64::from(c) << 20) ^ u64::from(p);
                slot.clone().run(seed)
            });
            join_all(slots).await.into_iter().max()
        }));
    }
    let mut stop = None;
    for task in join_all(tasks).await {
        // A panicking slot is a bug; report it rather than a result without it.
        let reason = task.map_err(|e| format!("a load task failed: {e}"))?;
        stop = stop.max(reason);
    }
    let elapsed = start.elapsed();
    progress.set_phase(Phase::Done);
    let mut recorder = Recorder::new().map_err(|e| format!("cannot create a histogram: {e}"))?;
    for r in &recorders {
        let r = r.lock().unwrap_or_else(PoisonError::into_inner);
        recorder
            .merge(&r)
            .map_err(|e| format!("cannot merge histograms: {e}"))?;
    }
    Ok(Measured {
        recorder,
        elapsed,
        stop: stop.unwrap_or(StopReason::Duration),
    })
}

/// Keys per prefill call for values of `value_size` bytes: [`PREFILL_BATCH`], fewer when the
/// values are large, at least 1.
#[must_use]
pub fn prefill_batch(value_size: usize) -> u64 {
    let per_key = u64::try_from(KEY_LEN + value_size).unwrap_or(u64::MAX);
    (PREFILL_CALL_BYTES / per_key.max(1)).clamp(1, PREFILL_BATCH)
}

/// Writes every key of the keyspace once, with `mput` calls over all connections.
///
/// # Errors
/// The first failed call; the prefill stops there.
pub async fn prefill(
    plan: &Plan,
    client: &Client,
    progress: &Arc<Progress>,
) -> Result<Duration, Error> {
    progress.set_phase(Phase::Prefill);
    let batch = prefill_batch(plan.value_size);
    let next = Arc::new(AtomicU64::new(0));
    let value: Arc<[u8]> = vec![b'x'; plan.value_size].into();
    let workers = PREFILL_WORKERS.min(plan.keyspace.div_ceil(batch));
    let start = Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), client::Error>>> = Vec::new();
    for _ in 0..workers {
        let client = client.clone();
        let (next, value, progress) = (Arc::clone(&next), Arc::clone(&value), Arc::clone(progress));
        let keyspace = plan.keyspace;
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= keyspace || progress.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let last = (first + batch).min(keyspace);
                let entries = (first..last)
                    .map(|n| KeyValue {
                        key: ByteBuf::from(key(n)),
                        value: ByteBuf::from(value.to_vec()),
                    })
                    .collect();
                let req = MputRequest {
                    entries,
                    ..MputRequest::default()
                };
                client.mput(req).await?;
                progress
                    .prefilled
                    .fetch_add(last - first, Ordering::Relaxed);
            }
        }));
    }
    for task in join_all(tasks).await {
        match task {
            Ok(result) => result.map_err(Error::from)?,
            Err(e) => return Err(Error::Usage(format!("the prefill failed: {e}"))),
        }
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_fixed_shape() {
        assert_eq!(key(0), b"key:000000000000");
        assert_eq!(key(99_999), b"key:000000099999");
        assert_eq!(key(999_999_999).len(), KEY_LEN);
    }

    #[test]
    fn random_keys_stay_in_the_keyspace() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let n = rng.below(10);
            assert!(n < 10);
            seen[usize::try_from(n).expect("small")] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        assert_eq!(SplitMix64::new(1).below(1), 0);
    }

    #[test]
    fn error_kinds() {
        assert_eq!(
            kv_error_kind(&KvError::NotMaster {
                master: Some("m:1".into()),
                epoch: 2,
            }),
            "not_master"
        );
        assert_eq!(kv_error_kind(&KvError::EmptyKey), "empty_key");
        assert_eq!(kv_error_kind(&KvError::ShuttingDown), "shutting_down");
        assert_eq!(
            kv_error_kind(&KvError::InvalidArgument("x".into())),
            "invalid_argument"
        );
        assert_eq!(
            kv_error_kind(&KvError::AcksTimeout {
                version: 1,
                acked: 0,
                required: 1,
                timeout_ms: 5
            }),
            "acks_timeout"
        );
        let at = shared::addr::Endpoint {
            host: "h".into(),
            port: 1,
        };
        let kind = |e: client::Error| {
            let (kind, stop) = error_kind(&e);
            (kind, stop)
        };
        assert_eq!(
            kind(client::Error::TimedOut {
                endpoint: at.clone(),
                after: Duration::from_secs(1)
            }),
            ("rpc_timeout".to_string(), false)
        );
        assert_eq!(
            kind(client::Error::OutcomeUnknown {
                endpoint: at.clone(),
                request: "put",
                cause: client::Lost::NoAnswer(Duration::from_secs(1)),
            }),
            ("outcome_unknown".to_string(), false)
        );
        assert_eq!(
            kind(client::Error::NoMaster {
                after: Duration::from_secs(1),
                seen: Vec::new(),
            }),
            ("no_master".to_string(), false)
        );
        // Nobody to talk to: the slot stops.
        assert_eq!(
            kind(client::Error::Unreachable {
                endpoint: at,
                cause: "refused".into(),
            }),
            ("unreachable".to_string(), true)
        );
        assert_eq!(
            kind(client::Error::Kv(KvError::ShuttingDown)),
            ("shutting_down".to_string(), false)
        );
    }

    #[test]
    fn prefill_batches_fit_a_call() {
        assert_eq!(prefill_batch(100), 256);
        assert_eq!(prefill_batch(1024 * 1024), 3);
        assert_eq!(prefill_batch(16 * 1024 * 1024), 1);
    }

    #[test]
    fn recorders_merge() {
        let mut a = Recorder::new().expect("recorder");
        let mut b = Recorder::new().expect("recorder");
        a.record(Op::Put, Duration::from_micros(100));
        a.error("rpc_timeout".into(), || "first".into());
        b.record(Op::Get, Duration::from_micros(200));
        b.record(Op::Get, Duration::ZERO);
        b.keys_found = 1;
        b.keys_missing = 1;
        b.error("rpc_timeout".into(), || "second".into());
        b.error("not_master".into(), || "replica".into());
        a.merge(&b).expect("merge");
        assert_eq!((a.put.len(), a.get.len(), a.ops()), (1, 2, 3));
        // A call faster than a microsecond is kept as 1 µs.
        assert_eq!(a.get.min(), 1);
        assert_eq!((a.keys_found, a.keys_missing), (1, 1));
        assert_eq!(a.error_total(), 3);
        assert_eq!(a.errors["rpc_timeout"].count, 2);
        assert_eq!(a.errors["rpc_timeout"].example, "first");
        assert_eq!(a.errors["not_master"].count, 1);
    }

    #[test]
    fn stop_reasons_rank() {
        let worst = [StopReason::Duration, StopReason::ConnectionLost]
            .into_iter()
            .max();
        assert_eq!(worst, Some(StopReason::Duration));
        assert!(StopReason::Interrupted > StopReason::Requests);
    }
}
