//! What the client API needs from a node.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use raftkv_storage::ScanPage;
use raftkv_types::api::{
    BackupConsistency, Consistency, Durability, LeaderTransferResponse, LeaseInfo, MembersResponse, NodeStatus,
};
use raftkv_types::health::{
    AutopilotStatus, AutopilotUpdate, ClusterHealth, EventsResponse, LeavingNotice, ReplicationStatus,
    ReplicationUpdate,
};
use raftkv_types::{ClusterIdentity, Command, CommandResult, NodeId, Versioned, WatchEvent, WatchOptions};

use crate::api_error::ApiError;

/// Limits the client API enforces before a request reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest value accepted, in bytes. By default, 1 MiB.
    pub max_value_bytes: usize,
    /// How long a request forwarded to the leader may take. By default, 10 s.
    pub forward_timeout: Duration,
    /// How long to keep looking for a reachable leader when the one known cannot be connected
    /// to (it just died; an election follows). By default, 3 s.
    pub leader_wait: Duration,
    /// How long the answer to a write with an `Idempotency-Key` is kept. By default, 24 hours.
    pub idempotency_ttl: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_value_bytes: 1 << 20,
            forward_timeout: Duration::from_secs(10),
            leader_wait: Duration::from_secs(3),
            idempotency_ttl: crate::dedup::DEFAULT_IDEMPOTENCY_TTL,
        }
    }
}

/// One check of a liveness or readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCheck {
    /// Its name, as `?exclude=` takes it (`raft`, `storage`, `member`, `leader`, `applied`).
    pub name: &'static str,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// The operations behind the client HTTP API, implemented by the node.
///
/// A method returns [`ApiError::NotLeader`] when only the leader can serve it; the HTTP layer
/// then forwards the request to the leader itself.
pub trait KvService: Clone + Send + Sync + 'static {
    /// The limits to enforce.
    fn limits(&self) -> ApiLimits;

    /// Proposes `command` and waits until it is committed and applied on this (leader) node, and
    /// with [`Durability::All`] until every member has applied it.
    fn write(
        &self,
        command: Command,
        durability: Durability,
    ) -> impl Future<Output = Result<CommandResult, ApiError>> + Send;

    /// The cluster's identity as this node's state machine has it (`None` before the cluster
    /// is founded): a client session names the cluster and epoch it was registered in.
    fn cluster_identity(&self) -> Option<ClusterIdentity> {
        None
    }

    /// Reads `key` at `consistency`. With `max_lag` (stale reads only), answers only if this
    /// node's state is known to be at most that far behind the leader's.
    fn read(
        &self,
        key: String,
        consistency: Consistency,
        max_lag: Option<Duration>,
    ) -> impl Future<Output = Result<Option<Versioned>, ApiError>> + Send;

    /// Opens a watch on this node: events in revision order (see [`WatchOptions`]). Refuses a
    /// start below the history kept with [`ApiError::Compacted`].
    fn watch(
        &self,
        options: WatchOptions,
    ) -> impl Future<Output = Result<BoxStream<'static, WatchEvent>, ApiError>> + Send;

    /// Lists up to `limit` keys under `prefix` after `start_after`, at `consistency`.
    fn scan(
        &self,
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        consistency: Consistency,
    ) -> impl Future<Output = Result<ScanPage, ApiError>> + Send;

    /// Every lease, read at a linearizable point (by default none).
    fn leases(&self) -> impl Future<Output = Result<Vec<LeaseInfo>, ApiError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// This node's view of the cluster.
    fn status(&self) -> impl Future<Output = Result<NodeStatus, ApiError>> + Send;

    /// The checks of `GET /livez` (`ready` false) or `GET /readyz` (`ready` true), in order. By
    /// default none: always live and ready.
    fn probe(&self, ready: bool) -> impl Future<Output = Vec<ProbeCheck>> + Send {
        let _ = ready;
        std::future::ready(Vec::new())
    }

    /// `GET /readyz?sync`: waits up to `timeout` until this node has applied what the leader had
    /// committed when the call began.
    /// `None` once caught up, or why not. By default at once `None`.
    fn sync_applied(&self, timeout: std::time::Duration) -> impl Future<Output = Option<String>> + Send {
        let _ = timeout;
        std::future::ready(None)
    }

    /// The members as this node knows them.
    fn members(&self) -> impl Future<Output = Result<MembersResponse, ApiError>> + Send;

    /// Changes the membership (leader only) and answers the members once the change is
    /// committed.
    fn change_membership(
        &self,
        change: MembershipChange,
    ) -> impl Future<Output = Result<MembersResponse, ApiError>> + Send;

    /// Hands leadership (leader only) to voter `to` and waits until it leads.
    fn transfer_leader(&self, to: NodeId) -> impl Future<Output = Result<LeaderTransferResponse, ApiError>> + Send;

    /// Starts a backup of this node's applied state. With [`BackupConsistency::Linearizable`]
    /// the node first obtains a read index from the leader and waits until it has applied it, so
    /// the backup holds every write acknowledged before the call; with `Stale`, it backs up what
    /// it has.
    fn backup(&self, consistency: BackupConsistency) -> impl Future<Output = Result<BackupStream, ApiError>> + Send;

    /// The cluster's health (leader only): per-member health, failure tolerance, autopilot and
    /// sync replication.
    fn cluster_health(&self) -> impl Future<Output = Result<ClusterHealth, ApiError>> + Send;

    /// The cluster's event log (leader only), with the leader's recent decisions not to act.
    fn cluster_events(&self) -> impl Future<Output = Result<EventsResponse, ApiError>> + Send;

    /// The autopilot's settings and state (leader only).
    fn autopilot(&self) -> impl Future<Output = Result<AutopilotStatus, ApiError>> + Send;

    /// Synchronous replication to zones (leader only).
    fn replication(&self) -> impl Future<Output = Result<ReplicationStatus, ApiError>> + Send;

    /// Validates and applies a change of the cluster's operating state (leader only); returns
    /// once it is applied on the leader.
    fn update_cluster(&self, request: ClusterRequest) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Waits until a leader other than `not` is known, or until `deadline`; returns whether one
    /// is. Called when the leader a request was forwarded to cannot be reached, or may have
    /// been replaced while it holds the request.
    fn await_new_leader(&self, not: Option<NodeId>, deadline: Instant) -> impl Future<Output = bool> + Send;
}

