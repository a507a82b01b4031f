//! Command-line flags (compatible with the original server's) and their validation into a typed
//! [`Config`].
//!
//! `kvd --port=3000 --shard=2 --replica=false --host=http://localhost` and the `--flag value`
//! form both work; every flag also reads a `KVD_*` environment variable.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};
use shared::{SyncPolicy, addr, limits};

/// kvd: a sharded, replicated key-value store node.
#[derive(Debug, Parser)]
#[command(name = "kvd", version, about, long_about = None)]
pub struct Args {
    /// TCP port to serve on (0 lets the OS pick one; the start-up line names it).
    #[arg(long, env = "KVD_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Number of shards; fixed for the life of the data directory.
    #[arg(long, env = "KVD_SHARD", default_value_t = 2)]
    pub shard: u32,
    /// Run as a replica of `--master` (true) or as the master (false).
    #[arg(long, env = "KVD_REPLICA", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub replica: bool,
    /// The master's address, e.g. http://localhost:3000 (required with --replica=true).
    #[arg(long, env = "KVD_MASTER")]
    pub master: Option<String>,
    /// The name this node is reached by (http://name, name or an IP); it listens on that
    /// host's address and advertises host:port.
    #[arg(long, env = "KVD_HOST", default_value = "http://localhost")]
    pub host: String,
    /// The address to listen on (a name or an IP, e.g. 0.0.0.0) [default: --host].
    #[arg(long, env = "KVD_LISTEN")]
    pub listen: Option<String>,
    /// The name other nodes and clients reach this node by [default: --host].
    #[arg(long, env = "KVD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Listen on a non-loopback address without --auth-file anyway: anyone who reaches the port
    /// can then read, write and delete everything, and join as a replica.
    #[arg(long, env = "KVD_INSECURE", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    /// The address the metrics endpoint listens on; it shows no keys or values, but node ids
    /// and replica addresses.
    #[arg(long, env = "KVD_METRICS_LISTEN", default_value = "127.0.0.1")]
    pub metrics_listen: String,
    /// Data directory [default: ./data/node-<port>]. A given directory that is missing is
    /// created only if its parent exists (a failed mount must not start an empty node).
    #[arg(long, env = "KVD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replica only: if the master belongs to another cluster (another history), discard this
    /// replica's data and copy the master's instead of refusing it. Never the default.
    #[arg(long, env = "KVD_RESEED", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub reseed: bool,
    /// When a write is acknowledged: `always` after its group commit is fsynced, `none` once it
    /// reached the OS (survives a process crash, not a power loss).
    #[arg(long, env = "KVD_SYNC", value_enum, default_value_t = SyncArg::Always)]
    pub sync: SyncArg,
    /// Largest key accepted, in bytes.
    #[arg(long, env = "KVD_MAX_KEY_BYTES", default_value_t = limits::DEFAULT_MAX_KEY_BYTES)]
    pub max_key_bytes: usize,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "KVD_MAX_VALUE_BYTES", default_value_t = limits::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// Bytes of the node's log kept on disk (a size: `512MiB`, `2GiB`), in whole segments of
    /// an eighth of it (1 to 64 MiB); a replica further behind than the log reaches resyncs
    /// fully.
    #[arg(long, env = "KVD_LOG_RETENTION", default_value = "256MiB", value_parser = parse_size)]
    pub log_retention: u64,
    /// Replicas that must acknowledge a write before it is acknowledged, when the write does
    /// not ask for a number itself.
    #[arg(long, env = "KVD_MIN_ACKS", default_value_t = 0)]
    pub min_acks: u32,
    /// How long a write waits for its replica acknowledgements, in milliseconds (unless the
    /// write says otherwise).
    #[arg(long, env = "KVD_ACKS_TIMEOUT_MS", default_value_t = 5_000)]
    pub acks_timeout_ms: u64,
    /// A replica not heard from for this many milliseconds is marked down.
    #[arg(long, env = "KVD_REPLICA_TIMEOUT_MS", default_value_t = 5_000)]
    pub replica_timeout_ms: u64,
    /// How the cluster fails over: `manual` (`kvctl failover` / `kvctl promote`) or `auto` (a
    /// majority elects a new master when the master is lost; see docs/auto-failover.md). Give
    /// every node the same.
    #[arg(long, env = "KVD_FAILOVER", value_enum, default_value_t = FailoverArg::Manual)]
    pub failover: FailoverArg,
    /// With --failover=auto: a replica that has not heard from its master for this many
    /// milliseconds starts an election; a master's lease is a little shorter.
    #[arg(long, env = "KVD_FAILOVER_TIMEOUT_MS", default_value_t = 5_000)]
    pub failover_timeout_ms: u64,
    /// Port of the HTTP endpoint with /metrics, /health and /ready, on the same host; 0 turns
    /// it off [default: --port + 1000, or a port the OS picks when --port=0].
    #[arg(long, env = "KVD_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// A replica reports ready (/ready) only while every shard is at most this many operations
    /// behind the master.
    #[arg(long, env = "KVD_READY_MAX_LAG", default_value_t = 10_000)]
    pub ready_max_lag: u64,
    /// Most connections from one client IP address that have not yet authenticated (an
    /// authenticated connection counts only against --max-connections).
    #[arg(long, env = "KVD_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Most open connections in all.
    #[arg(long, env = "KVD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Threads serving requests; 0: one less than the machine's cores (at least one), leaving a
    /// core to the thread that commits every write.
    #[arg(long, env = "KVD_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// A frame (a request), from its first byte, must arrive whole within this time, in
    /// milliseconds, or its connection is closed.
    #[arg(long, env = "KVD_FRAME_TIMEOUT_MS", default_value_t = 30_000)]
    pub frame_timeout_ms: u64,
    /// Most MiB the node holds in requests that have not arrived whole, over all connections;
    /// a request whose next bytes would go over waits, unread, for room (its frame timeout
    /// still runs). At least one largest request.
    #[arg(long, env = "KVD_MAX_PARTIAL_FRAMES_MIB", default_value_t = 32)]
    pub max_partial_frames_mib: usize,
    /// A connection with no request arriving for this long, in seconds, is closed.
    #[arg(long, env = "KVD_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    pub idle_timeout_secs: u64,
    /// Directory of the log files [default: <data-dir>/logs].
    #[arg(long, env = "KVD_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// How often log files roll over.
    #[arg(long, env = "KVD_LOG_ROTATION", value_enum, default_value_t = Rotation::Daily)]
    pub log_rotation: Rotation,
    /// Most log files kept; older ones are deleted.
    #[arg(long, env = "KVD_LOG_MAX_FILES", default_value_t = 7)]
    pub log_max_files: usize,
    /// Format of the log files (stdout stays human-readable).
    #[arg(long, env = "KVD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `kvd=debug` [default: RUST_LOG, else info].
    #[arg(long, env = "KVD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Tokens and their roles, one `ROLE NAME SHA256-HEX` line each (`kvd token new` writes
    /// them); with it every connection must present a token. Re-read on SIGHUP.
    #[arg(long, env = "KVD_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// A file holding the token (role `replica`) this node presents to the other nodes: its
    /// master, and every member in a failover.
    #[arg(long, env = "KVD_MASTER_TOKEN_FILE")]
    pub master_token_file: Option<PathBuf>,
    /// This node's TLS certificate (PEM; its names must include the address others reach it
    /// by). With it, the RPC port speaks only TLS.
    #[arg(long, env = "KVD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "KVD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA (PEM).
    #[arg(long, env = "KVD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) this node verifies the other nodes' certificates against when it connects
    /// to them (its master; every member in a failover); with mutual TLS it presents its own
    /// --tls-cert to them.
    #[arg(long, env = "KVD_MASTER_CA")]
    pub master_ca: Option<PathBuf>,
    /// Other commands (`kvd token new`); without one, kvd serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `kvd` commands other than serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Tokens for `--auth-file`.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `kvd token ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Makes a random token, appends its hashed line to the file (created with mode 0600), and
    /// prints the token once: it cannot be recovered from the file.
    New {
        /// `read`, `write`, `replica` or `admin`.
        #[arg(long)]
        role: String,
        /// A name for it (in logs and errors), unique in the file.
        #[arg(long)]
        name: String,
        /// The token file.
        #[arg(long)]
        auth_file: PathBuf,
    },
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync every group commit before acknowledging it.
    Always,
    /// Acknowledge once written to the OS.
    None,
}

