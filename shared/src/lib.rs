//! What `kvd` and `kvctl` agree on: the tarpc service, the wire types, the one error type that
//! crosses the wire, the size limits, the key-to-shard routing and address parsing; and the
//! client library applications, `kvctl` and the tests use to talk to a cluster.
//!
//! ```text
//! proto.rs      #[tarpc::service] Kv: get/put/delete/scan (clients), status (operators),
//!               join/pull/snapshot/hello (replication), failover/promote/forget (admin)
//! types.rs      request and reply structs, Role, SyncPolicy, NodeStatus
//! cluster.rs    epochs, log positions, members, hello, failover and promotion plans
//! error.rs      KvError: a matchable enum with messages that name the limit or the fix
//! guard.rs      frame and idle timeouts on a node's connections; frames handed on only whole
//! limits.rs     key/value/frame/page limits and their defaults
//! routing.rs    shard_for(key, shards): xxh3-64 of the key bytes modulo the shard count
//! addr.rs       "http://localhost:3000" -> host + port, and --host parsing
//! net.rs        the network connections go through: TCP, or a simulated one in tests
//! tls.rs        TLS on the links (rustls): a client verifying the node, a node verifying clients
//! transport.rs  length-delimited bincode frames over TCP, TCP_NODELAY, a maximum frame length
//!               on both ends, and a server codec that clamps absurd request deadlines
//! client.rs     the client library: endpoints, finding and following the master, retries
//!               only where safe, "outcome unknown" for a write whose answer was lost
//! ```
//!
//! Nothing here does I/O beyond the tarpc glue in `transport.rs` and the client library.

#![warn(missing_docs)]

pub mod addr;
pub mod client;
pub mod cluster;
pub mod error;
pub mod guard;
pub mod limits;
pub mod net;
pub mod proto;
pub mod routing;
pub mod tls;
pub mod transport;
pub mod types;

pub use error::KvError;
pub use proto::{Kv, KvClient};
pub use types::*;
