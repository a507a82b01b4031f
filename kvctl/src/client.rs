//! kvctl's side of talking to kvd: the exit codes and the error type of every command. The
//! talking itself is the client library's ([`shared::client`]): endpoints, finding and
//! following the master, retries, and the verdict on a write whose answer was lost.
//!
//! Owns two things:
//! - [`Exit`], the one table of exit codes (also printed by `kvctl --help`);
//! - [`Error`], which wraps the library's error (adding which flag to check) and kvctl's own
//!   failures, and knows which [`Exit`] each maps to.
//!
//! ```text
//!  shared::client::{Client, Node}  ──►  Result<T, client::Error>
//!                                              │ + kvctl's own (key not found, verify, input)
//!                                              ▼
//!                                  Result<T, Error>  ──►  message on stderr, Exit code
//! ```

use std::{io, time::Duration};

use shared::{KvError, addr::AddrError, client};

use crate::output::display_bytes;

pub use shared::client::{DEFAULT_PORT, FRAME_SAFE_VALUE_BYTES};

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
    /// unreadable `--file`, a failover or promotion the node refused; also a write committed on
    /// the master that fewer replicas than `put --acks` asked for acknowledged in time
    /// ([`KvError::AcksTimeout`]), and any other failure that is not one of the codes above or
    /// below.
    Usage = 2,
    /// A node cannot be reached: connection refused or timed out, a name that does not
    /// resolve, a connection lost mid-request, no answer before `--timeout`, the node is
    /// shutting down, or no writable master was found in time. For `verify` this also covers
    /// the master and every replica it lists.
    Unreachable = 3,
    /// A write was sent and no answer came (the connection broke, or `--timeout` passed): it
    /// may or may not have been applied. kvctl never retries such a write; check with `get`
    /// (or `status`, for `failover` and `promote`) before sending it again.
    OutcomeUnknown = 4,
    /// The node requires a token and none, a wrong one, or one whose role may not make the
    /// call was given ([`KvError::Unauthenticated`], [`KvError::PermissionDenied`]). Nothing
    /// was done.
    Denied = 5,
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
     argument, storage error on the node, unreadable --file, a failover or promotion the
     node refused; put --acks: the write is committed on the master but too few replicas
     acknowledged it in time; any other error
  3  a node cannot be reached: connection refused or timed out, unknown host name,
     connection lost, no answer within --timeout, node shutting down, no writable master
     found in time (verify: the master or a replica; the message names which)
  4  the outcome of a write is unknown: it was sent and no answer came (the connection
     broke, or --timeout passed), so it may or may not have been applied; kvctl does not
     retry it: check with get (status, for failover and promote) before retrying
  5  refused by authentication: no token, a wrong token, or a token whose role may not
     make this call (--token-file, KVCTL_TOKEN, --token); nothing was done

Results go to stdout; errors go to stderr as `kvctl: <message>`.";

/// Everything that makes a kvctl command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `get` or `delete` of a key that does not exist.
    #[error("key not found: {}", display_bytes(.0))]
    KeyNotFound(Vec<u8>),
    /// Talking to the cluster failed, or a node answered with an error.
    #[error("{}{}", .0, flag_hint(.0))]
    Client(#[from] client::Error),
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
        crate::output::seconds(*.after)
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

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        Self::Client(client::Error::Kv(e))
    }
}

/// The kvctl flags or commands that help with a library error, appended to its message.
fn flag_hint(e: &client::Error) -> &'static str {
    use client::Error as E;
    match e {
        E::Unreachable { .. } | E::ConnectionLost { .. } | E::NoEndpointAnswered { .. } => {
            " (-e/--endpoint, KVCTL_ENDPOINT)"
        }
        E::TimedOut { .. } => " (-e/--endpoint, KVCTL_ENDPOINT; raise --timeout for slow requests)",
        E::NoMaster { .. } => {
            " (-e/--endpoint takes several nodes: -e a,b,c; --timeout; kvctl promote)"
        }
        E::OutcomeUnknown { request, .. } => match *request {
            "failover" | "promote" => " (kvctl status)",
            "forget" => " (kvctl replicas)",
            _ => " (kvctl get KEY)",
        },
        _ => "",
    }
}