/// `--failover` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailoverArg {
    /// By the operator.
    Manual,
    /// By an election among the members.
    Auto,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--log-rotation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rotation {
    /// A new file every minute (for tests).
    Minutely,
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    Daily,
    /// One file, never rotated.
    Never,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port to bind (0: any).
    pub port: u16,
    /// Shard count.
    pub shards: u32,
    /// The master's endpoint when this node is a replica.
    pub master: Option<addr::Endpoint>,
    /// Host to listen on and advertise.
    pub host: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Whether `data_dir` is kvd's default (then missing parents are created).
    pub data_dir_is_default: bool,
    /// Replica: follow a master of another cluster by discarding local data.
    pub reseed: bool,
    /// Sync policy.
    pub sync: SyncPolicy,
    /// Key limit.
    pub max_key_bytes: usize,
    /// Value limit.
    pub max_value_bytes: usize,
    /// Bytes of log kept (`--log-retention`).
    pub log_retention: u64,
    /// Connection cap per client IP.
    pub max_connections_per_ip: usize,
    /// `--max-connections`.
    pub max_connections: usize,
    /// Threads serving requests (`--worker-threads`, resolved).
    pub worker_threads: usize,
    /// `--frame-timeout-ms`.
    pub frame_timeout: std::time::Duration,
    /// `--idle-timeout-secs`.
    pub idle_timeout: std::time::Duration,
    /// `--max-partial-frames-mib`, in bytes.
    pub max_partial_frame_bytes: usize,
    /// Port of the metrics endpoint (`Some(0)`: the OS picks), `None` when turned off.
    pub metrics_port: Option<u16>,
    /// Lag (operations) under which a replica is ready.
    pub ready_max_lag: u64,
    /// Default replica acknowledgements per write.
    pub min_acks: u32,
    /// Default wait for acknowledgements.
    pub acks_timeout: std::time::Duration,
    /// Silence after which a replica is marked down.
    pub replica_timeout: std::time::Duration,
    /// Whether a majority elects a new master by itself.
    pub auto_failover: bool,
    /// Silence from its master after which a replica stands (auto failover).
    pub failover_timeout: std::time::Duration,
    /// Log settings.
    pub log: LogConfig,
    /// `--auth-file`.
    pub auth_file: Option<PathBuf>,
    /// `--listen` (a host name or IP), or `--host`.
    pub listen: String,
    /// `--insecure`.
    pub insecure: bool,
    /// `--metrics-listen`.
    pub metrics_listen: String,
    /// The token read from `--master-token-file`.
    pub peer_token: Option<crate::auth::Secret>,
    /// TLS on the RPC port (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
    pub server_tls: Option<shared::tls::ServerTls>,
    /// TLS to the other nodes (`--master-ca`, presenting `--tls-cert` for mutual TLS).
    pub peer_tls: Option<shared::tls::ClientTls>,
}

