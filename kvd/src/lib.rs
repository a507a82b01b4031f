//! kvd, the daemon: one binary that runs as the master or as a replica.
//!
//! ```text
//! main.rs     Args::parse -> validate -> logging::init -> Server::bind -> Server::run(signal)
//! config.rs   flags and their validation into Config
//! logging.rs  stdout + rolling files, panic hook
//! node.rs     Node: shards, limits, lifecycle; what each request does
//! random.rs   the election's random delays (seeded in the simulation)
//! rpc.rs      tarpc adapter, accept loop, per-IP connection cap
//! auth.rs     tokens and roles (--auth-file)
//! blocking.rs blocking work off the async workers (inline in the simulation)
//! cluster/    role and epoch: the state machine, its runtime, cluster.json, failover
//! replication/ master registry, replica followers, truncation and the rollback file
//! storage/    fjall shard stores, group-commit writers, node.json
//! ```
//!
//! Tests bind port 0 through [`Server::bind`], read [`Server::local_addr`], and stop the node
//! by completing the shutdown future they pass to [`Server::run`].

pub mod auth;
pub mod blocking;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod random;
pub mod replication;
pub mod rpc;
pub mod storage;

use std::{future::Future, net::SocketAddr, time::Duration};

use shared::{
    addr::Endpoint,
    net::{Listener, net},
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::Config;
pub use node::Node;

/// How long shutdown waits for accepted requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for connection tasks to write their last responses.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the node could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum KvdError {
    /// The store failed to open.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// `--host` does not resolve.
    #[error("cannot resolve --host {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The port cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another process using the port? pick another --port"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics port cannot be bound.
    #[error(
        "cannot listen for metrics on {addr}: {source}; pick another --metrics-port, or --metrics-port=0 to turn the endpoint off"
    )]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A non-loopback listener without authentication.
    #[error(
        "refusing to listen on {addr} without authentication: anyone who reaches it could read, \
         write and delete every key. Give --auth-file FILE (make tokens with `kvd token new \
         --role admin --name ops --auth-file FILE`), listen on loopback (--listen 127.0.0.1), \
         or pass --insecure to run open anyway"
    )]
    Unprotected {
        /// The address.
        addr: SocketAddr,
    },
    /// The master refused this replica for good.
    #[error("the master refused this replica: {0}")]
    Refused(shared::KvError),
}

/// What listening on an address without (or with) authentication calls for.
#[derive(Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Loopback, or tokens required.
    Fine,
    /// Open to the network by `--insecure`: a WARN at start.
    Warn,
    /// Open to the network without tokens: do not start.
    Refuse,
}

/// Like Redis's protected mode: a node reachable from other hosts needs `--auth-file`, unless
/// `--insecure`.
#[must_use]
pub fn exposure(ip: std::net::IpAddr, auth: bool, insecure: bool) -> Exposure {
    match (ip.is_loopback() || auth, insecure) {
        (true, _) => Exposure::Fine,
        (false, true) => Exposure::Warn,
        (false, false) => Exposure::Refuse,
    }
}

/// A node with its storage open and its port bound, not yet serving.
pub struct Server {
    node: Node,
    listener: Listener,
    metrics: Option<(TcpListener, SocketAddr)>,
    local_addr: SocketAddr,
    advertised: String,
}

