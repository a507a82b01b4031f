//! The flags of `kvctl bench` and the checked [`Plan`] they turn into.
//!
//! Every dimension of the load has an upper bound, named in the message that refuses it, so a
//! run is always bounded in count (`--requests`, at most [`MAX_REQUESTS`]), in time
//! (`--duration`, at most [`MAX_DURATION`]) and in the keys it can create (`--keyspace`, at most
//! [`MAX_KEYSPACE`]). Checks that involve two flags (the bytes of one call, the requests in flight
//! on one connection) are made by [`Args::plan`]; checks that need the node (its role and value
//! limit) are made once connected, in `bench.rs`.

use std::{fmt, str::FromStr, time::Duration};

use shared::limits::MAX_BATCH_KEYS;

use crate::client::FRAME_SAFE_VALUE_BYTES;

/// Most concurrent clients.
pub const MAX_CLIENTS: u32 = 10_000;
/// Most TCP connections (kvd's default `--max-connections-per-ip` is 256).
pub const MAX_CONNECTIONS: u32 = 256;
/// Most requests in flight per client.
pub const MAX_PIPELINE: u32 = 1_024;
/// Most requests in flight on one connection: the client library's tarpc
/// `max_in_flight_requests` ([`shared::client::MAX_IN_FLIGHT`]); beyond it requests would be
/// refused by the client itself.
pub const MAX_IN_FLIGHT_PER_CONNECTION: u64 = shared::client::MAX_IN_FLIGHT as u64;
/// Most keys the load may address.
pub const MAX_KEYSPACE: u64 = 1_000_000_000;
/// Most keys `--prefill` writes.
pub const MAX_PREFILL_KEYS: u64 = 10_000_000;
/// Most calls in one run.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The run's length when neither `--requests` nor `--duration` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Largest value: the same bound `kvctl put` warns about (one value must fit one frame).
pub const MAX_VALUE_SIZE: usize = FRAME_SAFE_VALUE_BYTES;
/// Largest call: keys and values of one `mput` together must fit one frame comfortably.
pub const MAX_CALL_BYTES: usize = FRAME_SAFE_VALUE_BYTES;
/// Most threads of the load runtime.
pub const MAX_THREADS: usize = 64;
/// Every key is `key:` and 12 decimal digits (the shape redis-benchmark's `-r` gives its keys).
pub const KEY_LEN: usize = 16;

/// Flags of `kvctl bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent clients; each waits for its answer (or its --pipeline answers) before the next
    /// request.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = parse_clients)]
    pub clients: u32,
    /// Stop after this many calls (a --batch call counts once). Without --duration the run may
    /// still last at most an hour.
    #[arg(long, value_name = "N", value_parser = parse_requests)]
    pub requests: Option<u64>,
    /// Stop after this long: `10`, `2.5`, `500ms`, `1m` (at most an hour). The default is 10
    /// seconds when --requests is not given either.
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Bytes of every value written.
    #[arg(long, default_value_t = 100, value_name = "BYTES", value_parser = parse_value_size)]
    pub value_size: usize,
    /// Keys are drawn uniformly from `key:000000000000` up to this many keys; required to be
    /// bounded so a run never grows the store without limit.
    #[arg(long, default_value_t = 100_000, value_name = "KEYS", value_parser = parse_keyspace)]
    pub keyspace: u64,
    /// Puts to gets: `1:0` puts only, `0:1` gets only, `1:9` one put for every nine gets.
    #[arg(long, default_value = "1:0", value_name = "PUT:GET")]
    pub ratio: Ratio,
    /// Requests each client keeps in flight.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_pipeline)]
    pub pipeline: u32,
    /// Keys per call: above 1, puts are `mput` and gets are `mget` calls of this many keys.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_batch)]
    pub batch: u32,
    /// Replicas that must have applied each write before it is acknowledged (0: the master's
    /// --min-acks).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub acks: u32,
    /// Longest wait for those acknowledgements (absent: the master's default); added to
    /// --timeout for each put.
    #[arg(long, value_name = "SECONDS", value_parser = crate::cli::parse_timeout)]
    pub acks_timeout: Option<Duration>,
    /// Multiplexed TCP connections the clients share (client i uses connection i mod N).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = parse_connections)]
    pub connections: u32,
    /// Before measuring, write every key of the keyspace once (with `mput`), so gets find their
    /// keys. Needs the master.
    #[arg(long)]
    pub prefill: bool,
    /// Worker threads of the load generator. The client shares the machine with the node when
    /// both run on one host; 1 leaves the other cores to the node.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_threads)]
    pub threads: usize,
}

