//! History checkers for the simulation: linearizability of every key (a register) and no lost
//! acknowledged write.
//!
//! The harness records every client operation with [`History::invoke`] and
//! [`History::complete`] (timestamps are any `u64` that orders events: simulated nanoseconds or a
//! global event counter), then calls [`check_linearizable`] and [`check_lost_writes`].
//!
//! # How each recorded operation counts
//!
//! | operation                          | linearizability                               |
//! |------------------------------------|-----------------------------------------------|
//! | read `ReadOk(v)`                   | a read of `v` in `[invoked, completed]`       |
//! | read `Failed` or never completed   | dropped (observed nothing)                    |
//! | write `Failed`                     | dropped (definitely not applied)              |
//! | write `WriteOk` with `acks >= 1`   | a write in `[invoked, completed]`             |
//! | write `WriteOk` with `acks == 0`,  | a write that may take effect at any time      |
//! | `Unknown`, or never completed      | after its invocation, or never ("maybe")      |
//!
//! Op `a` precedes op `b` in real time only if `a` completed strictly before `b` was invoked:
//! equal timestamps count as concurrent (the lenient reading, so ties never cause a false alarm).
//!
//! # The linearizability check
//!
//! Every write writes a unique value, so each read names the write it observed. That makes a
//! register history checkable in polynomial time (Gibbons and Korach, "Testing shared memories",
//! 1997; the "zones" of Golab et al., 2011) instead of by an exponential search. Group each
//! value's write with the reads that returned it (the initial `None` is a virtual write before
//! everything). In any linearization a group is contiguous (its write, then its reads, and no other
//! write in between), so of two groups one lies wholly before the other. Group `X` must come
//! before group `Y` when some op of `X` completed before some op of `Y` was invoked, that is when
//! `min completion(X) < max invocation(Y)`. The history is linearizable if and only if
//! 1. every value read was written by a write that is not `Failed` (or is the initial `None`),
//! 2. no read completed before the write of its value was invoked, and
//! 3. no two groups must each come before the other.
//!
//! (3) suffices for the groups: a cycle of "must come before" always contains such a pair (take
//! the group of the cycle with the smallest minimal completion: it must also come before its
//! predecessor in the cycle), so without one the groups can be sorted, and inside a group the
//! write goes first (by 2) and the reads in any real-time order. A "maybe" write counts only if
//! some read returned its value, then it certainly took effect at some time after its invocation:
//! its completion is "never", it only contributes its invocation. A maybe write nobody read can be
//! left out: in a linearization it would have no reads after it before the next write, so
//! removing it changes no read.
//!
//! The tests check this against stateright's [`LinearizabilityTester`] (a search over
//! interleavings, with a maybe write as an invocation that never returns, on its own thread) on
//! thousands of random small histories. That tester is not used on whole histories: it is
//! exponential (about 1 s for 100 ops with 5 clients and 5% unknown writes, far longer on a
//! violation), while this check takes milliseconds on 2000 ops.
//!
//! [`LinearizabilityTester`]: stateright::semantics::LinearizabilityTester
//!
//! # The lost-write check
//!
//! For a write acknowledged `WriteOk` with `acks >= 1`, the final value of its key must be its own
//! value or the value of a write (not `Failed`) that may be ordered after it: one that was not
//! definitely complete before it was invoked (maybe writes never are).

// The harness in other modules uses this API; until it does, parts of it are used only by tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;

