//! The failover action (`F`) as state and update, with no I/O: a **switchover** when the master
//! answers, a **promotion** when it does not. The nodes compute the plans; the console shows
//! them, lets the operator pick the candidate (and `--force` a promotion that loses writes),
//! asks for the first characters of the candidate's node id, then has the worker make the real
//! call, and shows its progress and outcome with the `kvctl` command line it amounts to.
//!
//! ```text
//!  F ─► a master answers?  yes: Switchover: plan asked of the master (to: its own pick)
//!                          no:  Promotion:  plan asked of the first replica that answers
//!  Plan ─ ↑↓  another candidate: its plan is asked (the node judges, not the console)
//!       ─ f   --force on / off (promotion): the plan is asked again with it
//!       ─ r   the plan asked again
//!       ─ ⏎   only when the plan for that candidate lets it go ahead ─► Confirm
//!  Confirm ─ the first 4+ characters of the candidate's node id, ⏎ ─► Running (the call)
//!          └ ⏎ with a wrong or short prefix: says so, nothing is sent
//!  Running ─ Reply::FailedOver ─► Done: new master, epoch, pause / caught up; or the refusal
//!  Esc: before Running, cancels (nothing was sent); while Running, hides the popup (the call
//!  goes on, and its outcome goes to the status bar)
//! ```
//!
//! Plan answers carry the request number they answer: one that arrives after the operator
//! picked another candidate (or closed the popup) is dropped.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use shared::{
    Role,
    cluster::{FailoverPlan, Member, PromotionPlan},
};

use super::{App, Command, Conn, Popup, READ_ONLY, Screen, StatusKind, move_selection};
use crate::tui::{
    event::{FailoverDone, Failure},
    input::Input,
    shell,
};

/// Characters of the candidate's node id the operator types to confirm (all of it when the id
/// is shorter).
pub const CONFIRM_CHARS: usize = 4;

/// Which procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    /// `kvctl failover`: the live master hands over (nothing is lost).
    Switchover,
    /// `kvctl promote`: a replica takes over from a master that is gone.
    Promotion,
}

impl FailoverKind {
    /// The noun, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::Promotion => "promotion",
        }
    }
}

/// A plan as a node computed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The master's switchover plan.
    Switchover(FailoverPlan),
    /// The candidate's promotion plan.
    Promotion(PromotionPlan),
}

/// A plan to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRequest {
    /// The master's switchover plan; `to`: a replica's node id (`None`: the master picks).
    Switchover {
        /// `--to`.
        to: Option<String>,
    },
    /// The candidate's promotion plan, asked of the candidate itself.
    Promotion {
        /// The replica to promote.
        candidate: Member,
        /// `--force`.
        force: bool,
    },
}

/// A switchover or a promotion to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverAction {
    /// `kvctl failover --to <node id>`, sent to the master.
    Switchover {
        /// The replica to hand over to.
        to: Member,
        /// Sent as `timeout_ms`.
        timeout: Duration,
    },
    /// `kvctl promote <node id> [--force]`, sent to the candidate.
    Promotion {
        /// The replica to promote.
        candidate: Member,
        /// `--force`: accept losing writes, or promote without a majority.
        force: bool,
        /// Sent as `timeout_ms`.
        timeout: Duration,
    },
}

impl FailoverAction {
    /// The node that takes over.
    pub fn candidate(&self) -> &Member {
        match self {
            Self::Switchover { to, .. } => to,
            Self::Promotion { candidate, .. } => candidate,
        }
    }

    /// Which procedure.
    pub fn kind(&self) -> FailoverKind {
        match self {
            Self::Switchover { .. } => FailoverKind::Switchover,
            Self::Promotion { .. } => FailoverKind::Promotion,
        }
    }

    /// The `kvctl` command line that does the same: a switchover through the console's
    /// endpoints (`kvctl` finds the master among them), a promotion sent to the candidate.
    pub fn command(&self, endpoints: &str) -> String {
        match self {
            Self::Switchover { to, timeout } => shell::failover(endpoints, &to.node_id, *timeout),
            Self::Promotion {
                candidate,
                force,
                timeout,
            } => shell::promote(
                &format!("http://{}", candidate.address),
                &candidate.node_id,
                *force,
                *timeout,
            ),
        }
    }
}

