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
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Moves the connection to the I/O driver of the runtime this is called in. A tokio socket
    /// belongs to the runtime it was made in, whose driver wakes whoever waits on it: kvd admits
    /// connections on a runtime of its own and then moves them to the one that serves them
    /// (`kvd::rpc`). Streams with no socket of their own (in memory, simulated) have nothing to
    /// move.
    ///
    /// # Errors
    /// When the socket cannot be registered again (it is then lost: close the connection).
    fn rehome(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn for Box<dyn Conn> {
    fn rehome(&mut self) -> io::Result<()> {
        (**self).rehome()
    }
}

impl Conn for tokio_rustls::server::TlsStream<Stream> {
    fn rehome(&mut self) -> io::Result<()> {
        self.get_mut().0.rehome()
    }
}

impl Conn for tokio_rustls::client::TlsStream<Stream> {
    fn rehome(&mut self) -> io::Result<()> {
        self.get_mut().0.rehome()
    }
}

/// A stream of no runtime's I/O driver (simulated, in memory): nothing to move on
/// [`Conn::rehome`].
pub struct Virtual<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for Virtual<T> {}

impl<T: AsyncRead + Unpin> AsyncRead for Virtual<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Virtual<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A TCP connection that can move between runtimes ([`Conn::rehome`]).
pub struct TcpConn(Option<tokio::net::TcpStream>);

impl From<tokio::net::TcpStream> for TcpConn {
    fn from(stream: tokio::net::TcpStream) -> Self {
        Self(Some(stream))
    }
}

/// What a socket that failed to move between runtimes answers from then on.
fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost moving it between runtimes",
    )
}

impl TcpConn {
    fn get(&mut self) -> io::Result<Pin<&mut tokio::net::TcpStream>> {
        self.0.as_mut().map(Pin::new).ok_or_else(lost)
    }
}

impl Conn for TcpConn {
    fn rehome(&mut self) -> io::Result<()> {
        // Out of the old driver (tokio deregisters it), into the current one.
        let stream = self.0.take().ok_or_else(lost)?;
        self.0 = Some(tokio::net::TcpStream::from_std(stream.into_std()?)?);
        Ok(())
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for TcpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

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
    /// Moves the listener to the I/O driver of the runtime this is called in: the connections
    /// it accepts then belong to that runtime too (see [`Conn::rehome`]).
    ///
    /// # Errors
    /// When the socket cannot be registered again.
    fn rehome(&mut self) -> io::Result<()> {
        Ok(())
    }
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

/// A TCP listener (`None` only if moving it between runtimes failed).
struct TcpAccept(Option<tokio::net::TcpListener>);

impl Accept for TcpAccept {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.as_ref().ok_or_else(lost)?.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(TcpConn::from(stream)) as Stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.as_ref().ok_or_else(lost)?.local_addr()
    }

    fn rehome(&mut self) -> io::Result<()> {
        let listener = self.0.take().ok_or_else(lost)?;
        self.0 = Some(tokio::net::TcpListener::from_std(listener.into_std()?)?);
        Ok(())
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
            Ok(Box::new(TcpConn::from(stream)) as Stream)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Listener>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpAccept(Some(listener))) as Listener)
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::{Conn as _, Network as _, Tcp};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A listener moved to another runtime accepts there; connections accepted there and
    /// moved back go on working after the runtime that accepted them is gone (without the
    /// move, tokio fails every poll of a socket whose runtime has shut down: the control
    /// below).
    #[test]
    fn a_connection_moved_to_another_runtime_outlives_the_first() {
        let first = runtime();
        let second = runtime();
        let (mut listener, addr) = first.block_on(async {
            let listener = Tcp
                .bind("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            (listener, addr)
        });
        second
            .block_on(async { listener.rehome() })
            .expect("listener moves");
        let (mut server, mut client) = second.block_on(async {
            let (client, accepted) = tokio::join!(
                Tcp.connect(addr.ip().to_string(), addr.port()),
                listener.accept()
            );
            (accepted.expect("accept").0, client.expect("connect"))
        });
        first.block_on(async {
            server.rehome().expect("server moves");
            client.rehome().expect("client moves");
        });
        drop((listener, second));
        first.block_on(async {
            client
                .write_all(b"ping")
                .await
                .expect("write after the move");
            let mut got = [0; 4];
            server
                .read_exact(&mut got)
                .await
                .expect("read after the move");
            assert_eq!(&got, b"ping");
            server.write_all(b"pong").await.expect("write back");
            client.read_exact(&mut got).await.expect("read back");
            assert_eq!(&got, b"pong");
        });
    }

    /// The control: without the move, the socket of a runtime that is gone fails.
    #[test]
    fn a_socket_not_moved_dies_with_its_runtime() {
        let first = runtime();
        let second = runtime();
        let (mut server, mut client) = first.block_on(async {
            let listener = Tcp
                .bind("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (client, accepted) = tokio::join!(
                Tcp.connect(addr.ip().to_string(), addr.port()),
                listener.accept()
            );
            (accepted.expect("accept").0, client.expect("connect"))
        });
        drop(first);
        second.block_on(async {
            client.rehome().expect("the client moves");
            client.write_all(b"ping").await.expect("write");
            let mut got = [0; 4];
            assert!(server.read_exact(&mut got).await.is_err());
        });
    }
}
