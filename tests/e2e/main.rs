//! End-to-end tests: real `kvd` processes on loopback, driven by `kvctl` and the client library.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod auth;
mod auto_failover;
mod cli;
mod durability;
mod failover;
mod garbage;
mod monitoring;
mod replication;
mod startup;
mod tls;
mod tui;
mod write_path;