/// The plan of the flow, as far as it came.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanState {
    /// Asked, not answered yet.
    Asking,
    /// The node's plan.
    Ready(Plan),
    /// Why there is none (the node did not answer, or refused to plan).
    Failed(String),
}

/// Where the flow is.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The plan is shown (or asked for); the operator picks the candidate.
    Plan,
    /// The operator types the start of the candidate's node id.
    Confirm {
        /// What was typed.
        input: Input,
    },
    /// The call was sent at `since`.
    Running {
        /// What runs.
        action: FailoverAction,
        /// When it was sent.
        since: Instant,
    },
    /// It finished: the node's answer, or why it did not do it (its message in full).
    Done {
        /// What ran.
        action: FailoverAction,
        /// The answer, or the refusal.
        outcome: Result<FailoverDone, String>,
    },
}

/// The failover popup's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Switchover or promotion.
    pub kind: FailoverKind,
    /// The nodes to pick from, in the order shown: for a switchover the master's candidates,
    /// best first, as its first plan listed them; for a promotion the replicas the console
    /// knows (those that answer first).
    pub candidates: Vec<Member>,
    /// The candidate picked (an index into `candidates`).
    pub selected: usize,
    /// `--force` (promotion).
    pub force: bool,
    /// The number of the plan request this flow waits for.
    pub generation: u64,
    /// The plan for the candidate picked (and `force`).
    pub plan: PlanState,
    /// The plan shown before the one being asked, shown greyed meanwhile.
    pub previous: Option<Plan>,
    /// The master's own pick and its reason (switchover), from its first plan.
    pub suggested: Option<(Member, String)>,
    /// Where the flow is.
    pub step: Step,
    /// Why the last key did nothing (a short prefix, a plan that does not allow going on).
    pub problem: Option<String>,
    /// The first line of the plan shown, for plans taller than the popup (PgUp / PgDn).
    pub scroll: u16,
    /// The master asked, for the switchover's messages.
    pub master: Option<Member>,
}

impl Flow {
    /// The plan to show: the one for the candidate picked, else the one before it (while the
    /// new one is asked).
    pub fn shown_plan(&self) -> Option<&Plan> {
        match &self.plan {
            PlanState::Ready(p) => Some(p),
            PlanState::Asking => self.previous.as_ref(),
            PlanState::Failed(_) => None,
        }
    }

    /// The candidate picked.
    pub fn candidate(&self) -> Option<&Member> {
        self.candidates.get(self.selected)
    }

    /// What would run for the candidate picked, as it stands.
    pub fn action(&self, timeout: Duration) -> Option<FailoverAction> {
        let candidate = self.candidate()?.clone();
        Some(match self.kind {
            FailoverKind::Switchover => FailoverAction::Switchover {
                to: candidate,
                timeout,
            },
            FailoverKind::Promotion => FailoverAction::Promotion {
                candidate,
                force: self.force,
                timeout,
            },
        })
    }

    /// `None` when the plan lets the picked candidate go ahead; else why not.
    pub fn blocked(&self) -> Option<String> {
        match &self.plan {
            PlanState::Asking => {
                return Some("the plan is not in yet; nothing runs without one".into());
            }
            PlanState::Failed(_) => {
                return Some("there is no plan to go on with: r asks again, Esc closes".into());
            }
            PlanState::Ready(_) => {}
        }
        let Some(candidate) = self.candidate() else {
            return Some("there is no candidate to pick".into());
        };
        match &self.plan {
            PlanState::Asking | PlanState::Failed(_) => None,
            PlanState::Ready(Plan::Switchover(p)) => match &p.target {
                Some(t) if t.node_id == candidate.node_id => None,
                Some(_) | None => Some(format!(
                    "the master would not hand over to {}; pick another (↑↓) or Esc",
                    candidate.node_id
                )),
            },
            PlanState::Ready(Plan::Promotion(p)) => match &p.refusal {
                None if p.candidate.node_id == candidate.node_id => None,
                None => Some("the plan is for another candidate; wait for the new one".into()),
                Some(_) if p.lost > 0 && !self.force => Some(format!(
                    "this promotion loses {} writes: f adds --force if you accept that",
                    p.lost
                )),
                Some(_) if !self.force => Some(
                    "refused (see above): f adds --force where the refusal allows it, ↑↓ \
                     picks another, Esc closes"
                        .into(),
                ),
                Some(_) => Some(
                    "refused even with --force (see above): ↑↓ picks another, Esc \
                                 closes"
                        .into(),
                ),
            },
        }
    }

