//! The client library's error: what went wrong talking to the cluster, in words that name the
//! node and what to check, and in variants a program can match on.
//!
//! [`KvError`] stays the wire error (the node answered "no"); it arrives wrapped in
//! [`Error::Kv`]. Everything else is about reaching the node, and for writes about whether the
//! write happened:
//!
//! ```text
//!                        before the request left        after it left, no answer
//!  read  (get, scan, …)  Unreachable, ConnectionLost    ConnectionLost, TimedOut   (retried elsewhere)
//!  write (put, delete, …) Unreachable, ConnectionLost   OutcomeUnknown             (never retried)
//! ```
//!
//! So for a write, [`Error::ConnectionLost`] always means the request was never sent, and the
//! only error that leaves a write in doubt is [`Error::OutcomeUnknown`].

use std::{fmt, time::Duration};

use crate::{
    KvError,
    addr::{AddrError, Endpoint},
};

/// Why a write's outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The connection broke after the request was sent (what the transport said).
    ConnectionBroke(String),
    /// No answer came before the request's deadline.
    NoAnswer(Duration),
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionBroke(cause) => {
                write!(f, "the connection broke after it was sent ({cause})")
            }
            Self::NoAnswer(after) => write!(f, "no answer came within {}", seconds(*after)),
        }
    }
}

/// Everything a call through the client library can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node answered with an error: a refusal, a failed condition, a limit. Nothing went
    /// wrong on the way; the node said no.
    #[error("{0}")]
    Kv(#[from] KvError),
    /// The client was built without an endpoint.
    #[error("no endpoint to talk to: give at least one node address (host:port)")]
    NoEndpoints,
    /// The TCP connection could not be opened (refused, timed out, unknown name). Nothing was
    /// sent.
    #[error("cannot reach the node at {endpoint}: {cause}; is kvd running there?")]
    Unreachable {
        /// Where the client tried to connect.
        endpoint: Endpoint,
        /// What the operating system said, or `timed out after Ns`.
        cause: String,
    },
    /// The connection broke. For a read, while the request was in flight; for a write, before
    /// the request was sent (a write lost in flight is [`Error::OutcomeUnknown`]).
    #[error("lost the connection to the node at {endpoint}: {cause}; is kvd running there?")]
    ConnectionLost {
        /// The node the request went to.
        endpoint: Endpoint,
        /// What the transport said.
        cause: String,
    },
    /// A read got no answer before its deadline.
    #[error(
        "no answer from the node at {endpoint}: timed out after {}; is kvd running there?",
        seconds(*.after)
    )]
    TimedOut {
        /// The node the request went to.
        endpoint: Endpoint,
        /// The time the request was given.
        after: Duration,
    },
    /// A write was sent and no answer came: it may or may not have been applied. Read the key
    /// back (or look at the cluster, for an admin request) before sending it again.
    #[error(
        "the outcome of the {request} sent to the node at {endpoint} is unknown: {cause}; it may \
         or may not have been applied, so check before retrying"
    )]
    OutcomeUnknown {
        /// The node it was sent to.
        endpoint: Endpoint,
        /// What was sent: `put`, `delete`, `mput`, `failover`, `promote`, `forget`.
        request: &'static str,
        /// What happened after it was sent.
        cause: Lost,
    },
    /// tarpc's server layer refused the request before the service saw it (e.g. throttled).
    /// Nothing was done.
    #[error("the node at {endpoint} aborted the request: {detail}")]
    Aborted {
        /// The node the request went to.
        endpoint: Endpoint,
        /// tarpc's explanation.
        detail: String,
    },
    /// The node dropped the connection on a put whose value is too large for one frame; the
    /// frame was refused unread, so nothing was written.
    #[error(
        "the value ({len} bytes) exceeds the node's frame limit, so the node closed the \
         connection; values are limited to `kvd --max-value-bytes` (1 MiB by default)"
    )]
    ValueOverFrameLimit {
        /// The value's length.
        len: usize,
    },
    /// A node gave an address that does not parse (a master it names, a member it lists).
    #[error("{who} gave the address {address:?}, which is not usable: {source}")]
    BadAddress {
        /// Who gave it, for people: `the replica at 10.0.0.2:3000`.
        who: String,
        /// The address as given.
        address: String,
        /// Why it does not parse.
        source: AddrError,
    },
    /// No node could be found that takes writes (the master with the highest epoch, writable)
    /// within the request's time: a failover in progress, a master that is down, or endpoints
    /// that are all replicas of an unreachable master. Nothing was sent.
    #[error(
        "no writable master found within {}: {}; a failover may be in progress (retry, or allow \
         more time), or the master is down (promote a replica)",
        seconds(*.after),
        .seen.join("; ")
    )]
    NoMaster {
        /// How long the client looked.
        after: Duration,
        /// What each node said, for people: `127.0.0.1:3001: replica (epoch 2) of 127.0.0.1:3000`.
        seen: Vec<String>,
    },
    /// Every endpoint failed (a read tried each in turn).
    #[error("no endpoint answered: {}; is kvd running there?", list(.errors))]
    NoEndpointAnswered {
        /// Each endpoint's failure, in the order tried.
        errors: Vec<Error>,
    },
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(Error::brief)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A duration as a person would have typed it: `10s`, `2.5s`.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl Error {
    /// The message without its advice, for a list of several.
    pub(crate) fn brief(&self) -> String {
        match self {
            Self::Unreachable { endpoint, cause } => format!("cannot reach {endpoint}: {cause}"),
            Self::ConnectionLost { endpoint, cause } => {
                format!("lost the connection to {endpoint}: {cause}")
            }
            Self::TimedOut { endpoint, after } => {
                format!("no answer from {endpoint} within {}", seconds(*after))
            }
            other => other.to_string(),
        }
    }

    /// The node's own answer, when the error is one.
    #[must_use]
    pub fn kv(&self) -> Option<&KvError> {
        match self {
            Self::Kv(e) => Some(e),
            _ => None,
        }
    }

    /// Whether no node could be reached or none answered in time: connection refused, lost,
    /// timed out, a node shutting down, no master found. (A write in doubt is not one: see
    /// [`Error::is_outcome_unknown`].)
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Kv(KvError::ShuttingDown)
            | Self::Unreachable { .. }
            | Self::ConnectionLost { .. }
            | Self::TimedOut { .. }
            | Self::NoMaster { .. } => true,
            Self::NoEndpointAnswered { errors } => errors.iter().all(Self::is_unreachable),
            _ => false,
        }
    }

    /// Whether a write was sent and no answer came.
    #[must_use]
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::OutcomeUnknown { .. } | Self::Kv(KvError::WriteOutcomeUnknown { .. })
        )
    }

    /// Whether the request is known not to have been carried out by the node it went to, and
    /// another node (or the same one, reconnected) may be asked: it never left, or the node
    /// said it took nothing (`NotMaster`, `ShuttingDown`, `NoLease`: a master whose lease ran
    /// out under automatic failover), or (reads only) it got no answer.
    pub(crate) fn may_retry(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::ConnectionLost { .. }
                | Self::TimedOut { .. }
                | Self::Kv(
                    KvError::NotMaster { .. } | KvError::ShuttingDown | KvError::NoLease { .. }
                )
        )
    }

    /// Whether a read may be asked of the next endpoint: [`Error::may_retry`], or the shard is
    /// being copied on this node.
    pub(crate) fn read_elsewhere(&self) -> bool {
        self.may_retry() || matches!(self, Self::Kv(KvError::ShardUnavailable { .. }))
    }

    /// One error for a list of failures: the only one as it is, several as
    /// [`Error::NoEndpointAnswered`].
    pub(crate) fn from_failures(mut errors: Vec<Self>) -> Self {
        match errors.len() {
            0 => Self::NoEndpoints,
            1 => errors.remove(0),
            _ => Self::NoEndpointAnswered { errors },
        }
    }
}

