//! The runtime of the state machine: it feeds events to [`Core`] one at a time and carries out
//! the commands it returns, which are the only places the role and epoch change.
//!
//! ```text
//!  RPC handlers (hello, join, pull, take_over, failover, promote) ──handle(event)──┐
//!  follower, master duties, hello replies ──notify(event): a task of its own───────┤
//!                                                                                   v
//!                 tokio Mutex<Core> ── Core::handle ── commands, run under the lock, in order:
//!                   Persist   cluster.json (fsync), raise the writers' fence
//!                   Publish   the write gate and the view everyone reads
//!                   Follow / Discover / StopFollowing    the replica's follower task
//!                   BecomeMaster / StopMaster            the registry and the master's duties
//!                   Announce  hello to every member (replies come back as events)
//! ```
//!
//! Tasks that the commands stop (the follower, the master's duties) never wait on the core
//! lock themselves: they send their events with [`notify`], which runs them in a task of their
//! own, so stopping them under the lock cannot deadlock.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use shared::{
    KvError, Role,
    cluster::{Epoch, HelloReply, HelloRequest, Member, ShardPosition},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    gate::WriteGate,
    persist::ClusterFile,
    state::{Command, Core, Event, Gate, State, View},
};
use crate::{node::Node, replication::unix_ms, storage::StorageError};

/// How often the master's duties run (the sweep of silent replicas, re-announcements).
const DUTY_TICK: Duration = Duration::from_millis(250);
/// How often a silent replica is asked for its epoch.
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How often a master writes down when its replicas were last seen.
const SAVE_LAST_SEEN_EVERY: Duration = Duration::from_secs(10);
/// Longest a `hello` to one member may take (connect and answer); also the start-up probe's
/// wait for members that do not answer.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

struct Running {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    /// The follower's target (`None`: looking for the master).
    address: Option<String>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        // A task that panicked is already gone; nothing else to do.
        let _ = self.handle.await;
    }
}

#[derive(Default)]
struct Tasks {
    follower: Option<Running>,
    master: Option<Running>,
}