    /// Characters of the candidate's id to type: [`CONFIRM_CHARS`], or all of a shorter id.
    pub fn confirm_chars(&self) -> usize {
        self.candidate().map_or(CONFIRM_CHARS, |c| {
            c.node_id.chars().count().min(CONFIRM_CHARS)
        })
    }
}

/// The outcome in one line: `switched over to <id> at <addr>: epoch 2; writes paused for 87 ms`.
pub fn outcome_line(action: &FailoverAction, outcome: &Result<FailoverDone, String>) -> String {
    let c = action.candidate();
    match outcome {
        Ok(FailoverDone::Switchover(r)) => format!(
            "switched over to {} at {}: epoch {}; writes paused for {} ms",
            c.node_id, c.address, r.epoch, r.pause_ms
        ),
        Ok(FailoverDone::Promotion(r)) => {
            let lost = if r.plan.lost > 0 {
                format!("; {} writes lost (forced)", r.plan.lost)
            } else {
                String::new()
            };
            format!(
                "promoted {} at {}: epoch {}; caught up {} entries from other replicas{lost}",
                c.node_id, c.address, r.epoch, r.caught_up
            )
        }
        Err(message) => match action.kind() {
            FailoverKind::Switchover => {
                format!("switchover to {} failed: {message}", c.node_id)
            }
            FailoverKind::Promotion => format!("promotion of {} failed: {message}", c.node_id),
        },
    }
}

/// A finished call as the flow shows it: a reply that says it was not done is a refusal.
fn outcome_of(
    action: &FailoverAction,
    result: Result<Box<FailoverDone>, Failure>,
) -> Result<FailoverDone, String> {
    let c = action.candidate();
    match result.map(|b| *b) {
        Ok(FailoverDone::Switchover(r)) if !r.done => Err(format!(
            "the master did not hand over to {} at {}: {}",
            c.node_id, c.address, r.plan.reason
        )),
        Ok(FailoverDone::Promotion(r)) if !r.done => Err(r.plan.refusal.unwrap_or_else(|| {
            format!(
                "{} at {} did not take over and gave no reason; see the Cluster screen",
                c.node_id, c.address
            )
        })),
        Ok(done) => Ok(done),
        Err(f) => Err(f.message),
    }
}

impl App {
    /// `F`: opens the failover popup and asks for the first plan.
    pub(super) fn open_failover(&mut self) -> Vec<Command> {
        if self.config.read_only {
            self.report_error(READ_ONLY.into());
            return Vec::new();
        }
        if let Some(running) = &self.failover_running {
            let text = format!(
                "a {} to {} is still running: its outcome will show here",
                running.kind().noun(),
                running.candidate().node_id
            );
            self.report_error(text);
            return Vec::new();
        }
        if self.data.is_none() {
            self.report_error(
                "nothing is known of the cluster yet: wait until a node answers".into(),
            );
            return Vec::new();
        }
        self.screen = Screen::Cluster;
        self.status = None;
        let master_answers = self.cluster().is_some() && self.conn == Conn::Connected;
        let mut flow = if master_answers {
            Flow {
                kind: FailoverKind::Switchover,
                candidates: Vec::new(),
                selected: 0,
                force: false,
                generation: 0,
                plan: PlanState::Asking,
                previous: None,
                suggested: None,
                step: Step::Plan,
                problem: None,
                scroll: 0,
                master: self.cluster().map(|c| super::member_of(&c.master)),
            }
        } else {
            // Replicas that answer first: those are the ones that can be asked for a plan.
            let mut replicas: Vec<_> = self
                .nodes()
                .into_iter()
                .filter(|n| n.role == Role::Replica && !n.node_id.is_empty())
                .collect();
            replicas.sort_by_key(|n| !n.answers());
            Flow {
                kind: FailoverKind::Promotion,
                candidates: replicas.iter().map(|n| n.member()).collect(),
                selected: 0,
                force: false,
                generation: 0,
                plan: PlanState::Failed(
                    "no replica is known to promote: start the console with -e listing the \
                     replicas too"
                        .into(),
                ),
                previous: None,
                suggested: None,
                step: Step::Plan,
                problem: None,
                scroll: 0,
                master: None,
            }
        };
        let commands = self.ask_plan(&mut flow);
        self.popup = Some(Popup::Failover(Box::new(flow)));
        commands
    }

