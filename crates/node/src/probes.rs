//! Liveness and readiness: the checks behind `GET /livez` and `GET /readyz`.
//!
//! Liveness never depends on a leader or a quorum: an orchestrator that restarts a node because
//! the cluster lost its quorum only makes the outage longer.

use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use raftkv_network::ProbeCheck;

use crate::kv_handle::KvHandle;

/// How far behind the commit index this node may have applied and still be ready.
const READY_MAX_BEHIND: u64 = 1_000;

fn check(name: &'static str, failure: Option<String>) -> ProbeCheck {
    ProbeCheck { name, failure }
}

impl KvHandle {
    /// Waits until this node has applied what the leader had committed when called (the leader's
    /// own commit index; on another member a read index from the leader, as a follower read gets
    /// it, so a node that was cut off does not count itself caught up with an old announcement).
    /// `None` once it has, or why not within `timeout`.
    pub(crate) async fn sync_applied_within(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let target = loop {
            let own = {
                let m = self.raft.metrics().borrow_watched().clone();
                (m.state == ServerState::Leader).then(|| m.local_committed.as_ref().map_or(0, |l| l.index))
            };
            if let Some(index) = own {
                break index;
            }
            if let Some((_, leader)) = self.known_leader() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(index)) = tokio::time::timeout(remaining, self.reads.read_index(leader)).await {
                    break index;
                }
            }
            if Instant::now() >= deadline {
                return Some(format!("no leader gave its commit index within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self.raft.wait(Some(remaining)).applied_index_at_least(Some(target), "readyz sync").await {
            Ok(_) => None,
            Err(_) => Some(format!(
                "applied index {} has not reached the leader's commit index {target} within {timeout:?}",
                self.state_machine.applied_index()
            )),
        }
    }

    /// `raft` and `storage` (live); then `member`, `leader` and `applied` (ready).
    pub(crate) async fn probe_checks(&self, ready: bool) -> Vec<ProbeCheck> {
        let m = self.raft.metrics().borrow_watched().clone();
        let mut checks = vec![
            check("raft", m.running_state.as_ref().err().map(|e| format!("raft stopped: {e}"))),
            check("storage", self.state_machine.get("").err().map(|e| format!("storage does not answer: {e}"))),
        ];
        if !ready {
            return checks;
        }
        let member = m.membership_config.membership().get_node(&self.id).is_some();
        checks.push(check("member", (!member).then(|| format!("node {} is not a member of the cluster", self.id))));
        let in_contact = Duration::from_millis(2) * self.election_timeout.as_millis() as u32;
        let leader = match m.current_leader {
            None => Some("no leader is known".to_string()),
            Some(_) => match self.staleness() {
                Some(age) if age <= in_contact => None,
                Some(age) => Some(format!("last heard from the leader {} ms ago", age.as_millis())),
                None => Some("not in contact with the leader yet".to_string()),
            },
        };
        checks.push(check("leader", leader));
        let committed = m.local_committed.as_ref().map_or(0, |l| l.index);
        let applied = self.state_machine.applied_index();
        let behind = committed.saturating_sub(applied);
        checks.push(check(
            "applied",
            (behind > READY_MAX_BEHIND)
                .then(|| format!("applied index {applied} is {behind} entries behind the commit index {committed}")),
        ));
        checks
    }
}
