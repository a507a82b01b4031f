//! Connection exhaustion (issue #11, acceptance 5):
//! `exhaust <pid> <host:port> <token-file> <frame-timeout-ms> <idle-timeout-secs> [idle] [stalled]`.
//!
//! Against one kvd (process `pid`, serving `host:port`, started with `--auth-file`,
//! `--frame-timeout-ms` and `--idle-timeout-secs` as given here, default key and value limits):
//!
//! 1. baseline: 100 gets by an authenticated client, one every 20 ms (p50/p99, hdrhistogram);
//! 2. the node's RSS (VmRSS of /proc/<pid>/status) before the attack;
//! 3. the attack: `idle` (default 1,000) connections that authenticate and then send nothing,
//!    and `stalled` (default 200) that authenticate, then send the 4-byte header of a
//!    maximum-size frame (`server_max_frame_bytes` of the default limits) and half its body,
//!    then nothing more;
//! 4. meanwhile the same 100 gets, paced the same, by a client connected and served once
//!    before the attack (the gets run on a thread and runtime of their own, apart from the
//!    attacker, which runs in a process of its own at niceness 19, `ATTACKER_NICE`);
//! 5. the peak RSS during the attack, sampled every 100 ms;
//! 6. when the node closes each attacking connection (a read returns 0 or an error), measured
//!    from the last byte this tool sent on it;
//! 7. a table, and PASS or FAIL against the bounds: RSS growth at most 64 MiB, under-attack p99
//!    at most 2x the baseline, every stalled connection closed within the frame timeout + 1 s
//!    and every idle one within the idle timeout + 1 s. Exits 1 on FAIL.
//!
//! Every loop is bounded in count and by an overall deadline (`DEADLINE`). Loopback only: the
//! host must be a loopback address.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail, ensure};
use hdrhistogram::Histogram;
use serde_bytes::ByteBuf;
use shared::{
    KvClient, PutRequest,
    addr::parse_endpoint,
    limits::{DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, server_max_frame_bytes},
    net::Stream,
    transport::{Credentials, HandshakeError},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::Semaphore,
    task::JoinSet,
};

/// The whole run, attack included, ends by then at the latest.
const DEADLINE: Duration = Duration::from_secs(60);
/// Gets in each phase.
const GETS: usize = 100;
/// Pause between two gets (so the attack's gets span its set-up and its stall).
const GET_PACE: Duration = Duration::from_millis(20);
/// The slack allowed over a timeout before the node's close counts as late.
const MARGIN: Duration = Duration::from_secs(1);
/// Most RSS growth allowed, in bytes.
const MAX_GROWTH: u64 = 64 * 1024 * 1024;
/// Most p99 ratio (under attack / baseline) allowed.
const MAX_RATIO: f64 = 2.0;
/// Connections being opened (handshakes in flight) at once.
const OPEN_CONCURRENCY: usize = 64;
/// Stalled frames being sent at once.
const SEND_CONCURRENCY: usize = 32;
/// Bytes written per call while sending a half frame.
const CHUNK: usize = 64 * 1024;

struct Args {
    pid: u32,
    host: String,
    port: u16,
    token: String,
    token_file: String,
    frame_timeout: Duration,
    idle_timeout: Duration,
    idle: usize,
    stalled: usize,
}

fn read_token(file: &str) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("reading {file}"))?
        .trim()
        .to_string();
    ensure!(!token.is_empty(), "{file} is empty");
    Ok(token)
}