/// The cluster state of a node: the core, the gate, `cluster.json`, and the tasks the role runs.
pub struct Cluster {
    me: Member,
    dir: PathBuf,
    core: tokio::sync::Mutex<Core>,
    /// Commands of the start, run by [`start`].
    first: Mutex<Vec<Command>>,
    gate: WriteGate,
    file: Mutex<ClusterFile>,
    /// One save at a time, each with the content as of its turn, so the file on disk only
    /// moves forward (and two saves never share the temporary file).
    saving: tokio::sync::Mutex<()>,
    fence: Arc<AtomicU64>,
    tasks: Mutex<Tasks>,
    /// Stops every task the role runs, at shutdown.
    stop: CancellationToken,
    /// Failovers this node took part in since it started.
    pub failovers: AtomicU64,
    /// The election this node is running (auto failover): epoch, votes, needed, start.
    election: Mutex<Option<super::election::Tally>>,
    /// Not before this does it stand again (after a lost pre-vote or election).
    stand_after: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutex here guards plain data that stays consistent after a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cluster {
    /// The cluster state of node `me`, from its `cluster.json` (`file`), with `seed` the
    /// `--master` address; `fence` is shared with the shard writers.
    #[must_use]
    pub fn new(
        me: Member,
        dir: PathBuf,
        file: ClusterFile,
        seed: Option<String>,
        fence: Arc<AtomicU64>,
        auto: bool,
    ) -> Self {
        fence.fetch_max(file.epoch, Ordering::AcqRel);
        let (core, first) = Core::start(
            me.clone(),
            file.epoch,
            file.master.clone(),
            file.established,
            seed,
            file.member_list(),
        );
        let core = core.with_auto(auto);
        let gate = WriteGate::new(View {
            gate: Gate::Paused,
            ..core.view()
        });
        Self {
            me,
            dir,
            core: tokio::sync::Mutex::new(core),
            first: Mutex::new(first),
            gate,
            file: Mutex::new(file),
            saving: tokio::sync::Mutex::new(()),
            fence,
            tasks: Mutex::new(Tasks::default()),
            stop: CancellationToken::new(),
            failovers: AtomicU64::new(0),
            election: Mutex::new(None),
            stand_after: Mutex::new(None),
        }
    }

    /// Does not stand again for `timeout` plus a random part of it (so two that lost together do
    /// not stand together again).
    pub fn back_off_standing(&self, timeout: Duration) {
        let pause = timeout.mul_f64(crate::random::in_range(1.0..1.5));
        *lock(&self.stand_after) = Some(Instant::now() + pause);
    }

    /// Whether it is backing off from standing.
    #[must_use]
    pub fn backing_off(&self) -> bool {
        lock(&self.stand_after).is_some_and(|t| Instant::now() < t)
    }

    /// Starts the tally of an election for `epoch` (this node's own vote counted).
    pub fn begin_election(&self, epoch: Epoch, needed: usize) {
        *lock(&self.election) = Some((
            epoch,
            vec![self.me.node_id.clone()],
            u32::try_from(needed).unwrap_or(u32::MAX),
            unix_ms(),
        ));
    }

    /// Counts a vote answer in the tally.
    pub fn note_vote(&self, epoch: Epoch, reply: &shared::cluster::VoteReply) {
        if let Some((e, votes, _, _)) = lock(&self.election).as_mut()
            && *e == epoch
            && reply.granted
            && !votes.contains(&reply.node.node_id)
        {
            votes.push(reply.node.node_id.clone());
        }
    }

    /// Ends the tally.
    pub fn end_election(&self) {
        *lock(&self.election) = None;
    }

    /// The election in progress, for status.
    #[must_use]
    pub fn election(&self) -> Option<shared::cluster::ElectionStatus> {
        super::election::status(lock(&self.election).clone(), &self.me)
    }

    /// This node as a member.
    #[must_use]
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The write gate.
    #[must_use]
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    /// The view: epoch, role, master, gate.
    #[must_use]
    pub fn view(&self) -> View {
        self.gate.view()
    }

    /// The role now.
    #[must_use]
    pub fn role(&self) -> Role {
        self.view().role
    }

    /// A copy of `cluster.json` as it is now.
    #[must_use]
    pub fn file(&self) -> ClusterFile {
        lock(&self.file).clone()
    }

    /// The cluster id, once known.
    #[must_use]
    pub fn cluster_id(&self) -> Option<String> {
        lock(&self.file).cluster_id.clone()
    }

    /// The state machine's state (for status and tests).
    pub async fn state(&self) -> State {
        self.core.lock().await.state().clone()
    }

    /// Changes `cluster.json` with `change` and, if it says something changed, writes it
    /// durably (on the blocking pool).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub async fn update_file(
        &self,
        change: impl FnOnce(&mut ClusterFile) -> bool,
    ) -> Result<ClusterFile, KvError> {
        let _turn = self.saving.lock().await;
        let snapshot = {
            let mut file = lock(&self.file);
            if !change(&mut file) {
                return Ok(file.clone());
            }
            file.clone()
        };
        let dir = self.dir.clone();
        let to_save = snapshot.clone();
        crate::blocking::run(move || to_save.save(&dir))
            .await
            .map_err(|e| {
                storage_error(&StorageError::Corrupt {
                    what: "cluster.json",
                    detail: e.to_string(),
                })
            })?
            .map_err(|e| storage_error(&e))?;
        Ok(snapshot)
    }

    /// Stops the follower and the master's duties (shutdown).
    pub async fn stop_tasks(&self) {
        self.stop.cancel();
        let (follower, master) = {
            let mut tasks = lock(&self.tasks);
            (tasks.follower.take(), tasks.master.take())
        };
        if let Some(f) = follower {
            f.stop().await;
        }
        if let Some(m) = master {
            m.stop().await;
        }
    }

    /// Every member of the membership but this node.
    #[must_use]
    pub fn others(&self) -> Vec<Member> {
        lock(&self.file)
            .member_list()
            .into_iter()
            .filter(|m| m.node_id != self.me.node_id)
            .collect()
    }

