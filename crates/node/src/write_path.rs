//! The write path of a node: proposing a command through Raft (founding the cluster first when
//! needed), retrying while no leader is established, and `durability=all`'s confirmation by every
//! member.

use std::time::Instant;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use raftkv_network::ApiError;
use raftkv_types::api::LaggingMember;
use raftkv_types::{Command, CommandResult, NodeId, PeerNode, Proposal};

use crate::kv_handle::{KvHandle, Refusal, not_leader};
use crate::node_metrics::ProposalLabels;

impl KvHandle {
    /// Waits until every member but this (leader) node has applied the entry at `index` (the
    /// write at `revision`), up to the write timeout; names those that did not.
    pub(crate) async fn confirm_on_all(&self, index: u64, revision: u64) -> Result<(), ApiError> {
        let members: Vec<(NodeId, PeerNode)> = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, n)| (*id, n.clone()))
                .collect()
        };
        let confirmations = members.iter().map(|(id, node)| async move {
            match self.rpc.await_applied(node, index, self.write_timeout).await {
                Ok(applied) if applied >= index => None,
                Ok(applied) => Some(LaggingMember {
                    id: *id,
                    applied_index: Some(applied),
                    reason: format!("applied log index {applied} of {index} within {:?}", self.write_timeout),
                }),
                Err(e) => Some(LaggingMember { id: *id, applied_index: None, reason: e.to_string() }),
            }
        });
        let lagging: Vec<LaggingMember> =
            futures::future::join_all(confirmations).await.into_iter().flatten().collect();
        if lagging.is_empty() { Ok(()) } else { Err(ApiError::NotConfirmedOnAll { revision, lagging }) }
    }

    /// One attempt of [`KvService::write`].
    pub(crate) async fn propose(&self, command: Command) -> Result<CommandResult, Refusal> {
        let dedup_kind = match &command {
            Command::InSession { .. } => Some("session"),
            Command::Idempotent { .. } => Some("idempotency_key"),
            _ => None,
        };
        let proposal = Proposal::new(self.proposal_clock.stamp(), command);
        let metrics = &self.metrics;
        metrics.proposals_pending.inc();
        let proposed = tokio::time::timeout(self.write_timeout, self.raft.client_write(proposal)).await;
        metrics.proposals_pending.dec();
        let result = match &proposed {
            Ok(Ok(_)) => Some("committed"),
            Err(_) => Some("timeout"),
            // Not the leader: nothing was proposed here.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => None,
            Ok(Err(_)) => Some("failed"),
        };
        if let Some(result) = result {
            metrics.proposals.get_or_create(&ProposalLabels { result }).inc();
        }
        let unknown = |msg: String| Err(Refusal::Final(ApiError::OutcomeUnknown(msg)));
        match proposed {
            Ok(Ok(response)) => {
                // A retry answered from the session or key carries the first entry's index.
                if let Some(kind) = dedup_kind
                    && response.data.log_index != response.log_id.index
                {
                    metrics.dedup_replays.get_or_create(&crate::node_metrics::DedupLabels { kind }).inc();
                }
                Ok(response.data)
            }
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

    /// Gives the cluster its identity, if it has none yet: proposes a random cluster id (the first
    /// one applied wins, so racing proposals are harmless). Failures are left to the next write or
    /// to the node's founding task.
    pub(crate) async fn found(&self) {
        let cluster_id = raftkv_types::ClusterIdentity::random_id();
        match self.propose(Command::FoundCluster { cluster_id }).await {
            Ok(_) => {
                if let Some(identity) = self.state_machine.identity() {
                    tracing::info!(cluster_id = %identity.cluster_id, epoch = identity.epoch, "cluster founded");
                }
            }
            Err(Refusal::Leaderless(e) | Refusal::Final(e)) => tracing::debug!(%e, "could not found the cluster yet"),
        }
    }

    /// Proposes `command` (founding the cluster first if needed), retrying while no leader is
    /// established, and returns what applying it gave, without waiting for sync zones or other
    /// members: the core of every write.
    pub(crate) async fn commit(&self, command: Command) -> Result<CommandResult, ApiError> {
        self.ensure_member()?;
        // The first write of a new cluster (or of one upgraded from format 1) founds it first, so
        // that every write of a founded cluster counts one revision.
        if !self.state_machine.is_founded() && self.leads() && !matches!(command, Command::FoundCluster { .. }) {
            self.found().await;
        }
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
}
