//! [`AutopilotMemory`]: what the autopilot observed during this node's leadership, kept between
//! rounds and started over with each new leadership.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftkv_types::{ClusterEvent, NodeId};

use crate::cluster_ops::now_ms;

/// How many decisions not to act the leader keeps for the event log.
const MAX_DECISIONS: usize = 50;

/// What the autopilot remembers between rounds (on one node, for its current leadership).
#[derive(Debug, Default)]
pub(crate) struct AutopilotMemory {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// The term this node leads in, and since when it has known so.
    leadership: Option<(u64, Instant)>,
    /// Since when each member has been healthy without a break.
    healthy_since: HashMap<NodeId, Instant>,
    /// When the last action was taken.
    last_action: Option<Instant>,
    /// Recent decisions not to act, oldest first.
    decisions: VecDeque<ClusterEvent>,
    /// The last decision recorded (its reason and the voter it is about), so that a decision
    /// repeated every round is recorded once; its words change from round to round (times).
    last_decision: Option<(&'static str, NodeId)>,
    /// Members with a planned absence that have been seen away since: once healthy again, they
    /// are back. (One that was never seen away has not left yet.)
    seen_away: BTreeSet<NodeId>,
}

impl AutopilotMemory {
    /// Notes that this node leads in `term` (or does not, with `None`): a new leadership starts
    /// observing from scratch. Returns how long this node has led.
    pub(crate) fn leading(&self, term: Option<u64>, now: Instant) -> Option<Duration> {
        let mut memory = self.inner.lock().expect("autopilot lock poisoned");
        match term {
            None => {
                if memory.leadership.is_some() {
                    *memory = Memory { decisions: std::mem::take(&mut memory.decisions), ..Memory::default() };
                }
                None
            }
            Some(term) => {
                if memory.leadership.is_none_or(|(t, _)| t != term) {
                    memory.leadership = Some((term, now));
                    memory.healthy_since.clear();
                    memory.last_action = None;
                    memory.last_decision = None;
                }
                memory.leadership.map(|(_, since)| now.saturating_duration_since(since))
            }
        }
    }

    /// Updates when `id` became healthy; returns for how long it has been.
    pub(crate) fn stable_for(&self, id: NodeId, healthy: bool, now: Instant) -> Option<Duration> {
        let mut memory = self.inner.lock().expect("autopilot lock poisoned");
        if healthy {
            let since = *memory.healthy_since.entry(id).or_insert(now);
            Some(now.saturating_duration_since(since))
        } else {
            memory.healthy_since.remove(&id);
            None
        }
    }

    /// Whether member `id`, which announced a planned restart, is back: it was seen unreachable
    /// since and is healthy now.
    pub(crate) fn returned(&self, id: NodeId, reachable: bool, healthy: bool) -> bool {
        let mut memory = self.inner.lock().expect("autopilot lock poisoned");
        if !reachable {
            memory.seen_away.insert(id);
            return false;
        }
        healthy && memory.seen_away.remove(&id)
    }

    /// How long this node has led, if it does.
    pub(crate) fn led_for(&self, now: Instant) -> Option<Duration> {
        let memory = self.inner.lock().expect("autopilot lock poisoned");
        memory.leadership.map(|(_, since)| now.saturating_duration_since(since))
    }

    pub(crate) fn since_last_action(&self, now: Instant) -> Option<Duration> {
        let memory = self.inner.lock().expect("autopilot lock poisoned");
        memory.last_action.map(|at| now.saturating_duration_since(at))
    }

    pub(crate) fn acted(&self, now: Instant) {
        let mut memory = self.inner.lock().expect("autopilot lock poisoned");
        memory.last_action = Some(now);
        memory.last_decision = None;
    }

    /// Records a decision not to act about voter `dead`, unless it is the same as the last one
    /// recorded (same reason, same voter).
    pub(crate) fn decided(&self, code: &'static str, dead: NodeId, message: String) {
        let mut memory = self.inner.lock().expect("autopilot lock poisoned");
        if memory.last_decision == Some((code, dead)) {
            return;
        }
        tracing::info!(code, dead, %message, "autopilot: not acting");
        memory.last_decision = Some((code, dead));
        if memory.decisions.len() >= MAX_DECISIONS {
            memory.decisions.pop_front();
        }
        memory.decisions.push_back(ClusterEvent {
            at_ms: now_ms(),
            log_index: 0,
            kind: format!("skipped:{code}"),
            message,
        });
    }

    /// The decisions kept, oldest first.
    pub(crate) fn decisions(&self) -> Vec<ClusterEvent> {
        self.inner.lock().expect("autopilot lock poisoned").decisions.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_repeated_every_round_is_recorded_once() {
        let memory = AutopilotMemory::default();
        memory.decided("new_leader", 2, "this leader has led for 100 ms only".into());
        memory.decided("new_leader", 2, "this leader has led for 300 ms only".into());
        assert_eq!(memory.decisions().len(), 1, "the same decision, with other times in its words");
        memory.decided("new_leader", 3, "about another voter".into());
        memory.decided("cooldown", 3, "another reason".into());
        let kinds: Vec<String> = memory.decisions().into_iter().map(|d| d.kind).collect();
        assert_eq!(kinds, ["skipped:new_leader", "skipped:new_leader", "skipped:cooldown"]);
        memory.acted(Instant::now());
        memory.decided("cooldown", 3, "after an action, again".into());
        assert_eq!(memory.decisions().len(), 4);
    }
}
