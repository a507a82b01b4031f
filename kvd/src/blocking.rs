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
