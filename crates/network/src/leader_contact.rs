//! [`LeaderContact`]: how fresh a non-leader's state is, from what the leader last told it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples kept; at one heartbeat per 100 ms with commits in between, this covers well over the
/// bounds anyone asks a replica for.
const MAX_SAMPLES: usize = 4096;

/// Records, on a follower or learner, when the leader last announced each commit index, so that
/// the node can tell how stale its applied state may be.
///
/// Every AppendEntries the leader sends (heartbeats included) carries its commit index. If this
/// node has applied through commit index `c`, and the latest message announcing a commit index
/// of at most its applied one arrived at `t`, then this node has everything the leader had
/// committed at `t`: its state is at most `now - t` stale (plus the message's one-way delay).
///
/// Cheap to clone; clones share the samples.
#[derive(Debug, Clone, Default)]
pub struct LeaderContact {
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    committed: u64,
}

impl LeaderContact {
    /// A tracker with no contact yet.
    pub fn new() -> LeaderContact {
        LeaderContact::default()
    }

    /// Records that a message from the accepted leader, received at `at`, announced `committed`.
    pub fn record(&self, at: Instant, committed: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match samples.back_mut() {
            // Same commit index as last time: it is now known fresh as of this later instant.
            Some(last) if last.committed == committed => last.at = last.at.max(at),
            Some(last) if last.committed > committed => {
                // A lower commit index can only come from a new leader that has not learned the
                // commit index yet; it tells nothing new about freshness.
            }
            _ => {
                samples.push_back(Sample { at, committed });
                if samples.len() > MAX_SAMPLES {
                    samples.pop_front();
                }
            }
        }
    }

    /// How stale a node that has applied through `applied` is, at `now`: `None` if no message
    /// from a leader has announced a commit index this node has applied.
    pub fn staleness(&self, applied: u64, now: Instant) -> Option<Duration> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().rev().find(|s| s.committed <= applied).map(|s| now.saturating_duration_since(s.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_is_age_of_latest_commit_announcement_already_applied() {
        let contact = LeaderContact::new();
        let t0 = Instant::now();
        assert_eq!(contact.staleness(10, t0), None);

        contact.record(t0, 5);
        contact.record(t0 + Duration::from_millis(100), 5);
        contact.record(t0 + Duration::from_millis(200), 8);
        let now = t0 + Duration::from_millis(250);

        // Caught up with the latest announcement.
        assert_eq!(contact.staleness(8, now), Some(Duration::from_millis(50)));
        // Applied 5..7: fresh as of the last message that announced 5.
        assert_eq!(contact.staleness(6, now), Some(Duration::from_millis(150)));
        // Behind everything ever announced.
        assert_eq!(contact.staleness(4, now), None);
    }

    #[test]
    fn a_lower_commit_index_does_not_refresh() {
        let contact = LeaderContact::new();
        let t0 = Instant::now();
        contact.record(t0, 9);
        contact.record(t0 + Duration::from_millis(300), 3);
        assert_eq!(contact.staleness(9, t0 + Duration::from_millis(400)), Some(Duration::from_millis(400)));
    }
}
