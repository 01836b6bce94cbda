//! Which cluster a node's data belongs to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identity of a cluster: a random id given when the cluster is founded, and an epoch raised
/// by every forced recovery. Every peer RPC carries both; a node refuses RPCs of another cluster
/// (`wrong_cluster`) or of another epoch (`stale_epoch`), so that a wiped, restored or recovered
/// node never mixes with members it must not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// 32 lowercase hex digits.
    pub cluster_id: String,
    /// 1 when founded or restored; raised by one by each `recover force-new-cluster`.
    pub epoch: u64,
}

impl ClusterIdentity {
    /// Identity `cluster_id` at `epoch`.
    pub fn new(cluster_id: impl Into<String>, epoch: u64) -> ClusterIdentity {
        ClusterIdentity { cluster_id: cluster_id.into(), epoch }
    }

    /// A fresh random cluster id (128 bits from the operating system's generator).
    pub fn random_id() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// Whether `id` has the shape of a cluster id: 32 lowercase hex digits.
    pub fn is_valid_id(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (epoch {})", self.cluster_id, self.epoch)
    }
}

/// What `recover force-new-cluster` did to a data directory, kept in its state machine (and in
/// snapshots and backups of it) and shown by `/v1/status` as `recovered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    /// When the recovery ran (RFC 3339, UTC, the recovering machine's clock).
    pub at: String,
    /// The node recovered from.
    pub node_id: u64,
    /// Epoch before the recovery.
    pub old_epoch: u64,
    /// Epoch after it.
    pub new_epoch: u64,
    /// Members of the old configuration that are not in the new one.
    pub removed_members: Vec<u64>,
    /// Log entries the node had but did not know to be committed, applied by the recovery (they
    /// now count as committed).
    pub implicitly_committed: u64,
    /// Revision before the recovery applied those entries.
    pub revision_before: u64,
    /// Revision after.
    pub revision_after: u64,
    /// The state-machine clock at the recovery: when the newest write this node had was proposed
    /// (ms since the Unix epoch); writes after it were lost.
    pub data_as_of_ms: u64,
}
