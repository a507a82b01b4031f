//! Frames on the wire: a 4-byte big-endian length, then a bincode body (varint integers,
//! little-endian, trailing bytes rejected).
//!
//! ```text
//!  net::Stream (TCP_NODELAY) -> LengthDelimitedCodec (max frame) -> ServerCodec / ClientCodec
//!                                                                   -> tarpc BaseChannel / client
//! ```
//!
//! tarpc sends a request's deadline as a duration from now and the receiver computes
//! `Instant::now() + duration`, which panics when the duration is absurd (u64::MAX seconds).
//! [`ServerCodec`] reads the deadline before tarpc does and clamps it to
//! [`MAX_REQUEST_DEADLINE`](crate::limits::MAX_REQUEST_DEADLINE); a deadline that does not even
//! decode as a duration is an invalid frame, which closes that one connection.

use std::{io, marker::PhantomData, pin::Pin, time::Duration};

use bincode::Options;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tarpc::{ClientMessage, Response};
use tokio_serde::{Deserializer, Serializer};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::{
    KvClient,
    addr::Endpoint,
    limits::{CLIENT_MAX_FRAME_BYTES, MAX_REQUEST_DEADLINE},
    net::{Stream, net},
    proto::{KvRequest, KvResponse},
};

/// The bincode options both ends use.
#[must_use]
pub fn wire_options() -> impl Options + Copy {
    bincode::DefaultOptions::new()
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Codec of a client: requests out, responses in.
pub struct ClientCodec<Item, SinkItem>(PhantomData<fn() -> (Item, SinkItem)>);

impl<Item, SinkItem> Default for ClientCodec<Item, SinkItem> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Item, SinkItem: Serialize> Serializer<SinkItem> for ClientCodec<Item, SinkItem> {
    type Error = io::Error;
    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, io::Error> {
        wire_options()
            .serialize(item)
            .map(Bytes::from)
            .map_err(invalid)
    }
}

impl<Item: for<'de> Deserialize<'de>, SinkItem> Deserializer<Item> for ClientCodec<Item, SinkItem> {
    type Error = io::Error;
    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, io::Error> {
        wire_options().deserialize(src).map_err(invalid)
    }
}

/// Codec of a server: requests in (deadlines clamped), responses out.
pub struct ServerCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for ServerCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp: Serialize> Serializer<Response<Resp>> for ServerCodec<Req, Resp> {
    type Error = io::Error;
    fn serialize(self: Pin<&mut Self>, item: &Response<Resp>) -> Result<Bytes, io::Error> {
        wire_options()
            .serialize(item)
            .map(Bytes::from)
            .map_err(invalid)
    }
}

impl<Req: for<'de> Deserialize<'de>, Resp> Deserializer<ClientMessage<Req>>
    for ServerCodec<Req, Resp>
{
    type Error = io::Error;
    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<ClientMessage<Req>, io::Error> {
        match clamp_deadline(src)? {
            Some(patched) => wire_options().deserialize(&patched).map_err(invalid),
            None => wire_options().deserialize(src).map_err(invalid),
        }
    }
}

/// The leading fields of a `ClientMessage`, in the same order, so they decode from its prefix:
/// `ClientMessage::Request(Request { context: Context { deadline, .. }, .. })`.
#[derive(Serialize, Deserialize)]
enum Head {
    Request(HeadContext),
    Cancel,
}

#[derive(Serialize, Deserialize)]
struct HeadContext {
    deadline: Duration,
}

/// Returns a re-encoded frame when the request's deadline is beyond the maximum, `None` when the
/// frame can be decoded as it is.
///
/// # Errors
/// When the deadline field does not decode (for example seconds and nanoseconds that overflow).
pub fn clamp_deadline(src: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut rest = src;
    let head: Head = wire_options()
        .allow_trailing_bytes()
        .deserialize_from(&mut rest)
        .map_err(|e| invalid(format!("bad request header: {e}")))?;
    match head {
        Head::Request(HeadContext { deadline }) if deadline > MAX_REQUEST_DEADLINE => {
            let mut out = wire_options()
                .serialize(&Head::Request(HeadContext {
                    deadline: MAX_REQUEST_DEADLINE,
                }))
                .map_err(invalid)?;
            out.extend_from_slice(rest);
            Ok(Some(out))
        }
        _ => Ok(None),
    }
}

/// The transport a node serves one connection on.
pub type ServerTransport = tarpc::serde_transport::Transport<
    Stream,
    ClientMessage<KvRequest>,
    Response<KvResponse>,
    ServerCodec<KvRequest, KvResponse>,
>;

/// Wraps an accepted connection (TCP_NODELAY is set by the network) with a maximum frame
/// length.
#[must_use]
pub fn server_transport(stream: Stream, max_frame: usize) -> ServerTransport {
    let framed = Framed::new(stream, length_codec(max_frame));
    tarpc::serde_transport::new(framed, ServerCodec::default())
}

/// Most bytes of a handshake frame, either way: nothing larger is read before a connection is
/// authenticated, and no buffer is reserved from an announced length above it.
pub const HANDSHAKE_MAX_BYTES: u32 = 4096;
/// How long a node waits for a new connection's handshake before closing it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The handshake's version: a node refuses another.
pub const HANDSHAKE_VERSION: u32 = 1;

/// The first frame of every connection, before any call: who the client is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`HANDSHAKE_VERSION`].
    pub version: u32,
    /// The token (`kvd --auth-file` on the node), if any.
    pub token: Option<String>,
}

