//! The connection to one node, and the error type of every kvctl command with its exit code.
//!
//! Owns three things:
//! - [`Exit`], the one table of exit codes (also printed by `kvctl --help`);
//! - [`Error`], which turns tarpc, I/O and [`KvError`] failures into a message that names the
//!   endpoint and says what to check, and knows which [`Exit`] it maps to;
//! - [`Node`], a connected client with a connect timeout and a per-request deadline, and
//!   [`follow_master`] / [`on_master`], which retry a call once against the master a replica
//!   names (writes, and the master-only `cluster_status`).
//!
//! ```text
//!  Node::connect(endpoint, timeout) --tcp--> kvd
//!     │  get/delete/scan/status/cluster_status: ctx.deadline = now + timeout
//!     │  put:    + acks_timeout_ms (the master may hold the write while replicas acknowledge)
//!     │  digest: + wait_ms         (a replica may hold the call until it reaches the sequence)
//!     ▼
//!  Result<Result<T, KvError>, RpcError>  ──►  Result<T, Error>  ──►  Exit code
//! ```

use std::{io, time::Duration};

use serde_bytes::ByteBuf;
use shared::{
    ClusterStatus, Digest, KvClient, KvError, NodeStatus, PutRequest, ScanPage, ScanRequest,
    Version, Versioned,
    addr::{AddrError, Endpoint, parse_endpoint},
};
use tarpc::client::RpcError;

use crate::output::{display_bytes, seconds};

/// Port assumed when an address names none (kvd's default port).
pub const DEFAULT_PORT: u16 = 3000;

/// Values above this size may not fit the node's largest frame: with default limits a node
/// accepts frames of `max(2 × (key + value limits), 16 MiB) + 64 KiB` and closes the connection on
/// anything larger, without an answer.
pub const FRAME_SAFE_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// kvctl's exit codes. This enum is the only place they are defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Success = 0,
    /// The answer is "no": the key does not exist, a compare-and-swap condition
    /// (`--if-version`, `--if-absent`) did not hold, or `verify` found a replica whose shard
    /// differs from the master's.
    NotFound = 1,
    /// The command line or the request is wrong, or the node refused it: bad flags, a key or
    /// value over the node's limits, an invalid argument, a storage failure on the node, an
    /// unreadable `--file`; also a write committed on the master that fewer replicas than
    /// `put --acks` asked for acknowledged in time ([`KvError::AcksTimeout`]), and any other
    /// failure that is not one of the codes above or below.
    Usage = 2,
    /// A node cannot be reached: connection refused or timed out, a name that does not
    /// resolve, a connection lost mid-request, no answer before `--timeout`, or the node is
    /// shutting down. For `verify` this also covers the master and every replica it lists.
    Unreachable = 3,
}

