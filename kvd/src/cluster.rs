//! The cluster's control plane: who is master, in which epoch, who the members are, and the
//! operator's failover procedures. The role and the epoch live here and nowhere else: the rest
//! of the node reads the view the runtime publishes (`Cluster::view`) and passes its writes
//! through the gate.
//!
//! ```text
//! history.rs    a shard's epoch history and the divergence rule (pure)
//! state.rs      the role and epoch state machine: events in, commands out (pure)
//! gate.rs       the write gate: open / paused / closed, and the writes in flight
//! persist.rs    cluster.json: cluster id, epoch and master, membership, last failover
//! runtime.rs    runs the state machine's commands: persist, publish, follow, master duties
//! failover.rs   switchover, promotion, take-over, forget, and their plans (pure)
//! election.rs   automatic failover: the detector, pre-vote and vote, the vote's conditions
//! lease.rs      the master's lease in automatic failover (pure arithmetic)
//! peers.rs      calls to other nodes (hello, status, take_over) with timeouts
//! ```
//!
//! See `docs/failover.md` for the protocol.

pub mod election;
pub mod failover;
pub mod gate;
pub mod history;
pub mod lease;
pub mod peers;
pub mod persist;
pub mod runtime;
pub mod state;

pub use runtime::Cluster;