    /// The address the follower follows now, if one runs.
    #[must_use]
    pub fn following(&self) -> Option<String> {
        lock(&self.tasks)
            .follower
            .as_ref()
            .and_then(|f| f.address.clone())
    }
}

fn storage_error(e: &StorageError) -> KvError {
    KvError::Storage {
        shard: u32::MAX,
        message: format!("cluster.json: {e}"),
    }
}

/// Runs the commands of the start (the role the node comes back in).
pub async fn start(node: &Node) {
    let cmds = std::mem::take(&mut *lock(&node.cluster().first));
    let core = node.cluster().core.lock().await;
    let view = core.view();
    tracing::info!(
        role = view.role.as_str(),
        epoch = view.epoch,
        master = view
            .master
            .as_ref()
            .map_or("unknown", |m| m.address.as_str()),
        "cluster state at start"
    );
    for cmd in cmds {
        if let Err(e) = exec(node, &core, cmd).await {
            tracing::error!(error = %e, "cannot start the node's role");
        }
    }
}

/// Feeds `event` to the state machine and carries out its decision.
///
/// # Errors
/// The state machine's refusal, or a failure to persist.
pub async fn handle(node: &Node, event: Event) -> Result<(), KvError> {
    let mut core = node.cluster().core.lock().await;
    let before = core.clone();
    let cmds = core.handle(event)?;
    for cmd in cmds {
        let persist = matches!(cmd, Command::Persist { .. } | Command::Established { .. });
        if let Err(e) = exec(node, &core, cmd).await {
            if persist {
                // Nothing acted on it yet (Persist comes first): the decision is undone, so
                // memory never runs ahead of cluster.json.
                *core = before;
                tracing::error!(error = %e, "cannot persist the cluster state; the change is undone");
            }
            return Err(e);
        }
    }
    Ok(())
}

/// [`handle`] in a task of its own, for callers that a command may stop.
pub fn notify(node: &Node, event: Event) -> JoinHandle<Result<(), KvError>> {
    let node = node.clone();
    tokio::spawn(async move {
        let result = handle(&node, event).await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "cluster event refused");
        }
        result
    })
}

async fn exec(node: &Node, core: &Core, cmd: Command) -> Result<(), KvError> {
    let cluster = node.cluster();
    match cmd {
        Command::Persist { epoch, master } => {
            let before = cluster.file();
            let m = master.clone();
            cluster
                .update_file(move |f| {
                    let changed = f.epoch != epoch || f.master != m;
                    if changed {
                        f.established = false;
                    }
                    f.epoch = epoch;
                    f.master = m;
                    changed
                })
                .await?;
            cluster.fence.fetch_max(epoch, Ordering::AcqRel);
            if before.epoch == 0 {
                tracing::info!(epoch, "joined at epoch");
            } else if before.epoch != epoch {
                tracing::warn!(
                    epoch,
                    previous = before.epoch,
                    master = master.as_ref().map_or("unknown", |m| m.address.as_str()),
                    "new epoch"
                );
            }
        }
        Command::Established { epoch } => {
            cluster
                .update_file(move |f| {
                    let changed = f.epoch == epoch && !f.established;
                    if changed {
                        f.established = true;
                    }
                    changed
                })
                .await?;
        }
        Command::Publish(view) => {
            let before = cluster.gate.view();
            if before.role != view.role || before.epoch != view.epoch {
                tracing::info!(
                    role = view.role.as_str(),
                    epoch = view.epoch,
                    master = view
                        .master
                        .as_ref()
                        .map_or("unknown", |m| m.address.as_str()),
                    "role"
                );
            }
            if before.gate != view.gate {
                tracing::info!(gate = ?view.gate, epoch = view.epoch, "write gate");
            }
            if before.role != view.role && view.role == Role::Replica {
                // A new replica's promise starts now: no vote within the timeout of it.
                node.replica().touch();
            }
            cluster.gate.publish(view);
        }
        Command::StopFollowing => {
            let running = lock(&cluster.tasks).follower.take();
            if let Some(f) = running {
                f.stop().await;
            }
        }
        Command::Follow { address } => follow(node, Some(address)).await,
        Command::Discover => follow(node, None).await,
        Command::BecomeMaster => {
            let file = cluster.file();
            node.master().reset(&file.members, &cluster.me.node_id);
            let running = lock(&cluster.tasks).master.is_some();
            if !running {
                let cancel = cluster.stop.child_token();
                let task = {
                    let node = node.clone();
                    let cancel = cancel.clone();
                    tokio::spawn(async move { master_duties(node, cancel).await })
                };
                lock(&cluster.tasks).master = Some(Running {
                    cancel,
                    handle: task,
                    address: None,
                });
            }
        }
        Command::StopMaster => {
            let running = lock(&cluster.tasks).master.take();
            if let Some(m) = running {
                m.stop().await;
            }
            save_last_seen(node).await;
        }
        Command::Announce { probe } => {
            let others = core.others();
            let node = node.clone();
            tokio::spawn(async move { announce(&node, others, probe).await });
        }
        Command::RequestVotes => {
            let node = node.clone();
            tokio::spawn(async move { super::election::request_votes(&node).await });
        }
        Command::CatchUp { epoch, from } => {
            let node = node.clone();
            let cancel = cluster.stop.child_token();
            tokio::spawn(async move { catch_up_from_majority(&node, epoch, from, &cancel).await });
        }
    }
    Ok(())
}

