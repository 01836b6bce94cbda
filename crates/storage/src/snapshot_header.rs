//! The header of a snapshot or backup file: what state the file holds and where it came from.

pub use raftkv_types::api::BackupConsistency;
use raftkv_types::{ClusterIdentity, ClusterState, LogId, NodeId, RecoveryRecord, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

/// The version of the file format this release writes: 3, records carry each key's revisions
/// and the file has a section for leases and sessions (see [`crate::state_record`]).
pub const FILE_FORMAT_VERSION: u32 = 3;
/// The versions this release reads: 2 (keys and raw values) and 3.
pub const READABLE_FORMAT_VERSIONS: [u32; 2] = [2, 3];

/// What a file was made for. Both kinds have the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A Raft snapshot: built by a member to compact its log, or sent to a lagging one.
    Snapshot,
    /// A backup taken over `GET /v1/admin/backup`.
    Backup,
}

/// The header of a snapshot or backup file, stored as JSON so that `head -c 2000 FILE` shows it.
///
/// It describes the state the records hold: the state machine after applying every entry up to
/// `last_log_id`, at `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// [`FILE_FORMAT_VERSION`] when written by this release.
    pub format_version: u32,
    /// Snapshot or backup.
    pub kind: FileKind,
    /// For backups: the freshness guarantee the serving node gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<BackupConsistency>,
    /// The cluster the state belongs to (`None` for a cluster that had not been given one yet).
    pub identity: Option<ClusterIdentity>,
    /// The revision of the state: the number of data-changing commands applied.
    pub revision: u64,
    /// The state-machine clock: the newest proposal time applied (ms since the Unix epoch).
    pub clock_ms: u64,
    /// The last log entry the state includes.
    pub last_log_id: Option<LogId>,
    /// The membership in effect at `last_log_id`.
    pub membership: StoredMembership,
    /// The last forced recovery of the cluster, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryRecord>,
    /// The cluster's operating state (standbys, autopilot, sync zones, events).
    #[serde(default)]
    pub cluster: ClusterState,
    /// The node the file was written on.
    pub source_node: Option<NodeId>,
    /// When the file was written (RFC 3339, UTC, the writing node's clock).
    pub created_at: String,
    /// The raftkv version that wrote it.
    pub raftkv_version: String,
}

impl SnapshotHeader {
    /// openraft's view of the snapshot: its last log id and membership.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta { last_log_id: self.last_log_id, last_membership: self.membership.clone() }
    }

    /// The current time as RFC 3339 UTC, for `created_at` and recovery records.
    pub fn now_rfc3339() -> String {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
    }
}