/// Where and how the daemon logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory of the rolling files.
    pub dir: PathBuf,
    /// Rotation period.
    pub rotation: Rotation,
    /// Files kept.
    pub max_files: usize,
    /// Filter directive (`None`: `RUST_LOG`, else `info`).
    pub level: Option<String>,
    /// File format.
    pub format: LogFormat,
}

/// Most shards a node may have.
pub const MAX_SHARDS: u32 = 1024;
/// The least `--log-retention`.
pub const MIN_LOG_RETENTION: u64 = 256 << 10;

/// Parses a size such as `512MiB`, `2GiB` or `1048576` (bytes).
fn parse_size(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{raw:?} is not a size ({e}); write it like 512MiB or 2GiB"))
}
/// Largest value limit a node may be given (frames must stay below the client's maximum).
pub const MAX_VALUE_LIMIT: usize = 64 * 1024 * 1024;
/// Largest key limit (the engine's own bound is 64 KiB).
pub const MAX_KEY_LIMIT: usize = 60 * 1024;

/// A flag combination that cannot work; reported like a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Args {
    /// Checks the flags and resolves defaults.
    ///
    /// # Errors
    /// With a message naming the flag and its allowed range.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.shard == 0 || self.shard > MAX_SHARDS {
            return bad(format!(
                "--shard={} is out of range: use 1 to {MAX_SHARDS}",
                self.shard
            ));
        }
        let master = match (self.replica, &self.master) {
            (true, None) => {
                return bad("--replica=true needs --master=<address of the master>, e.g. --master=http://localhost:3000".into());
            }
            (true, Some(m)) => Some(
                addr::parse_endpoint(m, 3000).map_err(|e| ConfigError(format!("--master: {e}")))?,
            ),
            (false, Some(_)) => {
                return bad(
                    "--master is only for replicas: add --replica=true, or drop --master".into(),
                );
            }
            (false, None) => None,
        };
        let given =
            addr::parse_host(&self.host).map_err(|e| ConfigError(format!("--host: {e}")))?;
        let host = match &self.advertise {
            Some(a) => addr::parse_host(a).map_err(|e| ConfigError(format!("--advertise: {e}")))?,
            None => given.clone(),
        };
        if host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return bad(format!(
                "this node would advertise {host}, which nobody can connect to: keep --listen \
                 {host} (or --host) for listening, and give --advertise with the name or \
                 address others reach it by"
            ));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_LIMIT {
            return bad(format!(
                "--max-key-bytes={} is out of range: use 1 to {MAX_KEY_LIMIT}",
                self.max_key_bytes
            ));
        }
        if self.max_value_bytes > MAX_VALUE_LIMIT {
            return bad(format!(
                "--max-value-bytes={} is out of range: use 0 to {MAX_VALUE_LIMIT}",
                self.max_value_bytes
            ));
        }
        if self.worker_threads > 1024 {
            return bad(format!(
                "--worker-threads={} is out of range: use 1 to 1024, or 0 for one less than \
                 the machine's cores",
                self.worker_threads
            ));
        }
        if self.log_retention < MIN_LOG_RETENTION {
            return bad(format!(
                "--log-retention={} is too small: use at least 256KiB (the log keeps \
                 whole segments of an eighth of it, at least 32 KiB)",
                bytesize::ByteSize::b(self.log_retention).display().iec()
            ));
        }
        if self.acks_timeout_ms == 0 || self.acks_timeout_ms > 3_600_000 {
            return bad(format!(
                "--acks-timeout-ms={} is out of range: use 1 to 3600000",
                self.acks_timeout_ms
            ));
        }
        if self.replica_timeout_ms < 100 {
            return bad(format!(
                "--replica-timeout-ms={} is too short: use at least 100",
                self.replica_timeout_ms
            ));
        }
        if !(500..=600_000).contains(&self.failover_timeout_ms) {
            return bad(format!(
                "--failover-timeout-ms={} is out of range: use 500 to 600000",
                self.failover_timeout_ms
            ));
        }
        if self.max_connections_per_ip == 0 {
            return bad("--max-connections-per-ip must be at least 1".into());
        }
        let largest =
            shared::limits::server_max_frame_bytes(self.max_key_bytes, self.max_value_bytes);
        if self.max_partial_frames_mib.saturating_mul(1 << 20) < largest {
            return bad(format!(
                "--max-partial-frames-mib={} is below one largest request ({} MiB with \
                 --max-key-bytes and --max-value-bytes): raise it",
                self.max_partial_frames_mib,
                largest.div_ceil(1 << 20)
            ));
        }
        if self.max_connections == 0 {
            return bad("--max-connections must be at least 1".into());
        }
        if !(100..=3_600_000).contains(&self.frame_timeout_ms) {
            return bad(format!(
                "--frame-timeout-ms={} is out of range: use 100 to 3600000",
                self.frame_timeout_ms
            ));
        }
        if !(1..=86_400).contains(&self.idle_timeout_secs) {
            return bad(format!(
                "--idle-timeout-secs={} is out of range: use 1 to 86400",
                self.idle_timeout_secs
            ));
        }
        if self.log_max_files == 0 {
            return bad("--log-max-files must be at least 1".into());
        }
        let metrics_port = match (self.metrics_port, self.port) {
            (Some(0), _) => None,
            (Some(p), _) => Some(p),
            (None, 0) => Some(0),
            (None, p) => match p.checked_add(1000) {
                Some(m) => Some(m),
                None => {
                    return bad(format!(
                        "--port={p} leaves no room for the default metrics port (port + 1000): give --metrics-port, or 0 to turn it off"
                    ));
                }
            },
        };
        if self.reseed && !self.replica {
            return bad("--reseed is for replicas: it discards the replica's data to copy its master's; drop it, or add --replica=true --master=...".into());
        }
        let data_dir_is_default = self.data_dir.is_none();
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("./data/node-{}", self.port)));
        let log_dir = self.log_dir.unwrap_or_else(|| data_dir.join("logs"));
        let peer_token = match &self.master_token_file {
            None => None,
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => {
                    Some(crate::auth::Secret(text.trim().to_string()))
                }
                Ok(_) => return bad(format!("--master-token-file {} is empty", path.display())),
                Err(e) => {
                    return bad(format!(
                        "cannot read --master-token-file {}: {e}",
                        path.display()
                    ));
                }
            },
        };
        if let Some(path) = &self.auth_file
            && let Err(e) = crate::auth::Tokens::load(path)
        {
            return bad(e);
        }
        let server_tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                shared::tls::ServerTls::from_files(cert, key, self.tls_client_ca.as_deref())
                    .map_err(ConfigError)?,
            ),
            _ => None,
        };
        let peer_tls = match &self.master_ca {
            Some(ca) => {
                let own = match (&self.tls_cert, &self.tls_key) {
                    (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                    _ => None,
                };
                Some(
                    shared::tls::ClientTls::from_files(
                        ca,
                        own,
                        ("--master-ca", "--tls-cert", "--tls-key"),
                    )
                    .map_err(ConfigError)?,
                )
            }
            None => None,
        };
        Ok(Config {
            port: self.port,
            shards: self.shard,
            master,
            host,
            data_dir,
            data_dir_is_default,
            reseed: self.reseed,
            sync: match self.sync {
                SyncArg::Always => SyncPolicy::Always,
                SyncArg::None => SyncPolicy::None,
            },
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            log_retention: self.log_retention,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections: self.max_connections,
            worker_threads: match self.worker_threads {
                0 => std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
                n => n,
            },
            frame_timeout: std::time::Duration::from_millis(self.frame_timeout_ms),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_partial_frame_bytes: self.max_partial_frames_mib.saturating_mul(1 << 20),
            metrics_port,
            ready_max_lag: self.ready_max_lag,
            min_acks: self.min_acks,
            acks_timeout: std::time::Duration::from_millis(self.acks_timeout_ms),
            replica_timeout: std::time::Duration::from_millis(self.replica_timeout_ms),
            auto_failover: self.failover == FailoverArg::Auto,
            failover_timeout: std::time::Duration::from_millis(self.failover_timeout_ms),
            log: LogConfig {
                dir: log_dir,
                rotation: self.log_rotation,
                max_files: self.log_max_files,
                level: self.log_level,
                format: self.log_format,
            },
            auth_file: self.auth_file,
            listen: match &self.listen {
                Some(l) => {
                    addr::parse_host(l).map_err(|e| ConfigError(format!("--listen: {e}")))?
                }
                None => given,
            },
            insecure: self.insecure,
            server_tls,
            peer_tls,
            metrics_listen: addr::parse_host(&self.metrics_listen)
                .map_err(|e| ConfigError(format!("--metrics-listen: {e}")))?,
            peer_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let args = Args::try_parse_from(std::iter::once("kvd").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        args.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_seed_command_lines_parse() {
        let c = parse(&[
            "--port=3000",
            "--shard=2",
            "--replica=false",
            "--host=http://localhost",
        ])
        .expect("seed");
        assert_eq!((c.port, c.shards, c.host.as_str()), (3000, 2, "localhost"));
        assert!(c.master.is_none());
        assert_eq!(c.data_dir, PathBuf::from("./data/node-3000"));
        assert_eq!(c.log.dir, PathBuf::from("./data/node-3000/logs"));
        let c = parse(&["--port", "3001", "--shard", "4"]).expect("space form");
        assert_eq!((c.port, c.shards), (3001, 4));
        assert_eq!(c.sync, SyncPolicy::Always);
    }

    #[test]
    fn replica_needs_a_master() {
        let e = parse(&["--port=3001", "--shard=2", "--replica=true"]).expect_err("usage error");
        assert!(e.contains("--master"), "{e}");
        let c = parse(&["--replica=true", "--master=http://localhost:3000"]).expect("replica");
        assert_eq!(c.master.expect("master").port, 3000);
        assert!(parse(&["--master=http://localhost:3000"]).is_err());
    }

    #[test]
    fn worker_threads_leave_a_core_to_the_committer() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auto = parse(&["--port=3000"]).expect("default").worker_threads;
        assert_eq!(auto, cores.saturating_sub(1).max(1));
        assert_eq!(
            parse(&["--worker-threads=3"])
                .expect("given")
                .worker_threads,
            3
        );
        let err = parse(&["--worker-threads=5000"]).expect_err("too many");
        assert!(err.to_string().contains("--worker-threads=5000"), "{err}");
    }

    #[test]
    fn metrics_port_defaults() {
        assert_eq!(
            parse(&["--port=3000"]).expect("default").metrics_port,
            Some(4000)
        );
        assert_eq!(parse(&["--port=0"]).expect("os pick").metrics_port, Some(0));
        assert_eq!(
            parse(&["--metrics-port=0"]).expect("off").metrics_port,
            None
        );
        assert_eq!(
            parse(&["--metrics-port=9100"]).expect("given").metrics_port,
            Some(9100)
        );
        assert!(
            parse(&["--port=65000"])
                .expect_err("overflow")
                .contains("--metrics-port")
        );
    }

    #[test]
    fn ranges_are_named() {
        assert!(
            parse(&["--shard=0"])
                .expect_err("zero")
                .contains("1 to 1024")
        );
        assert!(
            parse(&["--max-value-bytes=999999999"])
                .expect_err("big")
                .contains("--max-value-bytes")
        );
        assert!(
            parse(&["--host=http://x:1"])
                .expect_err("port in host")
                .contains("--port")
        );
        assert!(parse(&["--sync=sometimes"]).is_err());
    }
}
