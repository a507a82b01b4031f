//! Blocking work (file writes, fsyncs, scans): on tokio's blocking pool, and each shard's writes
//! on its own writer thread; or, in the deterministic simulation (`kvd/tests/sim`), inline on
//! the calling thread.
//!
//! Inline, a simulated host does its disk work within the step that asked for it, whatever the
//! OS schedules meanwhile, so a seed replays the same run. A real node never runs inline: it
//! would stall the async workers on every fsync.

use std::sync::atomic::{AtomicBool, Ordering};

static INLINE: AtomicBool = AtomicBool::new(false);

/// Runs every later blocking job, and every shard writer opened later, inline on the calling
/// thread (the simulation sets this before it starts a node; there is no way back).
pub fn run_inline() {
    INLINE.store(true, Ordering::Release);
}

/// Whether blocking work runs inline.
#[must_use]
pub fn inline() -> bool {
    INLINE.load(Ordering::Acquire)
}

/// A blocking job that panicked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(String);

/// Runs `work` off the async workers (or inline, see the module doc).
///
/// # Errors
/// When `work` panicked on the blocking pool.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    if inline() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Panicked(e.to_string()))
}

/// Drops what is costly to drop, a closed connection above all (the kernel frees its buffers
/// and answers its peer, tens of microseconds each), on one thread of its own: when hundreds of
/// connections time out together, the async workers go on serving the others. Inline in the
/// simulation, or if the thread cannot be started.
#[derive(Clone, Debug)]
pub struct Dropper {
    tx: Option<std::sync::mpsc::Sender<Box<dyn Send>>>,
}

impl Dropper {
    /// Starts the thread (`kvd-dropper`); it ends once every clone of this is dropped.
    #[must_use]
    pub fn start() -> Self {
        if inline() {
            return Self { tx: None };
        }
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
        // Within the runtime's context, for whatever needs it while it is dropped.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let started = std::thread::Builder::new()
            .name("kvd-dropper".into())
            .spawn(move || {
                lower_priority();
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                for item in rx {
                    drop(item);
                }
            });
        match started {
            Ok(_) => Self { tx: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "no thread for closing connections: they are closed on the async workers");
                Self { tx: None }
            }
        }
    }

    /// Drops `item` on the thread (or here, see the type's doc).
    pub fn drop_later<T: Send + 'static>(&self, item: T) {
        match &self.tx {
            Some(tx) => {
                // If the thread is gone, the item comes back in the error and is dropped here.
                let _ = tx.send(Box::new(item));
            }
            None => drop(item),
        }
    }
}

/// The niceness of the threads that do the node's background work for connections (admitting
/// them, dropping closed ones): under contention the scheduler gives the workers that serve
/// requests about ten times their share.
pub const BACKGROUND_NICENESS: i32 = 10;

/// Lowers the calling thread to `BACKGROUND_NICENESS` and Linux's batch policy (both per
/// thread); logs a WARN and goes on at the normal priority if the OS refuses.
///
/// Batch because niceness alone does not keep such a thread from delaying a serving worker:
/// measured with `perf sched timehist` under `bench/exhaust.sh`, a worker woken on the core of
/// the busy admission thread at niceness 10 waited 3.3 ms, a whole scheduler tick, before it
/// ran (the kernel lets the running thread finish its slice). A batch thread does not preempt
/// on wakeup either: it takes its share when a core is free or at the tick.
pub fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    // The crate maps 0..=99 onto niceness 19..=-20; 22 is niceness 10.
    let set = ThreadPriorityValue::try_from(22u8)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            thread_priority::set_thread_priority_and_policy(
                thread_priority::thread_native_id(),
                ThreadPriority::Crossplatform(v),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
            )
            .map_err(|e| format!("{e:?}"))
        });
    if let Err(e) = set {
        tracing::warn!(error = %e, "cannot lower a background thread's priority: it competes with the serving workers");
    }
}

#[cfg(test)]
mod tests {
    /// The niceness and scheduling policy of the calling thread, from /proc (fields 19 and 41
    /// of its stat line).
    fn niceness_and_policy() -> (i32, u32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // The command name, in parentheses, may hold spaces: count from after it (field 3).
        let after: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
            .split_whitespace()
            .collect();
        (
            after[19 - 3].parse().expect("nice, a number"),
            after[41 - 3].parse().expect("policy, a number"),
        )
    }

    /// Linux's SCHED_OTHER and SCHED_BATCH.
    const NORMAL: u32 = 0;
    const BATCH: u32 = 3;

    #[test]
    fn a_background_thread_runs_at_niceness_10_as_batch() {
        let (before, after) = std::thread::spawn(|| {
            let before = niceness_and_policy();
            super::lower_priority();
            (before, niceness_and_policy())
        })
        .join()
        .expect("thread");
        assert_eq!(
            after,
            (super::BACKGROUND_NICENESS, BATCH),
            "from {before:?}"
        );
        assert_eq!(
            niceness_and_policy(),
            (before.0, NORMAL),
            "only the thread that asked is lowered"
        );
    }
}
