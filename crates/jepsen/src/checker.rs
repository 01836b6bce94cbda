//! A linearizability checker for registers: Wing & Gong's search with Lowe's memoisation,
//! run per key (each key is an independent register, so the keys check separately).
//!
//! The search builds a linearization one operation at a time. The next operation may be any not
//! yet linearized one invoked before the earliest completion among the pending required
//! operations (an operation that completed before another was invoked must precede it), and legal
//! in the current register value. A configuration (set of linearized operations, register value)
//! that failed once fails again, so each is explored once. Operations with unknown outcome never
//! complete: they may be linearized at any point after their invocation, or never.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::history::Event;
use crate::operation::{Effect, Operation, operations_by_key};

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, explains every result.
    Linearizable,
    /// No such order exists.
    NotLinearizable,
    /// The time budget ran out first.
    Unknown,
}

impl Verdict {
    /// `raftkv-jepsen`'s exit code for this verdict: 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Linearizable => 0,
            Verdict::NotLinearizable => 1,
            Verdict::Unknown => 2,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// The result for one key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCheck {
    /// The key.
    pub key: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Operations on it that the checker considered.
    pub operations: usize,
    /// For a violation: a smallest set of this key's operations that cannot be ordered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<Operation>,
    /// For a property of the counter, bank or watch workloads that does not hold: what broke
    /// it, one line each (the first few).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The result for a whole history.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The workload checked: `register` (per-key linearizability), or `counter`, `bank`,
    /// `watch`, whose properties are checked instead (see [`CheckReport::of_properties`]).
    pub workload: String,
    /// Linearizable only if every key is; not linearizable if any key is not. For the other
    /// workloads: linearizable when every property holds.
    pub verdict: Verdict,
    /// Per key, in key order; for the other workloads, per property.
    pub keys: Vec<KeyCheck>,
    /// Time the check took, ms.
    pub elapsed_ms: u64,
}

impl CheckReport {
    /// The keys that are not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &KeyCheck> {
        self.keys.iter().filter(|k| k.verdict == Verdict::NotLinearizable)
    }

    /// A one-line verdict for people.
    pub fn summary(&self) -> String {
        if self.workload != "register" {
            let bad: Vec<String> = self
                .violations()
                .map(|k| format!("{} ({})", k.key, k.problems.first().map_or("", String::as_str)))
                .collect();
            let ops: usize = self.keys.iter().map(|k| k.operations).max().unwrap_or(0);
            let mut line = format!("{}: {} workload, {ops} operations", self.verdict, self.workload);
            if !bad.is_empty() {
                line.push_str(&format!("; violated: {}", bad.join("; ")));
            }
            return line;
        }
        let ops: usize = self.keys.iter().map(|k| k.operations).sum();
        let mut line =
            format!("{}: {} keys, {ops} operations, checked in {} ms", self.verdict, self.keys.len(), self.elapsed_ms);
        let bad: Vec<&str> = self.violations().map(|k| k.key.as_str()).collect();
        if !bad.is_empty() {
            line.push_str(&format!("; violations on {}", bad.join(", ")));
        }
        let unknown = self.keys.iter().filter(|k| k.verdict == Verdict::Unknown).count();
        if unknown > 0 {
            line.push_str(&format!("; {unknown} keys undecided within the time budget"));
        }
        line
    }
}