/// Identifies an operation of a [`History`]; returned by [`History::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(usize);

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write a value unique in the whole history.
    Write { value: String, acks: u8 },
    /// A read served by the master.
    Read,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write was acknowledged.
    WriteOk,
    /// A write was refused before being admitted (not applied), or a read observed nothing.
    Failed,
    /// A write got no answer or an ambiguous error: it may be applied, at any time.
    Unknown,
    /// A read returned this value (`None`: the key has no value).
    ReadOk(Option<String>),
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: OpId,
    pub client: u32,
    pub key: String,
    pub op: Op,
    pub invoked_at: u64,
    /// `None` while in flight (and for ever if the client never heard back).
    pub completed: Option<(Outcome, u64)>,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} client {} key {:?} ",
            self.id.0, self.client, self.key
        )?;
        match &self.op {
            Op::Write { value, acks } => write!(f, "write {value:?} acks={acks}")?,
            Op::Read => write!(f, "read")?,
        }
        match &self.completed {
            None => write!(f, " [{}, never]", self.invoked_at),
            Some((outcome, at)) => {
                write!(f, " [{}, {at}] ", self.invoked_at)?;
                match outcome {
                    Outcome::WriteOk => write!(f, "ok"),
                    Outcome::Failed => write!(f, "failed"),
                    Outcome::Unknown => write!(f, "unknown"),
                    Outcome::ReadOk(v) => write!(f, "-> {v:?}"),
                }
            }
        }
    }
}

/// The operations of a run, in the order they were invoked.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Record>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `client` invoked `op` on `key` at time `at`.
    pub fn invoke(&mut self, client: u32, key: &str, op: Op, at: u64) -> OpId {
        let id = OpId(self.ops.len());
        self.ops.push(Record {
            id,
            client,
            key: key.to_string(),
            op,
            invoked_at: at,
            completed: None,
        });
        id
    }

    /// Records how operation `id` ended, at time `at`. Panics on a harness bug: an unknown or
    /// already completed id, a completion before the invocation, or an outcome of the other kind
    /// of operation (`ReadOk` for a write, `WriteOk` or `Unknown` for a read).
    pub fn complete(&mut self, id: OpId, outcome: Outcome, at: u64) {
        let record = self
            .ops
            .get_mut(id.0)
            .unwrap_or_else(|| panic!("complete: no operation {id:?}"));
        assert!(
            record.completed.is_none(),
            "complete: {record} completed twice"
        );
        assert!(
            at >= record.invoked_at,
            "complete: {record} completed at {at}"
        );
        let fits = match record.op {
            Op::Write { .. } => !matches!(outcome, Outcome::ReadOk(_)),
            Op::Read => matches!(outcome, Outcome::ReadOk(_) | Outcome::Failed),
        };
        assert!(fits, "complete: {record} cannot end with {outcome:?}");
        record.completed = Some((outcome, at));
    }

    /// Every operation, in invocation order (`ops()[i].id == OpId(i)`).
    pub fn ops(&self) -> &[Record] {
        &self.ops
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for record in &self.ops {
            writeln!(f, "{record}")?;
        }
        Ok(())
    }
}

/// A failed check: the key and what is wrong, naming the offending operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {}", self.key, self.explanation)
    }
}

/// What an operation means for linearizability (see the module documentation).
enum Effect<'a> {
    Read(&'a Option<String>, u64),
    /// `completed: None`: a maybe write.
    Write {
        value: &'a str,
        completed: Option<u64>,
    },
}

fn effect(record: &Record) -> Option<Effect<'_>> {
    match (&record.op, &record.completed) {
        (Op::Read, Some((Outcome::ReadOk(v), at))) => Some(Effect::Read(v, *at)),
        (Op::Read, _) | (Op::Write { .. }, Some((Outcome::Failed, _))) => None,
        (Op::Write { value, acks }, Some((Outcome::WriteOk, at))) if *acks >= 1 => {
            Some(Effect::Write {
                value,
                completed: Some(*at),
            })
        }
        (Op::Write { value, .. }, _) => Some(Effect::Write {
            value,
            completed: None,
        }),
    }
}

fn by_key(h: &History) -> BTreeMap<&str, Vec<&Record>> {
    let mut keys: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in &h.ops {
        keys.entry(&record.key).or_default().push(record);
    }
    keys
}