/// The node's answer to [`Hello`]: the connection's role, or why it is refused (then closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// Accepted with this role (`read`, `write`, `replica`, `admin`).
    Accepted {
        /// The role.
        role: String,
    },
    /// Refused; the node closes the connection.
    Refused(crate::KvError),
}

async fn write_frame(stream: &mut Stream, body: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let len = u32::try_from(body.len()).map_err(invalid)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut Stream) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > HANDSHAKE_MAX_BYTES {
        return Err(invalid(format!(
            "handshake frame of {len} bytes, over the limit of {HANDSHAKE_MAX_BYTES}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Node side: reads the [`Hello`] (the caller bounds it with [`HANDSHAKE_TIMEOUT`]).
///
/// # Errors
/// A frame over [`HANDSHAKE_MAX_BYTES`], one that does not decode, or the connection's error.
pub async fn read_hello(stream: &mut Stream) -> io::Result<Hello> {
    let body = read_frame(stream).await?;
    wire_options().deserialize(&body).map_err(invalid)
}

/// Node side: answers the handshake.
///
/// # Errors
/// The connection's error.
pub async fn send_welcome(stream: &mut Stream, welcome: &Welcome) -> io::Result<()> {
    let body = wire_options().serialize(welcome).map_err(invalid)?;
    write_frame(stream, &body).await
}

/// Why a client's handshake did not succeed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The connection failed (or the node is too old to answer).
    Io(io::Error),
    /// The node refused the token.
    Refused(crate::KvError),
}

/// What a client presents to a node: TLS (verifying the node, and its own certificate for
/// mutual TLS) and a token.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The token (`kvd --auth-file` on the node).
    pub token: Option<String>,
    /// TLS, when the node serves it.
    pub tls: Option<crate::tls::ClientTls>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Client side: opens a connection to `host:port` with `creds`: TCP, TLS if configured, then
/// the token handshake. Returns the stream, ready for tarpc.
///
/// # Errors
/// The connection's or TLS's failure, or the node's refusal of the token.
pub async fn open(host: &str, port: u16, creds: &Credentials) -> Result<Stream, HandshakeError> {
    let stream = net()
        .connect(host.to_string(), port)
        .await
        .map_err(HandshakeError::Io)?;
    let mut stream = match &creds.tls {
        Some(tls) => tls.wrap(stream, host).await.map_err(HandshakeError::Io)?,
        None => stream,
    };
    client_handshake(&mut stream, creds.token.as_deref()).await?;
    Ok(stream)
}

/// Client side: presents `token` and returns the connection's role.
///
/// # Errors
/// The node's refusal, or the connection's error.
pub async fn client_handshake(
    stream: &mut Stream,
    token: Option<&str>,
) -> Result<String, HandshakeError> {
    let hello = Hello {
        version: HANDSHAKE_VERSION,
        token: token.map(str::to_string),
    };
    let body = wire_options()
        .serialize(&hello)
        .map_err(|e| HandshakeError::Io(invalid(e)))?;
    write_frame(stream, &body)
        .await
        .map_err(HandshakeError::Io)?;
    let reply = read_frame(stream).await.map_err(HandshakeError::Io)?;
    match wire_options().deserialize::<Welcome>(&reply) {
        Ok(Welcome::Accepted { role }) => Ok(role),
        Ok(Welcome::Refused(e)) => Err(HandshakeError::Refused(e)),
        Err(e) => Err(HandshakeError::Io(invalid(e))),
    }
}

/// The length-prefix codec with an explicit maximum frame length.
#[must_use]
pub fn length_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

/// Connects to a node and returns a client whose dispatch task runs in the background.
///
/// # Errors
/// When the name does not resolve or the connection is refused.
pub async fn connect(endpoint: &Endpoint, creds: &Credentials) -> io::Result<KvClient> {
    let stream = match open(&endpoint.host, endpoint.port, creds).await {
        Ok(stream) => stream,
        Err(HandshakeError::Io(e)) => return Err(e),
        Err(HandshakeError::Refused(e)) => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                e.to_string(),
            ));
        }
    };
    let framed = Framed::new(stream, length_codec(CLIENT_MAX_FRAME_BYTES));
    let transport = tarpc::serde_transport::new(framed, ClientCodec::default());
    let mut config = tarpc::client::Config::default();
    config.max_in_flight_requests = 10_000;
    Ok(KvClient::new(config, transport).spawn())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;
    use std::time::Instant;

    fn request_frame(deadline_secs: u64, nanos: u32) -> Vec<u8> {
        let ctx = tarpc::context::current();
        let msg: ClientMessage<KvRequest> = ClientMessage::Request(tarpc::Request {
            context: ctx,
            id: 7,
            message: KvRequest::Get {
                key: ByteBuf::from(b"k".to_vec()),
            },
        });
        let body = wire_options().serialize(&msg).expect("encode");
        // Replace the real deadline with the crafted one.
        let mut rest = body.as_slice();
        let _: Head = wire_options()
            .allow_trailing_bytes()
            .deserialize_from(&mut rest)
            .expect("head");
        #[derive(Serialize)]
        struct RawDuration {
            secs: u64,
            nanos: u32,
        }
        #[derive(Serialize)]
        enum RawHead {
            Request(RawDuration),
        }
        let mut out = wire_options()
            .serialize(&RawHead::Request(RawDuration {
                secs: deadline_secs,
                nanos,
            }))
            .expect("encode");
        out.extend_from_slice(rest);
        out
    }

    fn decode(frame: &[u8]) -> io::Result<ClientMessage<KvRequest>> {
        let mut codec = ServerCodec::<KvRequest, KvResponse>::default();
        Pin::new(&mut codec).deserialize(&BytesMut::from(frame))
    }

    #[test]
    fn overflowing_deadline_is_clamped_not_a_panic() {
        let msg = decode(&request_frame(u64::MAX, 0)).expect("decodes");
        let ClientMessage::Request(req) = msg else {
            panic!("not a request")
        };
        assert_eq!(req.id, 7);
        assert!(req.context.deadline <= Instant::now() + MAX_REQUEST_DEADLINE);
        assert!(matches!(req.message, KvRequest::Get { .. }));
    }

    #[test]
    fn normal_deadline_is_kept() {
        let msg = decode(&request_frame(5, 0)).expect("decodes");
        let ClientMessage::Request(req) = msg else {
            panic!("not a request")
        };
        let left = req.context.deadline - Instant::now();
        assert!(
            left <= Duration::from_secs(5) && left > Duration::from_secs(4),
            "{left:?}"
        );
    }

    #[test]
    fn undecodable_deadline_is_an_error() {
        // u64::MAX seconds plus 2e9 nanoseconds overflows Duration itself.
        assert!(decode(&request_frame(u64::MAX, 2_000_000_000)).is_err());
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[]).is_err());
    }
}
