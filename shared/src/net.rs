//! The network every connection goes through: TCP by default, a simulated network in the
//! deterministic simulation (`kvd/tests/sim`).
//!
//! ```text
//!  transport::connect, client::Node::connect ──► net().connect(host, port) ──► Stream
//!  kvd Server::bind ──► net().resolve + net().bind ──► Listener::accept ──► Stream
//! ```
//!
//! The process has one network, chosen before the first connection: [`Tcp`] unless a test
//! [`install`]s another. Everything above it (tarpc, the codecs, the node, the client library)
//! is the same code in both: only the bytes' road changes.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A connection, whatever carries it.
pub type Stream = Box<dyn Conn>;

/// A boxed future, `Send`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bound listener.
pub trait Accept: Send + Sync + 'static {
    /// The next connection and its peer's address.
    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, SocketAddr)>>;
    /// The address it is bound to.
    ///
    /// # Errors
    /// When the socket has no address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A listener, whatever network it is on.
pub type Listener = Box<dyn Accept>;

/// A network: names to addresses, connections out, listeners in.
pub trait Network: Send + Sync + 'static {
    /// The addresses `host` stands for.
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
    /// A connection to `host:port`, with `TCP_NODELAY` where that means something.
    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Stream>>;
    /// A listener on `addr`.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Listener>>;
}

static NETWORK: OnceLock<Arc<dyn Network>> = OnceLock::new();

/// Makes `network` the process's network. Only before the first connection, once.
///
/// # Errors
/// When a network is already in use (returned back).
pub fn install(network: Arc<dyn Network>) -> Result<(), Arc<dyn Network>> {
    NETWORK.set(network)
}

/// The process's network: [`Tcp`] unless one was installed.
pub fn net() -> &'static dyn Network {
    NETWORK.get_or_init(|| Arc::new(Tcp)).as_ref()
}

/// The operating system's TCP (tokio).
pub struct Tcp;

struct TcpAccept(tokio::net::TcpListener);

impl Accept for TcpAccept {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as Stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for Tcp {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Stream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Stream)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Listener>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpAccept(listener)) as Listener)
        })
    }
}
