//! The request logic of a node: writes through Raft, reads at each consistency level.

use std::time::{Duration, Instant};

use openraft::ReadPolicy;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, ForwardToLeader, LinearizableReadError, RaftError};
use raftkv_network::{ApiError, ApiLimits, KvRaft, KvService};
use raftkv_storage::{KvStateMachine, ScanPage};
use raftkv_types::api::{Consistency, NodeStatus};
use raftkv_types::{Command, CommandResult, NodeId, TypeConfig};

use crate::status::node_status;

/// A cheap, cloneable handle on a running node's Raft and state machine: what the HTTP API and the
/// embedding API call.
#[derive(Clone)]
pub struct KvHandle {
    pub(crate) id: NodeId,
    pub(crate) raft: KvRaft,
    pub(crate) state_machine: KvStateMachine,
    pub(crate) limits: ApiLimits,
    pub(crate) write_timeout: Duration,
    pub(crate) read_timeout: Duration,
}

impl KvHandle {
    /// Waits until a read at `consistency` may be served from the local state machine.
    ///
    /// - `stale`: at once.
    /// - `linearizable`: the leader confirms its leadership with a quorum (ReadIndex; concurrent
    ///   reads share a round) and waits until it has applied up to the read index.
    /// - `lease`: the same without the quorum round while the leader's lease holds; once it has
    ///   lapsed, falls back to ReadIndex.
    async fn ready_to_read(&self, consistency: Consistency) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.limits.leader_wait;
        loop {
            match self.confirm_read(consistency).await {
                Err(Refusal::Leaderless(_)) if Instant::now() < deadline => {
                    self.await_leader(None, deadline).await;
                }
                Err(Refusal::Leaderless(e) | Refusal::Final(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// One attempt of [`Self::ready_to_read`].
    async fn confirm_read(&self, consistency: Consistency) -> Result<(), Refusal> {
        let policy = match consistency {
            Consistency::Stale => return Ok(()),
            Consistency::Linearizable => ReadPolicy::ReadIndex,
            Consistency::Lease => ReadPolicy::LeaseRead,
        };
        let confirm = async {
            match self.raft.ensure_linearizable(policy.clone()).await {
                Err(_) if policy == ReadPolicy::LeaseRead && self.raft.is_leader() => {
                    self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.read_timeout, confirm).await {
            Err(_) => Err(Refusal::Final(ApiError::Unavailable(format!(
                "could not confirm leadership within {:?}; no quorum?",
                self.read_timeout
            )))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => Err(not_leader(f)),
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)))) => {
                Err(Refusal::Final(ApiError::Unavailable(format!("no quorum to confirm leadership: {e}"))))
            }
            Ok(Err(RaftError::Fatal(f))) => {
                Err(Refusal::Final(ApiError::Unavailable(format!("node is stopping: {f}"))))
            }
        }
    }

    /// One attempt of [`KvService::write`].
    async fn propose(&self, command: Command) -> Result<CommandResult, Refusal> {
        let proposed = tokio::time::timeout(self.write_timeout, self.raft.client_write(command)).await;
        let unknown = |msg: String| Err(Refusal::Final(ApiError::OutcomeUnknown(msg)));
        match proposed {
            Ok(Ok(response)) => Ok(response.data),
            Err(_) => unknown(format!(
                "write not confirmed within {:?}; it may or may not have been applied",
                self.write_timeout
            )),
            // Refused before it was proposed: certainly not applied.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(not_leader(f)),
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)))) => unknown(format!(
                "leadership changed after the write was proposed; it may or may not have been applied ({f})"
            )),
            Ok(Err(RaftError::APIError(e))) => Err(Refusal::Final(ApiError::Internal(e.to_string()))),
            Ok(Err(RaftError::Fatal(f))) => unknown(format!(
                "node stopped while the write was in flight; it may or may not have been applied ({f})"
            )),
        }
    }

    /// Waits until a leader other than `not` is known (or `deadline`), then a little more, so that
    /// a request refused for want of a leader is retried after the election rather than in a loop.
    async fn await_leader(&self, not: Option<NodeId>, deadline: Instant) -> bool {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let found = self
            .raft
            .wait(Some(remaining))
            .metrics(|m| m.current_leader.is_some() && m.current_leader != not, "a new leader")
            .await
            .is_ok();
        tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
        found
    }

    fn storage_error(e: raftkv_storage::StorageError) -> ApiError {
        ApiError::Internal(format!("storage: {e}"))
    }
}

/// Pause between two attempts of a request refused for want of a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why one attempt at a request failed.
enum Refusal {
    /// No usable leader right now (election in progress, or the leader lost its quorum): nothing
    /// was proposed, and the same request may succeed once a leader is established.
    Leaderless(ApiError),
    /// Any other answer, to be returned as it is.
    Final(ApiError),
}

/// The answer to a request that this node refused to start because it is not a leader that may
/// serve it. Nothing was proposed.
fn not_leader(f: ForwardToLeader<TypeConfig>) -> Refusal {
    match (f.reason, f.leader_id) {
        (ForwardReason::LeaseExpired, _) => Refusal::Leaderless(ApiError::Unavailable(
            "this node leads but has not heard from a quorum within its lease (no quorum?); retry".into(),
        )),
        (_, None) => Refusal::Leaderless(ApiError::NotLeader { leader_id: None, leader: None }),
        (_, Some(id)) => Refusal::Final(ApiError::NotLeader { leader_id: Some(id), leader: f.leader_node }),
    }
}

impl KvService for KvHandle {
    fn limits(&self) -> ApiLimits {
        self.limits
    }

    async fn write(&self, command: Command) -> Result<CommandResult, ApiError> {
        // While no leader is established the write is refused before being proposed, so trying
        // again after the election is safe; the client sees one answer, not the election.
        let deadline = Instant::now() + self.limits.leader_wait;
        loop {
            match self.propose(command.clone()).await {
                Err(Refusal::Leaderless(_)) if Instant::now() < deadline => {
                    self.await_leader(None, deadline).await;
                }
                Err(Refusal::Leaderless(e) | Refusal::Final(e)) => return Err(e),
                Ok(result) => return Ok(result),
            }
        }
    }

    async fn read(&self, key: String, consistency: Consistency) -> Result<Option<Vec<u8>>, ApiError> {
        self.ready_to_read(consistency).await?;
        self.state_machine.get(&key).map_err(Self::storage_error)
    }

    async fn scan(
        &self,
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ScanPage, ApiError> {
        self.ready_to_read(consistency).await?;
        self.state_machine.scan(&prefix, start_after.as_deref(), limit).map_err(Self::storage_error)
    }

    async fn await_new_leader(&self, not: Option<NodeId>, deadline: Instant) -> bool {
        self.await_leader(not, deadline).await
    }

    async fn status(&self) -> Result<NodeStatus, ApiError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        Ok(node_status(self.id, &metrics, self.state_machine.applied_index()))
    }
}
