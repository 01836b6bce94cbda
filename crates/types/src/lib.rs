//! Shared vocabulary of raftkv: the commands that go through the Raft log, their results, and the
//! openraft type configuration that binds them together.
//!
//! Every other crate speaks these types; only this crate and the storage, network and node crates
//! name openraft directly, so an openraft upgrade stays inside the workspace's lower layers.
//!
//! # Layout
//! - [`api`]: the JSON bodies of the client HTTP API (see `docs/api.md`).
//! - [`command`]: [`Command`], a state-machine mutation, [`Proposal`], a command as the leader
//!   stamped it in the log, and [`CommandResult`], what applying it returned.
//! - [`cluster_state`]: [`ClusterState`], the cluster's replicated operating state (standbys,
//!   autopilot settings, sync zones, events), and the [`ClusterChange`]s that change it.
//! - [`fencing`]: [`LeaderToken`], a leadership the state machine can check writes against.
//! - [`health`]: the bodies of `GET /v1/cluster/health` and the autopilot API.
//! - [`identity`]: [`ClusterIdentity`] (cluster id and epoch) and [`RecoveryRecord`].
//! - [`key_meta`]: [`KeyMeta`], the revisions every key carries, and [`Versioned`], a value with
//!   them.
//! - [`key_change`]: [`KeyChange`], one change the watch history records.
//! - [`lease`]: [`LeaseRecord`], a lease as the state machine keeps it.
//! - [`session`]: [`SessionRecord`] and [`IdempotencyRecord`], what exactly-once writes keep.
//! - [`txn`]: [`Txn`], a multi-key transaction, and what applying it returns.
//! - [`watch_event`]: [`WatchOptions`] and [`WatchEvent`], what a watch follows and delivers.
//! - [`peer`]: [`PeerNode`], the address book entry for one member.
//! - [`TypeConfig`]: the openraft type configuration.

pub mod api;
pub mod cluster_state;
pub mod command;
pub mod fencing;
pub mod health;
pub mod identity;
pub mod key_change;
pub mod key_meta;
pub mod lease;
pub mod peer;
pub mod session;
pub mod txn;
pub mod watch_event;

pub use cluster_state::{
    AutopilotSettings, ClusterChange, ClusterEvent, ClusterState, ReplicationMode, SyncReplication,
};
pub use command::{Command, CommandResult, Outcome, Proposal};
pub use fencing::LeaderToken;
pub use identity::{ClusterIdentity, RecoveryRecord};
pub use key_change::{KeyChange, RevisionChanges};
pub use key_meta::{KeyMeta, Versioned};
pub use lease::{LeaseOutcome, LeaseRecord};
pub use peer::PeerNode;
pub use session::{IdempotencyRecord, SessionOutcome, SessionRecord, SessionStamp};
pub use txn::{Compare, CompareOp, CompareTarget, Txn, TxnOp, TxnOpResult, TxnOutcome};
pub use watch_event::{WatchEvent, WatchOptions, WatchSelector};

/// Identifier of one member of a raftkv cluster. Stable for the life of a node's data directory.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of raftkv: log entries carry [`Proposal`]s, applying one yields
    /// a [`CommandResult`], and members are addressed by [`PeerNode`].
    pub TypeConfig:
        D = Proposal,
        R = CommandResult,
        NodeId = NodeId,
        Node = PeerNode,
);

/// The openraft instance that a raftkv node runs.
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;
/// A Raft log entry of raftkv.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A Raft log id (leader and index) of raftkv.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A persisted vote of raftkv.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Membership as stored in the log and the state machine.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Membership: the voter configuration(s) and every member's address.
pub type Membership = openraft::Membership<NodeId, PeerNode>;
/// Snapshot metadata: the last included log id and membership.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
