//! The request logic of a node: writes through Raft, reads at each consistency level.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ForwardReason, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::{ReadPolicy, ServerState};
use raftkv_network::{
    ApiError, ApiLimits, ClusterRequest, KvRaft, KvService, LeaderContact, MemberRpc, MemberRpcError, MembershipChange,
    ReadIndexRefusal,
};
use raftkv_storage::{KvStateMachine, ScanPage};
use raftkv_types::api::BackupConsistency;
use raftkv_types::api::{Consistency, Durability, LeaderTransferResponse, MembersResponse, NodeStatus};
use raftkv_types::health::{AutopilotStatus, ClusterHealth, EventsResponse, ReplicationStatus};
use raftkv_types::{
    Command, CommandResult, NodeId, Outcome, PeerNode, TypeConfig, Versioned, WatchEvent, WatchOptions,
};

use crate::append_clock::AppendClock;
use crate::autopilot_memory::AutopilotMemory;
use crate::leadership::Leadership;
use crate::proposal_clock::ProposalClock;
use crate::read_index::ReadIndexBatcher;
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
    /// A member that acknowledged the leader within this long counts as reachable.
    pub(crate) reachable_within: Duration,
    /// How fresh this node is, from the leader's messages (followers and learners).
    pub(crate) contact: LeaderContact,
    /// When each log index reached this node (the leader's replication lag in ms).
    pub(crate) clock: AppendClock,
    /// Calls to other members: await-applied for `durability=all`.
    pub(crate) rpc: MemberRpc,
    /// Read-index rounds to the leader for linearizable reads on a non-leader.
    pub(crate) reads: ReadIndexBatcher,
    /// Held by the membership change under way on this (leader) node.
    pub(crate) membership_lock: Arc<tokio::sync::Mutex<()>>,
    /// Stamps this node's proposals with its clock.
    pub(crate) proposal_clock: Arc<ProposalClock>,
    /// The election timeout (its upper bound): the autopilot's dead period is at least three.
    pub(crate) election_timeout: Duration,
    /// What the autopilot observed during this node's leadership.
    pub(crate) autopilot: Arc<AutopilotMemory>,
    /// This node's role and leader, as last published.
    pub(crate) leadership: Arc<tokio::sync::watch::Sender<Leadership>>,
    /// Held by the write that switches the cluster to asynchronous replication.
    pub(crate) sync_degrade: Arc<tokio::sync::Mutex<()>>,
    /// Whether the data directory has room (see `disk_monitor`).
    pub(crate) storage: raftkv_network::StorageGate,
    /// What this node counts for Prometheus.
    pub(crate) metrics: crate::node_metrics::NodeMetrics,
    /// Set when the node starts shutting down: watches end.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// How this node's own calls reach other members (TLS, peer secret).
    pub(crate) access: MemberAccess,
}

/// How this node's own calls reach other members' client API (joining, forwarding an embedded
/// call, announcing a restart): over the peer transport (TLS with this node's member
/// certificate, when peer TLS is on), presenting the peer secret when the cluster has one, so
/// that they pass any auth file.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberAccess {
    pub(crate) secret: Option<raftkv_network::PeerSecret>,
    pub(crate) transport: raftkv_network::PeerTransport,
}

impl MemberAccess {
    /// The base URL of the member at `addr`.
    pub(crate) fn url(&self, addr: &str) -> String {
        self.transport.url(addr)
    }

    /// A client of `endpoints` for this node's own calls.
    pub(crate) fn client<I, S>(
        &self,
        endpoints: I,
        timeout: Duration,
    ) -> Result<raftkv_client::Client, raftkv_client::ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let client = match self.transport.client_config() {
            Some(tls) => raftkv_client::Client::with_tls_config(endpoints, timeout, tls)?,
            None => raftkv_client::Client::with_timeout(endpoints, timeout)?,
        };
        match &self.secret {
            Some(secret) => client.with_token(secret.token()),
            None => Ok(client),
        }
    }
}

