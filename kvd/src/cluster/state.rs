//! The role and epoch state machine: every decision about who is master, in which epoch, and
//! whether writes are admitted, as a pure function of events (openraft's engine habit).
//!
//! ```text
//!   events ──> Core::handle ──> commands, in order ──> the runtime (cluster/runtime.rs) does
//!   (a peer's epoch, a hello,     Persist (fsync!) first,          the I/O: cluster.json, the
//!    a switchover step, a          then Publish the view,           write gate, the follower,
//!    promotion, a timer)           Follow / BecomeMaster / ...      the master's duties, hellos
//!
//!                     Heard higher epoch (any state)
//!          ┌────────────────────────────────────────────────────┐
//!          v                                                    │
//!      Replica ──TakeOver / Promote──> Establishing ──majority──> CatchingUp ─CaughtUp─> Master ─Pause─> Paused
//!          ^                                 ^                    ^  ^               │ │
//!          │      start, master of my epoch  │                    │  └────Resume─────┘ │
//!          │   Probing ──ProbeDone───────────┼────────────────────┘                    │
//!          │                                 └─────────Reclaim (E+2)──── HandingOver <─┘
//!          └──────────────────────HandedOver──────────────────────────────┘   HandOver
//! ```
//!
//! Invariants it keeps: the epoch never goes down; a node accepts one master per epoch (a
//! `hello` naming another master for an epoch it already accepted is refused), and never itself
//! for an epoch it did not take; a node admits writes only as the master of its own epoch, and a
//! new epoch only once a majority of the membership accepted it (unless forced) **and** it has
//! caught up from the most advanced of those acceptors (their answers carry their positions), so
//! a write that a majority held survives the change of master (the model check found the hole
//! without this step: `kvd/tests/model.rs`); a new master serves no pulls before that;
//! `Persist` comes before any command that acts on a new epoch or master.

use std::collections::BTreeMap;

use shared::{
    KvError, Role,
    cluster::{Epoch, LogPos, Member},
};

/// An acceptance of this node's epoch: who, and its last position on every shard when it
/// accepted.
pub type Acceptance = (Member, Vec<LogPos>);

/// What the node is doing in its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Following the master of the epoch (or looking for it).
    Replica,
    /// Master of its epoch after a restart, asking the members for theirs before any write.
    Probing,
    /// Master of a new epoch, waiting until a majority accepted it.
    Establishing {
        /// Members that accepted (this node excluded), with their positions.
        accepted: BTreeMap<String, Acceptance>,
    },
    /// Master of a new epoch with its majority, fetching what the most advanced acceptor holds
    /// before it serves a pull or admits a write.
    CatchingUp,
    /// Master admitting writes.
    Master,
    /// Master with writes paused for a switchover to `target`.
    Paused {
        /// The replica taking over.
        target: Member,
    },
    /// Master that handed the next epoch to `target` and waits for its answer.
    HandingOver {
        /// The replica taking over.
        target: Member,
    },
}

/// Whether writes are admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Admitted, tagged with the view's epoch.
    Open,
    /// Held: they wait until the gate opens or closes (a switchover, a start-up probe, a new
    /// epoch waiting for its majority).
    Paused,
    /// Refused with `NotMaster`.
    Closed,
}

/// What the rest of the node reads: the one answer to "who is master, and may I write?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The epoch.
    pub epoch: Epoch,
    /// Master or replica.
    pub role: Role,
    /// The master of the epoch, when known.
    pub master: Option<Member>,
    /// The write gate.
    pub gate: Gate,
    /// Whether replicas' pulls are served (a master; not a new one before it caught up from its
    /// majority, since an acceptor that truncated first would give up what it must send).
    pub serving: bool,
}