/// Puts to gets, as whole numbers: `1:9` is one put for every nine gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// Puts per cycle.
    pub put: u32,
    /// Gets per cycle.
    pub get: u32,
}

/// Largest number on either side of a ratio.
const MAX_RATIO_PART: u32 = 1_000_000;

impl Ratio {
    /// Whether call number `n` (counted from 0 over the whole run) is a put. Spreading the puts
    /// over a cycle of `put + get` calls keeps the mix exact at any count.
    #[must_use]
    pub fn is_put(self, n: u64) -> bool {
        let cycle = u64::from(self.put) + u64::from(self.get);
        cycle > 0 && n % cycle < u64::from(self.put)
    }

    /// Whether the run writes at all.
    #[must_use]
    pub fn has_puts(self) -> bool {
        self.put > 0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.put, self.get)
    }
}

impl FromStr for Ratio {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a ratio: give PUT:GET as two whole numbers, such as 1:0 (puts only), \
                 0:1 (gets only) or 1:9"
            )
        };
        let (put, get) = s.trim().split_once(':').ok_or_else(bad)?;
        let part = |p: &str| -> Result<u32, String> {
            let n: u32 = p.trim().parse().map_err(|_| bad())?;
            if n > MAX_RATIO_PART {
                return Err(format!(
                    "{s:?}: each side of the ratio can be at most {MAX_RATIO_PART}"
                ));
            }
            Ok(n)
        };
        let ratio = Self {
            put: part(put)?,
            get: part(get)?,
        };
        if ratio.put == 0 && ratio.get == 0 {
            return Err(format!(
                "{s:?}: the ratio 0:0 asks for nothing; at least one side must be above 0"
            ));
        }
        Ok(ratio)
    }
}

/// A whole number from `min` to `max`, or a message that names the flag and both limits.
fn ranged(s: &str, flag: &str, min: u64, max: u64, why: &str) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number (--{flag})"))?;
    if n < min || n > max {
        return Err(format!(
            "--{flag} must be from {min} to {max}{why}; got {n}"
        ));
    }
    Ok(n)
}

/// Narrows a number that [`ranged`] already bounded by a `u32` limit.
fn to_u32(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|e| e.to_string())
}

fn parse_clients(s: &str) -> Result<u32, String> {
    to_u32(ranged(s, "clients", 1, MAX_CLIENTS.into(), "")?)
}

fn parse_connections(s: &str) -> Result<u32, String> {
    to_u32(ranged(
        s,
        "connections",
        1,
        MAX_CONNECTIONS.into(),
        " (kvd's default --max-connections-per-ip is 256)",
    )?)
}

fn parse_pipeline(s: &str) -> Result<u32, String> {
    to_u32(ranged(s, "pipeline", 1, MAX_PIPELINE.into(), "")?)
}

fn parse_batch(s: &str) -> Result<u32, String> {
    let max = u64::try_from(MAX_BATCH_KEYS).unwrap_or(u64::MAX);
    to_u32(ranged(
        s,
        "batch",
        1,
        max,
        " (the most keys one mget or mput carries)",
    )?)
}

fn parse_requests(s: &str) -> Result<u64, String> {
    ranged(s, "requests", 1, MAX_REQUESTS, "")
}

fn parse_keyspace(s: &str) -> Result<u64, String> {
    ranged(
        s,
        "keyspace",
        1,
        MAX_KEYSPACE,
        " keys: the bench needs a bounded set of keys to draw from",
    )
}

