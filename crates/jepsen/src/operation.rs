//! Client operations paired from a history's invocations and completions, grouped by key.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::error::{JepsenError, Result};
use crate::history::{Event, EventType, Process};

/// What an operation did to, or saw of, its register.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Effect {
    /// Read `value` (null: absent).
    Read {
        /// The value read.
        value: Value,
    },
    /// Wrote `value`.
    Write {
        /// The value written.
        value: Value,
    },
    /// Swapped `expected` for `new`.
    Cas {
        /// The value required.
        expected: Value,
        /// The value stored.
        new: Value,
    },
    /// A cas that did not swap because the value was not `expected`: an observation.
    CasMismatch {
        /// The value that was not there.
        expected: Value,
    },
}

/// One client operation, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    /// The client process.
    pub process: u64,
    /// What it did.
    pub effect: Effect,
    /// When it was invoked (ns).
    pub invoke: u64,
    /// When it completed (ns); `None` for an operation with unknown outcome, which may take
    /// effect at any time after `invoke`, or never.
    pub complete: Option<u64>,
}

impl Operation {
    /// Whether the operation must be linearized (it completed `ok`, or failed with an observation).
    pub fn required(&self) -> bool {
        self.complete.is_some()
    }
}

/// Pairs invocations with completions and groups the operations that constrain the register by
/// key. Failed reads and writes (certainly no effect) and reads of unknown outcome (no
/// constraint) are dropped. An invocation never completed counts as unknown.
pub fn operations_by_key(events: &[Event]) -> Result<BTreeMap<String, Vec<Operation>>> {
    let mut pending: HashMap<u64, &Event> = HashMap::new();
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let mut push = |invoke: &Event, complete: Option<&Event>| -> Result<()> {
        let key =
            invoke.key.clone().ok_or_else(|| JepsenError::Malformed(format!("operation without a key: {invoke:?}")))?;
        let Process::Client(process) = invoke.process else { return Ok(()) };
        let kind = complete.map_or(EventType::Info, |c| c.kind);
        let time = complete.map(|c| c.time);
        let cas_values = || -> Result<(Value, Value)> {
            match &invoke.value {
                Value::Array(pair) if pair.len() == 2 => Ok((pair[0].clone(), pair[1].clone())),
                other => Err(JepsenError::Malformed(format!("cas value must be [expected, new], got {other}"))),
            }
        };
        let op = |effect, complete| Operation { process, effect, invoke: invoke.time, complete };
        let operation = match (invoke.f.as_str(), kind) {
            ("read", EventType::Ok) => {
                let value = complete.map(|c| c.value.clone()).unwrap_or(Value::Null);
                Some(op(Effect::Read { value }, time))
            }
            ("read", _) => None,
            ("write", EventType::Ok) => Some(op(Effect::Write { value: invoke.value.clone() }, time)),
            ("write", EventType::Info) => Some(op(Effect::Write { value: invoke.value.clone() }, None)),
            ("cas", EventType::Ok) => {
                let (expected, new) = cas_values()?;
                Some(op(Effect::Cas { expected, new }, time))
            }
            ("cas", EventType::Info) => {
                let (expected, new) = cas_values()?;
                Some(op(Effect::Cas { expected, new }, None))
            }
            ("cas", EventType::Fail) if complete.and_then(|c| c.error.as_deref()) == Some("cas-mismatch") => {
                let (expected, _) = cas_values()?;
                Some(op(Effect::CasMismatch { expected }, time))
            }
            ("write" | "cas", _) => None,
            (f, _) => return Err(JepsenError::Malformed(format!("unknown operation {f:?}"))),
        };
        if let Some(operation) = operation {
            by_key.entry(key).or_default().push(operation);
        }
        Ok(())
    };
    for event in events.iter().filter(|e| e.is_client()) {
        let Process::Client(p) = event.process else { continue };
        match event.kind {
            EventType::Invoke => {
                if let Some(previous) = pending.insert(p, event) {
                    return Err(JepsenError::Malformed(format!(
                        "process {p} invoked {} at {} while {} from {} was pending",
                        event.f, event.time, previous.f, previous.time
                    )));
                }
            }
            _ => {
                let invoke = pending.remove(&p).ok_or_else(|| {
                    JepsenError::Malformed(format!("process {p} completed {} without invoking", event.f))
                })?;
                push(invoke, Some(event))?;
            }
        }
    }
    let mut unfinished: Vec<&Event> = pending.into_values().collect();
    unfinished.sort_by_key(|e| e.time);
    for invoke in unfinished {
        push(invoke, None)?;
    }
    for ops in by_key.values_mut() {
        ops.sort_by_key(|o| o.invoke);
    }
    Ok(by_key)
}