fn parse_args() -> anyhow::Result<Args> {
    let args: Vec<String> = std::env::args().collect();
    let [_, pid, endpoint, token_file, frame_ms, idle_secs, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: exhaust <pid> <host:port> <token-file> <frame-timeout-ms> \
             <idle-timeout-secs> [idle] [stalled]"
        );
    };
    let ep = parse_endpoint(endpoint, 3000).map_err(|e| anyhow!("{endpoint}: {e}"))?;
    let ip: IpAddr = ep
        .host
        .parse()
        .with_context(|| format!("{}: not an IP address", ep.host))?;
    ensure!(ip.is_loopback(), "{ip} is not a loopback address");
    let token = read_token(token_file)?;
    let count = |i: usize, default: usize| -> anyhow::Result<usize> {
        rest.get(i).map_or(Ok(default), |s| {
            s.parse::<usize>()
                .with_context(|| format!("count {s}"))
                .map(|n| n.min(5_000))
        })
    };
    Ok(Args {
        pid: pid.parse().with_context(|| format!("pid {pid}"))?,
        host: ep.host.clone(),
        port: ep.port,
        token,
        token_file: token_file.clone(),
        frame_timeout: Duration::from_millis(frame_ms.parse().context("frame timeout")?),
        idle_timeout: Duration::from_secs(idle_secs.parse().context("idle timeout")?),
        idle: count(0, 1_000)?,
        stalled: count(1, 200)?,
    })
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is kvd running?)"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad line {line}"))?
        .parse()
        .with_context(|| format!("bad line {line}"))?;
    Ok(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    // Exact enough for a report (RSS is far below 2^52).
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}

fn ctx() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(10);
    ctx
}

fn creds(args: &Args) -> Credentials {
    Credentials {
        token: Some(args.token.clone()),
        tls: None,
    }
}

async fn client(args: &Args) -> anyhow::Result<KvClient> {
    let ep = parse_endpoint(&format!("{}:{}", args.host, args.port), 3000)
        .map_err(|e| anyhow!("{e}"))?;
    shared::transport::connect(&ep, &creds(args))
        .await
        .with_context(|| format!("connecting to {ep}"))
}

/// With `EXHAUST_TRACE` set, prints `what` on stderr with the wall-clock time in ms (the
/// attacker's process and this one on one clock).
fn trace(what: &str) {
    if std::env::var_os("EXHAUST_TRACE").is_some() {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 100_000);
        eprintln!("{ms:>6} {what}");
    }
}

/// Latencies of the gets, in microseconds.
struct Gets {
    hist: Histogram<u64>,
    failed: usize,
}

impl Gets {
    fn p(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

/// `GETS` gets of `key`, one every `GET_PACE`, each bounded by 10 s, all by `until`.
async fn gets(c: &KvClient, key: &[u8], until: Instant) -> anyhow::Result<Gets> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    for _ in 0..GETS {
        if Instant::now() >= until {
            failed += 1;
            continue;
        }
        let t = Instant::now();
        let r =
            tokio::time::timeout(Duration::from_secs(10), c.get(ctx(), ByteBuf::from(key))).await;
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        trace(&format!("get {us} us"));
        match r {
            Ok(Ok(Ok(Some(_)))) => hist.saturating_record(us.max(1)),
            _ => failed += 1,
        }
        tokio::time::sleep(GET_PACE).await;
    }
    Ok(Gets { hist, failed })
}

/// Runs the gets on a thread and runtime of their own, as an application apart from the
/// attacker would: on the attacker's runtime, a get's answer would wait behind the attacker's
/// own tasks, and the latency measured would be the attacker's, not the node's.
///
/// The client is one already connected and served: it connects and makes one get, not
/// measured, then waits for `go` before the measured gets (a client that connects during the
/// attack waits for the node's admission, which serves established clients first; see
/// docs/security.md).
struct Probe {
    thread: std::thread::JoinHandle<anyhow::Result<Gets>>,
    go: std::sync::mpsc::Sender<()>,
}

impl Probe {
    /// Starts the probe and waits until it is connected and served once.
    fn start(args: &Args, key: Vec<u8>, until: Instant) -> anyhow::Result<Self> {
        let (host, port, creds) = (args.host.clone(), args.port, creds(args));
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("probe runtime")?;
            rt.block_on(async move {
                let ep =
                    parse_endpoint(&format!("{host}:{port}"), 3000).map_err(|e| anyhow!("{e}"))?;
                let c = shared::transport::connect(&ep, &creds)
                    .await
                    .with_context(|| format!("connecting to {ep}"))?;
                c.get(ctx(), ByteBuf::from(key.clone()))
                    .await
                    .context("the probe's first get")?
                    .map_err(|e| anyhow!("the probe's first get: {e}"))?;
                ready_tx.send(()).context("ready")?;
                go_rx.recv().context("go")?;
                gets(&c, &key, until).await
            })
        });
        if ready.recv_timeout(Duration::from_secs(10)).is_err() {
            return Err(thread
                .join()
                .map_err(|_| anyhow!("the probe thread panicked"))?
                .err()
                .unwrap_or_else(|| anyhow!("the probe did not connect within 10 s")));
        }
        Ok(Self { thread, go })
    }

    /// Runs the measured gets and returns them.
    fn run(self) -> anyhow::Result<Gets> {
        self.go.send(()).context("the probe ended early")?;
        self.thread
            .join()
            .map_err(|_| anyhow!("the probe thread panicked"))?
    }
}