/// How long one round of a new master's catch-up from its majority may take before it is tried
/// again (a round that fails, an acceptor that does not answer, leaves writes held).
const CATCH_UP_ROUND: Duration = Duration::from_secs(10);

/// A new master of `epoch`, with its majority: fetches, shard by shard, what the most advanced
/// acceptor holds past this node's position, then reports `CaughtUp`. Until it can, writes stay
/// held (an acceptor that holds writes nobody else has must be heard from); it gives up only
/// when the node is no longer taking that epoch.
async fn catch_up_from_majority(
    node: &Node,
    epoch: Epoch,
    from: Vec<super::state::Acceptance>,
    cancel: &CancellationToken,
) {
    let started = Instant::now();
    let mut fetched = 0u64;
    loop {
        let view = node.cluster().view();
        if view.epoch != epoch || view.role != Role::Master || cancel.is_cancelled() {
            return;
        }
        let mine = positions(node);
        let mut failed = None;
        for own in &mine {
            let best = from
                .iter()
                .filter_map(|(m, p)| p.get(own.shard as usize).map(|p| (m, *p)))
                .filter(|(_, p)| *p > own.pos)
                .max_by_key(|(_, p)| *p);
            let Some((member, target)) = best else {
                continue;
            };
            let deadline = Instant::now() + CATCH_UP_ROUND;
            match crate::replication::replica::catch_up(
                node,
                &member.address,
                own.shard,
                target,
                deadline,
            )
            .await
            {
                Ok(n) => {
                    fetched += n;
                    tracing::info!(
                        shard = own.shard,
                        from = %member.address,
                        entries = n,
                        to = %target,
                        "new master caught up from an acceptor of its epoch"
                    );
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                tracing::info!(
                    epoch,
                    entries = fetched,
                    ms = started.elapsed().as_millis(),
                    "new master has what its majority holds: admitting writes"
                );
                let _ = notify(node, Event::CaughtUp { epoch }).await;
                return;
            }
            Some(e) => tracing::warn!(
                epoch,
                error = %e,
                "new master cannot catch up from its majority yet; writes stay held, retrying"
            ),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(ASK_EVERY) => {}
        }
    }
}

async fn follow(node: &Node, address: Option<String>) {
    let cluster = node.cluster();
    if cluster.stop.is_cancelled() {
        return;
    }
    let previous = {
        let mut tasks = lock(&cluster.tasks);
        if let Some(f) = &tasks.follower
            && f.address == address
            && !f.handle.is_finished()
        {
            return;
        }
        tasks.follower.take()
    };
    if let Some(f) = previous {
        f.stop().await;
    }
    match &address {
        Some(a) => tracing::info!(master = %a, "following the master"),
        None => tracing::warn!("the master is not known; asking the members"),
    }
    let cancel = cluster.stop.child_token();
    let task = {
        let node = node.clone();
        let cancel = cancel.clone();
        let address = address.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::replication::replica::run(&node, address, cancel).await {
                node.fail(e);
            }
        })
    };
    lock(&cluster.tasks).follower = Some(Running {
        cancel,
        handle: task,
        address,
    });
}

