//! The command line: global flags, the subcommands (one module each under `cli/`) and dispatch.
//!
//! Every subcommand module has an `Args` struct (its flags) and `async fn run(args, &Global)`,
//! which makes a [`Client`] of the endpoints (`-e a,b,c`), asks the cluster, and prints the
//! result on stdout; errors come back as [`Error`] for `main` to print on stderr and turn into
//! an exit code.

use std::{
    io::{self, IsTerminal as _, Write as _},
    time::Duration,
};

use clap::{Parser, Subcommand};
use shared::{addr::Endpoint, client::Client, limits::MAX_REQUEST_DEADLINE};

use crate::{
    client::{DEFAULT_PORT, EXIT_CODES_HELP, Error},
    output::Format,
};

mod bench;
mod delete;
mod failover;
mod get;
mod promote;
mod put;
mod replicas;
mod scan;
mod shards;
mod status;
mod verify;

/// kvctl: the operator's tool for kvd.
///
/// --endpoint takes one node or several (`-e a:3000,b:3000,c:3000`): reads are served by the
/// first that answers, master or replica; writes and the cluster commands (replicas, verify,
/// failover) go to the master, found among them (the writable one with the highest epoch) and
/// followed across a failover. A write whose answer was lost is never retried (exit 4).
/// Keys and values are bytes: binary-safe in and out.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Flags every subcommand takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The nodes to talk to, comma-separated (`-e a:3000,b:3000`, or -e given again): each
    /// `http://host:port`, `host:port` or `host` (port 3000). Reads go to the first that
    /// answers; writes to the master among them (or the one they name).
    #[arg(
        short,
        long = "endpoint",
        visible_alias = "master",
        env = "KVCTL_ENDPOINT",
        default_value = "http://localhost:3000",
        value_name = "URL[,URL...]",
        value_parser = parse_endpoint_arg,
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<Endpoint>,
    /// How results are printed on stdout.
    #[arg(
        short,
        long,
        value_enum,
        default_value_t = Format::Text,
        value_name = "FORMAT",
        global = true
    )]
    pub output: Format,
    /// Seconds each request may take, finding the master and following it across a failover
    /// included: `10`, `2.5`, `500ms`, `1m`. For `failover` and `promote`, also the time the
    /// node is given for the operation itself (kvctl waits that long again for its answer).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
    /// The token to present to nodes that require one (`kvd --auth-file`). On the command line
    /// it is visible to every user of the machine (`ps`) and stays in the shell's history:
    /// prefer --token-file or KVCTL_TOKEN.
    #[arg(
        long,
        env = "KVCTL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub token: Option<String>,
    /// A file holding the token (its first line), readable only by you.
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
    /// TLS: the CA (PEM) the nodes' certificates must come from; kvctl then speaks TLS only.
    #[arg(long, env = "KVCTL_CACERT", value_name = "FILE", global = true)]
    pub cacert: Option<std::path::PathBuf>,
    /// Mutual TLS: kvctl's certificate (PEM), for nodes started with --tls-client-ca.
    #[arg(long = "cert", id = "client_cert", value_name = "FILE", global = true,
          requires_all = ["client_key", "cacert"])]
    pub cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "client_key",
        value_name = "FILE",
        global = true,
        requires = "client_cert"
    )]
    pub key: Option<std::path::PathBuf>,
}

impl Global {
    /// TLS from --cacert (and --cert, --key).
    ///
    /// # Errors
    /// A file that cannot be read or is not PEM.
    pub fn tls(&self) -> Result<Option<shared::tls::ClientTls>, Error> {
        let Some(ca) = &self.cacert else {
            return Ok(None);
        };
        let own = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        shared::tls::ClientTls::from_files(ca, own, ("--cacert", "--cert", "--key"))
            .map(Some)
            .map_err(Error::Usage)
    }

