//! A shard's epoch history: where each epoch begins in the shard's log (Kafka's leader-epoch
//! checkpoint), and the divergence rule that decides, from two histories alone, the last
//! position two logs share.
//!
//! Why it is enough to compare histories: only one master writes in an epoch, and it gives
//! each sequence once, so two logs that hold an entry of the same epoch at the same sequence
//! hold the same entries up to it (the log matching property). The last shared position is
//! then the highest sequence, at most the shorter log's end, at which both histories name the
//! same epoch. It is found among a few candidates: the shorter end, and the sequence before
//! each epoch start of either history.
//!
//! ```text
//!   ours:   epoch 1 @1 ........ epoch 2 @50 ...... epoch 4 @80 ..... last 100
//!   theirs: epoch 1 @1 ............... epoch 3 @60 ...... epoch 5 @90 ...... last 120
//!   candidates: 100, 49, 79, 59, 89 -> epochs (ours, theirs) at 49: (1, 1) -> shared up to 49
//! ```
//!
//! Pure: no I/O. The writer keeps one per shard and persists it in the same batch as the
//! entries it describes.

use serde::{Deserialize, Serialize};
use shared::cluster::{Epoch, EpochStart, FIRST_EPOCH, LogPos};

/// The epochs of one shard's log, in order, each with its first sequence.
///
/// Invariants: epochs strictly increase; first sequences strictly increase; the first entry
/// starts at a sequence of at least 1. An empty history means an empty log, or a log written
/// before epochs existed (every entry then is of epoch 1: see [`EpochHistory::legacy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochHistory {
    starts: Vec<EpochStart>,
}

/// A history that breaks the invariants (from a peer or a damaged file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid epoch history: {0}")]
pub struct InvalidHistory(pub String);

impl EpochHistory {
    /// A history from its entries, checked.
    ///
    /// # Errors
    /// When epochs or first sequences do not strictly increase, or a first sequence is 0.
    pub fn new(starts: Vec<EpochStart>) -> Result<Self, InvalidHistory> {
        for w in starts.windows(2) {
            if w[1].epoch <= w[0].epoch || w[1].first_seq <= w[0].first_seq {
                return Err(InvalidHistory(format!(
                    "epoch {} at {} follows epoch {} at {}",
                    w[1].epoch, w[1].first_seq, w[0].epoch, w[0].first_seq
                )));
            }
        }
        if starts.first().is_some_and(|s| s.first_seq == 0) {
            return Err(InvalidHistory("an epoch starts at sequence 0".into()));
        }
        Ok(Self { starts })
    }

    /// The history of a shard written before epochs existed: everything up to `last_seq` is
    /// of epoch 1.
    #[must_use]
    pub fn legacy(last_seq: u64) -> Self {
        if last_seq == 0 {
            Self::default()
        } else {
            Self {
                starts: vec![EpochStart {
                    epoch: FIRST_EPOCH,
                    first_seq: 1,
                }],
            }
        }
    }

    /// The entries, oldest first.
    #[must_use]
    pub fn starts(&self) -> &[EpochStart] {
        &self.starts
    }

    /// The epoch of the last entry, 0 when the history is empty.
    #[must_use]
    pub fn last_epoch(&self) -> Epoch {
        self.starts.last().map_or(0, |s| s.epoch)
    }

    /// The epoch of the entry at `seq` (0 for sequence 0, or before the first epoch).
    #[must_use]
    pub fn epoch_at(&self, seq: u64) -> Epoch {
        if seq == 0 {
            return 0;
        }
        let i = self.starts.partition_point(|s| s.first_seq <= seq);
        match i {
            0 => 0,
            i => self.starts[i - 1].epoch,
        }
    }

    /// The position of the entry at `seq`.
    #[must_use]
    pub fn pos(&self, seq: u64) -> LogPos {
        LogPos {
            epoch: self.epoch_at(seq),
            seq,
        }
    }

    /// Records that the entry at `seq` is of `epoch`; adds an entry when `epoch` is new.
    ///
    /// # Errors
    /// When `epoch` is older than the last one (a stale writer), or `seq` does not come after
    /// the last epoch's start.
    pub fn note(&mut self, epoch: Epoch, seq: u64) -> Result<bool, InvalidHistory> {
        match self.starts.last() {
            Some(last) if epoch == last.epoch => Ok(false),
            Some(last) if epoch < last.epoch => Err(InvalidHistory(format!(
                "an entry of epoch {epoch} at {seq} after epoch {} began",
                last.epoch
            ))),
            Some(last) if seq <= last.first_seq => Err(InvalidHistory(format!(
                "epoch {epoch} would begin at {seq}, not after epoch {} at {}",
                last.epoch, last.first_seq
            ))),
            _ if seq == 0 || epoch == 0 => {
                Err(InvalidHistory(format!("epoch {epoch} at sequence {seq}")))
            }
            _ => {
                self.starts.push(EpochStart {
                    epoch,
                    first_seq: seq,
                });
                Ok(true)
            }
        }
    }

    /// Drops what lies after `seq` (a truncation): epochs that begin after it.
    pub fn truncate_after(&mut self, seq: u64) {
        self.starts.retain(|s| s.first_seq <= seq);
    }

    /// The part of the history up to `seq` (what a copy taken at `seq` inherits).
    #[must_use]
    pub fn up_to(&self, seq: u64) -> Self {
        let mut h = self.clone();
        h.truncate_after(seq);
        h
    }
}

