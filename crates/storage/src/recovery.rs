//! Offline disaster recovery: what a stopped node's data directory holds, and turning the best
//! survivor of a lost quorum into a one-member cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use raftkv_types::{
    ClusterIdentity, ClusterState, LogId, Membership, NodeId, RecoveryRecord, ReplicationMode, StoredMembership, Vote,
};
use serde::Serialize;

use crate::applied_state::AppliedState;
use crate::error::{Result, StorageError};
use crate::snapshot_header::SnapshotHeader;
use crate::state_machine::snapshot_files;
use crate::store::Store;

/// What a stopped node's data directory holds, for `raftkv recover inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct DataDirReport {
    /// The directory.
    pub data_dir: PathBuf,
    /// The node that owns it, if recorded.
    pub node_id: Option<NodeId>,
    /// Cluster id and epoch, once founded.
    pub identity: Option<ClusterIdentity>,
    /// The persisted vote.
    pub vote: Option<Vote>,
    /// The last entry in the log.
    pub last_log_id: Option<LogId>,
    /// The last entry known committed (persisted lazily: may be behind).
    pub committed: Option<LogId>,
    /// The last entry applied to the state machine.
    pub last_applied: Option<LogId>,
    /// The state machine's revision.
    pub revision: u64,
    /// The state-machine clock: when the newest applied write was proposed (ms since the epoch).
    pub clock_ms: u64,
    /// Entries in the log after the last applied one.
    pub unapplied_entries: u64,
    /// Voter ids of the last membership (applied or in the log).
    pub voters: Vec<NodeId>,
    /// Learner ids of that membership.
    pub learners: Vec<NodeId>,
    /// The last forced recovery, if any.
    pub recovered: Option<RecoveryRecord>,
    /// The zones writes were to wait for, as last applied here (empty: none).
    pub sync_zones: Vec<String>,
    /// The replication mode to those zones last applied here (`None` without sync zones): with
    /// `sync`, this node (if in a sync zone) had every acknowledged write, unless the primary
    /// switched to `async` after losing contact with it.
    pub replication_mode: Option<ReplicationMode>,
}

impl DataDirReport {
    /// The key by which survivors are ranked: the one with the latest log wins (the Raft
    /// election rule), then the one that applied most.
    pub fn rank(&self) -> (Option<LogId>, Option<LogId>) {
        (self.last_log_id, self.last_applied)
    }
}

/// Reads what `data_dir` holds. The node must be stopped (the database is locked otherwise).
///
/// The state machine is first brought up to the last entry known committed, as a node's start
/// would do (applies reach disk lazily, so after a crash the stored state machine may be behind
/// its log): the identity, revision and clock shown are those of the committed state.
pub fn inspect(data_dir: &Path) -> Result<DataDirReport> {
    check_dir(data_dir)?;
    let store = Store::open(data_dir).map_err(stopped_hint)?;
    let (vote, committed, _) = store.log.raft_state()?;
    let entries = store.log.entries()?;
    catch_up_to_committed(&store, &entries, committed)?;
    let state = store.state_machine.applied_meta();
    let last_applied = state.last_applied;
    let mut membership = state.membership.membership().clone();
    for entry in &entries {
        if let openraft::EntryPayload::Membership(m) = &entry.payload {
            membership = m.clone();
        }
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    Ok(DataDirReport {
        data_dir: data_dir.to_path_buf(),
        node_id: store.node_id()?,
        identity: state.identity.clone(),
        vote,
        last_log_id: store.log.last_log_id()?,
        committed,
        last_applied: state.last_applied,
        revision: state.revision,
        clock_ms: state.clock_ms,
        unapplied_entries: entries.iter().filter(|e| not_applied(e, last_applied)).count() as u64,
        learners: membership.nodes().map(|(id, _)| *id).filter(|id| !voters.contains(id)).collect(),
        voters: voters.into_iter().collect(),
        recovered: state.recovery,
        sync_zones: state.cluster.sync.zones.clone(),
        replication_mode: state.cluster.sync_mode(),
    })
}

/// What [`force_new_cluster`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverySummary {
    /// The record now kept in the state machine.
    pub record: RecoveryRecord,
    /// The cluster's identity after the recovery.
    pub identity: ClusterIdentity,
    /// The one member of the new configuration and its address.
    pub member: (NodeId, String),
    /// Log entries after the last one known committed that are now committed.
    pub implicitly_committed: u64,
    /// The zones writes waited for, as this node last knew (empty: none).
    pub sync_zones: Vec<String>,
    /// The replication mode to them this node last applied (`None` without sync zones).
    pub replication_mode: Option<ReplicationMode>,
}

