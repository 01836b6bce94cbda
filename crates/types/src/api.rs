//! JSON bodies of the client HTTP API, shared by the server, the CLI and other clients.
//!
//! `docs/api.md` is the contract; these types are its code form.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

pub mod key_value;
pub mod lease;
pub mod session;
pub mod txn;
pub mod watch;

pub use key_value::KeyValue;
pub use lease::{LeaseGrantRequest, LeaseInfo, LeaseResponse, LeaseRevokeResponse, LeasesResponse};
pub use session::{SessionRequest, SessionResponse};
pub use txn::{TxnCompare, TxnGet, TxnKey, TxnPrefix, TxnPut, TxnRequest, TxnRequestOp, TxnResponse, TxnResult};
pub use watch::{WatchEventBody, WatchEventKind};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began: the leader confirms with a quorum
    /// that it still leads (ReadIndex), then reads once it has applied that far.
    #[default]
    Linearizable,
    /// Like `linearizable`, but the leader skips the quorum round while its lease (a recent quorum
    /// acknowledgement, shorter than the election timeout) holds. Relies on bounded clock drift.
    Lease,
    /// Answered from the local node's applied state, without contacting the leader: may be behind.
    Stale,
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!("unknown consistency level {other:?}; expected linearizable, lease or stale")),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Stale => "stale",
        })
    }
}

/// How fresh the state in a backup is guaranteed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupConsistency {
    /// Taken after the serving node had applied a read index confirmed by the leader: holds every
    /// write acknowledged before the backup began.
    Linearizable,
    /// The serving node's own applied state, which may be behind the leader's.
    Stale,
}

impl fmt::Display for BackupConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupConsistency::Linearizable => "linearizable",
            BackupConsistency::Stale => "stale",
        })
    }
}

impl FromStr for BackupConsistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" => Ok(BackupConsistency::Linearizable),
            "stale" => Ok(BackupConsistency::Stale),
            other => Err(format!("unknown backup consistency {other:?}; expected linearizable or stale")),
        }
    }
}

/// Response headers of `GET /v1/admin/backup` (the body is the backup file).
pub mod backup_headers {
    /// The revision of the state in the backup.
    pub const REVISION: &str = "x-raftkv-revision";
    /// The node that serves the backup.
    pub const NODE: &str = "x-raftkv-node";
}

/// Response to `PUT /v1/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The cluster revision of the write (see [`crate::CommandResult::revision`]).
    pub revision: u64,
}

/// Response to `DELETE /v1/kv/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The cluster revision after the delete: raised by one if the key existed, else unchanged.
    pub revision: u64,
    /// Whether the key existed.
    pub deleted: bool,
}

/// Body of `POST /v1/kv/{key}/cas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// The value the key must hold; `null`: the key must be absent.
    pub expected: Option<String>,
    /// The value to store if it does.
    pub value: String,
}

/// Response to `POST /v1/kv/{key}/cas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasResponse {
    /// Whether the value was swapped.
    pub succeeded: bool,
    /// The value before the operation (`null`: absent).
    pub current: Option<String>,
    /// The cluster revision after the cas: raised by one if it swapped, else unchanged.
    pub revision: u64,
}

/// One key of a [`ScanResponse`]: key, value and revisions.
pub type ScanEntry = KeyValue;

/// Response to `GET /v1/kv?prefix=P&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// Matching keys in key order.
    pub entries: Vec<ScanEntry>,
    /// Whether more keys match: pass `next` as `start_after` to continue.
    pub more: bool,
    /// The last key returned when `more` is true.
    pub next: Option<String>,
}

/// Role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes and replicates them.
    Leader,
    /// A voter following a leader.
    Follower,
    /// A voter campaigning for leadership.
    Candidate,
    /// A non-voting member.
    Learner,
    /// Not (yet) part of a cluster, or shutting down.
    Shutdown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        })
    }
}

/// One member as seen from the node answering `GET /v1/status`.
///
/// The replication fields are known on the leader only (`null` elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member's id.
    pub id: NodeId,
    /// The member's `host:port`.
    pub addr: String,
    /// The zone it runs in, if one was given when it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Whether it votes.
    pub voter: bool,
    /// Its role as this node sees it: `leader`, `voter`, `standby` or `learner`.
    pub role: MemberRole,
    /// On the leader: the last log index known to be on the member's disk.
    pub matched_index: Option<u64>,
    /// On the leader: how many entries the member is behind the leader's last log index.
    pub lag: Option<u64>,
    /// On the leader: how old the oldest entry the member does not have yet is, in milliseconds
    /// (0 when it has them all).
    pub lag_ms: Option<u64>,
    /// On the leader: milliseconds since the member last acknowledged a heartbeat or append.
    pub last_ack_ms: Option<u64>,
    /// On the leader: whether the member acknowledged within the last election timeout.
    pub reachable: Option<bool>,
}