/// The last sequence two logs share: the highest `s <= min(our_last, their_last)` at which
/// both histories name the same epoch (0 when they share nothing).
#[must_use]
pub fn divergence(
    ours: &EpochHistory,
    our_last: u64,
    theirs: &EpochHistory,
    their_last: u64,
) -> u64 {
    let end = our_last.min(their_last);
    let boundaries = ours
        .starts()
        .iter()
        .chain(theirs.starts())
        .map(|s| s.first_seq.saturating_sub(1))
        .filter(|&s| s < end);
    std::iter::once(end)
        .chain(boundaries)
        .filter(|&s| s == 0 || ours.epoch_at(s) == theirs.epoch_at(s))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn h(starts: &[(u64, u64)]) -> EpochHistory {
        EpochHistory::new(
            starts
                .iter()
                .map(|&(epoch, first_seq)| EpochStart { epoch, first_seq })
                .collect(),
        )
        .expect("valid")
    }

    #[test]
    fn epoch_at_and_note() {
        let mut x = EpochHistory::default();
        assert_eq!(x.epoch_at(5), 0);
        assert_eq!(x.note(1, 1), Ok(true));
        assert_eq!(x.note(1, 2), Ok(false));
        assert_eq!(x.note(3, 10), Ok(true));
        assert_eq!((x.epoch_at(0), x.epoch_at(1), x.epoch_at(9)), (0, 1, 1));
        assert_eq!((x.epoch_at(10), x.epoch_at(1000)), (3, 3));
        assert!(x.note(2, 11).is_err(), "a stale epoch is refused");
        assert!(
            x.note(4, 10).is_err(),
            "an epoch cannot begin where the last began"
        );
        x.truncate_after(9);
        assert_eq!(x, h(&[(1, 1)]));
        assert_eq!(EpochHistory::legacy(7), h(&[(1, 1)]));
        assert_eq!(EpochHistory::legacy(0), EpochHistory::default());
    }

    #[test]
    fn invalid_histories_are_refused() {
        let bad = |v: &[(u64, u64)]| {
            EpochHistory::new(
                v.iter()
                    .map(|&(epoch, first_seq)| EpochStart { epoch, first_seq })
                    .collect(),
            )
            .is_err()
        };
        assert!(bad(&[(2, 5), (1, 9)]));
        assert!(bad(&[(1, 5), (2, 5)]));
        assert!(bad(&[(1, 0)]));
    }

    #[test]
    fn the_example_of_the_module_doc() {
        let ours = h(&[(1, 1), (2, 50), (4, 80)]);
        let theirs = h(&[(1, 1), (3, 60), (5, 90)]);
        assert_eq!(divergence(&ours, 100, &theirs, 120), 49);
        assert_eq!(divergence(&theirs, 120, &ours, 100), 49);
    }

    #[test]
    fn a_stale_master_rejoining() {
        // A wrote 10 in epoch 2 that nobody else had; B took over at 9 and wrote nothing.
        let a = h(&[(1, 1), (2, 5)]);
        let b = h(&[(1, 1), (2, 5)]);
        assert_eq!(divergence(&a, 10, &b, 9), 9);
        // Then B wrote 10 and 11 in epoch 3.
        let b = h(&[(1, 1), (2, 5), (3, 10)]);
        assert_eq!(divergence(&a, 10, &b, 11), 9);
        // A replica behind on the same history shares all it has.
        assert_eq!(divergence(&h(&[(1, 1)]), 4, &b, 11), 4);
        // An empty log shares nothing, and needs nothing undone.
        assert_eq!(divergence(&EpochHistory::default(), 0, &b, 11), 0);
    }

    #[test]
    fn a_master_that_lost_its_tail() {
        // Same epoch, the replica is ahead (a --sync=none master restarted): shared up to the
        // master's end.
        let x = h(&[(1, 1)]);
        assert_eq!(divergence(&x, 1000, &x, 900), 900);
    }

    #[test]
    fn unrelated_histories_share_nothing() {
        assert_eq!(divergence(&h(&[(1, 1)]), 50, &h(&[(2, 1)]), 50), 0);
    }

    fn history(starts: Vec<(u64, u64)>) -> EpochHistory {
        h(&starts)
    }

    /// A cluster's pair of logs: a common prefix of epochs, then each side's own epochs (one
    /// master per epoch, so the sides never share an epoch after the fork).
    fn forked() -> impl Strategy<Value = (EpochHistory, u64, EpochHistory, u64)> {
        let steps = || proptest::collection::vec((1u64..20, 1u64..3), 0..4);
        (steps(), 0u64..10, steps(), 0u64..20, steps(), 0u64..20).prop_map(
            |(common, gap, a_own, a_tail, b_own, b_tail)| {
                let (mut epoch, mut seq, mut starts) = (1u64, 0u64, Vec::new());
                for (ds, de) in common {
                    seq += ds;
                    starts.push((epoch, seq));
                    epoch += de;
                }
                let fork = seq + gap;
                let side = |own: Vec<(u64, u64)>, mut epoch: u64, tail: u64| {
                    let (mut v, mut s) = (starts.clone(), fork);
                    for (ds, de) in own {
                        s += ds;
                        v.push((epoch, s));
                        epoch += de;
                    }
                    (history(v), s + tail)
                };
                let (a, a_last) = side(a_own, epoch, a_tail);
                let (b, b_last) = side(b_own, epoch + 100, b_tail);
                (a, a_last, b, b_last)
            },
        )
    }

    proptest::proptest! {
        /// `divergence` agrees with its definition checked position by position: the longest
        /// prefix on which both histories name the same epoch at every sequence.
        #[test]
        fn matches_the_definition((a, a_last, b, b_last) in forked()) {
            let end = a_last.min(b_last);
            let prefix = (1..=end)
                .take_while(|&s| a.epoch_at(s) == b.epoch_at(s))
                .last()
                .unwrap_or(0);
            prop_assert_eq!(divergence(&a, a_last, &b, b_last), prefix);
            prop_assert_eq!(divergence(&b, b_last, &a, a_last), prefix);
        }
    }
}