impl Error {
    /// The exit code this error ends kvctl with.
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Self::KeyNotFound(_) | Self::VerifyMismatch { .. } => Exit::NotFound,
            Self::Client(e) => match e {
                client::Error::Kv(kv) if kv.is_condition_failed() => Exit::NotFound,
                client::Error::Kv(
                    KvError::Unauthenticated { .. } | KvError::PermissionDenied { .. },
                ) => Exit::Denied,
                e if e.is_outcome_unknown() => Exit::OutcomeUnknown,
                e if e.is_unreachable() => Exit::Unreachable,
                // Includes `KvError::AcksTimeout`: the write is committed on the master but
                // under-replicated, which is neither a "no" (1) nor an unreachable node (3);
                // and a failover or promotion the node refused.
                _ => Exit::Usage,
            },
            Self::Peer { source, .. } => source.exit(),
            Self::BadReplicaAddress { .. }
            | Self::VerifyGaveUp { .. }
            | Self::Usage(_)
            | Self::Input { .. }
            | Self::Output(_) => Exit::Usage,
        }
    }

    /// The node's own answer, when the error is one.
    #[must_use]
    pub fn kv(&self) -> Option<&KvError> {
        match self {
            Self::Client(e) => e.kv(),
            _ => None,
        }
    }

    /// Whether stdout was closed by its reader (`kvctl scan | head`): not worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{
        PutRequest,
        addr::{Endpoint, parse_endpoint},
        client::{Client, Lost},
    };
    use testing::{Fake, MASTER_VERSION, serve};

    fn local() -> Endpoint {
        Endpoint {
            host: "localhost".into(),
            port: 3000,
        }
    }

    fn io_err(kind: io::ErrorKind, msg: &str) -> io::Error {
        io::Error::new(kind, msg)
    }

    fn lib(e: client::Error) -> Error {
        Error::Client(e)
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
            (
                KvError::NotMaster {
                    master: None,
                    epoch: 1,
                },
                Exit::Usage,
            ),
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
    fn refusals_of_a_failover_or_a_promotion_exit_2() {
        // The node names the cause and the fix in each.
        let cases = [
            (
                KvError::FailoverRefused {
                    reason: "no replica".into(),
                },
                Exit::Usage,
            ),
            (
                KvError::FailoverAborted {
                    reason: "late".into(),
                },
                Exit::Usage,
            ),
            (
                KvError::UnknownNode {
                    node: "x".into(),
                    known: Vec::new(),
                },
                Exit::Usage,
            ),
            (
                KvError::AmbiguousNode {
                    node: "a".into(),
                    matches: vec!["a1".into(), "a2".into()],
                },
                Exit::Usage,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(Error::from(err.clone()).exit(), want, "{err}");
        }
    }

    #[test]
    fn exit_codes_of_local_and_transport_errors() {
        let usage = [
            lib(client::Error::ValueOverFrameLimit { len: 20 << 20 }),
            Error::Usage("both".into()),
            Error::Input {
                what: "--file f".into(),
                source: io_err(io::ErrorKind::NotFound, "x"),
            },
            Error::Output(io_err(io::ErrorKind::Other, "full")),
            lib(client::Error::Aborted {
                endpoint: local(),
                detail: "throttled".into(),
            }),
            lib(client::Error::NoEndpoints),
        ];
        for err in usage {
            assert_eq!(err.exit(), Exit::Usage, "{err}");
        }
        let unreachable = [
            lib(client::Error::Unreachable {
                endpoint: local(),
                cause: "refused".into(),
            }),
            lib(client::Error::ConnectionLost {
                endpoint: local(),
                cause: "reset".into(),
            }),
            lib(client::Error::TimedOut {
                endpoint: local(),
                after: Duration::from_secs(10),
            }),
            lib(client::Error::NoMaster {
                after: Duration::from_secs(10),
                seen: Vec::new(),
            }),
            lib(client::Error::NoEndpointAnswered {
                errors: vec![
                    client::Error::Kv(KvError::ShuttingDown),
                    client::Error::Unreachable {
                        endpoint: local(),
                        cause: "refused".into(),
                    },
                ],
            }),
        ];
        for err in unreachable {
            assert_eq!(err.exit(), Exit::Unreachable, "{err}");
        }
        for cause in [
            Lost::NoAnswer(Duration::from_secs(10)),
            Lost::ConnectionBroke("reset".into()),
        ] {
            let err = lib(client::Error::OutcomeUnknown {
                endpoint: local(),
                request: "put",
                cause,
            });
            assert_eq!(err.exit(), Exit::OutcomeUnknown, "{err}");
        }
    }

    #[test]
    fn exit_codes_of_cluster_commands() {
        let peer = |source: Error| Error::Peer {
            node: "replica r1".into(),
            source: Box::new(source),
        };
        let unreachable = peer(lib(client::Error::Unreachable {
            endpoint: local(),
            cause: "refused".into(),
        }));
        assert_eq!(unreachable.exit(), Exit::Unreachable);
        assert!(
            unreachable
                .to_string()
                .starts_with("replica r1: cannot reach the node at localhost:3000: refused"),
            "{unreachable}"
        );
        assert_eq!(
            peer(lib(client::Error::TimedOut {
                endpoint: local(),
                after: Duration::from_secs(1),
            }))
            .exit(),
            Exit::Unreachable
        );
        assert_eq!(
            peer(Error::from(KvError::Unsupported("digest".into()))).exit(),
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
            last: Box::new(peer(Error::from(KvError::SequenceUnavailable {
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
        assert_eq!(Exit::OutcomeUnknown.code(), 4);
        assert_eq!(Exit::Denied.code(), 5);
        for exit in [
            Exit::Success,
            Exit::NotFound,
            Exit::Usage,
            Exit::Unreachable,
            Exit::OutcomeUnknown,
            Exit::Denied,
        ] {
            let line = format!("\n  {}  ", exit.code());
            assert!(
                EXIT_CODES_HELP.contains(&line),
                "help lacks exit code {exit:?}"
            );
        }
        assert!(EXIT_CODES_HELP.contains("outcome of a write is unknown"));
    }

    #[test]
    fn messages_name_the_endpoint_and_the_fix() {
        let e = lib(client::Error::Unreachable {
            endpoint: local(),
            cause: "Connection refused (os error 111)".into(),
        });
        assert_eq!(
            e.to_string(),
            "cannot reach the node at localhost:3000: Connection refused (os error 111); \
             is kvd running there? (-e/--endpoint, KVCTL_ENDPOINT)"
        );
        let e = lib(client::Error::TimedOut {
            endpoint: local(),
            after: Duration::from_millis(2500),
        });
        assert_eq!(
            e.to_string(),
            "no answer from the node at localhost:3000: timed out after 2.5s; is kvd running \
             there? (-e/--endpoint, KVCTL_ENDPOINT; raise --timeout for slow requests)"
        );
        let e = lib(client::Error::OutcomeUnknown {
            endpoint: local(),
            request: "put",
            cause: Lost::ConnectionBroke("connection reset".into()),
        });
        assert_eq!(
            e.to_string(),
            "the outcome of the put sent to the node at localhost:3000 is unknown: the \
             connection broke after it was sent (connection reset); it may or may not have been \
             applied, so check before retrying (kvctl get KEY)"
        );
        let e = lib(client::Error::OutcomeUnknown {
            endpoint: local(),
            request: "failover",
            cause: Lost::NoAnswer(Duration::from_secs(20)),
        });
        assert!(e.to_string().ends_with("(kvctl status)"), "{e}");
        assert_eq!(
            Error::KeyNotFound(b"user:1".to_vec()).to_string(),
            "key not found: user:1"
        );
        assert_eq!(
            Error::KeyNotFound(vec![0xff]).to_string(),
            "key not found: 0xff"
        );
        let e = lib(client::Error::ValueOverFrameLimit { len: 20_000_000 });
        assert!(e.to_string().contains("20000000 bytes"), "{e}");
        assert!(e.to_string().contains("kvd --max-value-bytes"), "{e}");
        assert!(Error::Output(io_err(io::ErrorKind::BrokenPipe, "x")).is_broken_pipe());
    }

    fn client_of(endpoints: &[&Endpoint], timeout: Duration) -> Client {
        Client::builder(endpoints.iter().map(|e| (*e).clone()))
            .timeout(timeout)
            .build()
            .expect("client")
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let endpoint = testing::closed_endpoint();
        let e = Error::from(
            client_of(&[&endpoint], Duration::from_secs(5))
                .get(b"k")
                .await
                .expect_err("connected to a closed port"),
        );
        assert_eq!(e.exit(), Exit::Unreachable);
        assert!(
            e.to_string().starts_with(&format!(
                "cannot reach the node at 127.0.0.1:{}: ",
                endpoint.port
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn slow_node_times_out() {
        let node = serve(Fake {
            delay: Duration::from_secs(5),
            ..Fake::default()
        })
        .await;
        let e = Error::from(
            client_of(&[&node], Duration::from_millis(200))
                .get(b"k")
                .await
                .expect_err("times out"),
        );
        assert!(
            matches!(e, Error::Client(client::Error::TimedOut { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("timed out after 0.2s"), "{e}");
        assert_eq!(e.exit(), Exit::Unreachable);
    }

    #[tokio::test]
    async fn a_write_whose_answer_is_lost_exits_4() {
        let fake = Fake::default();
        fake.live.hang_up_on_writes(1);
        let node = serve(fake).await;
        let e = Error::from(
            client_of(&[&node], Duration::from_secs(5))
                .put(PutRequest::new("k", "v"))
                .await
                .expect_err("lost"),
        );
        assert_eq!(e.exit(), Exit::OutcomeUnknown);
        assert!(e.to_string().contains("is unknown"), "{e}");
    }

    #[tokio::test]
    async fn writes_to_a_replica_go_to_its_master() {
        let master = serve(Fake::default()).await;
        let replica = serve(Fake {
            master: Some(format!("http://{master}")),
            ..Fake::default()
        })
        .await;
        let c = client_of(&[&replica], Duration::from_secs(5));
        let version = c.put(PutRequest::new("k", "v")).await.expect("put");
        assert_eq!(version, MASTER_VERSION);
        let deleted = c.delete(b"k").await.expect("delete");
        assert_eq!(deleted, Some(MASTER_VERSION));
        // Reads are served by the replica itself.
        assert_eq!(c.get(b"k").await.expect("get"), None);
    }

    #[tokio::test]
    async fn a_replica_whose_master_is_nowhere_gives_no_master_in_time() {
        // A replica naming another replica, which names a port nothing listens on.
        let gone = testing::closed_endpoint();
        let loop_to = serve(Fake {
            master: Some(gone.to_string()),
            ..Fake::default()
        })
        .await;
        let replica = serve(Fake {
            master: Some(loop_to.to_string()),
            ..Fake::default()
        })
        .await;
        // Time enough for both fakes to answer on a loaded machine (0.3 s was not, under CI);
        // the client looks for a master until its timeout, so the test takes that long.
        let e = Error::from(
            client_of(&[&replica], Duration::from_secs(2))
                .delete(b"k")
                .await
                .expect_err("no master"),
        );
        assert!(
            matches!(e, Error::Client(client::Error::NoMaster { .. })),
            "{e:?}"
        );
        assert_eq!(e.exit(), Exit::Unreachable);
        let msg = e.to_string();
        assert!(msg.contains(&format!("cannot reach {gone}: ")), "{msg}");
        assert!(msg.ends_with("kvctl promote)"), "{msg}");
    }

    #[tokio::test]
    async fn an_unusable_master_address_is_reported() {
        let replica = serve(Fake {
            master: Some("https://m:1".into()),
            ..Fake::default()
        })
        .await;
        let e = Error::from(
            client_of(&[&replica], Duration::from_millis(300))
                .delete(b"k")
                .await
                .expect_err("refused"),
        );
        assert!(
            matches!(e, Error::Client(client::Error::NoMaster { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("gave the address \"https://m:1\""),
            "{e}"
        );
    }
}
