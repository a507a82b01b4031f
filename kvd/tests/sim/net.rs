//! The simulated network: `shared::net::Network` over turmoil's TCP, names resolved by
//! turmoil's DNS (never the machine's resolver).

use std::{io, net::SocketAddr};

use shared::net::{Accept, BoxFuture, Listener, Network, Stream, Virtual};

/// Turmoil's TCP, installed as the process's network by the simulation.
pub struct Turmoil;

struct SimAccept(turmoil::net::TcpListener);

impl Accept for SimAccept {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Stream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(Virtual(stream)) as Stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for Turmoil {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(vec![SocketAddr::new(turmoil::lookup(host.as_str()), port)]) })
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Stream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok(Box::new(Virtual(stream)) as Stream)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Listener>> {
        // Turmoil binds only the unspecified address (a host has one address anyway).
        let any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(any).await?;
            Ok(Box::new(SimAccept(listener)) as Listener)
        })
    }
}
