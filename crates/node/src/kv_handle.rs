//! The request logic of a node: writes through Raft, reads at each consistency level.

use std::time::Duration;

use openraft::ReadPolicy;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use raftkv_network::{ApiError, ApiLimits, KvRaft, KvService};
use raftkv_storage::{KvStateMachine, ScanPage};
use raftkv_types::api::{Consistency, NodeStatus};
use raftkv_types::{Command, CommandResult, NodeId};

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
            Err(_) => Err(ApiError::Unavailable(format!(
                "could not confirm leadership within {:?}; no quorum?",
                self.read_timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                Err(ApiError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)))) => Err(
                ApiError::Unavailable(format!("no quorum to confirm leadership: {e}")),
            ),
            Ok(Err(RaftError::Fatal(f))) => {
                Err(ApiError::Unavailable(format!("node is stopping: {f}")))
            }
        }
    }

    fn storage_error(e: raftkv_storage::StorageError) -> ApiError {
        ApiError::Internal(format!("storage: {e}"))
    }
}

impl KvService for KvHandle {
    fn limits(&self) -> ApiLimits {
        self.limits
    }

    async fn write(&self, command: Command) -> Result<CommandResult, ApiError> {
        let proposed =
            tokio::time::timeout(self.write_timeout, self.raft.client_write(command)).await;
        match proposed {
            Ok(Ok(response)) => Ok(response.data),
            Err(_) => Err(ApiError::OutcomeUnknown(format!(
                "write not confirmed within {:?}; it may or may not have been applied",
                self.write_timeout
            ))),
            // Refused before it was proposed: certainly not applied.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ApiError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)))) => {
                Err(ApiError::OutcomeUnknown(format!(
                    "leadership changed after the write was proposed; it may or may not have been applied ({f})"
                )))
            }
            Ok(Err(RaftError::APIError(e))) => Err(ApiError::Internal(e.to_string())),
            Ok(Err(RaftError::Fatal(f))) => Err(ApiError::OutcomeUnknown(format!(
                "node stopped while the write was in flight; it may or may not have been applied ({f})"
            ))),
        }
    }

    async fn read(
        &self,
        key: String,
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, ApiError> {
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
        self.state_machine
            .scan(&prefix, start_after.as_deref(), limit)
            .map_err(Self::storage_error)
    }

    async fn status(&self) -> Result<NodeStatus, ApiError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        Ok(node_status(
            self.id,
            &metrics,
            self.state_machine.applied_index(),
        ))
    }
}