impl Exit {
    /// The numeric code.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// The exit-code table as shown at the end of `kvctl --help` (kept in step with [`Exit`] by a
/// test).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  key not found, or a compare-and-swap condition (--if-version, --if-absent) failed;
     verify found a difference between the master and a replica
  2  usage or request error: bad flags, key or value over the node's limits, invalid
     argument, storage error on the node, unreadable --file; put --acks: the write is
     committed on the master but too few replicas acknowledged it in time; any other error
  3  a node cannot be reached: connection refused or timed out, unknown host name,
     connection lost, no answer within --timeout, node shutting down (verify: the master
     or a replica; the message names which)

Results go to stdout; errors go to stderr as `kvctl: <message>`.";

/// The advice every "cannot reach" message ends with.
const REACH_HINT: &str = "is kvd running there? (-e/--endpoint, KVCTL_ENDPOINT)";

/// Everything that makes a kvctl command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `get` or `delete` of a key that does not exist.
    #[error("key not found: {}", display_bytes(.0))]
    KeyNotFound(Vec<u8>),
    /// The node answered with an error.
    #[error("{0}")]
    Kv(#[from] KvError),
    /// The TCP connection could not be opened (refused, timed out, unknown name).
    #[error("cannot reach the node at {endpoint}: {cause}; {REACH_HINT}")]
    Unreachable {
        /// Where kvctl tried to connect.
        endpoint: Endpoint,
        /// What the operating system said, or `timed out after Ns`.
        cause: String,
    },
    /// The connection broke while a request was in flight.
    #[error("lost the connection to the node at {endpoint}: {cause}; {REACH_HINT}")]
    ConnectionLost {
        /// The node the request went to.
        endpoint: Endpoint,
        /// What the transport said.
        cause: String,
    },
    /// No answer before the request's deadline.
    #[error(
        "no answer from the node at {endpoint}: timed out after {}; is kvd running there? \
         (-e/--endpoint, KVCTL_ENDPOINT; raise --timeout for slow requests)",
        seconds(*.after)
    )]
    TimedOut {
        /// The node the request went to.
        endpoint: Endpoint,
        /// The `--timeout` that passed.
        after: Duration,
    },
    /// tarpc's server layer refused the request before the service saw it (e.g. throttled).
    #[error("the node at {endpoint} aborted the request: {detail}")]
    Aborted {
        /// The node the request went to.
        endpoint: Endpoint,
        /// tarpc's explanation.
        detail: String,
    },
    /// The node dropped the connection on a put whose value is too large for one frame.
    #[error(
        "the value ({len} bytes) exceeds the node's frame limit, so the node closed the \
         connection; values are limited to `kvd --max-value-bytes` (1 MiB by default)"
    )]
    ValueOverFrameLimit {
        /// The value's length.
        len: usize,
    },
    /// A replica named a master whose address does not parse.
    #[error(
        "the replica at {replica} named its master as {master:?}, which is not usable: {source}"
    )]
    BadMasterAddress {
        /// The replica that answered.
        replica: Endpoint,
        /// The address it gave.
        master: String,
        /// Why it does not parse.
        source: AddrError,
    },
    /// A call to one node of several failed (`verify`: the master, or a replica the master
    /// lists). The message names the node; the exit code is the underlying error's.
    #[error("{node}: {source}")]
    Peer {
        /// Which node, for people: `master`, `replica <node id>`.
        node: String,
        /// What went wrong talking to it.
        source: Box<Error>,
    },
    /// A replica the master lists advertises an address that does not parse.
    #[error("the master lists replica {node_id} at {address:?}, which is not usable: {source}")]
    BadReplicaAddress {
        /// The replica's node id.
        node_id: String,
        /// The address it advertises.
        address: String,
        /// Why it does not parse.
        source: AddrError,
    },
    /// `verify` compared every shard and some differ between the master and a replica.
    #[error(
        "verify found a difference: {differ} of {shards} shard(s) differ between the master and \
         at least one replica"
    )]
    VerifyMismatch {
        /// Shards where at least one replica differs.
        differ: usize,
        /// Shards compared.
        shards: usize,
    },
    /// `verify` could not get the master and every replica to one sequence of a shard in time
    /// (writes kept moving the master ahead, or a replica lags or is resyncing).
    #[error(
        "verify: shard {shard} could not be compared at one sequence within {} \
         (--timeout-per-shard); last answer: {last}",
        seconds(*.after)
    )]
    VerifyGaveUp {
        /// The shard.
        shard: u32,
        /// The per-shard time that ran out.
        after: Duration,
        /// The last refusal, naming the replica.
        last: Box<Error>,
    },
    /// The command line asks for something impossible that clap did not catch.
    #[error("{0}")]
    Usage(String),
    /// A local input (a `--file`, stdin) could not be read.
    #[error("cannot read {what}: {source}")]
    Input {
        /// What was being read, as the user named it.
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the result to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] io::Error),
}

impl Error {
    /// The exit code this error ends kvctl with.
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Self::KeyNotFound(_) | Self::VerifyMismatch { .. } => Exit::NotFound,
            Self::Kv(e) if e.is_condition_failed() => Exit::NotFound,
            Self::Kv(KvError::ShuttingDown)
            | Self::Unreachable { .. }
            | Self::ConnectionLost { .. }
            | Self::TimedOut { .. } => Exit::Unreachable,
            Self::Peer { source, .. } => source.exit(),
            // Includes `KvError::AcksTimeout`: the write is committed on the master but
            // under-replicated, which is neither a "no" (1) nor an unreachable node (3).
            Self::Kv(_)
            | Self::Aborted { .. }
            | Self::ValueOverFrameLimit { .. }
            | Self::BadMasterAddress { .. }
            | Self::BadReplicaAddress { .. }
            | Self::VerifyGaveUp { .. }
            | Self::Usage(_)
            | Self::Input { .. }
            | Self::Output(_) => Exit::Usage,
        }
    }

    /// Whether stdout was closed by its reader (`kvctl scan | head`): not worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Turns a tarpc failure of a request to `endpoint` into an error.
    #[must_use]
    pub fn from_rpc(endpoint: &Endpoint, timeout: Duration, err: RpcError) -> Self {
        let endpoint = endpoint.clone();
        match err {
            RpcError::DeadlineExceeded => Self::TimedOut {
                endpoint,
                after: timeout,
            },
            RpcError::Server(e) => Self::Aborted {
                endpoint,
                detail: e.detail,
            },
            RpcError::Shutdown => Self::ConnectionLost {
                endpoint,
                cause: "the connection was closed".to_string(),
            },
            RpcError::Send(e) => Self::ConnectionLost {
                endpoint,
                cause: chain(e.as_ref()),
            },
            RpcError::Channel(e) => Self::ConnectionLost {
                endpoint,
                cause: chain(&e),
            },
        }
    }
}