/// A backup being streamed out of a node: the bytes of a backup file, produced as they are read.
pub struct BackupStream {
    /// The revision of the state in the backup.
    pub revision: u64,
    /// The node serving it.
    pub node: NodeId,
    /// The file, piece by piece; an error ends it early (the receiver sees a truncated file).
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// A change of the cluster's replicated operating state asked for through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterRequest {
    /// Changes some autopilot settings.
    Autopilot(AutopilotUpdate),
    /// Pauses the autopilot for `for_ms` (0 resumes).
    PauseAutopilot {
        /// How long, in ms.
        for_ms: u64,
    },
    /// Sets synchronous replication to zones.
    Replication(ReplicationUpdate),
    /// A member announces a planned restart.
    Leaving(LeavingNotice),
    /// Flags learner `id` as a standby, or clears the flag.
    Standby {
        /// The member.
        id: NodeId,
        /// Whether it is a standby.
        standby: bool,
    },
}

/// A membership change asked for through the admin API.
///
/// Voter changes go through joint consensus. A change that would leave fewer reachable,
/// caught-up voters than a quorum of the new configuration is refused unless `force` is set;
/// removing the last voter is always refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds node `id` at `addr` as a learner (idempotent for the same id and address).
    AddLearner {
        /// The new member's id.
        id: NodeId,
        /// Its `host:port`.
        addr: String,
        /// The zone it runs in.
        zone: Option<String>,
        /// Flag it as a standby the autopilot may promote.
        standby: bool,
    },
    /// Makes learner `id` a voter.
    Promote {
        /// The learner.
        id: NodeId,
        /// Skip the quorum safety check.
        force: bool,
    },
    /// Removes member `id` (voter or learner).
    Remove {
        /// The member.
        id: NodeId,
        /// Skip the quorum safety check.
        force: bool,
    },
    /// Replaces voter `old` by node `new` at `addr`: adds it as a learner, waits until it has
    /// caught up, then swaps the two in one joint-consensus change.
    Replace {
        /// The voter to replace.
        old: NodeId,
        /// The replacement's id.
        new: NodeId,
        /// The replacement's `host:port`.
        addr: String,
        /// Skip the quorum safety check.
        force: bool,
    },
}