/// An error and its sources, joined by `: `.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Endpoint {
        Endpoint {
            host: "localhost".into(),
            port: 3000,
        }
    }

    #[test]
    fn messages_name_the_node_and_what_to_check() {
        let e = Error::Unreachable {
            endpoint: local(),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the node at localhost:3000: Connection refused (os error 111); is kvd \
             running there?"
        );
        let e = Error::TimedOut {
            endpoint: local(),
            after: Duration::from_millis(2500),
        };
        assert!(e.to_string().contains("timed out after 2.5s"), "{e}");
        let e = Error::OutcomeUnknown {
            endpoint: local(),
            request: "put",
            cause: Lost::NoAnswer(Duration::from_secs(10)),
        };
        assert_eq!(
            e.to_string(),
            "the outcome of the put sent to the node at localhost:3000 is unknown: no answer came \
             within 10s; it may or may not have been applied, so check before retrying"
        );
        let e = Error::NoMaster {
            after: Duration::from_secs(1),
            seen: vec![
                "a:1: replica (epoch 2) of b:1".into(),
                "b:1: cannot reach".into(),
            ],
        };
        assert!(
            e.to_string().starts_with(
                "no writable master found within 1s: a:1: replica (epoch 2) of b:1; b:1"
            ),
            "{e}"
        );
    }

    #[test]
    fn classes() {
        let unknown = Error::OutcomeUnknown {
            endpoint: local(),
            request: "put",
            cause: Lost::ConnectionBroke("reset".into()),
        };
        assert!(unknown.is_outcome_unknown());
        assert!(!unknown.is_unreachable());
        assert!(!unknown.may_retry(), "a write in doubt is never retried");
        let not_master = Error::Kv(KvError::NotMaster {
            master: None,
            epoch: 3,
        });
        assert!(not_master.may_retry());
        assert!(!not_master.is_unreachable());
        assert!(Error::Kv(KvError::ShuttingDown).is_unreachable());
        assert!(!Error::Kv(KvError::EmptyKey).may_retry());
        let resync = Error::Kv(KvError::ShardUnavailable {
            shard: 1,
            reason: "resync".into(),
        });
        assert!(resync.read_elsewhere() && !resync.may_retry());
        let all = Error::from_failures(vec![
            Error::Unreachable {
                endpoint: local(),
                cause: "refused".into(),
            },
            Error::Kv(KvError::ShuttingDown),
        ]);
        assert!(all.is_unreachable(), "{all}");
        assert_eq!(
            all.to_string(),
            "no endpoint answered: cannot reach localhost:3000: refused; the node is shutting \
             down; retry once it is back; is kvd running there?"
        );
        let one = Error::from_failures(vec![Error::Kv(KvError::EmptyKey)]);
        assert!(matches!(one, Error::Kv(KvError::EmptyKey)));
    }
}
