//! Lease expiry, and the sweep of expired client sessions: the leader's job, through the log.
//!
//! The leader looks at the leases every [`CHECK_EVERY`] and proposes `LeaseExpire` for each one
//! that has run out by its clock, so every replica deletes the same keys at the same revision.
//! The state machine applies an expiry only if the lease has run out by the entry's own time (a
//! renewal applied first keeps it). A new leader expires nothing until it has led for a lease's
//! whole time to live: a lease kept alive through the old leader, whose renewals the new one may
//! not have seen applied yet, never ends early because leadership moved.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use raftkv_network::ApiError;
use raftkv_types::api::{Consistency, LeaseInfo};
use raftkv_types::{Command, Outcome};

use crate::kv_handle::KvHandle;

/// How often the leader checks for expired leases.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How often the leader checks for expired client sessions and idempotency keys.
const SWEEP_CHECK_EVERY: Duration = Duration::from_secs(1);

impl KvHandle {
    /// Runs for the life of the node.
    pub(crate) async fn keep_leases(self) {
        let mut leading_since: Option<Instant> = None;
        let mut last_sweep_check = Instant::now();
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let leads = self.raft.metrics().borrow_watched().state == ServerState::Leader;
            if !leads {
                leading_since = None;
                continue;
            }
            let since = *leading_since.get_or_insert_with(Instant::now);
            let leases = match self.state_machine.leases() {
                Ok(leases) => leases,
                Err(err) => {
                    tracing::warn!(%err, "could not read leases");
                    continue;
                }
            };
            let now = now_ms();
            if last_sweep_check.elapsed() >= SWEEP_CHECK_EVERY {
                last_sweep_check = Instant::now();
                self.sweep_sessions(now).await;
            }
            for (id, lease) in leases {
                if now < lease.expires_at_ms() || since.elapsed() < Duration::from_millis(lease.ttl_ms) {
                    continue;
                }
                match self.commit(Command::LeaseExpire { id }).await {
                    Ok(result) => {
                        if let Outcome::Lease(outcome) = result.outcome {
                            tracing::debug!(id, ?outcome, revision = result.revision, "lease expiry applied");
                        }
                    }
                    Err(err) => {
                        tracing::debug!(id, %err, "lease expiry not applied; trying again");
                        break;
                    }
                }
            }
        }
    }

    /// Proposes a sweep of expired sessions and idempotency keys if one is due by the leader's
    /// clock (the state machine re-checks by its own).
    async fn sweep_sessions(&self, now: u64) {
        let due = match self.state_machine.dedup_counts() {
            Ok(counts) => {
                [counts.next_session_expiry_ms, counts.next_key_expiry_ms].into_iter().flatten().any(|at| at <= now)
            }
            Err(err) => {
                tracing::warn!(%err, "could not read client sessions");
                false
            }
        };
        if due {
            match self.commit(Command::SweepSessions).await {
                Ok(result) => tracing::debug!(outcome = ?result.outcome, "session sweep applied"),
                Err(err) => tracing::debug!(%err, "session sweep not applied; trying again"),
            }
        }
    }

    /// Every lease, at a linearizable point, with about how long each has left.
    pub(crate) async fn lease_infos(&self) -> Result<Vec<LeaseInfo>, ApiError> {
        self.ready_to_read(Consistency::Linearizable).await?;
        let leases = self.state_machine.leases().map_err(|e| ApiError::Internal(format!("storage: {e}")))?;
        let now = now_ms();
        Ok(leases
            .into_iter()
            .map(|(id, lease)| LeaseInfo {
                id,
                ttl_ms: lease.ttl_ms,
                remaining_ms: lease.expires_at_ms().saturating_sub(now),
                keys: lease.keys.into_iter().collect(),
            })
            .collect())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
