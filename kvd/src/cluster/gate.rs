//! The write gate: whether a write may start, in which epoch, and a count of the writes that
//! started and have not reached their commit yet, so a switchover can pause writes and know
//! when the last admitted one is committed.
//!
//! The gate state and the count sit under one mutex: a write checks the gate and counts itself
//! in one step, and a pause flips the gate and then waits for the count to reach zero, so no
//! write can slip in between a pause and the positions the switchover reads after it.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use shared::{KvError, cluster::Epoch};
use tokio::sync::{Notify, watch};

use super::state::{Gate, View};

/// Longest a write waits at a paused gate (a switchover's own timeout is shorter; this only
/// bounds a pause that something forgot to end).
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    view: View,
    in_flight: usize,
}

/// The gate; cheap to share behind an `Arc` (it lives in the node).
#[derive(Debug)]
pub struct WriteGate {
    inner: Mutex<Inner>,
    /// Woken when the count drops to zero.
    idle: Notify,
    /// Followers of the view, for writes waiting at a pause.
    changes: watch::Sender<View>,
}

/// A write in flight: counted until dropped. Carries the epoch the write was admitted in.
#[derive(Debug)]
pub struct Ticket<'a> {
    gate: &'a WriteGate,
    /// The epoch to stamp the write with.
    pub epoch: Epoch,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if inner.in_flight == 0 {
            self.gate.idle.notify_waiters();
        }
    }
}

fn refusal(view: &View) -> KvError {
    KvError::NotMaster {
        master: view.master.as_ref().map(|m| m.address.clone()),
        epoch: view.epoch,
    }
}

impl WriteGate {
    /// A gate showing `view`.
    #[must_use]
    pub fn new(view: View) -> Self {
        Self {
            inner: Mutex::new(Inner {
                view: view.clone(),
                in_flight: 0,
            }),
            idle: Notify::new(),
            changes: watch::Sender::new(view),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The guarded data is two plain fields, consistent after any panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shows a new view: writes waiting at a pause go on (or are refused).
    pub fn publish(&self, view: View) {
        self.lock().view = view.clone();
        self.changes.send_replace(view);
    }

    /// The view now.
    #[must_use]
    pub fn view(&self) -> View {
        self.lock().view.clone()
    }

    /// A receiver of view changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.changes.subscribe()
    }

    /// Admits a write: at once when open, after the pause when paused (up to [`MAX_PAUSE`]).
    ///
    /// # Errors
    /// `NotMaster` (naming the master and epoch) when closed, or still paused after the wait.
    pub async fn admit(&self) -> Result<Ticket<'_>, KvError> {
        // The common case, without a subscription: one short lock.
        if let Some(decided) = self.try_admit() {
            return decided;
        }
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + MAX_PAUSE;
        loop {
            if let Some(decided) = self.try_admit() {
                return decided;
            }
            changes.borrow_and_update();
            // Re-check after subscribing to the change, so a publish in between is not missed.
            if self.lock().view.gate != Gate::Paused {
                continue;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(refusal(&self.lock().view));
            }
        }
    }

    /// The gate's answer now: a ticket (open), a refusal (closed), or `None` (paused). The
    /// check and the count are one step under the lock.
    fn try_admit(&self) -> Option<Result<Ticket<'_>, KvError>> {
        let mut inner = self.lock();
        match inner.view.gate {
            Gate::Open => {
                inner.in_flight += 1;
                Some(Ok(Ticket {
                    gate: self,
                    epoch: inner.view.epoch,
                }))
            }
            Gate::Closed => Some(Err(refusal(&inner.view))),
            Gate::Paused => None,
        }
    }

    /// Writes admitted and not yet committed.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits until no admitted write is in flight, up to `timeout`; whether it got there.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let idle = async {
            loop {
                let woken = self.idle.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if self.lock().in_flight == 0 {
                    return;
                }
                woken.await;
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::{Role, cluster::Member};

    use super::*;

    fn view(epoch: Epoch, gate: Gate) -> View {
        View {
            epoch,
            role: Role::Master,
            master: Some(Member {
                node_id: "a".into(),
                address: "a:1".into(),
            }),
            gate,
            serving: true,
        }
    }

    #[tokio::test]
    async fn open_admits_closed_refuses_naming_the_master() {
        let gate = WriteGate::new(view(2, Gate::Open));
        let t = gate.admit().await.expect("open");
        assert_eq!((t.epoch, gate.in_flight()), (2, 1));
        drop(t);
        assert_eq!(gate.in_flight(), 0);
        gate.publish(view(3, Gate::Closed));
        assert_eq!(
            gate.admit().await.expect_err("closed"),
            KvError::NotMaster {
                master: Some("a:1".into()),
                epoch: 3
            }
        );
    }

    #[tokio::test]
    async fn a_paused_write_waits_for_the_outcome() {
        let gate = Arc::new(WriteGate::new(view(2, Gate::Paused)));
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.admit().await.map(|t| t.epoch) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        gate.publish(view(2, Gate::Open));
        assert_eq!(waiting.await.expect("join"), Ok(2));
        // A pause that ends in a hand-over refuses the waiting write, naming the new master.
        gate.publish(view(2, Gate::Paused));
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.admit().await.map(|t| t.epoch) })
        };
        tokio::task::yield_now().await;
        gate.publish(view(3, Gate::Closed));
        assert!(matches!(
            waiting.await.expect("join"),
            Err(KvError::NotMaster { epoch: 3, .. })
        ));
    }

    #[tokio::test]
    async fn drained_waits_for_the_last_admitted_write() {
        let gate = Arc::new(WriteGate::new(view(1, Gate::Open)));
        let t = gate.admit().await.expect("open");
        gate.publish(view(1, Gate::Paused));
        assert!(!gate.drained(Duration::from_millis(20)).await);
        let drainer = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.drained(Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        drop(t);
        assert!(drainer.await.expect("join"));
    }
}
