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
/// requests about ten times their share, and wakes them first.
pub const BACKGROUND_NICENESS: i32 = 10;

/// Lowers the calling thread to `BACKGROUND_NICENESS` (Linux niceness is per thread); logs a
/// WARN and goes on at the normal priority if the OS refuses.
pub fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // The crate maps 0..=99 onto niceness 19..=-20; 22 is niceness 10.
    let set = ThreadPriorityValue::try_from(22u8)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v))
                .map_err(|e| format!("{e:?}"))
        });
    if let Err(e) = set {
        tracing::warn!(error = %e, "cannot lower a background thread's priority: it competes with the serving workers");
    }
}

#[cfg(test)]
mod tests {
    /// The niceness of the calling thread, from /proc (field 19 of its stat line).
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // The command name, in parentheses, may hold spaces: count from after it.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        after
            .split_whitespace()
            .nth(16)
            .expect("nice field")
            .parse()
            .expect("a number")
    }

    #[test]
    fn a_background_thread_runs_at_niceness_10() {
        let (before, after) = std::thread::spawn(|| {
            let before = niceness();
            super::lower_priority();
            (before, niceness())
        })
        .join()
        .expect("thread");
        assert_eq!(after, super::BACKGROUND_NICENESS, "from {before}");
        assert_eq!(niceness(), before, "only the thread that asked is lowered");
    }
}