fn parse_value_size(s: &str) -> Result<usize, String> {
    let max = u64::try_from(MAX_VALUE_SIZE).unwrap_or(u64::MAX);
    let n = ranged(
        s,
        "value-size",
        0,
        max,
        " bytes (one value must fit one frame)",
    )?;
    usize::try_from(n).map_err(|e| e.to_string())
}

fn parse_threads(s: &str) -> Result<usize, String> {
    let max = u64::try_from(MAX_THREADS).unwrap_or(u64::MAX);
    let n = ranged(s, "threads", 1, max, "")?;
    usize::try_from(n).map_err(|e| e.to_string())
}

/// `--duration`: as `--timeout` (seconds or with a unit), more than zero, at most an hour.
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::cli::parse_timeout(s).map_err(|e| e.replace("the timeout", "--duration"))
}

/// A run, checked: every bound applied, the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Concurrent clients.
    pub clients: u32,
    /// Connections actually opened: `--connections`, but never more than there are clients.
    pub connections: u32,
    /// Requests in flight per client.
    pub pipeline: u32,
    /// Keys per call.
    pub batch: u32,
    /// Puts to gets.
    pub ratio: Ratio,
    /// Bytes per value.
    pub value_size: usize,
    /// Keys drawn from.
    pub keyspace: u64,
    /// Acknowledgements per put.
    pub acks: u32,
    /// Their timeout in milliseconds for the wire (0: the master's default).
    pub acks_timeout_ms: u32,
    /// Most calls.
    pub requests: u64,
    /// Longest run.
    pub duration: Duration,
    /// Whether `--requests` was given (for the report: which bound the user chose).
    pub requests_given: bool,
    /// Whether `--duration` was given, or defaulted because neither bound was.
    pub duration_given: bool,
    /// Write the keyspace first.
    pub prefill: bool,
    /// Load runtime threads.
    pub threads: usize,
}

impl Plan {
    /// Requests in flight on the busiest connection.
    #[must_use]
    pub fn in_flight_per_connection(&self) -> u64 {
        u64::from(self.clients).div_ceil(u64::from(self.connections)) * u64::from(self.pipeline)
    }

    /// Bytes of keys and values in one put call.
    #[must_use]
    pub fn call_bytes(&self) -> u64 {
        let per_key = u64::try_from(KEY_LEN + self.value_size).unwrap_or(u64::MAX);
        per_key.saturating_mul(u64::from(self.batch))
    }
}