/// What became of one attacking connection.
enum Fate {
    /// Never got past the handshake.
    NotOpened(String),
    /// The node closed it while the half frame was being sent (before it was all written).
    ClosedWhileSending(Duration),
    /// Closed by the node this long after the last byte sent.
    Closed(Duration),
    /// Still open at the deadline.
    Open,
}

impl Fate {
    /// One line for the coordinator: `closed SECS`, `sending SECS`, `open`, `failed ERROR`.
    fn line(&self) -> String {
        match self {
            Fate::NotOpened(e) => format!("failed {}", e.replace('\n', " ")),
            Fate::ClosedWhileSending(d) => format!("sending {}", d.as_secs_f64()),
            Fate::Closed(d) => format!("closed {}", d.as_secs_f64()),
            Fate::Open => "open".into(),
        }
    }

    fn parse(line: &str) -> anyhow::Result<Self> {
        let (what, rest) = line.split_once(' ').unwrap_or((line, ""));
        let secs = || -> anyhow::Result<Duration> {
            Ok(Duration::from_secs_f64(
                rest.parse().with_context(|| format!("bad line {line}"))?,
            ))
        };
        Ok(match what {
            "failed" => Fate::NotOpened(rest.to_string()),
            "sending" => Fate::ClosedWhileSending(secs()?),
            "closed" => Fate::Closed(secs()?),
            "open" => Fate::Open,
            _ => bail!("bad line {line}"),
        })
    }
}

/// Waits, until `until`, for the node to close `stream`; returns the time since `last`.
async fn watch_close(mut stream: Stream, last: Instant, until: Instant) -> Fate {
    let mut buf = [0u8; 1024];
    // Bounded: each read either ends the loop or returns data; the node sends nothing
    // unasked, so a handful of reads at most, and the deadline caps the wait.
    for _ in 0..1_000 {
        match tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await {
            Err(_) => return Fate::Open,
            Ok(Ok(0) | Err(_)) => {
                trace("closed");
                return Fate::Closed(last.elapsed());
            }
            Ok(Ok(_)) => {}
        }
    }
    Fate::Open
}

async fn open(host: &str, port: u16, creds: &Credentials) -> Result<Stream, String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        shared::transport::open(host, port, creds),
    )
    .await
    {
        Err(_) => Err("handshake timed out".into()),
        Ok(Ok(s)) => {
            trace("opened");
            Ok(s)
        }
        Ok(Err(HandshakeError::Io(e))) => Err(e.to_string()),
        Ok(Err(HandshakeError::Refused(e))) => Err(format!("refused: {e}")),
    }
}

/// One idle connection: authenticates, sends nothing more.
async fn idle_conn(
    host: String,
    port: u16,
    creds: Credentials,
    gate: Arc<Semaphore>,
    until: Instant,
) -> Fate {
    let stream = {
        let Ok(_permit) = gate.acquire().await else {
            return Fate::NotOpened("semaphore closed".into());
        };
        match open(&host, port, &creds).await {
            Ok(s) => s,
            Err(e) => return Fate::NotOpened(e),
        }
    };
    watch_close(stream, Instant::now(), until).await
}