/// The hello this node sends: its epoch and master.
#[must_use]
pub fn hello_request(node: &Node) -> HelloRequest {
    let view = node.cluster().view();
    HelloRequest {
        from: node.cluster().me.clone(),
        cluster_id: node.cluster().cluster_id().unwrap_or_default(),
        epoch: view.epoch,
        master: view.master,
    }
}

/// [`notify`] without waiting for the outcome (it is logged at debug level if refused).
pub fn tell(node: &Node, event: Event) {
    drop(notify(node, event));
}

/// Sends a `hello` to `member` and feeds the answer to the state machine; the answer, or why
/// there is none.
pub async fn say_hello(node: &Node, member: &Member) -> Result<HelloReply, String> {
    let req = hello_request(node);
    let reply =
        super::peers::hello(node.peer_credentials(), &member.address, req, HELLO_TIMEOUT).await?;
    if node.cluster().cluster_id().as_deref() != Some(reply.cluster_id.as_str()) {
        return Err(format!(
            "{} belongs to cluster {}, not this one",
            member.address, reply.cluster_id
        ));
    }
    let mut shards = reply.shards.clone();
    shards.sort_by_key(|s| s.shard);
    let event = Event::HelloReply {
        from: reply.node.clone(),
        epoch: reply.epoch,
        master: reply.master.clone(),
        positions: shards.iter().map(|s| s.pos).collect(),
    };
    // Wait for the event only to keep the order of answers; a refusal is nothing to report.
    let _ = notify(node, event).await;
    Ok(reply)
}

/// Says hello to every member in `others`; with `probe`, reports `ProbeDone` once all answered
/// or [`HELLO_TIMEOUT`] passed.
async fn announce(node: &Node, others: Vec<Member>, probe: bool) {
    let asks = others.iter().map(|m| say_hello(node, m));
    let answers = futures::future::join_all(asks).await;
    for (m, a) in others.iter().zip(&answers) {
        if let Err(e) = a {
            tracing::debug!(node_id = %m.node_id, address = %m.address, error = %e, "no answer to hello");
        }
    }
    if probe {
        let answered = answers.iter().filter(|a| a.is_ok()).count();
        tracing::info!(
            answered,
            members = others.len(),
            "asked the members for their epoch before taking writes"
        );
        let _ = notify(node, Event::ProbeDone).await;
    }
}

/// The master's duties while it is master: mark silent replicas down and ask them for their
/// epoch; while writes are held (a new epoch waiting for its majority), keep asking everyone;
/// now and then write down when replicas were last seen.
async fn master_duties(node: Node, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(DUTY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = Instant::now();
    let mut announced = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ask = node.master().sweep(ASK_EVERY);
        let view = node.cluster().view();
        let others = node.cluster().others();
        // A new epoch waiting for its majority keeps asking everyone; a switchover's pause
        // does not (the target's take_over decides it).
        let holding = view.role == Role::Master && !view.serving;
        let targets = if holding && announced.elapsed() >= ASK_EVERY {
            announced = Instant::now();
            others
        } else {
            ask
        };
        let targets_were_empty = targets.is_empty();
        if holding && node.config().auto_failover && !targets.is_empty() {
            // A new epoch in auto mode is gathered by votes only: a hello would be accepted
            // unconditionally, and could depose a master whose lease still runs.
            let node = node.clone();
            tokio::spawn(async move { super::election::request_votes(&node).await });
        } else {
            for member in targets.clone() {
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = say_hello(&node, &member).await {
                        tracing::debug!(node_id = %member.node_id, error = %e, "silent replica did not answer hello");
                    }
                });
            }
        }
        // Now and then, and soon after a replica went silent: "down since" must survive a
        // restart of this master.
        let newly_silent = !targets_were_empty && saved.elapsed() >= ASK_EVERY;
        if newly_silent || saved.elapsed() >= SAVE_LAST_SEEN_EVERY {
            saved = Instant::now();
            save_last_seen(&node).await;
        }
    }
}