impl KvHandle {
    /// Waits until a read at `consistency` may be served from the local state machine.
    ///
    /// - `stale`: at once.
    /// - `linearizable`: the leader confirms its leadership with a quorum (ReadIndex; concurrent
    ///   reads share a round) and waits until it has applied up to the read index.
    /// - `lease`: the same without the quorum round while the leader's lease holds; once it has
    ///   lapsed, falls back to ReadIndex.
    pub(crate) async fn ready_to_read(&self, consistency: Consistency) -> Result<(), ApiError> {
        let level = match consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Stale => "stale",
        };
        self.metrics.reads.get_or_create(&crate::node_metrics::ReadLabels { consistency: level }).inc();
        if consistency != Consistency::Stale {
            self.ensure_member()?;
        }
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
        if policy == ReadPolicy::ReadIndex && !self.raft.is_leader() {
            return self.follower_read().await;
        }
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

    /// A linearizable read on a follower or learner: the leader confirms its leadership and
    /// answers its commit index (shared with concurrent readers), then this node waits until it
    /// has applied that far and serves the read from its own state.
    async fn follower_read(&self) -> Result<(), Refusal> {
        let Some((leader_id, leader)) = self.known_leader() else {
            return Err(Refusal::Leaderless(ApiError::NotLeader { leader_id: None, leader: None }));
        };
        let index = match self.reads.read_index(leader).await {
            Ok(index) => index,
            // Nothing was read: wait for the next leader and ask again.
            Err(MemberRpcError::Unreachable(_) | MemberRpcError::Refused(ReadIndexRefusal::NotLeader { .. })) => {
                return Err(Refusal::Leaderless(ApiError::Unavailable(format!(
                    "leader {leader_id} could not give a read index; election in progress?"
                ))));
            }
            Err(e) => {
                return Err(Refusal::Final(ApiError::Unavailable(format!(
                    "could not get a read index from leader {leader_id}: {e}"
                ))));
            }
        };
        let applied =
            self.raft.wait(Some(self.read_timeout)).applied_index_at_least(Some(index), "follower read").await;
        applied.map(|_| ()).map_err(|_| {
            Refusal::Final(ApiError::Unavailable(format!(
                "this node did not apply up to the read index {index} within {:?}",
                self.read_timeout
            )))
        })
    }

    /// The leader this node knows of, with its address.
    pub(crate) fn known_leader(&self) -> Option<(NodeId, PeerNode)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let id = m.current_leader?;
        // A node that has just stopped leading may still name itself: that is no leader to ask.
        if id == self.id && m.state != ServerState::Leader {
            return None;
        }
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// The answer for a request only the leader may serve, on a node that is not the leader.
    pub(crate) fn redirect(&self) -> ApiError {
        match self.known_leader() {
            Some((id, node)) => ApiError::NotLeader { leader_id: Some(id), leader: Some(node) },
            None => ApiError::NotLeader { leader_id: None, leader: None },
        }
    }

    /// Refuses requests that need the cluster on a node that is not a member of it: one that was
    /// removed (it may still believe in a leader that no longer sends it anything) or that
    /// waits to be added. Nothing is done; a client moves to another node.
    pub(crate) fn ensure_member(&self) -> Result<(), ApiError> {
        let metrics = self.raft.metrics();
        let is_member = metrics.borrow_watched().membership_config.membership().get_node(&self.id).is_some();
        if is_member { Ok(()) } else { Err(ApiError::NotMember(self.id)) }
    }

    /// Whether this node currently leads.
    pub(crate) fn leads(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// How stale this node's state may be: on the leader, the time since a quorum last
    /// acknowledged it; on another member, from the leader's last messages (`None` if it has not
    /// heard from one since it started).
    pub(crate) fn staleness(&self) -> Option<Duration> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state == ServerState::Leader {
            // The only voter is a quorum by itself: nothing it has not seen can be committed.
            let mut voters = m.membership_config.membership().voter_ids();
            if voters.next() == Some(self.id) && voters.next().is_none() {
                return Some(Duration::ZERO);
            }
            // Everything committed until the last quorum acknowledgement was committed here.
            return m.last_quorum_acked.as_ref().map(|at| openraft::Instant::elapsed(&**at));
        }
        self.contact.staleness(self.state_machine.applied_index(), Instant::now())
    }