/// Checks a history within `budget`.
pub fn check(events: &[Event], budget: Duration) -> Result<CheckReport> {
    let started = Instant::now();
    let deadline = started + budget;
    let by_key = operations_by_key(events)?;
    let mut keys = Vec::with_capacity(by_key.len());
    for (key, ops) in by_key {
        let verdict = check_register(&ops, deadline);
        let failing = match verdict {
            Verdict::NotLinearizable => minimal_failing(&ops, deadline),
            _ => Vec::new(),
        };
        keys.push(KeyCheck { key, verdict, operations: ops.len(), failing, problems: Vec::new() });
    }
    let verdict = if keys.iter().any(|k| k.verdict == Verdict::NotLinearizable) {
        Verdict::NotLinearizable
    } else if keys.iter().any(|k| k.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    Ok(CheckReport { workload: "register".into(), verdict, keys, elapsed_ms: started.elapsed().as_millis() as u64 })
}

/// One property a workload's checker tested: its name, the operations it looked at, and what
/// broke it (empty: it holds).
#[derive(Debug, Clone)]
pub struct Property {
    /// Its name (`conserved-total`, `watch-order`...).
    pub name: String,
    /// Operations it considered.
    pub operations: usize,
    /// Violations, one line each.
    pub problems: Vec<String>,
}

impl Property {
    /// `name` with the operations it considered and what broke it.
    pub fn new(name: &str, operations: usize, problems: Vec<String>) -> Property {
        Property { name: name.into(), operations, problems }
    }

    /// That the run did something: every count of ok operations (`what`, how many) above zero.
    pub fn progress(counts: &[(&str, usize)]) -> Property {
        let problems = counts
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(what, _)| format!("no {what} succeeded: a run that does nothing proves nothing"))
            .collect();
        Property::new("progress", counts.iter().map(|(_, n)| n).sum(), problems)
    }
}

impl CheckReport {
    /// The report of a workload checked by properties: `linearizable` (the history is
    /// consistent) when every property holds, `not linearizable` when any does not.
    pub fn of_properties(workload: &str, properties: Vec<Property>, started: Instant) -> CheckReport {
        let keys: Vec<KeyCheck> = properties
            .into_iter()
            .map(|p| KeyCheck {
                verdict: if p.problems.is_empty() { Verdict::Linearizable } else { Verdict::NotLinearizable },
                key: p.name,
                operations: p.operations,
                failing: Vec::new(),
                problems: p.problems.into_iter().take(20).collect(),
            })
            .collect();
        let verdict = if keys.iter().all(|k| k.verdict == Verdict::Linearizable) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        CheckReport { workload: workload.into(), verdict, keys, elapsed_ms: started.elapsed().as_millis() as u64 }
    }
}

/// Checks one register's operations (sorted by invocation) against an initially absent value.
pub fn check_register(ops: &[Operation], deadline: Instant) -> Verdict {
    let mut search = Search::new(ops, deadline);
    // The recursion is as deep as the key's history is long: give it room.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, || search.run())
            .expect("spawn checker thread")
            .join()
            .expect("checker thread")
    })
}

/// Shrinks a non-linearizable history to a 1-minimal one: removing any single remaining
/// operation would make it linearizable (or orphan a read of its value). Later operations are
/// tried first, so the set that remains ends where the violation shows.
fn minimal_failing(ops: &[Operation], deadline: Instant) -> Vec<Operation> {
    let mut keep = vec![true; ops.len()];
    for i in (0..ops.len()).rev() {
        if Instant::now() > deadline {
            break;
        }
        if writes_value_observed(ops, &keep, i) {
            continue;
        }
        keep[i] = false;
        let subset: Vec<Operation> = ops.iter().zip(&keep).filter(|(_, k)| **k).map(|(o, _)| o.clone()).collect();
        if check_register(&subset, deadline) != Verdict::NotLinearizable {
            keep[i] = true;
        }
    }
    ops.iter().zip(&keep).filter(|(_, k)| **k).map(|(o, _)| o.clone()).collect()
}

/// Whether op `i` stores a value that another kept operation observes: removing it would leave a
/// read of a value no one wrote, which explains nothing.
fn writes_value_observed(ops: &[Operation], keep: &[bool], i: usize) -> bool {
    let stored = match &ops[i].effect {
        Effect::Write { value } | Effect::Cas { new: value, .. } => value,
        _ => return false,
    };
    ops.iter().zip(keep).enumerate().any(|(j, (o, k))| {
        *k && j != i
            && match &o.effect {
                Effect::Read { value } => value == stored,
                Effect::Cas { expected, .. } => expected == stored,
                _ => false,
            }
    })
}