    /// Asks the plan for the flow's candidate as it stands (a new request number).
    fn ask_plan(&mut self, flow: &mut Flow) -> Vec<Command> {
        let request = match flow.kind {
            FailoverKind::Switchover => {
                let picked = flow.candidate().map(|c| c.node_id.clone());
                let suggested = flow.suggested.as_ref().map(|(m, _)| m.node_id.clone());
                // The master's own pick is asked without --to, so its reason shows.
                let to = picked.filter(|p| Some(p) != suggested.as_ref());
                PlanRequest::Switchover { to }
            }
            FailoverKind::Promotion => match flow.candidate() {
                Some(c) => PlanRequest::Promotion {
                    candidate: c.clone(),
                    force: flow.force,
                },
                None => return Vec::new(),
            },
        };
        self.failover_generation += 1;
        flow.generation = self.failover_generation;
        if let PlanState::Ready(p) = std::mem::replace(&mut flow.plan, PlanState::Asking) {
            flow.previous = Some(p);
        }
        flow.problem = None;
        flow.scroll = 0;
        vec![Command::Plan {
            generation: flow.generation,
            request,
            timeout: self.config.timeout,
        }]
    }

    /// A key while the failover popup is open.
    pub(super) fn on_failover_key(&mut self, mut flow: Flow, key: KeyEvent) -> Vec<Command> {
        let noun = flow.kind.noun();
        let cancel = |app: &mut Self| {
            app.set_status(
                StatusKind::Info,
                format!("{noun} cancelled: nothing was changed"),
                None,
            );
            Vec::new()
        };
        let mut commands = Vec::new();
        match &mut flow.step {
            Step::Plan => match key.code {
                KeyCode::Esc | KeyCode::Char('q') => return cancel(self),
                KeyCode::Up | KeyCode::Down | KeyCode::Char('k' | 'j') => {
                    let moved = move_selection(flow.selected, flow.candidates.len(), key.code);
                    if moved != flow.selected {
                        flow.selected = moved;
                        commands = self.ask_plan(&mut flow);
                    }
                }
                KeyCode::Char('f') if flow.kind == FailoverKind::Promotion => {
                    flow.force = !flow.force;
                    commands = self.ask_plan(&mut flow);
                }
                KeyCode::Char('r') => commands = self.ask_plan(&mut flow),
                KeyCode::PageDown => flow.scroll = flow.scroll.saturating_add(5),
                KeyCode::PageUp => flow.scroll = flow.scroll.saturating_sub(5),
                KeyCode::Enter => match flow.blocked() {
                    Some(why) => flow.problem = Some(why),
                    None => {
                        flow.problem = None;
                        flow.step = Step::Confirm {
                            input: Input::default(),
                        };
                    }
                },
                _ => {}
            },
            Step::Confirm { input } => match key.code {
                KeyCode::Esc => return cancel(self),
                KeyCode::PageDown => flow.scroll = flow.scroll.saturating_add(5),
                KeyCode::PageUp => flow.scroll = flow.scroll.saturating_sub(5),
                KeyCode::Enter => {
                    let typed = input.text().to_string();
                    let need = flow.confirm_chars();
                    let id = flow
                        .candidate()
                        .map(|c| c.node_id.clone())
                        .unwrap_or_default();
                    if typed.chars().count() < need {
                        flow.problem = Some(format!(
                            "type at least {need} characters of its node id ({} typed): \
                             nothing was done",
                            typed.chars().count()
                        ));
                    } else if !id.starts_with(&typed) {
                        flow.problem = Some(format!(
                            "its node id does not start with {typed:?}: nothing was done"
                        ));
                    } else {
                        commands = self.run_failover(&mut flow);
                    }
                }
                _ => {
                    input.handle(key);
                }
            },
            Step::Running { action, .. } => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                    let text = format!(
                        "the {noun} to {} goes on: its outcome will show here",
                        action.candidate().node_id
                    );
                    let command = Some(action.command(&self.config.endpoint));
                    self.set_status(StatusKind::Pending, text, command);
                    return Vec::new();
                }
            }
            Step::Done { .. } => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                    return Vec::new();
                }
            }
        }
        self.popup = Some(Popup::Failover(Box::new(flow)));
        commands
    }

    /// The prefix was right: sends the call.
    fn run_failover(&mut self, flow: &mut Flow) -> Vec<Command> {
        if self.config.read_only {
            self.report_error(READ_ONLY.into());
            return Vec::new();
        }
        let Some(action) = flow.action(self.config.timeout) else {
            return Vec::new();
        };
        let c = action.candidate();
        let text = match &action {
            FailoverAction::Switchover { .. } => {
                format!(
                    "switching over to {} at {}… writes paused",
                    c.node_id, c.address
                )
            }
            FailoverAction::Promotion { .. } => {
                format!("promoting {} at {}…", c.node_id, c.address)
            }
        };
        self.set_status(
            StatusKind::Pending,
            text,
            Some(action.command(&self.config.endpoint)),
        );
        flow.problem = None;
        flow.step = Step::Running {
            action: action.clone(),
            since: self.now,
        };
        self.failover_running = Some(action.clone());
        vec![Command::Failover(action)]
    }

    /// A plan came back: shown if it is the one the flow waits for.
    pub(super) fn on_planned(&mut self, generation: u64, result: Result<Plan, Failure>) {
        let Some(Popup::Failover(flow)) = &mut self.popup else {
            return;
        };
        if flow.generation != generation {
            return;
        }
        match result {
            Ok(plan) => {
                if let Plan::Switchover(p) = &plan {
                    // The first plan gives the candidates, their order and the master's pick.
                    let first = flow.candidates.is_empty();
                    for c in &p.candidates {
                        if !flow.candidates.iter().any(|m| m.node_id == c.node.node_id) {
                            flow.candidates.push(c.node.clone());
                        }
                    }
                    if first {
                        flow.suggested = p.target.clone().map(|t| (t, p.reason.clone()));
                        flow.master = Some(p.master.clone());
                        flow.selected = p
                            .target
                            .as_ref()
                            .and_then(|t| {
                                flow.candidates.iter().position(|m| m.node_id == t.node_id)
                            })
                            .unwrap_or(0);
                    }
                }
                flow.plan = PlanState::Ready(plan);
            }
            Err(f) => flow.plan = PlanState::Failed(f.message),
        }
        flow.problem = None;
    }

    /// A switchover or promotion finished: the popup shows it if it is still open, the status
    /// bar always; the cluster is asked again at once.
    pub(super) fn on_failed_over(
        &mut self,
        action: FailoverAction,
        result: Result<Box<FailoverDone>, Failure>,
    ) -> Vec<Command> {
        self.failover_running = None;
        let outcome = outcome_of(&action, result);
        let kind = if outcome.is_ok() {
            StatusKind::Done
        } else {
            StatusKind::Error
        };
        self.set_status(
            kind,
            outcome_line(&action, &outcome),
            Some(action.command(&self.config.endpoint)),
        );
        if let Some(Popup::Failover(flow)) = &mut self.popup
            && matches!(&flow.step, Step::Running { action: a, .. } if *a == action)
        {
            flow.step = Step::Done { action, outcome };
        }
        self.refresh().into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
