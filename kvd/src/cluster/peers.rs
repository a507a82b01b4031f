//! Calls from this node to another: connect with a timeout, one request with a deadline, and a
//! failure in words (for logs and plans). No connection is kept: these calls are rare (hellos,
//! a failover's steps), and a fresh connection never carries a stale, half-open socket.

use std::time::{Duration, Instant};

use shared::{
    KvClient, KvError, NodeStatus,
    addr::parse_endpoint,
    cluster::{HelloReply, HelloRequest, TakeOverRequest},
    transport,
};

/// Port assumed for an address without one (kvd's default).
const DEFAULT_PORT: u16 = 3000;

/// A context whose deadline is `timeout` from now.
#[must_use]
pub fn ctx(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// Connects to `address` within `timeout`.
///
/// # Errors
/// A message naming the address and the cause.
pub async fn connect(
    creds: &transport::Credentials,
    address: &str,
    timeout: Duration,
) -> Result<KvClient, String> {
    let endpoint =
        parse_endpoint(address, DEFAULT_PORT).map_err(|e| format!("bad address {address}: {e}"))?;
    match tokio::time::timeout(timeout, transport::connect(&endpoint, creds)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("cannot connect to {address}: {e}")),
        Err(_) => Err(format!(
            "connecting to {address} timed out after {} ms",
            timeout.as_millis()
        )),
    }
}

/// Why a call failed: the node's own refusal, or no answer (the outcome is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The node answered with an error: it did not do it.
    Refused(KvError),
    /// No answer: connecting failed, the connection broke, or the deadline passed.
    NoAnswer(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "{e}"),
            Self::NoAnswer(e) => write!(f, "{e}"),
        }
    }
}

fn flatten<T>(
    address: &str,
    reply: Result<Result<T, KvError>, tarpc::client::RpcError>,
) -> Result<T, CallError> {
    match reply {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Refused(e)),
        Err(e) => Err(CallError::NoAnswer(format!("{address}: {e}"))),
    }
}

/// `hello` to the node at `address`.
///
/// # Errors
/// A message naming the address and the cause.
pub async fn hello(
    creds: &transport::Credentials,
    address: &str,
    req: HelloRequest,
    timeout: Duration,
) -> Result<HelloReply, String> {
    let client = connect(creds, address, timeout).await?;
    flatten(address, client.hello(ctx(timeout), req).await).map_err(|e| e.to_string())
}

/// `status` of the node at `address`.
///
/// # Errors
/// A message naming the address and the cause.
pub async fn status(
    creds: &transport::Credentials,
    address: &str,
    timeout: Duration,
) -> Result<NodeStatus, String> {
    let client = connect(creds, address, timeout).await?;
    flatten(address, client.status(ctx(timeout)).await).map_err(|e| e.to_string())
}

/// `take_over` over a connection already open to `address` (connected before the hand-over,
/// so that a node that cannot be reached is known before anything changed).
///
/// # Errors
/// The node's refusal, or no answer.
pub async fn take_over(
    client: &KvClient,
    address: &str,
    req: TakeOverRequest,
    timeout: Duration,
) -> Result<(), CallError> {
    flatten(address, client.take_over(ctx(timeout), req).await)
}