/// One stalled connection: authenticates, sends the header of a `max_frame` frame and half its
/// body, then nothing more.
async fn stalled_conn(
    host: String,
    port: u16,
    creds: Credentials,
    max_frame: usize,
    gates: (Arc<Semaphore>, Arc<Semaphore>),
    until: Instant,
) -> Fate {
    let (open_gate, send_gate) = gates;
    let mut stream = {
        let Ok(_permit) = open_gate.acquire().await else {
            return Fate::NotOpened("semaphore closed".into());
        };
        match open(&host, port, &creds).await {
            Ok(s) => s,
            Err(e) => return Fate::NotOpened(e),
        }
    };
    let Ok(len) = u32::try_from(max_frame) else {
        return Fate::NotOpened("frame length over u32".into());
    };
    let last = {
        let Ok(_permit) = send_gate.acquire().await else {
            return Fate::NotOpened("semaphore closed".into());
        };
        let first = Instant::now();
        let zeros = vec![0u8; CHUNK];
        let send = async {
            stream.write_all(&len.to_be_bytes()).await?;
            let mut left = max_frame / 2;
            while left > 0 {
                let n = left.min(CHUNK);
                stream.write_all(&zeros[..n]).await?;
                left -= n;
            }
            stream.flush().await
        };
        match tokio::time::timeout_at(until.into(), send).await {
            Ok(Ok(())) => Instant::now(),
            Ok(Err(_)) => return Fate::ClosedWhileSending(first.elapsed()),
            Err(_) => return Fate::Open,
        }
    };
    watch_close(stream, last, until).await
}

/// Closes of one kind of connection.
#[derive(Default)]
struct Closes {
    opened: usize,
    not_opened: usize,
    first_error: Option<String>,
    closed: usize,
    closed_while_sending: usize,
    /// Longest time from the first byte of the half frame to a close while it was sent.
    max_while_sending: Duration,
    open: usize,
    max: Duration,
}

impl Closes {
    fn add(&mut self, fate: Fate) {
        match fate {
            Fate::NotOpened(e) => {
                self.not_opened += 1;
                self.first_error.get_or_insert(e);
            }
            Fate::ClosedWhileSending(d) => {
                // Closed by the frame timeout before the half frame was all written: counted
                // as closed, timed from the frame's first byte (an upper bound of the time
                // since the last byte, which is what the frame timeout starts from).
                self.opened += 1;
                self.closed += 1;
                self.closed_while_sending += 1;
                self.max_while_sending = self.max_while_sending.max(d);
                self.max = self.max.max(d);
            }
            Fate::Closed(d) => {
                self.opened += 1;
                self.closed += 1;
                self.max = self.max.max(d);
            }
            Fate::Open => {
                self.opened += 1;
                self.open += 1;
            }
        }
    }

    fn pass(&self, wanted: usize, timeout: Duration) -> bool {
        self.not_opened == 0 && self.closed == wanted && self.max <= timeout + MARGIN
    }
}

/// The attacker's niceness (`ATTACKER_NICE`, default 19; 0 runs it at the node's priority).
fn attacker_nice() -> anyhow::Result<u8> {
    std::env::var("ATTACKER_NICE").map_or(Ok(19), |v| {
        v.parse::<u8>()
            .ok()
            .filter(|n| *n <= 19)
            .with_context(|| format!("ATTACKER_NICE={v}: a niceness from 0 to 19"))
    })
}

/// Starts the attack in a process of its own (this program, `attack`), at the niceness of
/// `attacker_nice`: the attacker is a stranger whose CPU is not the node's, as on another
/// machine; on this one it shares the cores with the node and the probe, and at 19 the
/// scheduler serves them first. Its stdout is one line per connection: `stalled FATE` or
/// `idle FATE`.
fn spawn_attacker(args: &Args) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("this program's path")?;
    let nice = attacker_nice()?;
    let mut cmd = tokio::process::Command::new("nice");
    cmd.arg("-n").arg(nice.to_string()).arg(exe);
    cmd.arg("attack")
        .arg(format!("{}:{}", args.host, args.port))
        .arg(&args.token_file)
        .arg(args.idle.to_string())
        .arg(args.stalled.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(if std::env::var_os("EXHAUST_TRACE").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::piped()
        })
        .kill_on_drop(true);
    cmd.spawn().context("starting the attacker (nice)")
}

