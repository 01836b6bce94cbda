//! [`AppendClock`]: when each log index reached this node, so that a leader can say how old the
//! oldest entry a member is missing is (replication lag in milliseconds).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;

use raftkv_network::KvRaft;

/// Samples kept. One sample is taken per change of the last log index, which under load covers
/// a batch of entries; lags older than the oldest sample are reported as that sample's age.
const MAX_SAMPLES: usize = 8192;

/// Shortest time between two samples; lags are precise to about this much.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Times at which this node's last log index grew. Cheap to clone; clones share the samples.
#[derive(Debug, Clone, Default)]
pub struct AppendClock {
    samples: Arc<Mutex<VecDeque<(Instant, u64)>>>,
}

impl AppendClock {
    /// Starts recording the last log index of `raft` until it shuts down.
    pub fn start(raft: &KvRaft) -> AppendClock {
        let clock = AppendClock::default();
        let mut metrics = raft.metrics();
        let recorder = clock.clone();
        tokio::spawn(async move {
            loop {
                let last = metrics.borrow_watched().last_log_index.unwrap_or(0);
                recorder.record(Instant::now(), last);
                // Metrics change several times per write: sample at most every SAMPLE_EVERY
                // rather than waking for each change.
                tokio::time::sleep(SAMPLE_EVERY).await;
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        clock
    }

    fn record(&self, at: Instant, last_log_index: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.back().is_some_and(|&(_, last)| last >= last_log_index) {
            return;
        }
        samples.push_back((at, last_log_index));
        if samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
    }

    /// How long ago the first entry after `matched` was appended here: the age of the oldest
    /// entry a member that has `matched` is missing. Zero when it has everything.
    pub fn lag(&self, matched: u64, now: Instant) -> Duration {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match samples.iter().find(|&&(_, index)| index > matched) {
            Some(&(at, _)) => now.saturating_duration_since(at),
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_age_of_oldest_missing_entry() {
        let clock = AppendClock::default();
        let t0 = Instant::now();
        clock.record(t0, 10);
        clock.record(t0 + Duration::from_millis(100), 20);
        clock.record(t0 + Duration::from_millis(200), 30);
        let now = t0 + Duration::from_millis(500);
        assert_eq!(clock.lag(30, now), Duration::ZERO);
        assert_eq!(clock.lag(25, now), Duration::from_millis(300));
        assert_eq!(clock.lag(10, now), Duration::from_millis(400));
        assert_eq!(clock.lag(0, now), Duration::from_millis(500));
    }
}