impl Args {
    /// Applies the defaults and the checks that involve more than one flag.
    ///
    /// # Errors
    /// A message naming the flags and the limit, for a plan that cannot run.
    pub fn plan(&self) -> Result<Plan, String> {
        let (requests, duration, duration_given) = match (self.requests, self.duration) {
            (None, None) => (MAX_REQUESTS, DEFAULT_DURATION, true),
            (Some(r), None) => (r, MAX_DURATION, false),
            (None, Some(d)) => (MAX_REQUESTS, d, true),
            (Some(r), Some(d)) => (r, d, true),
        };
        let acks_timeout_ms = self.acks_timeout.map_or(0, |d| {
            u32::try_from(d.as_nanos().div_ceil(1_000_000))
                .unwrap_or(u32::MAX)
                .max(1)
        });
        let plan = Plan {
            clients: self.clients,
            connections: self.connections.min(self.clients),
            pipeline: self.pipeline,
            batch: self.batch,
            ratio: self.ratio,
            value_size: self.value_size,
            keyspace: self.keyspace,
            acks: self.acks,
            acks_timeout_ms,
            requests,
            duration,
            requests_given: self.requests.is_some(),
            duration_given,
            prefill: self.prefill,
            threads: self.threads,
        };
        let in_flight = plan.in_flight_per_connection();
        if in_flight > MAX_IN_FLIGHT_PER_CONNECTION {
            return Err(format!(
                "{in_flight} requests in flight on one connection (--clients {} / --connections {} \
                 × --pipeline {}) is over the client's limit of {MAX_IN_FLIGHT_PER_CONNECTION}; \
                 add connections or lower --pipeline",
                plan.clients, plan.connections, plan.pipeline
            ));
        }
        let max_call = u64::try_from(MAX_CALL_BYTES).unwrap_or(u64::MAX);
        if plan.ratio.has_puts() && plan.call_bytes() > max_call {
            return Err(format!(
                "one call would carry {} bytes (--batch {} × ({KEY_LEN}-byte key + --value-size \
                 {})), over the limit of {MAX_CALL_BYTES} bytes per call; lower --batch or \
                 --value-size",
                plan.call_bytes(),
                plan.batch,
                plan.value_size
            ));
        }
        if plan.prefill && plan.keyspace > MAX_PREFILL_KEYS {
            return Err(format!(
                "--prefill writes every key, and --keyspace {} is over its limit of \
                 {MAX_PREFILL_KEYS} keys; lower --keyspace or fill the store another way",
                plan.keyspace
            ));
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{Parser as _, error::ErrorKind};

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(["kvctl", "bench"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Bench(args) => Ok(args),
            other => panic!("not bench: {other:?}"),
        }
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        parse(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .plan()
    }

    fn refused(args: &[&str]) -> String {
        let e = parse(args).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}: {e}");
        e.to_string()
    }

    #[test]
    fn defaults() {
        let p = plan(&[]).expect("plan");
        assert_eq!(
            p,
            Plan {
                clients: 50,
                connections: 4,
                pipeline: 1,
                batch: 1,
                ratio: Ratio { put: 1, get: 0 },
                value_size: 100,
                keyspace: 100_000,
                acks: 0,
                acks_timeout_ms: 0,
                requests: MAX_REQUESTS,
                duration: Duration::from_secs(10),
                requests_given: false,
                duration_given: true,
                prefill: false,
                threads: 1,
            }
        );
    }

    #[test]
    fn the_run_is_always_bounded() {
        let p = plan(&["--requests", "1000"]).expect("plan");
        assert_eq!((p.requests, p.duration), (1000, MAX_DURATION));
        assert!(p.requests_given && !p.duration_given);
        let p = plan(&["--duration", "2.5"]).expect("plan");
        assert_eq!(
            (p.requests, p.duration),
            (MAX_REQUESTS, Duration::from_millis(2500))
        );
        let p = plan(&["--duration", "1m", "--requests", "1_000"]).expect("plan");
        assert_eq!((p.requests, p.duration), (1000, Duration::from_secs(60)));
        assert!(refused(&["--duration", "0"]).contains("more than zero"));
        assert!(refused(&["--duration", "7200"]).contains("at most 3600 seconds"));
        assert!(refused(&["--requests", "0"]).contains("from 1 to 1000000000"));
        assert!(refused(&["--requests", "1000000001"]).contains("from 1 to 1000000000"));
    }

    #[test]
    fn keyspace_must_be_bounded() {
        let msg = refused(&["--keyspace", "0"]);
        assert!(
            msg.contains("--keyspace must be from 1 to 1000000000 keys"),
            "{msg}"
        );
        let msg = refused(&["--keyspace", "99999999999999"]);
        assert!(msg.contains("1000000000"), "{msg}");
        assert!(refused(&["--keyspace", "lots"]).contains("not a whole number"));
        assert_eq!(plan(&["--keyspace", "1"]).expect("plan").keyspace, 1);
    }

    #[test]
    fn counts_are_bounded() {
        for (args, limit) in [
            (&["--clients", "0"][..], "--clients must be from 1 to 10000"),
            (&["--clients", "10001"], "--clients must be from 1 to 10000"),
            (
                &["--connections", "0"],
                "--connections must be from 1 to 256",
            ),
            (
                &["--connections", "257"],
                "--connections must be from 1 to 256",
            ),
            (&["--pipeline", "0"], "--pipeline must be from 1 to 1024"),
            (&["--batch", "0"], "--batch must be from 1 to 10000"),
            (&["--batch", "10001"], "--batch must be from 1 to 10000"),
            (&["--threads", "0"], "--threads must be from 1 to 64"),
            (
                &["--value-size", "16777217"],
                "--value-size must be from 0 to 16777216",
            ),
            (&["--clients=-1"], "not a whole number"),
        ] {
            let msg = refused(args);
            assert!(msg.contains(limit), "{args:?}: {msg}");
        }
        assert!(parse(&["--acks", "-1"]).is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!("1:0".parse(), Ok(Ratio { put: 1, get: 0 }));
        assert_eq!(" 0:1 ".parse(), Ok(Ratio { put: 0, get: 1 }));
        assert_eq!("1:9".parse(), Ok(Ratio { put: 1, get: 9 }));
        for bad in ["", "1", "1:", ":1", "a:b", "1:2:3", "-1:1", "1.5:1", "1/9"] {
            let e = bad.parse::<Ratio>().expect_err(bad);
            assert!(e.contains("PUT:GET"), "{bad:?}: {e}");
        }
        assert!(
            "0:0"
                .parse::<Ratio>()
                .expect_err("0:0")
                .contains("asks for nothing")
        );
        assert!(
            "1000001:1"
                .parse::<Ratio>()
                .expect_err("big")
                .contains("at most 1000000")
        );
        assert!(refused(&["--ratio", "x"]).contains("PUT:GET"));
        assert_eq!(Ratio { put: 1, get: 9 }.to_string(), "1:9");
    }

    #[test]
    fn ratio_spreads_puts_exactly() {
        let r = Ratio { put: 1, get: 9 };
        let puts = (0..1000).filter(|&n| r.is_put(n)).count();
        assert_eq!(puts, 100);
        let r = Ratio { put: 3, get: 1 };
        let puts: Vec<bool> = (0..8).map(|n| r.is_put(n)).collect();
        assert_eq!(puts, [true, true, true, false, true, true, true, false]);
        assert!((0..10).all(|n| Ratio { put: 1, get: 0 }.is_put(n)));
        assert!((0..10).all(|n| !Ratio { put: 0, get: 1 }.is_put(n)));
        assert!(!Ratio { put: 0, get: 1 }.has_puts());
    }

    #[test]
    fn cross_flag_limits() {
        // Connections beyond the number of clients would sit idle.
        assert_eq!(plan(&["--clients", "2"]).expect("plan").connections, 2);
        // 10,000 clients on one connection with 2 in flight each: over tarpc's 10,000.
        let e = plan(&[
            "--clients",
            "10000",
            "--connections",
            "1",
            "--pipeline",
            "2",
        ])
        .expect_err("too many in flight");
        assert!(e.contains("over the client's limit of 10000"), "{e}");
        assert!(plan(&["--clients", "10000", "--connections", "1"]).is_ok());
        // 10,000 keys of 16 + 2,000 bytes is over 16 MiB in one mput.
        let e = plan(&["--batch", "10000", "--value-size", "2000"]).expect_err("too big");
        assert!(
            e.contains("over the limit of 16777216 bytes per call"),
            "{e}"
        );
        // Gets only: no value travels, the size does not matter.
        assert!(plan(&["--batch", "10000", "--value-size", "2000", "--ratio", "0:1"]).is_ok());
        let e = plan(&["--prefill", "--keyspace", "10000001"]).expect_err("prefill");
        assert!(e.contains("limit of 10000000 keys"), "{e}");
        assert!(plan(&["--prefill", "--keyspace", "10000000"]).is_ok());
    }

    #[test]
    fn acks_timeout_in_milliseconds() {
        let p = plan(&["--acks", "1", "--acks-timeout", "250ms"]).expect("plan");
        assert_eq!((p.acks, p.acks_timeout_ms), (1, 250));
        assert_eq!(plan(&["--acks", "1"]).expect("plan").acks_timeout_ms, 0);
    }
}