/// One operation in the search's compact form: values interned, unknown completion as `u64::MAX`.
struct Op {
    invoke: u64,
    complete: u64,
    required: bool,
    kind: Kind,
}

enum Kind {
    Read(u32),
    Write(u32),
    Cas(u32, u32),
    Mismatch(u32),
}

struct Search {
    ops: Vec<Op>,
    linearized: Vec<u64>,
    remaining_required: usize,
    visited: HashSet<(Vec<u64>, u32)>,
    deadline: Instant,
    nodes: u64,
    timed_out: bool,
}

impl Search {
    fn new(ops: &[Operation], deadline: Instant) -> Search {
        let mut interned: HashMap<String, u32> = HashMap::from([(Value::Null.to_string(), 0)]);
        let mut id = |v: &Value| {
            let next = interned.len() as u32;
            *interned.entry(v.to_string()).or_insert(next)
        };
        let mut compact: Vec<Op> = ops
            .iter()
            .map(|o| Op {
                invoke: o.invoke,
                complete: o.complete.unwrap_or(u64::MAX),
                required: o.required(),
                kind: match &o.effect {
                    Effect::Read { value } => Kind::Read(id(value)),
                    Effect::Write { value } => Kind::Write(id(value)),
                    Effect::Cas { expected, new } => Kind::Cas(id(expected), id(new)),
                    Effect::CasMismatch { expected } => Kind::Mismatch(id(expected)),
                },
            })
            .collect();
        compact.sort_by_key(|o| o.invoke);
        let remaining_required = compact.iter().filter(|o| o.required).count();
        Search {
            linearized: vec![0; compact.len().div_ceil(64)],
            ops: compact,
            remaining_required,
            visited: HashSet::new(),
            deadline,
            nodes: 0,
            timed_out: false,
        }
    }

    fn run(&mut self) -> Verdict {
        let found = self.dfs(0);
        match (found, self.timed_out) {
            (true, _) => Verdict::Linearizable,
            (false, true) => Verdict::Unknown,
            (false, false) => Verdict::NotLinearizable,
        }
    }

    fn is_linearized(&self, i: usize) -> bool {
        self.linearized[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.linearized[i / 64] ^= 1 << (i % 64);
    }

    /// The register value after applying op `i` to `value`, or `None` if it is not legal there.
    fn step(&self, i: usize, value: u32) -> Option<u32> {
        match self.ops[i].kind {
            Kind::Read(v) => (v == value).then_some(value),
            Kind::Write(v) => Some(v),
            Kind::Cas(expected, new) => (expected == value).then_some(new),
            Kind::Mismatch(expected) => (expected != value).then_some(value),
        }
    }

    fn dfs(&mut self, value: u32) -> bool {
        if self.remaining_required == 0 {
            return true;
        }
        self.nodes += 1;
        if self.nodes.is_multiple_of(1024) && Instant::now() > self.deadline {
            self.timed_out = true;
        }
        if self.timed_out || !self.visited.insert((self.linearized.clone(), value)) {
            return false;
        }
        // Nothing invoked after the earliest pending completion may be linearized next.
        let horizon = (0..self.ops.len())
            .filter(|&i| self.ops[i].required && !self.is_linearized(i))
            .map(|i| self.ops[i].complete)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            if self.ops[i].invoke > horizon {
                break;
            }
            if self.is_linearized(i) {
                continue;
            }
            let Some(next) = self.step(i, value) else { continue };
            self.flip(i);
            let required = self.ops[i].required;
            if required {
                self.remaining_required -= 1;
            }
            let found = self.dfs(next);
            self.flip(i);
            if required {
                self.remaining_required += 1;
            }
            if found {
                return true;
            }
            if self.timed_out {
                return false;
            }
        }
        false
    }
}
