//! Histories: what clients invoked and what they saw, one JSON object per line (Jepsen's format).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{JepsenError, Result};

/// Kind of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A client began an operation.
    Invoke,
    /// The operation took effect, with the result in `value`.
    Ok,
    /// The operation certainly did not take effect (or, for a cas with error `cas-mismatch`,
    /// observed a different value).
    Fail,
    /// The outcome is unknown: the operation may take effect at any time after its invocation,
    /// or never. For the nemesis, a fault event.
    Info,
}

/// Who produced an event: a client process number, or the nemesis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    /// A client process. A process that got an `info` never issues another operation.
    Client(u64),
    /// The fault injector (`"nemesis"`).
    Named(String),
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// invoke, ok, fail or info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Who.
    pub process: Process,
    /// `read`, `write` or `cas` for clients; `start-...`/`stop-...` for the nemesis.
    pub f: String,
    /// The key (absent for nemesis events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A read's result (null when absent or not yet known), a write's value, a cas's
    /// `[expected, new]`, or a fault's description.
    #[serde(default)]
    pub value: Value,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// Whether this is a client event (not the nemesis).
    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}

/// Reads a JSONL history; blank lines are skipped, a malformed line is an error naming it.
pub fn read_history(input: impl BufRead) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| JepsenError::History { line: n + 1, reason: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        let event =
            serde_json::from_str(&line).map_err(|e| JepsenError::History { line: n + 1, reason: e.to_string() })?;
        events.push(event);
    }
    Ok(events)
}

/// Writes events as JSONL.
pub fn write_history(mut out: impl Write, events: &[Event]) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Each client operation as its invocation and its completion (`None`: never completed), in
/// invocation order. Nemesis events are left out; a completion without an invocation is
/// skipped.
pub fn paired(events: &[Event]) -> Vec<(&Event, Option<&Event>)> {
    let mut pending: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<(&Event, Option<&Event>)> = Vec::new();
    for event in events {
        let Process::Client(p) = event.process else { continue };
        if event.kind == EventType::Invoke {
            pending.insert(p, ops.len());
            ops.push((event, None));
        } else if let Some(i) = pending.remove(&p) {
            ops[i].1 = Some(event);
        }
    }
    ops
}
