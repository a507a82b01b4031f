//! kvd, the daemon. Filled in below.
pub mod storage;