/// Something that happened, for the state machine to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's request or reply named an epoch and, if it said, that epoch's master.
    Heard {
        /// The epoch.
        epoch: Epoch,
        /// Its master.
        master: Option<Member>,
    },
    /// The master this node followed answered `NotMaster`, naming another address.
    Redirected {
        /// The epoch it named.
        epoch: Epoch,
        /// Where to go.
        address: Option<String>,
    },
    /// The follower joined a master.
    Joined {
        /// The master.
        master: Member,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A peer's `hello`: it holds `epoch` with `master`.
    Hello {
        /// The epoch.
        epoch: Epoch,
        /// Its master.
        master: Option<Member>,
    },
    /// A peer answered our `hello`: it holds `epoch` with `master`.
    HelloReply {
        /// Who answered.
        from: Member,
        /// Its epoch.
        epoch: Epoch,
        /// Its master.
        master: Option<Member>,
        /// Its last position on every shard.
        positions: Vec<LogPos>,
    },
    /// The start-up probe is over and found no higher epoch.
    ProbeDone,
    /// Switchover: pause writes for `target`.
    Pause {
        /// The replica taking over.
        target: Member,
    },
    /// Switchover called off before the hand-over: writes resume.
    Resume,
    /// Switchover: the target has everything; give it the next epoch.
    HandOver,
    /// Switchover: the target took over.
    HandedOver,
    /// Switchover: the hand-over failed or its outcome is unknown; take the epoch after it.
    Reclaim,
    /// The old master asks this replica to take over at `epoch`.
    TakeOver {
        /// The old master.
        from: Member,
        /// The epoch to take.
        epoch: Epoch,
        /// Whether this node has applied every position the old master named.
        caught_up: bool,
        /// Whether a shard is in a full resync here.
        resyncing: bool,
        /// The old master's positions (it accepted the new epoch when it handed it over).
        positions: Vec<LogPos>,
    },
    /// The catch-up from the acceptors of `epoch` is done.
    CaughtUp {
        /// The epoch it was for.
        epoch: Epoch,
    },
    /// The operator promotes this replica; `highest` is the highest epoch any member reported.
    Promote {
        /// The highest epoch known among the members.
        highest: Epoch,
        /// Skip the majority (a cluster that lost it).
        force: bool,
    },
    /// The membership changed (this node included).
    Members(Vec<Member>),
    /// A promotion is about to catch up from other replicas: stop following the old master.
    Detach,
    /// The promotion was called off: follow the master again.
    Reattach,
    /// Automatic failover: the election for `epoch` got no majority in time; the candidate steps
    /// back (a replica of that epoch, its master unknown) and a later election takes the next.
    ElectionLost {
        /// The epoch stood for.
        epoch: Epoch,
    },
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write the epoch and its master to `cluster.json` (fsync) before anything else; the
    /// epoch is not established by this node (yet).
    Persist {
        /// The epoch.
        epoch: Epoch,
        /// Its master.
        master: Option<Member>,
    },
    /// Write to `cluster.json` (fsync) that this node established `epoch` as its master (a
    /// majority accepted it and it caught up from it), before the gate opens for its writes.
    Established {
        /// The epoch.
        epoch: Epoch,
    },
    /// Publish the view (the write gate follows it).
    Publish(View),
    /// Stop the follower, if one runs.
    StopFollowing,
    /// (Re)start the follower toward this address.
    Follow {
        /// The master's address.
        address: String,
    },
    /// The master is not known: ask the members.
    Discover,
    /// Start the master's duties (the registry of replicas from the membership, the sweep).
    BecomeMaster,
    /// Stop them.
    StopMaster,
    /// Send `hello` with this node's epoch to every member (a new master, or a probe at
    /// start-up, which then reports `ProbeDone`).
    Announce {
        /// Whether this is the start-up probe.
        probe: bool,
    },
    /// Automatic failover: ask every member for its vote for this node's epoch (a conditional
    /// acceptance: `docs/auto-failover.md`); granted votes come back as `HelloReply` events.
    RequestVotes,
    /// Fetch, shard by shard, what the most advanced of these acceptors holds past this node's
    /// position (by the divergence rule), then report `CaughtUp { epoch }`.
    CatchUp {
        /// The epoch being taken.
        epoch: Epoch,
        /// The acceptors and their positions.
        from: Vec<Acceptance>,
    },
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Core {
    me: Member,
    epoch: Epoch,
    master: Option<Member>,
    /// Where to look for the master when it is not known (the `--master` flag, a redirect).
    seed: Option<String>,
    members: Vec<Member>,
    state: State,
    /// Automatic failover: a new epoch is gathered by votes, which a node grants only under
    /// conditions, instead of by hellos, which fence unconditionally.
    auto: bool,
}

fn same(a: &Member, b: &Member) -> bool {
    a.node_id == b.node_id
}

impl Core {
    /// The state after a start: `epoch` and `master` as persisted (or from the flags for a new
    /// node), `seed` the `--master` address. A node that is the master of its own epoch starts
    /// probing if it had `established` that epoch (a node without members beyond itself starts
    /// as master at once), and gathers its majority again if it had not.
    ///
    /// Returns the core and the commands to run first.
    #[must_use]
    pub fn start(
        me: Member,
        epoch: Epoch,
        master: Option<Member>,
        established: bool,
        seed: Option<String>,
        members: Vec<Member>,
    ) -> (Self, Vec<Command>) {
        let mut core = Self {
            me,
            epoch,
            master,
            seed,
            members,
            state: State::Replica,
            auto: false,
        };
        let is_master = core.master.as_ref().is_some_and(|m| same(m, &core.me));
        let cmds = if is_master && !established {
            // Taken, never established (a crash before its majority answered): ask again.
            core.state = State::Establishing {
                accepted: BTreeMap::new(),
            };
            let mut cmds = vec![Command::BecomeMaster];
            let reached = core.majority_reached();
            if reached.is_empty() {
                cmds.push(Command::Publish(core.view()));
            }
            cmds.extend(reached);
            cmds.push(core.gather());
            cmds
        } else if is_master {
            if core.others().is_empty() {
                core.state = State::Master;
                vec![Command::BecomeMaster, Command::Publish(core.view())]
            } else {
                core.state = State::Probing;
                vec![
                    Command::BecomeMaster,
                    Command::Publish(core.view()),
                    Command::Announce { probe: true },
                ]
            }
        } else {
            let mut cmds = vec![Command::Publish(core.view())];
            cmds.push(core.follow_command());
            cmds
        };
        (core, cmds)
    }

    /// Sets automatic failover on (a new epoch is gathered by votes). Call before the first
    /// event; the commands of [`Core::start`] are the same either way but for `RequestVotes` in
    /// place of an `Announce` when the node restarts into an epoch it never established, which
    /// the caller handles by asking for votes itself.
    #[must_use]
    pub fn with_auto(mut self, auto: bool) -> Self {
        self.auto = auto;
        self
    }

    /// How this node gathers acceptances of its new epoch.
    fn gather(&self) -> Command {
        if self.auto {
            Command::RequestVotes
        } else {
            Command::Announce { probe: false }
        }
    }

    /// The view the node publishes.
    #[must_use]
    pub fn view(&self) -> View {
        let (role, gate, serving) = match &self.state {
            State::Replica => (Role::Replica, Gate::Closed, false),
            State::Master => (Role::Master, Gate::Open, true),
            State::Probing | State::Paused { .. } | State::HandingOver { .. } => {
                (Role::Master, Gate::Paused, true)
            }
            State::Establishing { .. } | State::CatchingUp => (Role::Master, Gate::Paused, false),
        };
        View {
            epoch: self.epoch,
            role,
            master: self.master.clone(),
            gate,
            serving,
        }
    }

    /// The state.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The master of the epoch.
    #[must_use]
    pub fn master(&self) -> Option<&Member> {
        self.master.as_ref()
    }

    /// The members (this node included).
    #[must_use]
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The members other than this node.
    #[must_use]
    pub fn others(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter(|m| !same(m, &self.me))
            .cloned()
            .collect()
    }

    /// How many acceptances make a majority of the membership.
    #[must_use]
    pub fn majority(&self) -> usize {
        let n = self.members.len().max(1)
            + usize::from(!self.members.iter().any(|m| same(m, &self.me)));
        n / 2 + 1
    }

    fn is_master_role(&self) -> bool {
        !matches!(self.state, State::Replica)
    }

    fn follow_command(&self) -> Command {
        match self
            .master
            .as_ref()
            .map(|m| m.address.clone())
            .or_else(|| self.seed.clone())
        {
            Some(address) => Command::Follow { address },
            None => Command::Discover,
        }
    }

    /// Adopts a higher epoch: persisted first, then a master steps down, then follow.
    fn adopt(&mut self, epoch: Epoch, master: Option<Member>) -> Vec<Command> {
        let mut cmds = vec![Command::Persist {
            epoch,
            master: master.clone(),
        }];
        let was_master = self.is_master_role();
        self.epoch = epoch;
        self.master = master;
        self.state = State::Replica;
        if was_master {
            cmds.push(Command::StopMaster);
        }
        cmds.push(Command::Publish(self.view()));
        cmds.push(self.follow_command());
        cmds
    }

    /// Takes `epoch` as its master: persisted, then the master's duties, then ask the members;
    /// writes wait for a majority and the catch-up from it (`force`: neither).
    fn establish(
        &mut self,
        epoch: Epoch,
        accepted: BTreeMap<String, Acceptance>,
        force: bool,
    ) -> Vec<Command> {
        self.epoch = epoch;
        self.master = Some(self.me.clone());
        let mut cmds = vec![
            Command::Persist {
                epoch,
                master: self.master.clone(),
            },
            Command::StopFollowing,
            Command::BecomeMaster,
        ];
        if force {
            self.state = State::Master;
            cmds.push(Command::Established { epoch });
            cmds.push(Command::Publish(self.view()));
            cmds.push(Command::Announce { probe: false });
        } else {
            self.state = State::Establishing { accepted };
            let reached = self.majority_reached();
            if reached.is_empty() {
                cmds.push(Command::Publish(self.view()));
            }
            cmds.extend(reached);
            cmds.push(self.gather());
        }
        cmds
    }

    /// In `Establishing` with a majority (this node and its acceptors): on to `CatchingUp`.
    fn majority_reached(&mut self) -> Vec<Command> {
        let State::Establishing { accepted } = &self.state else {
            return Vec::new();
        };
        let count = 1 + accepted.keys().filter(|id| **id != self.me.node_id).count();
        if count < self.majority() {
            return Vec::new();
        }
        let from: Vec<Acceptance> = accepted
            .values()
            .filter(|(m, _)| !same(m, &self.me))
            .cloned()
            .collect();
        self.state = State::CatchingUp;
        vec![
            Command::Publish(self.view()),
            Command::CatchUp {
                epoch: self.epoch,
                from,
            },
        ]
    }

    /// Decides on `event`.
    ///
    /// # Errors
    /// A refusal the caller reports: a switchover step out of order, a take-over or promotion
    /// that must not happen, a `hello` naming a second master for an epoch.
    #[allow(clippy::too_many_lines)]
    pub fn handle(&mut self, event: Event) -> Result<Vec<Command>, KvError> {
        match event {
            Event::Heard { epoch, master } => Ok(self.heard(epoch, master)),
            Event::Hello { epoch, master } => self.hello(epoch, master),
            Event::HelloReply {
                from,
                epoch,
                master,
                positions,
            } => {
                if epoch > self.epoch {
                    return Ok(self.heard(epoch, master));
                }
                let accepted_me =
                    epoch == self.epoch && master.as_ref().is_some_and(|m| same(m, &self.me));
                if let State::Establishing { accepted } = &mut self.state
                    && accepted_me
                {
                    accepted.insert(from.node_id.clone(), (from, positions));
                    return Ok(self.majority_reached());
                }
                Ok(Vec::new())
            }
            Event::CaughtUp { epoch } => {
                if self.state == State::CatchingUp && epoch == self.epoch {
                    self.state = State::Master;
                    let mut cmds = vec![
                        Command::Established { epoch },
                        Command::Publish(self.view()),
                    ];
                    if self.auto {
                        // Votes were asked under conditions; now that it is the master, every
                        // member hears of it (an old master too, which steps down).
                        cmds.push(Command::Announce { probe: false });
                    }
                    Ok(cmds)
                } else {
                    Ok(Vec::new())
                }
            }
            Event::Redirected { epoch, address } => {
                if epoch > self.epoch {
                    self.seed.clone_from(&address);
                    return Ok(self.adopt(epoch, None));
                }
                if self.state == State::Replica
                    && let Some(address) = address
                    && self.master.is_none()
                {
                    self.seed = Some(address.clone());
                    return Ok(vec![Command::Follow { address }]);
                }
                Ok(Vec::new())
            }
            Event::Joined { master, epoch } => {
                if epoch > self.epoch {
                    // Adopt without a restart of the follower: it is already there.
                    self.epoch = epoch;
                    self.master = Some(master.clone());
                    let was_master = self.is_master_role();
                    self.state = State::Replica;
                    let mut cmds = vec![Command::Persist {
                        epoch,
                        master: Some(master),
                    }];
                    if was_master {
                        cmds.push(Command::StopMaster);
                    }
                    cmds.push(Command::Publish(self.view()));
                    return Ok(cmds);
                }
                if epoch < self.epoch {
                    return Err(KvError::StaleEpoch {
                        got: epoch,
                        epoch: self.epoch,
                        master: self.master.as_ref().map(|m| m.address.clone()),
                    });
                }
                match &self.master {
                    None => {
                        self.master = Some(master.clone());
                        Ok(vec![
                            Command::Persist {
                                epoch,
                                master: Some(master),
                            },
                            Command::Publish(self.view()),
                        ])
                    }
                    Some(m) if same(m, &master) && m.address == master.address => Ok(Vec::new()),
                    Some(m) if same(m, &master) => {
                        self.master = Some(master.clone());
                        Ok(vec![
                            Command::Persist {
                                epoch,
                                master: Some(master),
                            },
                            Command::Publish(self.view()),
                        ])
                    }
                    Some(m) => Err(KvError::FailoverRefused {
                        reason: format!(
                            "the node at {} says it is the master of epoch {epoch}, but this \
                             node accepted {} at {} for that epoch; not following it",
                            master.address, m.node_id, m.address
                        ),
                    }),
                }
            }
            Event::ProbeDone => {
                if self.state == State::Probing {
                    self.state = State::Master;
                    Ok(vec![Command::Publish(self.view())])
                } else {
                    Ok(Vec::new())
                }
            }
            Event::Pause { target } => match self.state {
                State::Master => {
                    self.state = State::Paused { target };
                    Ok(vec![Command::Publish(self.view())])
                }
                State::Paused { .. } | State::HandingOver { .. } => Err(KvError::FailoverRefused {
                    reason: "a switchover is already in progress on this master; wait for it"
                        .into(),
                }),
                _ => Err(self.not_ready()),
            },
            Event::Resume => {
                if matches!(self.state, State::Paused { .. }) {
                    self.state = State::Master;
                    Ok(vec![Command::Publish(self.view())])
                } else {
                    Ok(Vec::new())
                }
            }
            Event::HandOver => {
                let State::Paused { target } = &self.state else {
                    return Err(KvError::FailoverRefused {
                        reason: "no switchover is paused on this master".into(),
                    });
                };
                let target = target.clone();
                self.epoch += 1;
                self.master = Some(target.clone());
                self.state = State::HandingOver {
                    target: target.clone(),
                };
                Ok(vec![
                    Command::Persist {
                        epoch: self.epoch,
                        master: Some(target),
                    },
                    Command::Publish(self.view()),
                ])
            }
            Event::HandedOver => {
                let State::HandingOver { target } = &self.state else {
                    return Ok(Vec::new());
                };
                let address = target.address.clone();
                self.state = State::Replica;
                Ok(vec![
                    Command::StopMaster,
                    Command::Publish(self.view()),
                    Command::Follow { address },
                ])
            }
            Event::Reclaim => {
                if !matches!(self.state, State::HandingOver { .. }) {
                    return Ok(Vec::new());
                }
                let next = self.epoch + 1;
                Ok(self.establish(next, BTreeMap::new(), false))
            }
            Event::TakeOver {
                from,
                epoch,
                caught_up,
                resyncing,
                positions,
            } => {
                let refuse = |reason: String| Err(KvError::FailoverRefused { reason });
                if self.state != State::Replica {
                    return refuse(format!(
                        "this node is not a replica (epoch {}); it cannot take over",
                        self.epoch
                    ));
                }
                if !self.master.as_ref().is_some_and(|m| same(m, &from)) {
                    return refuse(format!(
                        "this replica does not follow {} at {} in epoch {}; refusing its hand-over",
                        from.node_id, from.address, self.epoch
                    ));
                }
                if epoch != self.epoch + 1 {
                    return refuse(format!(
                        "a hand-over to epoch {epoch} does not follow this replica's epoch {}",
                        self.epoch
                    ));
                }
                if resyncing {
                    return refuse("a shard of this replica is in a full resync".into());
                }
                if !caught_up {
                    return refuse(
                        "this replica has not applied every position the master named".into(),
                    );
                }
                // The old master accepted the epoch when it handed it over.
                let accepted = BTreeMap::from([(from.node_id.clone(), (from, positions))]);
                Ok(self.establish(epoch, accepted, false))
            }
            Event::Promote { highest, force } => {
                if self.state != State::Replica {
                    return Err(KvError::FailoverRefused {
                        reason: format!(
                            "this node is already the master of epoch {}; nothing to promote",
                            self.epoch
                        ),
                    });
                }
                let next = self.epoch.max(highest) + 1;
                Ok(self.establish(next, BTreeMap::new(), force))
            }
            Event::ElectionLost { epoch } => {
                if epoch != self.epoch || !matches!(self.state, State::Establishing { .. }) {
                    return Ok(Vec::new());
                }
                // It stood and lost: no longer its own master for the epoch, so it may accept
                // the winner (it will never count votes for this epoch again).
                self.master = None;
                self.state = State::Replica;
                Ok(vec![
                    Command::Persist {
                        epoch,
                        master: None,
                    },
                    Command::StopMaster,
                    Command::Publish(self.view()),
                    Command::Discover,
                ])
            }
            Event::Detach => Ok(if self.state == State::Replica {
                vec![Command::StopFollowing]
            } else {
                Vec::new()
            }),
            Event::Reattach => Ok(if self.state == State::Replica {
                vec![self.follow_command()]
            } else {
                Vec::new()
            }),
            Event::Members(members) => {
                self.members = members;
                Ok(self.majority_reached())
            }
        }
    }

    fn not_ready(&self) -> KvError {
        match &self.state {
            State::Replica => KvError::NotMaster {
                master: self.master.as_ref().map(|m| m.address.clone()),
                epoch: self.epoch,
            },
            _ => KvError::FailoverRefused {
                reason: format!(
                    "this master does not admit writes yet (epoch {}: it is asking the members \
                     for theirs); retry in a moment",
                    self.epoch
                ),
            },
        }
    }

    fn heard(&mut self, epoch: Epoch, master: Option<Member>) -> Vec<Command> {
        // Nobody makes this node the master of an epoch it did not take (a hand-over's hello
        // can arrive before the take_over itself): the take_over decides, or the old master
        // takes the epoch after it.
        if master.as_ref().is_some_and(|m| same(m, &self.me))
            && !(epoch == self.epoch && self.is_master_role())
        {
            return Vec::new();
        }
        if epoch > self.epoch {
            return self.adopt(epoch, master);
        }
        if epoch == self.epoch
            && self.master.is_none()
            && let Some(m) = master
        {
            self.master = Some(m.clone());
            let mut cmds = vec![
                Command::Persist {
                    epoch,
                    master: Some(m),
                },
                Command::Publish(self.view()),
            ];
            if self.state == State::Replica {
                cmds.push(self.follow_command());
            }
            return cmds;
        }
        Vec::new()
    }

    fn hello(&mut self, epoch: Epoch, master: Option<Member>) -> Result<Vec<Command>, KvError> {
        if epoch == self.epoch
            && let (Some(mine), Some(theirs)) = (&self.master, &master)
            && !same(mine, theirs)
        {
            return Err(KvError::FailoverRefused {
                reason: format!(
                    "epoch {epoch} already has a master here ({} at {}); {} at {} cannot be \
                     another",
                    mine.node_id, mine.address, theirs.node_id, theirs.address
                ),
            });
        }
        Ok(self.heard(epoch, master))
    }
}

#[cfg(test)]
#[path = "state_test.rs"]
mod tests;
