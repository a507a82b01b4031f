//! The master's lease in automatic failover (`docs/auto-failover.md`): the arithmetic, pure.
//!
//! ```text
//!  master clock ──s_i──> pull answer ──> replica receives at r_i (r_i >= s_i in real time),
//!                                        promises no vote before r_i + T (its clock)
//!  replica's next pull carries s_i back: the master knows the promise stands
//!  lease end = the k-th latest s_i + L,   L = T (1 - 2 rho) - margin,   k = replicas a majority needs
//! ```
//!
//! Times are nanoseconds of the master's monotonic clock (since the process started): they are
//! only ever compared with the same node's clock.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// The largest rate error between two nodes' monotonic clocks that the lease tolerates (1%: far
/// above NTP's slew limit of 500 ppm).
pub const RHO: f64 = 0.01;

/// Time from a lease check to the answer leaving the node, and slack for scheduling.
pub const MARGIN: Duration = Duration::from_millis(100);

static IGNORED: AtomicBool = AtomicBool::new(false);

/// The simulation's mutant (`kvd/tests/sim`): while `ignore` holds, every master in this process
/// serves writes and reads whether its lease runs or not, and answers reads at once (without
/// waiting, within its lease, for what it read to be on a majority). That must show as a history
/// that is not linearizable. Nothing else calls it.
#[doc(hidden)]
pub fn ignore_for_mutant_test(ignore: bool) {
    IGNORED.store(ignore, Ordering::Release);
}

/// Whether the mutant is on.
pub(crate) fn ignored() -> bool {
    IGNORED.load(Ordering::Acquire)
}

/// The lease length for a failover timeout `timeout`: `T (1 - 2 rho) - margin`, which keeps the
/// end of the lease before any voter's promise runs out (in real time: the vote comes at least
/// `T / (1 + rho)` after the answer was sent, the lease ends at most `L / (1 - rho)` after it,
/// and `L < T (1 - rho) / (1 + rho)` for this `L`).
#[must_use]
pub fn length(timeout: Duration) -> Duration {
    timeout.mul_f64(1.0 - 2.0 * RHO).saturating_sub(MARGIN)
}

/// When the lease ends (master clock, nanoseconds), from the latest confirmed send time of each
/// replica and the number of replicas a majority needs besides the master: `u64::MAX` when none
/// is needed (a master alone), `None` when fewer have confirmed.
#[must_use]
pub fn end(confirmed: &[u64], needed: usize, length: Duration) -> Option<u64> {
    if needed == 0 {
        return Some(u64::MAX);
    }
    let mut latest: Vec<u64> = confirmed.iter().copied().filter(|&s| s > 0).collect();
    if latest.len() < needed {
        return None;
    }
    latest.sort_unstable_by(|a, b| b.cmp(a));
    let base = latest[needed - 1];
    Some(base.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_length_leaves_room_for_drift_and_the_margin() {
        assert_eq!(length(Duration::from_secs(5)), Duration::from_millis(4800));
        assert_eq!(length(Duration::from_secs(1)), Duration::from_millis(880));
        // The bound of the module doc holds for every timeout the flag allows.
        for ms in [500u64, 1000, 5000, 600_000] {
            let t = Duration::from_millis(ms).as_secs_f64();
            let l = length(Duration::from_millis(ms)).as_secs_f64();
            assert!(l / (1.0 - RHO) < t / (1.0 + RHO), "{ms} ms");
        }
    }

    #[test]
    fn the_lease_rests_on_the_kth_latest_confirmation() {
        let l = Duration::from_millis(100);
        // Three nodes: one replica besides the master makes a majority.
        assert_eq!(end(&[5 * MS, 9 * MS], 1, l), Some(109 * MS));
        // Five nodes: two are needed, so the second latest counts.
        assert_eq!(end(&[5 * MS, 9 * MS, 7 * MS, 0], 2, l), Some(107 * MS));
        // Not enough confirmations: no lease at all.
        assert_eq!(end(&[9 * MS, 0], 2, l), None);
        assert_eq!(end(&[], 1, l), None);
        // A master alone needs nobody.
        assert_eq!(end(&[], 0, l), Some(u64::MAX));
    }
}