/// An error and its sources, joined by `: `.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// A connected node. Cheap to clone (the tarpc client is a handle to a background task).
#[derive(Clone)]
pub struct Node {
    endpoint: Endpoint,
    client: KvClient,
    /// Both the connect timeout and each request's deadline.
    timeout: Duration,
}

impl Node {
    /// Connects to `endpoint`, giving up after `timeout`.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the name does not resolve, the connection is refused or it
    /// does not complete in time.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Self, Error> {
        let unreachable = |cause: String| Error::Unreachable {
            endpoint: endpoint.clone(),
            cause,
        };
        match tokio::time::timeout(timeout, shared::transport::connect(endpoint)).await {
            Ok(Ok(client)) => Ok(Self {
                endpoint: endpoint.clone(),
                client,
                timeout,
            }),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("timed out after {}", seconds(timeout)))),
        }
    }

    /// Connects to another node with the same timeout.
    ///
    /// # Errors
    /// As [`Node::connect`].
    pub async fn connect_to(&self, endpoint: &Endpoint) -> Result<Self, Error> {
        Self::connect(endpoint, self.timeout).await
    }

    /// A context whose deadline is `--timeout` plus `extra`, the time the node may
    /// legitimately hold the call (an acks wait, a digest wait).
    fn context(&self, extra: Duration) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        // `--timeout` is capped at an hour and `extra` comes from a u32 of milliseconds, so this
        // cannot overflow; fall back to tarpc's default rather than panic if it ever did.
        if let Some(deadline) = self
            .timeout
            .checked_add(extra)
            .and_then(|d| std::time::Instant::now().checked_add(d))
        {
            ctx.deadline = deadline;
        }
        ctx
    }

    fn flatten<T>(
        &self,
        extra: Duration,
        reply: Result<Result<T, KvError>, RpcError>,
    ) -> Result<T, Error> {
        match reply {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Kv(e)),
            Err(e) => Err(Error::from_rpc(
                &self.endpoint,
                self.timeout.saturating_add(extra),
                e,
            )),
        }
    }

    /// Reads a key; `None` when it is absent.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        let reply = self
            .client
            .get(self.context(Duration::ZERO), ByteBuf::from(key))
            .await;
        self.flatten(Duration::ZERO, reply)
    }

    /// Writes a key. The deadline is `--timeout` plus the request's `acks_timeout_ms`, so a
    /// master waiting for replicas to acknowledge answers before kvctl gives up.
    ///
    /// # Errors
    /// The node's refusal (including [`KvError::AcksTimeout`]), a transport failure, or
    /// [`Error::ValueOverFrameLimit`] when the connection drops on a value too large for one
    /// frame.
    pub async fn put(&self, req: PutRequest) -> Result<Version, Error> {
        let len = req.value.len();
        let extra = Duration::from_millis(u64::from(req.acks_timeout_ms));
        let reply = self.client.put(self.context(extra), req).await;
        match self.flatten(extra, reply) {
            Err(Error::ConnectionLost { .. }) if len > FRAME_SAFE_VALUE_BYTES => {
                Err(Error::ValueOverFrameLimit { len })
            }
            other => other,
        }
    }

    /// Deletes a key; `None` when it was absent.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn delete(&self, key: &[u8]) -> Result<Option<Version>, Error> {
        let reply = self
            .client
            .delete(self.context(Duration::ZERO), ByteBuf::from(key))
            .await;
        self.flatten(Duration::ZERO, reply)
    }

    /// Reads one page of a scan.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanPage, Error> {
        let reply = self.client.scan(self.context(Duration::ZERO), req).await;
        self.flatten(Duration::ZERO, reply)
    }

    /// The node's status.
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let reply = self.client.status(self.context(Duration::ZERO)).await;
        self.flatten(Duration::ZERO, reply)
    }

    /// The master's view of the cluster; a replica refuses with [`KvError::NotMaster`] (see
    /// [`on_master`]).
    ///
    /// # Errors
    /// The node's refusal or a transport failure.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let reply = self
            .client
            .cluster_status(self.context(Duration::ZERO))
            .await;
        self.flatten(Duration::ZERO, reply)
    }

    /// A digest of `shard`: now (`at_seq: None`), or exactly at `at_seq`, the node waiting up to
    /// `wait` (whole milliseconds, at most `u32::MAX`) to get there. The deadline is `--timeout`
    /// plus `wait`.
    ///
    /// # Errors
    /// The node's refusal ([`KvError::SequenceUnavailable`] when it is past `at_seq` or did not
    /// get there in time) or a transport failure.
    pub async fn digest(
        &self,
        shard: u32,
        at_seq: Option<u64>,
        wait: Duration,
    ) -> Result<Digest, Error> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let extra = Duration::from_millis(u64::from(wait_ms));
        let reply = self
            .client
            .digest(self.context(extra), shard, at_seq, wait_ms)
            .await;
        self.flatten(extra, reply)
    }
}