    /// The token from --token, KVCTL_TOKEN or --token-file.
    ///
    /// # Errors
    /// An unreadable or empty --token-file.
    pub fn token(&self) -> Result<Option<String>, Error> {
        if let Some(t) = &self.token {
            return Ok(Some(t.trim().to_string()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Input {
            what: format!("--token-file {}", path.display()),
            source,
        })?;
        match text.lines().next().map(str::trim) {
            Some(t) if !t.is_empty() => Ok(Some(t.to_string())),
            _ => Err(Error::Usage(format!(
                "--token-file {} is empty",
                path.display()
            ))),
        }
    }

    /// A client of `--endpoint` whose requests take at most `--timeout`. Nothing is connected
    /// until the first request.
    ///
    /// # Errors
    /// Only without an endpoint, which the flag's parsing rules out.
    pub fn client(&self) -> Result<Client, Error> {
        Ok(Client::builder(self.endpoints.iter().cloned())
            .timeout(self.timeout)
            .token(self.token()?)
            .tls(self.tls()?)
            .build()?)
    }

    /// The endpoints as `-e` takes them, for messages and the console: `a:1,b:2`.
    #[must_use]
    pub fn endpoint_list(&self) -> String {
        self.endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a key's value (exactly its bytes); exit 1 if the key does not exist.
    Get(get::Args),
    /// Write a key, optionally only if it is at a version or absent (compare-and-swap), and
    /// optionally only once K replicas have it (--acks).
    Put(put::Args),
    /// Delete a key; exit 1 if it does not exist.
    Delete(delete::Args),
    /// List keys in order, optionally by prefix.
    Scan(scan::Args),
    /// Show the node's role, limits and shards; on a master the whole cluster, on a replica its
    /// link to the master and its resyncs.
    Status(status::Args),
    /// One row per shard: keys, size, last sequence, and on a master each replica's lag on it.
    Shards(shards::Args),
    /// List the replicas the master knows: link (and since when a replica is down), and per
    /// shard acknowledged sequence, lag and resyncs; `replicas forget NODE` removes one.
    Replicas(replicas::Args),
    /// Compare every shard of every replica with the master's at one sequence; exit 1 if any
    /// differs, 3 if a node cannot be reached.
    Verify(verify::Args),
    /// Hand over from the live master to a replica (switchover): writes pause, the replica
    /// catches up, takes the next epoch and the old master follows it. --plan only shows what
    /// would happen.
    Failover(failover::Args),
    /// Make a replica the master while the master is gone: shows what it would lose first,
    /// refuses to lose writes without --force. --plan only shows the plan.
    Promote(promote::Args),
    /// Load the master (or, reading only, the first endpoint that answers) with bounded work
    /// (puts, gets, batches, pipelining) and report throughput, latency percentiles and
    /// errors by kind.
    Bench(bench::Args),
    /// The operator console: a live view of the cluster, shards, replica lag and keys, with a
    /// key browser that can put, edit and delete (unless --read-only). Press ? in it for help.
    ///
    /// It keeps running when the node goes away, shows "disconnected, retrying" and reconnects
    /// by itself; each answer is awaited at most --timeout, capped at 5 seconds. It logs to
    /// --log-file only, never to the screen.
    Tui(crate::tui::Args),
    /// Print a shell completion script: `kvctl completions bash > /etc/bash_completion.d/kvctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Runs the chosen subcommand.
    ///
    /// # Errors
    /// Whatever made the subcommand fail; [`Error::exit`] says which exit code it means.
    pub async fn run(self) -> Result<(), Error> {
        let global = &self.global;
        let stdout = io::stdout();
        let terminal = stdout.is_terminal();
        let mut out = stdout.lock();
        let result = match self.command {
            Command::Get(args) => get::run(args, global, &mut out, terminal).await,
            Command::Put(args) => put::run(args, global, &mut out).await,
            Command::Delete(args) => delete::run(args, global, &mut out).await,
            Command::Scan(args) => scan::run(args, global, &mut out).await,
            Command::Status(args) => status::run(args, global, &mut out).await,
            Command::Shards(args) => shards::run(args, global, &mut out).await,
            Command::Replicas(args) => replicas::run(args, global, &mut out).await,
            Command::Verify(args) => verify::run(args, global, &mut out).await,
            Command::Failover(args) => failover::run(args, global, &mut out).await,
            Command::Promote(args) => promote::run(args, global, &mut out).await,
            Command::Bench(args) => bench::run(args, global, &mut out).await,
            Command::Tui(args) => crate::tui::run(args, global).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut <Self as clap::CommandFactory>::command(),
                    "kvctl",
                    &mut out,
                );
                Ok(())
            }
        };
        // Flush what was printed even when the command failed half-way (a scan cut short).
        let flushed = out.flush().map_err(Error::Output);
        result.and(flushed)
    }
}

fn parse_endpoint_arg(s: &str) -> Result<Endpoint, String> {
    shared::addr::parse_endpoint(s, DEFAULT_PORT).map_err(|e| e.to_string())
}

/// Parses a timeout: seconds as a number (`10`, `2.5`) or with a unit (`500ms`, `10s`, `1m`).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let bad = || format!("{s:?} is not a duration: give seconds such as 10 or 2.5, or 500ms or 1m");
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?}: the timeout must be more than zero"));
    }
    let max = MAX_REQUEST_DEADLINE.as_secs();
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if d > MAX_REQUEST_DEADLINE {
        return Err(format!("{s:?}: the timeout can be at most {max} seconds"));
    }
    Ok(d)
}