/// `exhaust attack <host:port> <token-file> <idle> <stalled>`: opens the connections, prints
/// what became of each, and ends by `DEADLINE`.
async fn attack(rest: &[String]) -> anyhow::Result<()> {
    let [endpoint, token_file, idle, stalled] = rest else {
        bail!("usage: exhaust attack <host:port> <token-file> <idle> <stalled>");
    };
    let deadline = Instant::now() + DEADLINE;
    let ep = parse_endpoint(endpoint, 3000).map_err(|e| anyhow!("{endpoint}: {e}"))?;
    let creds = Credentials {
        token: Some(read_token(token_file)?),
        tls: None,
    };
    let idle: usize = idle.parse().context("idle count")?;
    let stalled: usize = stalled.parse().context("stalled count")?;
    let max_frame = server_max_frame_bytes(DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES);
    let open_gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let send_gate = Arc::new(Semaphore::new(SEND_CONCURRENCY));
    let mut idle_tasks = JoinSet::new();
    let mut stalled_tasks = JoinSet::new();
    // The stalled ones first (their sending is the heavy part), then the idle ones; all are
    // opened concurrently, OPEN_CONCURRENCY handshakes at a time.
    for _ in 0..stalled {
        stalled_tasks.spawn(stalled_conn(
            ep.host.clone(),
            ep.port,
            creds.clone(),
            max_frame,
            (Arc::clone(&open_gate), Arc::clone(&send_gate)),
            deadline,
        ));
    }
    for _ in 0..idle {
        idle_tasks.spawn(idle_conn(
            ep.host.clone(),
            ep.port,
            creds.clone(),
            Arc::clone(&open_gate),
            deadline,
        ));
    }

    while let Some(fate) = stalled_tasks.join_next().await {
        println!(
            "stalled {}",
            fate.context("stalled connection task")?.line()
        );
    }
    while let Some(fate) = idle_tasks.join_next().await {
        println!("idle {}", fate.context("idle connection task")?.line());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("attack") {
        return attack(&argv[2..]).await;
    }
    let args = parse_args()?;
    let start = Instant::now();
    let deadline = start + DEADLINE;
    let max_frame = server_max_frame_bytes(DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES);
    let key = b"exhaust:probe".to_vec();

    // 1. Baseline.
    let base_client = client(&args).await?;
    base_client
        .put(ctx(), PutRequest::new(key.clone(), vec![b'v'; 100]))
        .await
        .context("put")?
        .map_err(|e| anyhow!("put refused: {e}"))?;
    drop(base_client);
    let baseline = Probe::start(&args, key.clone(), deadline)?;
    let baseline = tokio::task::spawn_blocking(move || baseline.run())
        .await
        .context("probe")??;

    // 2. RSS before (after the baseline's connection is gone and a moment of rest, with the
    // attack's probe connected).
    let attacked = Probe::start(&args, key.clone(), deadline)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss(args.pid)?;

    // 3. The attack, with 5. the RSS sampler and 6. the close watchers.
    let attack_start = Instant::now();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let peak_at_ms = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pid, peak, peak_at_ms, stop) = (
            args.pid,
            Arc::clone(&peak),
            Arc::clone(&peak_at_ms),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            // Bounded by the deadline: at most 600 samples in 60 s.
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let Ok(r) = rss(pid) else { break };
                if r > peak.fetch_max(r, Ordering::Relaxed) {
                    let ms = u64::try_from(attack_start.elapsed().as_millis()).unwrap_or(0);
                    peak_at_ms.store(ms, Ordering::Relaxed);
                }
            }
        })
    };
    let attacker = spawn_attacker(&args)?;

    // 4. Meanwhile, the gets.
    let attacked = tokio::task::spawn_blocking(move || attacked.run())
        .await
        .context("probe")??;
    let gets_done = attack_start.elapsed();

    let out = attacker.wait_with_output().await.context("the attacker")?;
    ensure!(
        out.status.success(),
        "the attacker failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut stalled, mut idle) = (Closes::default(), Closes::default());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_once(' ') {
            Some(("stalled", fate)) => stalled.add(Fate::parse(fate)?),
            Some(("idle", fate)) => idle.add(Fate::parse(fate)?),
            _ => bail!("the attacker printed {line}"),
        }
    }
    let all_closed = attack_start.elapsed();
    // Let the sampler see the node after the last close, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.context("RSS sampler")?;
    let peak = peak.load(Ordering::Relaxed);
    let peak_at = Duration::from_millis(peak_at_ms.load(Ordering::Relaxed));
    let rss_after = rss(args.pid).unwrap_or(0);

    // 7. The table.
    let ratio = if baseline.p(0.99) == 0 {
        f64::INFINITY
    } else {
        #[allow(clippy::cast_precision_loss)]
        let r = attacked.p(0.99) as f64 / baseline.p(0.99) as f64;
        r
    };
    let growth = peak.saturating_sub(rss_before);
    let gets_ok = baseline.failed == 0 && attacked.failed == 0;
    let rss_ok = growth <= MAX_GROWTH;
    let ratio_ok = ratio <= MAX_RATIO;
    let stalled_ok = stalled.pass(args.stalled, args.frame_timeout);
    let idle_ok = idle.pass(args.idle, args.idle_timeout);
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };

    println!(
        "exhaust: {} idle + {} stalled connections ({} B frames, half sent: {} B each), \
         frame timeout {} ms, idle timeout {} s",
        args.idle,
        args.stalled,
        max_frame,
        max_frame / 2,
        args.frame_timeout.as_millis(),
        args.idle_timeout.as_secs()
    );
    println!("{:<34} {:>24}  {:<22} result", "measure", "value", "bound");
    let row = |name: &str, value: String, bound: String, ok: Option<bool>| {
        println!(
            "{name:<34} {value:>24}  {bound:<22} {}",
            ok.map_or("", verdict)
        );
    };
    row(
        "get p50 / p99 baseline (us)",
        format!("{} / {}", baseline.p(0.5), baseline.p(0.99)),
        format!("{GETS} gets, 1/{} ms", GET_PACE.as_millis()),
        None,
    );
    row(
        "get p50 / p99 under attack (us)",
        format!("{} / {}", attacked.p(0.5), attacked.p(0.99)),
        format!("done at +{:.2} s", gets_done.as_secs_f64()),
        None,
    );
    row(
        "p99 ratio",
        format!("{ratio:.2}"),
        format!("<= {MAX_RATIO:.1}"),
        Some(ratio_ok),
    );
    row(
        "gets failed (baseline / attack)",
        format!("{} / {}", baseline.failed, attacked.failed),
        "0".into(),
        Some(gets_ok),
    );
    row(
        "RSS before / peak / after (MiB)",
        format!(
            "{:.1} / {:.1} / {:.1}",
            mib(rss_before),
            mib(peak),
            mib(rss_after)
        ),
        format!("peak at +{:.1} s", peak_at.as_secs_f64()),
        None,
    );
    row(
        "RSS growth (MiB)",
        format!("{:.1}", mib(growth)),
        format!("<= {:.0}", mib(MAX_GROWTH)),
        Some(rss_ok),
    );
    row(
        "stalled closed (count, max s)",
        format!(
            "{}/{}, {:.2}",
            stalled.closed,
            args.stalled,
            stalled.max.as_secs_f64()
        ),
        format!(
            "all, <= {:.1} s",
            (args.frame_timeout + MARGIN).as_secs_f64()
        ),
        Some(stalled_ok),
    );
    row(
        "idle closed (count, max s)",
        format!(
            "{}/{}, {:.2}",
            idle.closed,
            args.idle,
            idle.max.as_secs_f64()
        ),
        format!(
            "all, <= {:.1} s",
            (args.idle_timeout + MARGIN).as_secs_f64()
        ),
        Some(idle_ok),
    );
    for (name, c) in [("stalled", &stalled), ("idle", &idle)] {
        if c.not_opened + c.closed_while_sending + c.open > 0 {
            println!(
                "  {name}: {} not opened{}, {} of the closed were closed before the half \
                 frame was all sent (the last {:.2} s after its first byte), {} still open at the deadline",
                c.not_opened,
                c.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})")),
                c.closed_while_sending,
                c.max_while_sending.as_secs_f64(),
                c.open
            );
        }
    }
    let pass = gets_ok && rss_ok && ratio_ok && stalled_ok && idle_ok;
    println!(
        "{} (every attacking connection ended at +{:.1} s, run {:.1} s)",
        verdict(pass),
        all_closed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    if !pass {
        std::process::exit(1);
    }
    Ok(())
}