impl Server {
    /// Opens the storage and binds the listener.
    ///
    /// # Errors
    /// When the role is not supported, the store cannot be opened, or the address cannot be
    /// resolved or bound.
    pub async fn bind(cfg: Config) -> Result<Self, KvdError> {
        let addrs: Vec<SocketAddr> =
            net()
                .resolve(cfg.listen.clone(), cfg.port)
                .await
                .map_err(|source| KvdError::Resolve {
                    host: cfg.listen.clone(),
                    source,
                })?;
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| KvdError::Resolve {
                host: cfg.listen.clone(),
                source: std::io::Error::other("no addresses"),
            })?;
        match exposure(addr.ip(), cfg.auth_file.is_some(), cfg.insecure) {
            Exposure::Refuse => return Err(KvdError::Unprotected { addr }),
            Exposure::Warn => tracing::warn!(
                %addr,
                "listening on a non-loopback address without --auth-file (--insecure): anyone \
                 who reaches the port can read, write and delete everything"
            ),
            Exposure::Fine => {}
        }
        let listener = net()
            .bind(addr)
            .await
            .map_err(|source| KvdError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| KvdError::Bind { addr, source })?;
        let advertised = Endpoint {
            host: cfg.host.clone(),
            port: local_addr.port(),
        }
        .to_string();
        let metrics = match cfg.metrics_port {
            Some(port) => {
                let mip = net()
                    .resolve(cfg.metrics_listen.clone(), port)
                    .await
                    .ok()
                    .and_then(|a| a.first().map(SocketAddr::ip))
                    .ok_or_else(|| KvdError::Resolve {
                        host: cfg.metrics_listen.clone(),
                        source: std::io::Error::other("no addresses (--metrics-listen)"),
                    })?;
                let maddr = SocketAddr::new(mip, port);
                let l = metrics::bind(maddr)
                    .await
                    .map_err(|source| KvdError::MetricsBind {
                        addr: maddr,
                        source,
                    })?;
                let bound = l.local_addr().map_err(|source| KvdError::MetricsBind {
                    addr: maddr,
                    source,
                })?;
                Some((l, bound))
            }
            None => None,
        };
        let node = Node::open(
            cfg,
            std::sync::Arc::new(metrics::Metrics::new()?),
            advertised.clone(),
        )?;
        Ok(Self {
            node,
            listener,
            metrics,
            local_addr,
            advertised,
        })
    }

    /// The address of the metrics endpoint, when it is on.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    /// The address the listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node this server serves.
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes the requests in flight,
    /// syncs every shard and returns.
    ///
    /// # Errors
    /// When the master refuses this replica (shard-count mismatch, duplicate node id).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), KvdError> {
        let Self {
            node,
            listener,
            metrics,
            local_addr,
            advertised,
        } = self;
        let cfg = node.config();
        tracing::info!(
            role = %node.role().as_str(),
            address = %advertised,
            listen = %local_addr,
            shards = cfg.shards,
            data_dir = %cfg.data_dir.display(),
            sync = %cfg.sync.as_str(),
            node_id = %node.node_id(),
            metrics = %metrics.as_ref().map_or_else(|| "off".to_string(), |(_, a)| a.to_string()),
            version = env!("CARGO_PKG_VERSION"),
            "kvd started"
        );
        let stop = CancellationToken::new();
        let close_connections = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let Some((listener, _)) = metrics {
            tracker.spawn(metrics::serve(listener, node.clone(), stop.clone()));
        }
        let background = node.run_background();
        let accepting = rpc::accept_loop(
            listener,
            node.clone(),
            stop.clone(),
            close_connections.clone(),
            tracker.clone(),
        );
        let mut outcome = Ok(());
        tokio::select! {
            () = accepting => {}
            () = shutdown => stop.cancel(),
            result = background => {
                if let Err(e) = result {
                    tracing::error!("the master refused this replica: {e}");
                    outcome = Err(KvdError::Refused(e));
                }
                stop.cancel();
            }
        }
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        node.begin_shutdown();
        let left = node.drain(DRAIN_TIMEOUT).await;
        if left > 0 {
            tracing::warn!(
                left,
                "requests still running after {DRAIN_TIMEOUT:?}; closing anyway"
            );
        }
        // Let connection tasks write the responses of the requests that just finished.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        close_connections.cancel();
        tracker.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections did not close within {CLOSE_TIMEOUT:?}");
        }
        node.close_storage().await;
        tracing::info!("kvd stopped");
        outcome
    }
}

#[cfg(test)]
mod exposure_tests {
    use super::*;

    #[test]
    fn only_loopback_or_tokens_start_without_insecure() {
        let lo: std::net::IpAddr = "127.0.0.1"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let any: std::net::IpAddr = std::net::Ipv4Addr::UNSPECIFIED.into();
        let lan: std::net::IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 5).into();
        assert_eq!(exposure(lo, false, false), Exposure::Fine);
        assert_eq!(exposure(any, false, false), Exposure::Refuse);
        assert_eq!(exposure(lan, false, false), Exposure::Refuse);
        assert_eq!(exposure(any, true, false), Exposure::Fine);
        assert_eq!(exposure(any, false, true), Exposure::Warn);
        assert_eq!(
            exposure(std::net::Ipv6Addr::LOCALHOST.into(), false, false),
            Exposure::Fine
        );
    }
}