/// Helpers for the subcommands' tests.
#[cfg(test)]
pub mod testing {
    use super::{Duration, Endpoint, Format, Global};

    /// Global flags that point at `endpoint` and print in `format`.
    pub fn global(endpoint: Endpoint, format: Format) -> Global {
        globals(vec![endpoint], format)
    }

    /// Global flags that point at several endpoints and print in `format`.
    pub fn globals(endpoints: Vec<Endpoint>, format: Format) -> Global {
        Global {
            endpoints,
            output: format,
            timeout: Duration::from_secs(5),
            token: None,
            token_file: None,
            cacert: None,
            cert: None,
            key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, error::ErrorKind};

    use crate::client::Exit;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kvctl").chain(args.iter().copied()))
    }

    fn parse_ok(args: &[&str]) -> Cli {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn put_with_global_flags() {
        let cli = parse_ok(&["-e", "http://x:1", "put", "k", "v", "--if-version", "3"]);
        assert_eq!(
            cli.global.endpoints,
            [Endpoint {
                host: "x".into(),
                port: 1
            }]
        );
        assert_eq!(cli.global.output, Format::Text);
        assert_eq!(cli.global.timeout, Duration::from_secs(10));
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.key, "k");
        assert_eq!(put.value.as_deref(), Some("v".as_ref()));
        assert_eq!(put.if_version, Some(3));
        assert!(!put.if_absent);
        assert_eq!(put.condition(), shared::PutCondition::IfVersion(3));
    }

    #[test]
    fn master_alias_and_flags_after_the_subcommand() {
        let cli = parse_ok(&[
            "get",
            "k",
            "--master",
            "m:7",
            "-o",
            "json",
            "--timeout",
            "2.5",
        ]);
        assert_eq!(
            cli.global.endpoints,
            [Endpoint {
                host: "m".into(),
                port: 7
            }]
        );
        assert_eq!(cli.global.output, Format::Json);
        assert_eq!(cli.global.timeout, Duration::from_millis(2500));
        let cli = parse_ok(&["--endpoint=localhost", "status"]);
        assert_eq!(cli.global.endpoints[0].port, 3000);
        assert!(matches!(cli.command, Command::Status(_)));
    }