/// Turns the stopped node's `data_dir` into the only member of its cluster, at a new epoch.
///
/// Every entry the log holds is applied (entries that were never known to be committed now are:
/// writes acknowledged elsewhere but missing here are lost), the membership becomes this node
/// alone, the epoch goes up by one so that the old members are refused if they come back, the log
/// is compacted into the state machine (openraft builds a fresh snapshot at start: no file with
/// the old membership is kept) and a [`RecoveryRecord`] is written. `id` is needed only when the
/// directory does not record its node.
pub fn force_new_cluster(data_dir: &Path, id: Option<NodeId>) -> Result<RecoverySummary> {
    check_dir(data_dir)?;
    let store = Store::open(data_dir).map_err(stopped_hint)?;
    let id = match (store.node_id()?, id) {
        (Some(owner), Some(asked)) if owner != asked => {
            return Err(StorageError::Refused(format!(
                "data directory {} belongs to node {owner}, not {asked}",
                data_dir.display()
            )));
        }
        (Some(owner), _) => owner,
        (None, Some(asked)) => asked,
        (None, None) => {
            return Err(StorageError::Refused(format!(
                "data directory {} does not record its node id: give --id",
                data_dir.display()
            )));
        }
    };
    let (_, committed, _) = store.log.raft_state()?;
    let entries = store.log.entries()?;
    catch_up_to_committed(&store, &entries, committed)?;
    let before = store.state_machine.applied_meta();
    let pending: Vec<_> = entries.into_iter().filter(|e| not_applied(e, before.last_applied)).collect();
    let implicitly_committed = pending.len() as u64;
    store.state_machine.apply_entries(pending)?;

    let applied = store.state_machine.applied_meta();
    let Some(last) = applied.last_applied else {
        return Err(StorageError::Refused(format!(
            "data directory {} holds no cluster state: nothing to recover",
            data_dir.display()
        )));
    };
    let old = applied.membership.membership();
    let addr = old.get_node(&id).map(|n| n.addr.clone()).ok_or_else(|| {
        StorageError::Refused(format!("node {id} is not a member in data directory {}", data_dir.display()))
    })?;
    let removed: Vec<NodeId> = old.nodes().map(|(n, _)| *n).filter(|n| *n != id).collect();
    let membership =
        Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, raftkv_types::PeerNode::new(addr.clone()))]))
            .map_err(|e| StorageError::Refused(format!("new membership: {e}")))?;
    let identity = match &applied.identity {
        Some(identity) => ClusterIdentity::new(identity.cluster_id.clone(), identity.epoch + 1),
        // A cluster from before identities: give it one now, past epoch 1.
        None => ClusterIdentity::new(ClusterIdentity::random_id(), 2),
    };
    let record = RecoveryRecord {
        at: SnapshotHeader::now_rfc3339(),
        node_id: id,
        old_epoch: applied.identity.as_ref().map_or(0, |i| i.epoch),
        new_epoch: identity.epoch,
        removed_members: removed,
        implicitly_committed,
        revision_before: before.revision,
        revision_after: applied.revision,
        data_as_of_ms: applied.clock_ms,
    };
    let sync_zones = applied.cluster.sync.zones.clone();
    let replication_mode = applied.cluster.sync_mode();
    store.state_machine.overwrite_applied_state(AppliedState {
        membership: StoredMembership::new(Some(last), membership),
        identity: Some(identity.clone()),
        recovery: Some(record.clone()),
        cluster: ClusterState {
            standbys: applied.cluster.standbys.iter().copied().filter(|s| *s == id).collect(),
            leaving: Default::default(),
            ..(*applied.cluster).clone()
        }
        .into(),
        ..applied
    })?;
    for path in snapshot_files(&data_dir.join("snapshots"))? {
        std::fs::remove_file(&path).map_err(StorageError::io("remove old snapshot", &path))?;
    }
    store.log.reset_to(last)?;
    Ok(RecoverySummary { record, identity, member: (id, addr), implicitly_committed, sync_zones, replication_mode })
}

/// Applies the entries up to the last one known committed that the stored state machine does not
/// have yet, as openraft does when a node starts.
fn catch_up_to_committed(store: &Store, entries: &[raftkv_types::Entry], committed: Option<LogId>) -> Result<()> {
    let last_applied = store.state_machine.applied_meta().last_applied;
    let missing = entries.iter().filter(|e| not_applied(e, last_applied) && Some(e.log_id) <= committed);
    store.state_machine.apply_entries(missing.cloned().collect())
}

/// Whether `entry` comes after `last_applied` (every entry does when nothing is applied: the
/// first entry of a log has index 0).
fn not_applied(entry: &raftkv_types::Entry, last_applied: Option<LogId>) -> bool {
    last_applied.is_none_or(|last| entry.log_id.index > last.index)
}

fn check_dir(data_dir: &Path) -> Result<()> {
    if !data_dir.join("db").join("CURRENT").exists() {
        return Err(StorageError::Refused(format!("{} is not a raftkv data directory", data_dir.display())));
    }
    Ok(())
}

fn stopped_hint(err: StorageError) -> StorageError {
    if err.to_string().contains("lock") {
        StorageError::Refused(format!("{err}: is the node still running? stop it first"))
    } else {
        err
    }
}