/// Writes down in `cluster.json` when each replica was last heard from.
pub async fn save_last_seen(node: &Node) {
    let seen = node.master().last_seen();
    let result = node
        .cluster()
        .update_file(|f| {
            let mut changed = false;
            for m in &mut f.members {
                if let Some((_, Some(t))) = seen.iter().find(|(id, _)| *id == m.node_id)
                    && m.last_seen_unix_ms != Some(*t)
                {
                    m.last_seen_unix_ms = Some(*t);
                    changed = true;
                }
            }
            changed
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot write down when replicas were last seen");
    }
}

/// This node's position on every shard.
#[must_use]
pub fn positions(node: &Node) -> Vec<ShardPosition> {
    let master = node.cluster().role() == Role::Master;
    (0..node.config().shards)
        .filter_map(|i| {
            let shard = node.shard_at(i).ok()?;
            let pos = shard.writer.last_pos();
            let repl = node.replica().shard(i);
            Some(ShardPosition {
                shard: i,
                pos,
                master_seq: if master {
                    pos.seq
                } else {
                    repl.map_or(0, |r| r.master_seq.load(Ordering::Relaxed))
                        .max(pos.seq)
                },
                resyncing: !master && repl.is_some_and(|r| r.resyncing.load(Ordering::Acquire)),
            })
        })
        .collect()
}

/// Serves a peer's `hello`: adopts a higher epoch (persisted first), refuses a second master
/// for an epoch, and answers with this node's view and positions.
///
/// # Errors
/// `ClusterMismatch` for a node of another cluster; `FailoverRefused` for a second master.
pub async fn on_hello(node: &Node, req: HelloRequest) -> Result<HelloReply, KvError> {
    let cluster = node.cluster();
    match cluster.cluster_id() {
        Some(mine) if mine == req.cluster_id => {
            handle(
                node,
                Event::Hello {
                    epoch: req.epoch,
                    master: req.master,
                },
            )
            .await?;
        }
        Some(mine) => {
            return Err(KvError::ClusterMismatch {
                master: req.from.address,
                master_cluster: req.cluster_id,
                replica_cluster: mine,
            });
        }
        // A node that has not joined any cluster yet only answers.
        None => {}
    }
    Ok(hello_reply(node))
}

/// This node's view, as a `hello` answer.
#[must_use]
pub fn hello_reply(node: &Node) -> HelloReply {
    let cluster = node.cluster();
    let view = cluster.view();
    HelloReply {
        node: cluster.me.clone(),
        cluster_id: cluster.cluster_id().unwrap_or_default(),
        epoch: view.epoch,
        master: view.master,
        role: view.role,
        shards: positions(node),
        link_up: view.role == Role::Master || node.replica().link().state == shared::LinkState::Up,
    }
}

/// Records the last failover in `cluster.json` and counts it.
pub async fn record_failover(node: &Node, record: shared::cluster::FailoverRecord) {
    node.cluster().failovers.fetch_add(1, Ordering::Relaxed);
    let result = node
        .cluster()
        .update_file(move |f| {
            f.last_failover = Some(record);
            true
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record the failover in cluster.json");
    }
}

/// Milliseconds since the Unix epoch (for failover records).
#[must_use]
pub fn now_unix_ms() -> u64 {
    unix_ms()
}

/// The epoch the writers are fenced at.
#[must_use]
pub fn fence(node: &Node) -> Epoch {
    node.cluster().fence.load(Ordering::Acquire)
}