/// Runs a write against `node`; when `node` is a replica that names its master, runs it once
/// more against that master. A second refusal is returned as it is.
///
/// # Errors
/// Whatever the last attempt failed with, or [`Error::BadMasterAddress`].
pub async fn follow_master<T>(
    node: &Node,
    write: impl AsyncFn(&Node) -> Result<T, Error>,
) -> Result<T, Error> {
    on_master(node, write).await.map(|(_, v)| v)
}

/// As [`follow_master`], and also returns the node that answered (`node` itself, or the master
/// it named), for commands that go on talking to the master.
///
/// # Errors
/// Whatever the last attempt failed with, or [`Error::BadMasterAddress`].
pub async fn on_master<T>(
    node: &Node,
    call: impl AsyncFn(&Node) -> Result<T, Error>,
) -> Result<(Node, T), Error> {
    match call(node).await {
        Err(Error::Kv(KvError::NotMaster {
            master: Some(master),
        })) => {
            let endpoint = parse_endpoint(&master, DEFAULT_PORT).map_err(|source| {
                Error::BadMasterAddress {
                    replica: node.endpoint.clone(),
                    master,
                    source,
                }
            })?;
            let master = node.connect_to(&endpoint).await?;
            let value = call(&master).await?;
            Ok((master, value))
        }
        Err(Error::Kv(KvError::NotMaster { master: None })) => Err(Error::Usage(format!(
            "the node at {} is a replica and did not say where its master is; point \
             -e/--endpoint at the master",
            node.endpoint
        ))),
        other => other.map(|v| (node.clone(), v)),
    }
}