    /// Waits until a leader other than `not` is known (or `deadline`), then a little more, so that
    /// a request refused for want of a leader is retried after the election rather than in a loop.
    pub(crate) async fn await_leader(&self, not: Option<NodeId>, deadline: Instant) -> bool {
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
pub(crate) enum Refusal {
    /// No usable leader right now (election in progress, or the leader lost its quorum): nothing
    /// was proposed, and the same request may succeed once a leader is established.
    Leaderless(ApiError),
    /// Any other answer, to be returned as it is.
    Final(ApiError),
}

/// The answer to a request that this node refused to start because it is not a leader that may
/// serve it. Nothing was proposed.
pub(crate) fn not_leader(f: ForwardToLeader<TypeConfig>) -> Refusal {
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

    async fn probe(&self, ready: bool) -> Vec<raftkv_network::ProbeCheck> {
        self.probe_checks(ready).await
    }

    fn cluster_identity(&self) -> Option<raftkv_types::ClusterIdentity> {
        self.state_machine.identity()
    }

    async fn sync_applied(&self, timeout: Duration) -> Option<String> {
        self.sync_applied_within(timeout).await
    }

    async fn write(&self, command: Command, durability: Durability) -> Result<CommandResult, ApiError> {
        // A follower forwards the write to the leader, whose disk is the one that must have room.
        if self.storage.is_low() && self.raft.is_leader() {
            return Err(self.storage.refusal());
        }
        let result = self.commit(command.clone()).await?;
        if let Outcome::Fenced { current_term } = result.outcome {
            let token = match &command {
                Command::Fenced { token, .. } => token.to_string(),
                _ => "?".to_string(),
            };
            return Err(ApiError::conflict(
                "fenced",
                format!(
                    "leader token {token} is not current: the write was proposed by the leader of term \
                     {current_term}; nothing was written"
                ),
            ));
        }
        if let Some(sync) = self.state_machine.sync_requirement() {
            self.wait_for_zones(result.log_index, &sync).await?;
        }
        if durability == Durability::All {
            self.confirm_on_all(result.log_index, result.revision).await?;
        }
        Ok(result)
    }

    async fn read(
        &self,
        key: String,
        consistency: Consistency,
        max_lag: Option<Duration>,
    ) -> Result<Option<Versioned>, ApiError> {
        if let Some(max_lag) = max_lag {
            let lag = self.staleness();
            if lag.is_none_or(|lag| lag > max_lag) {
                return Err(ApiError::TooStale {
                    lag_ms: lag.map(|l| l.as_millis() as u64),
                    max_lag_ms: max_lag.as_millis() as u64,
                });
            }
        }
        self.ready_to_read(consistency).await?;
        self.state_machine.get_versioned(&key).map_err(Self::storage_error)
    }

    async fn leases(&self) -> Result<Vec<raftkv_types::api::LeaseInfo>, ApiError> {
        self.lease_infos().await
    }

    async fn watch(&self, options: WatchOptions) -> Result<futures::stream::BoxStream<'static, WatchEvent>, ApiError> {
        use futures::StreamExt;
        Ok(self.open_watch(options).await?.boxed())
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
        Ok(node_status(self, &metrics))
    }

    async fn members(&self) -> Result<MembersResponse, ApiError> {
        Ok(self.members_view())
    }

    async fn change_membership(&self, change: MembershipChange) -> Result<MembersResponse, ApiError> {
        self.ensure_member()?;
        self.change_members(change).await
    }

    async fn transfer_leader(&self, to: NodeId) -> Result<LeaderTransferResponse, ApiError> {
        self.ensure_member()?;
        self.transfer_leadership(to).await
    }

    async fn backup(&self, consistency: BackupConsistency) -> Result<raftkv_network::BackupStream, ApiError> {
        self.start_backup(consistency).await
    }

    async fn cluster_health(&self) -> Result<ClusterHealth, ApiError> {
        self.cluster_health().await
    }

    async fn cluster_events(&self) -> Result<EventsResponse, ApiError> {
        self.cluster_events().await
    }

    async fn autopilot(&self) -> Result<AutopilotStatus, ApiError> {
        self.autopilot_view().await
    }

    async fn replication(&self) -> Result<ReplicationStatus, ApiError> {
        self.replication_view().await
    }

    async fn update_cluster(&self, request: ClusterRequest) -> Result<(), ApiError> {
        self.update_cluster(request).await
    }
}
