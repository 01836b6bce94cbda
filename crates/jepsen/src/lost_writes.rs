//! Acknowledged writes that the end of the run proves lost.
//!
//! The linearizability check says whether a history can be explained; this names the most
//! serious way it can fail. After the faults are healed, every key is read once more (the final
//! reads). Values are unique per write, so a final read that returns the value of a write `X`, or
//! nothing, while a write `W` of the same key was acknowledged and `X` had completed before `W`
//! was even invoked, can only mean that `W` was lost: nothing after `W` wrote `X`'s value again.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::history::Event;
use crate::operation::{Effect, Operation, operations_by_key};

/// Client processes from this number on are the final reads (backup reads come after them, from
/// 2 000 000).
pub const FINAL_READ_PROCESS: u64 = 1_000_000;

fn is_final_read(op: &Operation) -> bool {
    (FINAL_READ_PROCESS..2 * FINAL_READ_PROCESS).contains(&op.process)
}

/// One acknowledged write missing from its key's final read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostWrite {
    /// The key.
    pub key: String,
    /// The value whose write was acknowledged.
    pub value: Value,
    /// When it was acknowledged, ns since the run began.
    pub acknowledged: u64,
    /// What the final read returned instead (null: nothing).
    pub final_value: Value,
}

/// The value an operation stored, if it stores one.
fn stored(op: &Operation) -> Option<&Value> {
    match &op.effect {
        Effect::Write { value } => Some(value),
        Effect::Cas { new, .. } => Some(new),
        _ => None,
    }
}

/// The acknowledged writes of `events` that the final reads prove lost.
pub fn lost_writes(events: &[Event]) -> Result<Vec<LostWrite>> {
    let mut lost = Vec::new();
    for (key, ops) in operations_by_key(events)? {
        let Some(final_read) = ops
            .iter()
            .rev()
            .find(|o| is_final_read(o) && o.complete.is_some() && matches!(o.effect, Effect::Read { .. }))
        else {
            continue;
        };
        let Effect::Read { value: seen } = &final_read.effect else { continue };
        let writers: HashMap<String, &Operation> =
            ops.iter().filter_map(|o| stored(o).map(|v| (v.to_string(), o))).collect();
        // When the write of the value seen completed (None: nothing was seen, or its write's
        // outcome is unknown, which bounds nothing).
        let seen_completed =
            if seen.is_null() { Some(0) } else { writers.get(&seen.to_string()).and_then(|w| w.complete) };
        let Some(seen_completed) = seen_completed else { continue };
        for op in &ops {
            let (Some(value), Some(acked)) = (stored(op), op.complete) else { continue };
            if value != seen && acked < final_read.invoke && (seen.is_null() || seen_completed < op.invoke) {
                lost.push(LostWrite {
                    key: key.clone(),
                    value: value.clone(),
                    acknowledged: acked,
                    final_value: seen.clone(),
                });
            }
        }
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventType, Process};

    fn event(kind: EventType, process: u64, f: &str, value: Value, time: u64) -> Event {
        Event { kind, process: Process::Client(process), f: f.into(), key: Some("k".into()), value, error: None, time }
    }

    fn history(final_value: Value) -> Vec<Event> {
        vec![
            event(EventType::Invoke, 1, "write", Value::from(1), 10),
            event(EventType::Ok, 1, "write", Value::from(1), 20),
            event(EventType::Invoke, 2, "write", Value::from(2), 30),
            event(EventType::Ok, 2, "write", Value::from(2), 40),
            event(EventType::Invoke, FINAL_READ_PROCESS + 1, "read", Value::Null, 100),
            event(EventType::Ok, FINAL_READ_PROCESS + 1, "read", final_value, 110),
        ]
    }

    #[test]
    fn a_final_read_of_the_last_write_loses_nothing() {
        assert!(lost_writes(&history(Value::from(2))).unwrap().is_empty());
    }

    #[test]
    fn a_final_read_of_an_older_write_names_the_newer_one_lost() {
        let lost = lost_writes(&history(Value::from(1))).unwrap();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].value, Value::from(2));
        assert_eq!(lost[0].final_value, Value::from(1));
    }

    #[test]
    fn a_final_read_of_nothing_names_every_acknowledged_write_lost() {
        assert_eq!(lost_writes(&history(Value::Null)).unwrap().len(), 2);
    }

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        let mut events = history(Value::from(1));
        // The second write now overlaps the first: either may be last.
        events[2].time = 15;
        events.sort_by_key(|e| e.time);
        assert!(lost_writes(&events).unwrap().is_empty());
    }
}