/// Checks that every key behaves as a linearizable register (initially `None`). Returns one
/// violation per key that does not.
pub fn check_linearizable(h: &History) -> Result<(), Vec<Violation>> {
    let violations: Vec<Violation> = by_key(h)
        .into_iter()
        .filter_map(|(key, ops)| {
            check_register(&ops).err().map(|explanation| Violation {
                key: key.to_string(),
                explanation,
            })
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// A value's write and the reads that returned it.
struct Group<'a> {
    value: Option<&'a str>,
    /// `None` for the initial value.
    write: Option<&'a Record>,
    reads: Vec<&'a Record>,
    /// The earliest completion in the group and its op (`None`: the initial value, before all).
    min_completed: Option<(u64, &'a Record)>,
    /// The latest invocation in the group and its op.
    max_invoked: Option<(u64, &'a Record)>,
}

impl<'a> Group<'a> {
    fn new(value: Option<&'a str>, write: Option<&'a Record>, completed: Option<u64>) -> Self {
        let mut group = Group {
            value,
            write,
            reads: Vec::new(),
            min_completed: None,
            max_invoked: None,
        };
        if let Some(w) = write {
            group.add(w, completed);
        }
        group
    }

    fn add(&mut self, op: &'a Record, completed: Option<u64>) {
        if let Some(at) = completed
            && self.min_completed.is_none_or(|(min, _)| at < min)
        {
            self.min_completed = Some((at, op));
        }
        if self.max_invoked.is_none_or(|(max, _)| op.invoked_at > max) {
            self.max_invoked = Some((op.invoked_at, op));
        }
    }

    /// Whether this group must come wholly before `other`: the op that completed first here
    /// completed before the op invoked last there was invoked. The initial value is before all.
    fn must_precede(&self, other: &Group<'a>) -> bool {
        match (self.write, self.min_completed, other.max_invoked) {
            (None, _, _) => true,
            (Some(_), Some((completed, _)), Some((invoked, _))) => completed < invoked,
            _ => false,
        }
    }

    /// Why [`Group::must_precede`] holds.
    fn why_precede(&self, other: &Group<'a>) -> String {
        match (self.min_completed, other.max_invoked) {
            (Some((_, earlier)), Some((_, later))) if self.write.is_some() => {
                format!("{earlier} completed before {later} was invoked")
            }
            _ => format!(
                "the initial value None comes before everything, including {:?}",
                other.value
            ),
        }
    }

    fn describe(&self) -> String {
        let mut s = match self.write {
            Some(w) => format!("  value {:?}: written by {w}\n", self.value),
            None => "  the initial value None\n".to_string(),
        };
        const SHOWN: usize = 8;
        for read in self.reads.iter().take(SHOWN) {
            s += &format!("    read by {read}\n");
        }
        if self.reads.len() > SHOWN {
            s += &format!("    and {} more reads\n", self.reads.len() - SHOWN);
        }
        s
    }
}

/// The check of one key's operations (see the module documentation); the error explains.
fn check_register(ops: &[&Record]) -> Result<(), String> {
    let mut failed: BTreeMap<&str, &Record> = BTreeMap::new();
    let mut groups: BTreeMap<Option<&str>, Group<'_>> = BTreeMap::new();
    let mut maybe_unread: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    let mut reads = Vec::new();
    for &op in ops {
        match (effect(op), &op.op) {
            (Some(Effect::Write { value, completed }), _) => {
                let group = Group::new(Some(value), Some(op), completed);
                let earlier = if completed.is_some() {
                    groups.insert(Some(value), group)
                } else {
                    maybe_unread.insert(value, group)
                };
                if let Some(earlier) = earlier.and_then(|g| g.write) {
                    return Err(format!(
                        "{earlier} and {op} write the same value: the checker needs unique values"
                    ));
                }
            }
            (Some(Effect::Read(value, completed)), _) => reads.push((op, value, completed)),
            (None, Op::Write { value, .. }) => {
                failed.insert(value, op);
            }
            (None, Op::Read) => {}
        }
    }
    for (read, value, completed) in reads {
        let key = value.as_deref();
        if let Some(v) = key
            && !groups.contains_key(&key)
        {
            let Some(group) = maybe_unread.remove(v) else {
                return Err(match failed.get(v) {
                    Some(w) => format!(
                        "{read} observed the value of {w}, which failed (was never applied)"
                    ),
                    None => format!("{read} returned a value never written to this key"),
                });
            };
            groups.insert(key, group);
        }
        let group = match key {
            None => groups
                .entry(None)
                .or_insert_with(|| Group::new(None, None, None)),
            Some(_) => groups.get_mut(&key).expect("inserted above"),
        };
        if let Some(w) = group.write
            && completed < w.invoked_at
        {
            return Err(format!(
                "{read} completed before the write of its value was invoked: {w}"
            ));
        }
        group.reads.push(read);
        group.add(read, Some(completed));
    }
    let groups: Vec<&Group<'_>> = groups.values().collect();
    for (i, x) in groups.iter().enumerate() {
        for y in &groups[i + 1..] {
            if x.must_precede(y) && y.must_precede(x) {
                let (x_first, y_first) = (x.why_precede(y), y.why_precede(x));
                return Err(format!(
                    "not linearizable. A value's write and the reads that returned it are \
                     contiguous in any linearization, so one of these two groups must come wholly \
                     before the other, yet each must come first:\n  {x_first}, and\n  \
                     {y_first}.\nThe groups:\n{}{}",
                    x.describe(),
                    y.describe()
                ));
            }
        }
    }
    Ok(())
}

/// Checks that no write acknowledged with `acks >= 1` is lost: the final value of its key
/// (`final_state`, read from the one master after healing) is its value or that of a write which
/// may be ordered after it. Returns one violation per lost write, and one per final value that
/// no write of its key (not failed) wrote.
pub fn check_lost_writes(
    h: &History,
    final_state: &BTreeMap<String, Option<String>>,
) -> Result<(), Vec<Violation>> {
    let mut violations = Vec::new();
    let keys = by_key(h);
    for (key, last) in final_state {
        let Some(v) = last else { continue };
        let written = keys.get(key.as_str()).is_some_and(|ops| {
            ops.iter().any(|&op| {
                matches!(&op.op, Op::Write { value, .. } if value == v) && effect(op).is_some()
            })
        });
        if !written {
            violations.push(Violation {
                key: key.clone(),
                explanation: format!(
                    "final value {v:?}, which no write (not failed) of this key wrote"
                ),
            });
        }
    }
    for (key, ops) in keys {
        let Some(last) = final_state.get(key) else {
            violations.push(Violation {
                key: key.to_string(),
                explanation: "the final state has no entry for this key".to_string(),
            });
            continue;
        };
        let last_write = ops.iter().find_map(|&op| match (&op.op, effect(op)) {
            (Op::Write { value, .. }, Some(Effect::Write { completed, .. }))
                if Some(value) == last.as_ref() =>
            {
                Some((op, completed))
            }
            _ => None,
        });
        for &op in &ops {
            let (
                Op::Write { value, .. },
                Some(Effect::Write {
                    completed: Some(_), ..
                }),
            ) = (&op.op, effect(op))
            else {
                continue;
            };
            let kept = match last_write {
                Some((last_op, _)) if last_op.id == op.id => true,
                Some((_, None)) => true,
                Some((_, Some(last_completed))) => last_completed >= op.invoked_at,
                None => false,
            };
            if !kept {
                let found = match last_write {
                    Some((w, _)) => {
                        format!("{last:?}, written by {w}, which completed before it was invoked")
                    }
                    None if last.is_none() => "no value".to_string(),
                    None => format!("{last:?}, never written (see above)"),
                };
                violations.push(Violation {
                    key: key.to_string(),
                    explanation: format!(
                        "lost acknowledged write {op}: final value {found} (expected {value:?} \
                         or a later write's)"
                    ),
                });
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
    use std::time::Instant;

    /// Builds histories tersely: each op given with its times and outcome.
    struct B(History);

    impl B {
        fn new() -> Self {
            B(History::new())
        }
        fn write(
            mut self,
            client: u32,
            value: &str,
            acks: u8,
            span: (u64, u64),
            o: Outcome,
        ) -> Self {
            let op = Op::Write {
                value: value.to_string(),
                acks,
            };
            let id = self.0.invoke(client, "k", op, span.0);
            self.0.complete(id, o, span.1);
            self
        }
        fn ok(self, client: u32, value: &str, span: (u64, u64)) -> Self {
            self.write(client, value, 1, span, Outcome::WriteOk)
        }
        fn read(mut self, client: u32, value: Option<&str>, span: (u64, u64)) -> Self {
            let id = self.0.invoke(client, "k", Op::Read, span.0);
            let v = value.map(str::to_string);
            self.0.complete(id, Outcome::ReadOk(v), span.1);
            self
        }
        fn pending_write(mut self, client: u32, value: &str, at: u64) -> Self {
            let op = Op::Write {
                value: value.to_string(),
                acks: 1,
            };
            self.0.invoke(client, "k", op, at);
            self
        }
        fn lin(&self) -> Result<(), Vec<Violation>> {
            let mine = check_linearizable(&self.0);
            assert_eq!(mine.is_ok(), stateright_linearizable(&self.0), "{}", self.0);
            mine
        }
    }

    fn final_state(v: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([("k".to_string(), v.map(str::to_string))])
    }

    fn assert_violation(r: Result<(), Vec<Violation>>, needle: &str) {
        let v = r.expect_err("a violation");
        let text = v.iter().map(|v| format!("{v}\n")).collect::<String>();
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    /// Stateright's tester on the whole history (all keys must be "k"). Failed ops and failed or
    /// unfinished reads are left out; maybe writes are invoked on a thread of their own and never
    /// return, which the tester treats as possibly applied at any later point or never. Other ops
    /// go on threads reused once their previous op completed (strictly) before.
    fn stateright_linearizable(h: &History) -> bool {
        let mut events: Vec<(u64, u8, usize)> = Vec::new();
        for (i, r) in h.ops().iter().enumerate() {
            match effect(r) {
                None => {}
                Some(Effect::Write {
                    completed: None, ..
                }) => events.push((r.invoked_at, 0, i)),
                Some(
                    Effect::Read(_, at)
                    | Effect::Write {
                        completed: Some(at),
                        ..
                    },
                ) => {
                    events.push((r.invoked_at, 0, i));
                    events.push((at, 1, i));
                }
            }
        }
        events.sort(); // invocations before completions at equal times: ties are concurrent
        let mut tester = LinearizabilityTester::new(Register(None::<String>));
        let mut busy: Vec<bool> = Vec::new();
        let mut thread_of = BTreeMap::new();
        let mut maybe_thread = 1u64 << 32;
        for (_, kind, i) in events {
            let r = &h.ops()[i];
            let e = effect(r).expect("only effects are in events");
            if kind == 0 {
                let thread = if let Effect::Write {
                    completed: None, ..
                } = e
                {
                    maybe_thread += 1;
                    maybe_thread
                } else {
                    let free = busy.iter().position(|b| !b).unwrap_or_else(|| {
                        busy.push(false);
                        busy.len() - 1
                    });
                    busy[free] = true;
                    free as u64
                };
                thread_of.insert(i, thread);
                let op = match e {
                    Effect::Read(..) => RegisterOp::Read,
                    Effect::Write { value, .. } => RegisterOp::Write(Some(value.to_string())),
                };
                tester.on_invoke(thread, op).expect("valid invocation");
            } else {
                let thread = thread_of[&i];
                busy[thread as usize] = false;
                let ret = match e {
                    Effect::Read(v, _) => RegisterRet::ReadOk(v.clone()),
                    Effect::Write { .. } => RegisterRet::WriteOk,
                };
                tester.on_return(thread, ret).expect("valid return");
            }
        }
        tester.serialized_history().is_some()
    }

    #[test]
    fn sequential_history_passes() {
        let b = B::new()
            .read(0, None, (0, 1))
            .ok(0, "a", (2, 3))
            .read(1, Some("a"), (4, 5))
            .ok(1, "b", (6, 7))
            .read(0, Some("b"), (8, 9));
        b.lin().expect("linearizable");
        check_lost_writes(&b.0, &final_state(Some("b"))).expect("nothing lost");
    }

    #[test]
    fn concurrent_writes_and_reads_either_way_pass() {
        // Two overlapping writes; overlapping reads may see either, in an order both agree on.
        for (first, second) in [("a", "b"), ("b", "a")] {
            let b = B::new()
                .ok(0, "a", (0, 10))
                .ok(1, "b", (0, 10))
                .read(2, Some(first), (5, 6))
                .read(2, Some(second), (7, 8))
                .read(3, Some(second), (11, 12));
            b.lin().expect("linearizable");
            check_lost_writes(&b.0, &final_state(Some(second))).expect("nothing lost");
        }
        // A read overlapping a write sees the old or the new value.
        for seen in [None, Some("a")] {
            B::new()
                .ok(0, "a", (0, 10))
                .read(1, seen, (5, 15))
                .lin()
                .expect("linearizable");
        }
        // Equal timestamps count as concurrent.
        B::new()
            .ok(0, "a", (0, 10))
            .read(1, None, (10, 11))
            .lin()
            .expect("linearizable");
    }

    #[test]
    fn unknown_write_observed_later_passes() {
        for outcome in [Outcome::Unknown, Outcome::WriteOk] {
            let b = B::new()
                .ok(0, "a", (0, 1))
                .write(0, "u", 0, (2, 3), outcome) // acks=0 Ok is as good as unknown
                .read(0, Some("a"), (4, 5))
                .read(1, Some("u"), (100, 101))
                .read(0, Some("u"), (102, 103));
            b.lin().expect("linearizable");
            check_lost_writes(&b.0, &final_state(Some("u"))).expect("nothing lost");
        }
        let b = B::new()
            .ok(0, "a", (0, 1))
            .pending_write(1, "p", 2)
            .read(0, Some("a"), (4, 5))
            .read(0, Some("p"), (6, 7));
        b.lin().expect("linearizable");
        check_lost_writes(&b.0, &final_state(Some("p"))).expect("nothing lost");
    }

    #[test]
    fn unknown_write_never_observed_passes() {
        let b = B::new()
            .ok(0, "a", (0, 1))
            .write(1, "u", 1, (2, 3), Outcome::Unknown)
            .write(1, "z", 0, (4, 5), Outcome::WriteOk)
            .pending_write(2, "p", 6)
            .read(0, Some("a"), (10, 11))
            .read(0, Some("a"), (20, 21));
        b.lin().expect("linearizable");
        check_lost_writes(&b.0, &final_state(Some("a"))).expect("nothing lost");
    }

    #[test]
    fn stale_read_after_acknowledged_write_fails() {
        let b = B::new()
            .ok(0, "a", (0, 1))
            .ok(0, "b", (2, 3))
            .read(1, Some("a"), (4, 5));
        assert_violation(b.lin(), "not linearizable");
        // The initial value after a completed write.
        let b = B::new().ok(0, "a", (0, 1)).read(1, None, (2, 3));
        assert_violation(b.lin(), "the initial value None comes before everything");
    }

    #[test]
    fn read_of_a_value_never_written_fails() {
        let b = B::new().ok(0, "a", (0, 1)).read(1, Some("x"), (2, 3));
        assert_violation(b.lin(), "never written");
        // Nor may a read return a value before its write was invoked.
        let b = B::new().read(1, Some("a"), (0, 1)).ok(0, "a", (2, 3));
        assert_violation(
            b.lin(),
            "completed before the write of its value was invoked",
        );
    }

    #[test]
    fn reads_going_back_in_time_fail() {
        // Both writes overlap both reads, but once "b" was seen "a" cannot come back.
        let b = B::new()
            .ok(0, "a", (0, 100))
            .ok(1, "b", (0, 100))
            .read(2, Some("a"), (10, 20))
            .read(2, Some("b"), (30, 40))
            .read(3, Some("a"), (50, 60));
        assert_violation(b.lin(), "each must come first");
        // Same with an unknown write.
        let b = B::new()
            .ok(0, "a", (0, 1))
            .write(1, "u", 1, (2, 3), Outcome::Unknown)
            .read(2, Some("u"), (10, 20))
            .read(2, Some("a"), (30, 40));
        assert_violation(b.lin(), "each must come first");
    }

    #[test]
    fn failed_write_observed_fails() {
        let b = B::new()
            .write(0, "f", 1, (0, 1), Outcome::Failed)
            .read(1, Some("f"), (2, 3));
        assert_violation(b.lin(), "which failed");
        assert_violation(
            check_lost_writes(&b.0, &final_state(Some("f"))),
            "which no write (not failed) of this key wrote",
        );
    }

    #[test]
    fn lost_acknowledged_write_fails() {
        let b = B::new()
            .ok(0, "a", (0, 1))
            .write(1, "u", 1, (2, 3), Outcome::Unknown)
            .ok(0, "b", (4, 5))
            .write(0, "z", 0, (6, 7), Outcome::WriteOk);
        // Final values allowed: "b", or the maybe write "z" invoked after it.
        check_lost_writes(&b.0, &final_state(Some("b"))).expect("b kept");
        check_lost_writes(&b.0, &final_state(Some("z"))).expect("z may follow b");
        assert_violation(check_lost_writes(&b.0, &final_state(None)), "no value");
        // The unknown write "u" may take effect at any time, even after "b".
        check_lost_writes(&b.0, &final_state(Some("u"))).expect("u may follow b");
        // "a" completed before "b" was invoked: "b" is lost.
        let lost = check_lost_writes(&b.0, &final_state(Some("a"))).expect_err("b lost");
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].explanation.contains("write \"b\""), "{}", lost[0]);
        assert!(
            lost[0].explanation.contains("completed before"),
            "{}",
            lost[0]
        );
        assert_violation(
            check_lost_writes(&b.0, &BTreeMap::new()),
            "no entry for this key",
        );
        // A concurrent acknowledged write can be ordered either way.
        let b = B::new().ok(0, "a", (0, 10)).ok(1, "b", (5, 15));
        check_lost_writes(&b.0, &final_state(Some("a"))).expect("a after b");
        check_lost_writes(&b.0, &final_state(Some("b"))).expect("b after a");
    }

    #[test]
    fn keys_are_checked_separately() {
        let mut h = History::new();
        let w = h.invoke(
            0,
            "x",
            Op::Write {
                value: "a".to_string(),
                acks: 1,
            },
            0,
        );
        h.complete(w, Outcome::WriteOk, 1);
        let r = h.invoke(1, "y", Op::Read, 2);
        h.complete(r, Outcome::ReadOk(None), 3);
        let r = h.invoke(1, "x", Op::Read, 4);
        h.complete(r, Outcome::Failed, 5); // ignored
        h.invoke(1, "y", Op::Read, 6); // never completes: ignored
        check_linearizable(&h).expect("linearizable");
        let r = h.invoke(2, "y", Op::Read, 7);
        h.complete(r, Outcome::ReadOk(Some("a".to_string())), 8);
        let v = check_linearizable(&h).expect_err("a was written to x, not y");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "y");
        assert_eq!(h.ops().len(), 5);
        assert!(
            h.to_string()
                .contains("#4 client 2 key \"y\" read [7, 8] -> Some(\"a\")")
        );
    }

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A history of a correct register: each op takes effect at a random point of its interval
    /// (an applied unknown write at any later time), reads return the value at theirs.
    /// `unknown` in thousandths of the writes.
    fn correct_history(seed: u64, n: usize, clients: u64, unknown: u64, span: u64) -> History {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut free_at = vec![0u64; clients as usize];
        let mut points = Vec::new(); // (effect point or none, index)
        let mut h = History::new();
        for i in 0..n {
            let client = rng.below(clients);
            let start = free_at[client as usize] + rng.below(span / 3 + 1);
            let end = start + rng.below(span + 1);
            free_at[client as usize] = end + 1;
            let point = start + rng.below(end - start + 1);
            if rng.below(2) == 0 {
                let op = Op::Write {
                    value: format!("v{i}"),
                    acks: 1,
                };
                let id = h.invoke(client as u32, "k", op, start);
                if rng.below(1000) < unknown {
                    h.complete(id, Outcome::Unknown, end);
                    if rng.below(2) == 0 {
                        points.push((start + rng.below(10 * span + 1), id));
                    }
                } else {
                    h.complete(id, Outcome::WriteOk, end);
                    points.push((point, id));
                }
            } else {
                let id = h.invoke(client as u32, "k", Op::Read, start);
                h.ops[id.0].completed = Some((Outcome::ReadOk(None), end));
                points.push((point, id));
            }
        }
        points.sort();
        let mut value = None;
        for (_, id) in points {
            let record = &mut h.ops[id.0];
            match (&record.op, &mut record.completed) {
                (Op::Write { value: v, .. }, _) => value = Some(v.clone()),
                (Op::Read, Some((Outcome::ReadOk(seen), _))) => seen.clone_from(&value),
                _ => unreachable!("only writes and reads"),
            }
        }
        h
    }

    /// Random small histories, mostly not linearizable: random outcomes and read values.
    fn random_history(rng: &mut Rng) -> History {
        let mut h = History::new();
        let n = 1 + rng.below(8) as usize;
        let mut free_at = [0u64; 3];
        let mut values = vec![None];
        for i in 0..n {
            let client = rng.below(3) as usize;
            let start = free_at[client] + rng.below(4);
            let end = start + rng.below(6);
            free_at[client] = end + 1;
            if rng.below(2) == 0 {
                let value = format!("v{i}");
                values.push(Some(value.clone()));
                let acks = rng.below(2) as u8;
                let id = h.invoke(client as u32, "k", Op::Write { value, acks }, start);
                match rng.below(8) {
                    0 => h.complete(id, Outcome::Failed, end),
                    1 => h.complete(id, Outcome::Unknown, end),
                    2 => {}
                    _ => h.complete(id, Outcome::WriteOk, end),
                }
            } else {
                let id = h.invoke(client as u32, "k", Op::Read, start);
                let outcome = match rng.below(10) {
                    0 => Outcome::Failed,
                    1 => Outcome::ReadOk(Some("never".to_string())),
                    _ => Outcome::ReadOk(values[rng.below(values.len() as u64) as usize].clone()),
                };
                if rng.below(10) != 0 {
                    h.complete(id, outcome, end);
                }
            }
        }
        h
    }

    #[test]
    fn agrees_with_stateright_on_random_histories() {
        let mut rng = Rng(7);
        let (mut good, mut bad) = (0, 0);
        for _ in 0..4000 {
            let h = random_history(&mut rng);
            let mine = check_linearizable(&h);
            assert_eq!(mine.is_ok(), stateright_linearizable(&h), "{h}\n{mine:?}");
            if mine.is_ok() { good += 1 } else { bad += 1 }
        }
        for seed in 0..300 {
            let h = correct_history(seed, 12, 3, 200, 6);
            check_linearizable(&h).unwrap_or_else(|v| panic!("{h}\n{v:?}"));
            assert!(stateright_linearizable(&h), "{h}");
        }
        assert!(good > 500 && bad > 500, "good {good} bad {bad}");
    }

    /// A large history: 2000 ops of 5 clients, 5% unknown writes, correct then with one stale
    /// read near the end. `cargo test ... large -- --nocapture` prints the times.
    #[test]
    fn large_history_is_checked_quickly() {
        let mut h = correct_history(42, 2000, 5, 50, 30);
        let start = Instant::now();
        check_linearizable(&h).unwrap_or_else(|v| panic!("{}", v[0]));
        let good = start.elapsed();
        // Make the last read return the first acknowledged write's value, overwritten long ago.
        let first = h
            .ops()
            .iter()
            .find_map(|r| match (&r.op, &r.completed) {
                (Op::Write { value, .. }, Some((Outcome::WriteOk, _))) => Some(value.clone()),
                _ => None,
            })
            .expect("a write");
        let last = h
            .ops()
            .iter()
            .rposition(|r| r.op == Op::Read)
            .expect("a read");
        h.ops[last].completed = h.ops[last]
            .completed
            .take()
            .map(|(_, at)| (Outcome::ReadOk(Some(first)), at));
        let start = Instant::now();
        let v = check_linearizable(&h).expect_err("a stale read");
        let bad = start.elapsed();
        assert!(v[0].explanation.contains(&format!("#{last} ")), "{}", v[0]);
        eprintln!("2000 ops, 5 clients: linearizable in {good:?}, violation in {bad:?}");
        assert!(good.as_secs() < 5 && bad.as_secs() < 5);
    }
}