/// Role of a member in the cluster configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// The voter currently leading.
    Leader,
    /// A member that votes and counts toward the quorum.
    Voter,
    /// A non-voting member that replicates asynchronously (a read replica).
    Learner,
    /// A learner the autopilot may promote to replace a dead voter.
    Standby,
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberRole::Leader => "leader",
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Standby => "standby",
        })
    }
}

/// How many copies a write waits for before it is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A majority of voters has the entry on disk and the leader has applied it.
    #[default]
    Majority,
    /// As `majority`, and every member, learners included, has applied it.
    All,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "majority" => Ok(Durability::Majority),
            "all" => Ok(Durability::All),
            other => Err(format!("unknown durability {other:?}; expected majority or all")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Majority => "majority",
            Durability::All => "all",
        })
    }
}

/// One member in `GET /v1/cluster/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's id.
    pub id: NodeId,
    /// The member's `host:port`.
    pub addr: String,
    /// The zone it runs in, if one was given when it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `leader`, `voter`, `standby` or `learner`.
    pub role: MemberRole,
}

/// Response to `GET /v1/cluster/members` and to every membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// The leader the answering node knows of.
    pub leader: Option<NodeId>,
    /// Members by id.
    pub members: Vec<MemberInfo>,
    /// Whether a configuration change is under way (joint consensus, or not yet committed).
    pub change_in_progress: bool,
}

/// Body of `POST /v1/cluster/members` (add a learner) and `POST /v1/cluster/members/{id}/replace`
/// (the replacement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The new member's id (not 0).
    pub id: NodeId,
    /// Its `host:port`, where the other members reach it.
    pub addr: String,
    /// The zone it runs in (a DR site's name, say); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Add it as a standby, which the autopilot may promote to replace a dead voter (learners
    /// only; false by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// Body of `POST /v1/cluster/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderTransferRequest {
    /// The voter to hand leadership to.
    pub to: NodeId,
}

/// Response to `POST /v1/cluster/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderTransferResponse {
    /// The leader once the transfer is done.
    pub leader: NodeId,
}

/// Response to `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// The cluster this node's data belongs to (`null` until the cluster's first leader has given
    /// it one, a moment after it is founded).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The cluster's epoch: 1, raised by each forced recovery (`null` with `cluster_id`).
    #[serde(default)]
    pub epoch: Option<u64>,
    /// The revision of this node's applied state: the number of data-changing commands applied.
    #[serde(default)]
    pub revision: u64,
    /// The last forced recovery of this cluster, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<crate::RecoveryRecord>,
    /// This node's role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index known committed.
    pub commit_index: u64,
    /// Last log index applied to the state machine.
    pub applied_index: u64,
    /// Last log index in this node's log.
    pub last_log_index: u64,
    /// Last log index included in this node's latest snapshot.
    pub snapshot_index: u64,
    /// How stale this node's state may be, in milliseconds: 0 on the leader; on another member,
    /// the time since the leader last told it a commit index it has applied (`null` if it never
    /// has). A `stale` read with `max_lag_ms` is served only while this is within the bound.
    pub replication_lag_ms: Option<u64>,
    /// Members by id.
    pub members: BTreeMap<NodeId, MemberStatus>,
    /// When synchronous replication to zones is set: `sync` or `async`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_mode: Option<crate::ReplicationMode>,
    /// On the leader: its leadership, as a fencing token for `leader_token=` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_token: Option<String>,
    /// Space on this node's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
}

/// Space on a node's data directory, as its disk monitor last measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// Bytes available to the node.
    pub free_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// The node refuses writes (as leader) and log appends (as follower) while fewer bytes than
    /// this are free, so that RocksDB never runs out of space mid-write.
    pub reserve_bytes: u64,
    /// Whether the node is below its reserve now.
    pub low: bool,
}

/// The body of every error response: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see `docs/api.md`). `outcome_unknown` is the only code of a
    /// write that may have been applied; every other code means it certainly was not.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `not_confirmed_on_all`: the members that did not confirm the write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lagging: Vec<LaggingMember>,
    /// For `compacted`: the oldest revision the watch history still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<u64>,
}

/// A member that did not confirm a `durability=all` write in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaggingMember {
    /// The member's id.
    pub id: NodeId,
    /// Its last applied index, when it answered at all.
    pub applied_index: Option<u64>,
    /// Why it did not confirm.
    pub reason: String,
}
