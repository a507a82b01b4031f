//! The cluster's control plane: who is master, in which epoch, and who the members are.
//!
//! ```text
//! history.rs   a shard's epoch history and the divergence rule (pure)
//! ```
//!
//! The role and the epoch live here and nowhere else: the rest of the node reads them.

pub mod history;