#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use testing::{Fake, serve};

    fn local() -> Endpoint {
        Endpoint {
            host: "localhost".into(),
            port: 3000,
        }
    }

    fn io_err(kind: io::ErrorKind, msg: &str) -> io::Error {
        io::Error::new(kind, msg)
    }

    fn rpc(err: RpcError) -> Error {
        Error::from_rpc(&local(), Duration::from_secs(10), err)
    }

    #[test]
    fn exit_codes_of_node_answers() {
        let cases = [
            (
                KvError::VersionMismatch {
                    expected: 3,
                    actual: Some(4),
                },
                Exit::NotFound,
            ),
            (
                KvError::VersionMismatch {
                    expected: 3,
                    actual: None,
                },
                Exit::NotFound,
            ),
            (KvError::AlreadyExists { version: 1 }, Exit::NotFound),
            (KvError::EmptyKey, Exit::Usage),
            (
                KvError::KeyTooLarge {
                    len: 5000,
                    max: 4096,
                },
                Exit::Usage,
            ),
            (
                KvError::ValueTooLarge {
                    len: 2 << 20,
                    max: 1 << 20,
                },
                Exit::Usage,
            ),
            (KvError::InvalidArgument("x".into()), Exit::Usage),
            (
                KvError::Storage {
                    shard: 0,
                    message: "disk".into(),
                },
                Exit::Usage,
            ),
            (
                KvError::NoSuchShard {
                    shard: 9,
                    shards: 2,
                },
                Exit::Usage,
            ),
            (KvError::Unsupported("x".into()), Exit::Usage),
            (KvError::NotMaster { master: None }, Exit::Usage),
            (KvError::ShuttingDown, Exit::Unreachable),
            // Committed on the master, too few replica acknowledgements: its own meaning of 2.
            (
                KvError::AcksTimeout {
                    version: 7,
                    acked: 1,
                    required: 2,
                    timeout_ms: 5000,
                },
                Exit::Usage,
            ),
            (
                KvError::ShardUnavailable {
                    shard: 0,
                    reason: "resyncing".into(),
                },
                Exit::Usage,
            ),
            (
                KvError::SequenceUnavailable {
                    shard: 0,
                    current: 9,
                    requested: 8,
                },
                Exit::Usage,
            ),
            (
                KvError::ShardCountMismatch {
                    master: 2,
                    replica: 3,
                },
                Exit::Usage,
            ),
            (KvError::ResyncExpired { shard: 1 }, Exit::Usage),
        ];
        for (err, want) in cases {
            assert_eq!(Error::from(err.clone()).exit(), want, "{err}");
        }
        assert_eq!(Error::KeyNotFound(b"k".to_vec()).exit(), Exit::NotFound);
    }

    #[test]
    fn exit_codes_of_local_and_transport_errors() {
        let usage = [
            Error::ValueOverFrameLimit { len: 20 << 20 },
            Error::Usage("both".into()),
            Error::Input {
                what: "--file f".into(),
                source: io_err(io::ErrorKind::NotFound, "x"),
            },
            Error::Output(io_err(io::ErrorKind::Other, "full")),
            rpc(RpcError::Server(tarpc::ServerError::new(
                io::ErrorKind::WouldBlock,
                "throttled".into(),
            ))),
        ];
        for err in usage {
            assert_eq!(err.exit(), Exit::Usage, "{err}");
        }
        let unreachable = [
            Error::Unreachable {
                endpoint: local(),
                cause: "refused".into(),
            },
            rpc(RpcError::Shutdown),
            rpc(RpcError::DeadlineExceeded),
            rpc(RpcError::Send(Box::new(io_err(
                io::ErrorKind::BrokenPipe,
                "pipe",
            )))),
            rpc(RpcError::Channel(tarpc::ChannelError::Read(
                std::sync::Arc::new(io_err(io::ErrorKind::ConnectionReset, "reset")),
            ))),
        ];
        for err in unreachable {
            assert_eq!(err.exit(), Exit::Unreachable, "{err}");
        }
    }

    #[test]
    fn exit_codes_of_cluster_commands() {
        let peer = |source: Error| Error::Peer {
            node: "replica r1".into(),
            source: Box::new(source),
        };
        let unreachable = peer(Error::Unreachable {
            endpoint: local(),
            cause: "refused".into(),
        });
        assert_eq!(unreachable.exit(), Exit::Unreachable);
        assert!(
            unreachable
                .to_string()
                .starts_with("replica r1: cannot reach the node at localhost:3000: refused"),
            "{unreachable}"
        );
        assert_eq!(
            peer(rpc(RpcError::DeadlineExceeded)).exit(),
            Exit::Unreachable
        );
        assert_eq!(
            peer(Error::Kv(KvError::Unsupported("digest".into()))).exit(),
            Exit::Usage
        );
        let differ = Error::VerifyMismatch {
            differ: 1,
            shards: 4,
        };
        assert_eq!(differ.exit(), Exit::NotFound);
        let gave_up = Error::VerifyGaveUp {
            shard: 2,
            after: Duration::from_secs(30),
            last: Box::new(peer(Error::Kv(KvError::SequenceUnavailable {
                shard: 2,
                current: 11,
                requested: 10,
            }))),
        };
        assert_eq!(gave_up.exit(), Exit::Usage);
        assert!(gave_up.to_string().contains("within 30s"), "{gave_up}");
        let bad = Error::BadReplicaAddress {
            node_id: "r1".into(),
            address: "https://x".into(),
            source: parse_endpoint("https://x", 1).expect_err("bad"),
        };
        assert_eq!(bad.exit(), Exit::Usage);
    }

    #[test]
    fn exit_code_numbers_and_help() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::NotFound.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Unreachable.code(), 3);
        for exit in [
            Exit::Success,
            Exit::NotFound,
            Exit::Usage,
            Exit::Unreachable,
        ] {
            let line = format!("\n  {}  ", exit.code());
            assert!(
                EXIT_CODES_HELP.contains(&line),
                "help lacks exit code {exit:?}"
            );
        }
    }

    #[test]
    fn messages_name_the_endpoint_and_the_fix() {
        let e = Error::Unreachable {
            endpoint: local(),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the node at localhost:3000: Connection refused (os error 111); \
             is kvd running there? (-e/--endpoint, KVCTL_ENDPOINT)"
        );
        let e = Error::from_rpc(
            &local(),
            Duration::from_millis(2500),
            RpcError::DeadlineExceeded,
        );
        assert!(e.to_string().contains("timed out after 2.5s"), "{e}");
        assert!(e.to_string().contains("localhost:3000"), "{e}");
        assert_eq!(
            Error::KeyNotFound(b"user:1".to_vec()).to_string(),
            "key not found: user:1"
        );
        assert_eq!(
            Error::KeyNotFound(vec![0xff]).to_string(),
            "key not found: 0xff"
        );
        let e = Error::ValueOverFrameLimit { len: 20_000_000 };
        assert!(e.to_string().contains("20000000 bytes"), "{e}");
        assert!(e.to_string().contains("kvd --max-value-bytes"), "{e}");
        assert!(Error::Output(io_err(io::ErrorKind::BrokenPipe, "x")).is_broken_pipe());
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let Err(e) = Node::connect(&endpoint, Duration::from_secs(5)).await else {
            panic!("connected to a closed port");
        };
        assert_eq!(e.exit(), Exit::Unreachable);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach the node at 127.0.0.1:{port}: "))
        );
    }

    #[tokio::test]
    async fn slow_node_times_out() {
        let node = serve(Fake {
            delay: Duration::from_secs(5),
            ..Fake::default()
        })
        .await;
        let node = Node::connect(&node, Duration::from_millis(200))
            .await
            .expect("connect");
        let e = node.get(b"k").await.expect_err("times out");
        assert!(matches!(e, Error::TimedOut { .. }), "{e:?}");
        assert!(e.to_string().contains("timed out after 0.2s"), "{e}");
        assert_eq!(e.exit(), Exit::Unreachable);
    }

    #[tokio::test]
    async fn a_value_over_the_frame_limit_is_explained() {
        let node = serve(Fake::default()).await;
        let node = Node::connect(&node, Duration::from_secs(30))
            .await
            .expect("connect");
        let len = FRAME_SAFE_VALUE_BYTES + 128 * 1024;
        let req = PutRequest::new(b"big".to_vec(), vec![7u8; len]);
        let e = node.put(req).await.expect_err("frame too large");
        assert!(
            matches!(e, Error::ValueOverFrameLimit { len: l } if l == len),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::Usage);
    }

    #[tokio::test]
    async fn writes_to_a_replica_go_to_its_master() {
        let master = serve(Fake::default()).await;
        let replica = serve(Fake {
            master: Some(format!("http://{master}")),
            ..Fake::default()
        })
        .await;
        let node = Node::connect(&replica, Duration::from_secs(5))
            .await
            .expect("connect");
        let req = PutRequest::new(b"k".to_vec(), b"v".to_vec());
        let version = follow_master(&node, async |n| n.put(req.clone()).await)
            .await
            .expect("put");
        assert_eq!(version, testing::MASTER_VERSION);
        let deleted = follow_master(&node, async |n| n.delete(b"k").await)
            .await
            .expect("delete");
        assert_eq!(deleted, Some(testing::MASTER_VERSION));
        // Reads are served by the replica itself.
        assert_eq!(node.get(b"k").await.expect("get"), None);
    }

    #[tokio::test]
    async fn a_master_that_points_elsewhere_is_not_followed_twice() {
        let loop_to = serve(Fake {
            master: Some("127.0.0.1:1".into()),
            ..Fake::default()
        })
        .await;
        let replica = serve(Fake {
            master: Some(loop_to.to_string()),
            ..Fake::default()
        })
        .await;
        let node = Node::connect(&replica, Duration::from_secs(5))
            .await
            .expect("connect");
        let e = follow_master(&node, async |n| n.delete(b"k").await)
            .await
            .expect_err("refused");
        assert!(matches!(e, Error::Kv(KvError::NotMaster { .. })), "{e:?}");
        assert_eq!(e.exit(), Exit::Usage);
    }

    #[tokio::test]
    async fn unusable_master_address_is_reported() {
        let replica = serve(Fake {
            master: Some("https://m:1".into()),
            ..Fake::default()
        })
        .await;
        let node = Node::connect(&replica, Duration::from_secs(5))
            .await
            .expect("connect");
        let e = follow_master(&node, async |n| n.delete(b"k").await)
            .await
            .expect_err("refused");
        assert!(matches!(e, Error::BadMasterAddress { .. }), "{e:?}");
    }
}