    #[test]
    fn several_endpoints() {
        let cli = parse_ok(&["-e", "a:1,http://b:2, c", "status"]);
        assert_eq!(cli.global.endpoint_list(), "a:1,b:2,c:3000");
        let cli = parse_ok(&["-e", "a:1", "-e", "b:2", "get", "k"]);
        assert_eq!(cli.global.endpoint_list(), "a:1,b:2");
        assert_eq!(
            parse_ok(&["status"]).global.endpoint_list(),
            "localhost:3000"
        );
        for bad in ["a:1,,b:2", "a:1,https://b:2", ","] {
            let e = parse(&["-e", bad, "status"]).expect_err("refused");
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn bad_endpoint_is_a_usage_error() {
        let e = parse(&["-e", "https://x:1", "status"]).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn put_acks() {
        let Command::Put(put) = parse_ok(&["put", "k", "v"]).command else {
            panic!("not put")
        };
        assert_eq!(
            (put.acks, put.acks_timeout, put.acks_timeout_ms()),
            (0, None, 0)
        );
        let Command::Put(put) =
            parse_ok(&["put", "k", "v", "--acks", "2", "--acks-timeout", "1.5"]).command
        else {
            panic!("not put")
        };
        assert_eq!(put.acks, 2);
        assert_eq!(put.acks_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(put.acks_timeout_ms(), 1500);
        let Command::Put(put) = parse_ok(&["put", "k", "v", "--acks-timeout", "250ms"]).command
        else {
            panic!("not put")
        };
        assert_eq!((put.acks, put.acks_timeout_ms()), (0, 250));
        for bad in [
            &["put", "k", "v", "--acks", "-1"][..],
            &["put", "k", "v", "--acks", "x"],
            &["put", "k", "v", "--acks-timeout", "0"],
            &["put", "k", "v", "--acks-timeout", "2h"],
        ] {
            let e = parse(bad).expect_err("refused");
            assert_eq!(e.exit_code(), i32::from(Exit::Usage.code()), "{bad:?}");
        }
    }

    #[test]
    fn if_version_conflicts_with_if_absent() {
        let e =
            parse(&["put", "k", "v", "--if-version", "3", "--if-absent"]).expect_err("conflict");
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let cli = parse_ok(&["put", "k", "v", "--if-absent"]);
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.condition(), shared::PutCondition::IfAbsent);
    }

    #[test]
    fn value_or_file_but_not_both_nor_neither() {
        let cli = parse_ok(&["put", "k", "--file", "f"]);
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.file.as_deref(), Some(std::path::Path::new("f")));
        assert!(put.value.is_none());
        let e = parse(&["put", "k", "v", "--file", "f"]).expect_err("both");
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = parse(&["put", "k"]).expect_err("neither");
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        // `-` is a value (stdin), not a flag.
        let cli = parse_ok(&["put", "k", "-"]);
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!(put.value.as_deref(), Some("-".as_ref()));
    }

    #[test]
    fn scan_defaults_and_flags() {
        let Command::Scan(scan) = parse_ok(&["scan"]).command else {
            panic!("not scan")
        };
        assert_eq!(scan.limit, 100);
        assert!(scan.prefix.is_none());
        assert!(!scan.keys_only);
        let Command::Scan(scan) =
            parse_ok(&["scan", "user:", "--limit", "0", "--keys-only"]).command
        else {
            panic!("not scan")
        };
        assert_eq!(scan.limit, 0);
        assert_eq!(scan.prefix.as_deref(), Some("user:".as_ref()));
        assert!(scan.keys_only);
    }

    #[test]
    fn replicas_and_verify() {
        assert!(matches!(
            parse_ok(&["replicas", "-o", "json"]).command,
            Command::Replicas(_)
        ));
        let Command::Verify(v) = parse_ok(&["verify"]).command else {
            panic!("not verify")
        };
        assert_eq!(v.timeout_per_shard, Duration::from_secs(30));
        let Command::Verify(v) = parse_ok(&["verify", "--timeout-per-shard", "2m"]).command else {
            panic!("not verify")
        };
        assert_eq!(v.timeout_per_shard, Duration::from_secs(120));
        let e = parse(&["verify", "--timeout-per-shard", "0"]).expect_err("zero");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn usage_errors_exit_with_the_usage_code() {
        let e = parse(&["frobnicate"]).expect_err("unknown");
        assert_eq!(e.exit_code(), i32::from(Exit::Usage.code()));
        let e = parse(&["-o", "yaml", "status"]).expect_err("bad format");
        assert_eq!(e.exit_code(), i32::from(Exit::Usage.code()));
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("--master"), "{help}");
        assert!(help.contains("KVCTL_ENDPOINT"), "{help}");
        assert!(help.contains("verify found a difference"), "{help}");
        assert!(help.contains("put --acks"), "{help}");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0", "-1", "abc", "NaN", "inf", "1e30", "3601", "1h"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} accepted");
        }
    }
}
