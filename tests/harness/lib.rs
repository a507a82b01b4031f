//! Test harness: builds `kvd` and `kvctl` once, starts real `kvd` processes on loopback ports
//! the OS picks, in temporary directories, and stops only the processes it started (on drop
//! too). Waiting is always on a condition with a timeout, never a bare sleep.
//!
//! `CARGO_BIN_EXE_*` only covers the binaries of the package under test, so the binaries of
//! the other packages are built through `escargot` (a no-op when `cargo test` already built
//! them) and cached in a `OnceLock`.

#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Condvar, Mutex, OnceLock},
    time::{Duration, Instant},
};

use shared::{KvClient, addr::parse_endpoint};

/// How long a node may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

fn build(name: &str) -> PathBuf {
    let run = escargot::CargoBuild::new()
        .bin(name)
        .package(name)
        .run()
        .unwrap_or_else(|e| panic!("cannot build {name}: {e}"));
    run.path().to_path_buf()
}

/// Path of the `kvd` binary.
pub fn kvd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("kvd"))
}

/// Path of the `kvctl` binary.
pub fn kvctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("kvctl"))
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines a process wrote to stdout, shared with the thread that reads them.
#[derive(Clone, Default)]
pub struct Lines {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Lines {
    fn push(&self, line: String) {
        let (lines, cv) = &*self.inner;
        lines.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let (lines, cv) = &*self.inner;
        let deadline = Instant::now() + timeout;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }
}

/// A `kvd` process this test started.
pub struct NodeProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The address of its metrics endpoint, when on.
    pub metrics: Option<SocketAddr>,
    /// Its stdout, line by line.
    pub stdout: Lines,
    stderr: Arc<Mutex<String>>,
    args: Vec<String>,
    cwd: PathBuf,
}

/// Why a node did not start.
#[derive(Debug)]
pub struct StartError {
    /// The exit status, if it exited.
    pub status: Option<ExitStatus>,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl NodeProcess {
    /// Starts `kvd` with `args` in `cwd` and waits for its start-up line.
    pub fn start(cwd: &Path, args: &[String]) -> Result<Self, StartError> {
        std::fs::create_dir_all(cwd).expect("create the working directory");
        let mut child = Command::new(kvd_bin())
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kvd");
        let stdout = Lines::default();
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (addr, metrics) = loop {
            if let Some(line) = stdout.wait_for("kvd started", Duration::from_millis(50)) {
                let addr = parse_field(&line, "listen=")
                    .parse()
                    .expect("listen address");
                break (addr, parse_field(&line, "metrics=").parse().ok());
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Give the reader threads a moment to collect the output.
                wait_until(Duration::from_secs(2), || {
                    !stderr.lock().unwrap().is_empty()
                });
                return Err(StartError {
                    status: Some(status),
                    stdout: stdout.all().join("\n"),
                    stderr: stderr.lock().unwrap().clone(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(StartError {
                    status: None,
                    stdout: stdout.all().join("\n"),
                    stderr: stderr.lock().unwrap().clone(),
                });
            }
        };
        Ok(Self {
            child,
            addr,
            metrics,
            stdout,
            stderr,
            args: args.to_vec(),
            cwd: cwd.to_path_buf(),
        })
    }

    /// A master with `shards` shards on 127.0.0.1, a port the OS picks, its data in `dir`.
    pub fn master(dir: &Path, shards: u32, extra: &[&str]) -> Self {
        let mut args = vec![
            "--port=0".to_string(),
            format!("--shard={shards}"),
            "--host=127.0.0.1".to_string(),
            format!("--data-dir={}", dir.join("data").display()),
        ];
        args.extend(extra.iter().map(ToString::to_string));
        Self::start(dir, &args).unwrap_or_else(|e| panic!("kvd did not start: {e:?}"))
    }

    /// A replica of `master` (an endpoint) with `shards` shards, on 127.0.0.1 and a port the OS
    /// picks, its data in `dir`.
    pub fn replica(dir: &Path, shards: u32, master: &str, extra: &[&str]) -> Self {
        Self::start(dir, &replica_args(dir, shards, master, extra))
            .unwrap_or_else(|e| panic!("replica did not start: {e:?}"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets, the kernel keeps accepting
    /// connections for it, and nothing answers.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to 60 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.wait_exit(Duration::from_secs(60))
            .expect("kvd did not stop within 60 s of SIGTERM")
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        // Let the reader threads collect the last output.
        if status.is_some() {
            let stderr = Arc::clone(&self.stderr);
            wait_until(Duration::from_millis(500), || {
                !stderr.lock().unwrap().is_empty()
            });
        }
        status
    }

    /// GETs `path` on the metrics endpoint: status code and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let addr = self.metrics.expect("the node has a metrics endpoint");
        http_get(&format!("http://{addr}{path}"))
    }

    /// Starts the same node again (same flags, same port) after it stopped.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart of a running node");
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if a == "--port=0" {
                    let metrics = self.metrics.map_or(0, |m| m.port());
                    format!("--port={} --metrics-port={metrics}", self.addr.port())
                } else {
                    a.clone()
                }
            })
            .flat_map(|a| a.split(' ').map(String::from).collect::<Vec<_>>())
            .collect();
        let started =
            Self::start(&self.cwd, &args).unwrap_or_else(|e| panic!("kvd did not restart: {e:?}"));
        *self = started;
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
    }
}

/// GETs `url` (status code and body); non-2xx statuses are answers, not errors.
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().expect("body"))
}

/// The flags of a replica (see [`NodeProcess::replica`]).
pub fn replica_args(dir: &Path, shards: u32, master: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--port=0".to_string(),
        format!("--shard={shards}"),
        "--replica=true".to_string(),
        format!("--master={master}"),
        "--host=127.0.0.1".to_string(),
        format!("--data-dir={}", dir.join("data").display()),
    ];
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// The master's view of the cluster.
pub async fn cluster(endpoint: &str) -> shared::ClusterStatus {
    client(endpoint)
        .await
        .cluster_status(ctx())
        .await
        .expect("rpc")
        .expect("cluster status")
}

/// Waits until the master sees `replicas` replicas, all linked and with no lag on any shard.
pub async fn wait_caught_up(
    master: &str,
    replicas: usize,
    timeout: Duration,
) -> shared::ClusterStatus {
    let c = client(master).await;
    let last = std::sync::Mutex::new(None);
    let caught_up = eventually(timeout, || async {
        let status = c
            .cluster_status(ctx())
            .await
            .expect("rpc")
            .expect("cluster status");
        let done = status.replicas.len() == replicas
            && status.replicas.iter().all(|r| {
                r.link == shared::LinkState::Up && r.shards.iter().all(|s| s.ops_behind == 0)
            });
        *last.lock().unwrap() = Some(status);
        done
    })
    .await;
    let status = last.into_inner().unwrap().expect("at least one status");
    assert!(
        caught_up,
        "replicas did not catch up within {timeout:?}: {status:#?}"
    );
    status
}

/// The value of `name` (e.g. `listen=`) in a log line.
pub fn parse_field(line: &str, name: &str) -> String {
    let start = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        + name.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches('"')
        .to_string()
}

/// Runs `kvctl -e <endpoint> <args>` with optional stdin and returns its output.
pub fn kvctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(kvctl_bin())
        .arg("-e")
        .arg(endpoint)
        .args(args)
        .env_remove("KVCTL_ENDPOINT")
        .env_remove("KVCTL_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvctl");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).expect("write stdin");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("kvctl did not finish within 60 s")
        .expect("kvctl output")
}

/// The client library over several endpoints (`http://host:port` each), with `timeout` per
/// call.
pub fn cluster_client(endpoints: &[String], timeout: Duration) -> shared::client::Client {
    let eps = endpoints
        .iter()
        .map(|e| parse_endpoint(e, 3000).expect("endpoint"))
        .collect::<Vec<_>>();
    shared::client::Client::builder(eps)
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Polls the async `cond` until it holds or `timeout` passes; whether it held (the async
/// sibling of [`wait_until`]).
pub async fn eventually<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of the node at `endpoint`.
pub async fn status(endpoint: &str) -> shared::NodeStatus {
    client(endpoint)
        .await
        .status(ctx())
        .await
        .expect("rpc")
        .expect("status")
}

/// Connects a raw tarpc handle to `endpoint`.
pub async fn client(endpoint: &str) -> KvClient {
    let ep = parse_endpoint(endpoint, 3000).expect("endpoint");
    shared::transport::connect(&ep, &shared::transport::Credentials::default())
        .await
        .expect("connect")
}

/// A request context with a 10 s deadline.
pub fn ctx() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(10);
    ctx
}

/// A TCP proxy on loopback to `target`, which a test can cut: while cut, the connections it
/// carried are closed and new ones are accepted and never answered (a black hole, as a network
/// partition looks from both ends), until it is healed.
pub struct Proxy {
    /// The address to connect to instead of the target.
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` (inside a tokio runtime).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Bounded: a test's proxy carries a few connections a second for seconds.
            for _ in 0..1_000_000u32 {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let mut inbound = inbound;
                    if *watch.borrow_and_update() {
                        // Cut: hold the connection, answer nothing, until healed or closed.
                        while watch.changed().await.is_ok() && *watch.borrow() {}
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async {
                            while watch.changed().await.is_ok() {
                                if *watch.borrow() {
                                    return;
                                }
                            }
                        } => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the link: open connections close, new ones hang.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals it: new connections are carried again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
