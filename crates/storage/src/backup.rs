//! Backups out of a running state machine, and restoring one into the data directory of a new
//! cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use openraft::type_config::alias::CommittedLeaderIdOf;
use openraft::vote::RaftLeaderId;
use raftkv_types::{ClusterIdentity, ClusterState, LogId, Membership, NodeId, PeerNode, StoredMembership, TypeConfig};
use sha2::{Digest, Sha256};

use crate::applied_state::AppliedState;
use crate::error::{Result, StorageError};
use crate::snapshot::{FileSummary, SnapshotFile, hex};
use crate::snapshot_builder::StateCheckpoint;
use crate::snapshot_header::{BackupConsistency, FileKind, SnapshotHeader};
use crate::state_machine::KvStateMachine;
use crate::store::Store;

/// Log index a restored data directory starts from: the state is that of a member that applied
/// everything up to it and compacted its log.
const RESTORED_INDEX: u64 = 1;

impl KvStateMachine {
    /// Writes a backup of the applied state to `out`: takes a checkpoint (a consistent view at one
    /// apply batch boundary, never before anything applied when this is called), then streams it
    /// record by record. Blocking, and as long as the state is large: run it on a blocking thread.
    /// Applies go on meanwhile.
    pub fn write_backup<W: Write>(
        &self,
        out: W,
        consistency: BackupConsistency,
    ) -> Result<(W, SnapshotHeader, FileSummary)> {
        self.write_backup_with(out, consistency, |_| {})
    }

    /// [`write_backup`](Self::write_backup), calling `on_header` with the backup's header (its
    /// revision above all) once the checkpoint is taken, before any record is written.
    pub fn write_backup_with<W: Write>(
        &self,
        out: W,
        consistency: BackupConsistency,
        on_header: impl FnOnce(&SnapshotHeader),
    ) -> Result<(W, SnapshotHeader, FileSummary)> {
        let checkpoint = StateCheckpoint::take(self)?;
        checkpoint.write_to(out, FileKind::Backup, Some(consistency), self.node_id(), on_header)
    }

    /// Writes a backup to the file `path`, safely: to `path.part` first, then fsynced, verified
    /// end to end, renamed into place and the directory fsynced. Never leaves a partial file under
    /// `path`. Blocking.
    pub fn backup_to_file(&self, path: &Path, consistency: BackupConsistency) -> Result<(SnapshotHeader, FileSummary)> {
        let part = part_path(path);
        let file = std::fs::File::create(&part).map_err(StorageError::io("create backup", &part))?;
        let written = self.write_backup(std::io::BufWriter::with_capacity(1 << 20, file), consistency);
        let result = written.and_then(|(out, _, _)| {
            out.into_inner().map_err(|e| StorageError::io("flush backup", &part)(e.into_error()))?;
            finish_backup_file(&part, path)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }
}

/// Where a backup to `path` is written until it is complete: `path` with `.part` appended.
pub fn part_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".part");
    name.into()
}

/// Completes a backup written to `part`: fsyncs it, verifies every checksum, renames it to `path`
/// and fsyncs the directory. On failure `part` is left for the caller to remove.
pub fn finish_backup_file(part: &Path, path: &Path) -> Result<(SnapshotHeader, FileSummary)> {
    std::fs::File::open(part).and_then(|f| f.sync_all()).map_err(StorageError::io("fsync backup", part))?;
    let verified = SnapshotFile::new(part).verify().map_err(|e| e.at_path("verify backup", part))?;
    std::fs::rename(part, path).map_err(StorageError::io("rename backup into place", path))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::store::sync_dir(dir)?;
    Ok(verified)
}

/// What [`restore`] made.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The backup's header.
    pub backup: SnapshotHeader,
    /// The backup's records, size and SHA-256.
    pub file: FileSummary,
    /// The new cluster's identity.
    pub identity: ClusterIdentity,
    /// The revision the new cluster starts at: the backup's plus the bump.
    pub revision: u64,
}

/// Prepares `data_dir` as the data directory of member `id` of a **new** cluster whose members are
/// `members` (id to `host:port`), holding the state of the backup `file`.
///
/// Run it for every member with the same file and members: each gets the same cluster id (derived
/// from the backup's SHA-256 and the member list) and the same state, so that `raftkv serve` on the
/// directories forms the cluster. The new cluster's revisions go on from the backup's plus
/// `bump_revision`. Refuses a non-empty `data_dir` and a file that fails any checksum.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
    bump_revision: u64,
) -> Result<RestoreSummary> {
    if !members.contains_key(&id) {
        return Err(StorageError::Refused(format!("node {id} is not in the member list")));
    }
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(StorageError::Refused(format!(
            "data directory {} is not empty: restore prepares the directory of a new member; give an empty or missing one",
            data_dir.display()
        )));
    }
    let (backup, summary) = SnapshotFile::new(file).verify().map_err(|e| e.at_path("read", file))?;
    let identity = ClusterIdentity::new(restored_cluster_id(&summary.sha256, members), 1);
    let revision = backup
        .revision
        .checked_add(bump_revision)
        .ok_or_else(|| StorageError::Refused("--bump-revision is too large".into()))?;

    let nodes: BTreeMap<NodeId, PeerNode> = members.iter().map(|(id, addr)| (*id, PeerNode::new(addr))).collect();
    let voters = nodes.keys().copied().collect();
    let membership =
        Membership::new(vec![voters], nodes).map_err(|e| StorageError::Refused(format!("member list: {e}")))?;
    let log_id: LogId = LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(0, 0), RESTORED_INDEX);
    let state = AppliedState {
        last_applied: Some(log_id),
        membership: StoredMembership::new(Some(log_id), membership),
        revision,
        clock_ms: backup.clock_ms,
        identity: Some(identity.clone()),
        recovery: None,
        // The settings carry over; standbys and planned absences named members of the old cluster.
        cluster: ClusterState { standbys: Default::default(), leaving: Default::default(), ..backup.cluster.clone() }
            .into(),
        history_floor: revision + 1,
    };
    let store = Store::open_as(data_dir, id)?;
    store.state_machine.install_blocking(state, &SnapshotFile::new(file))?;
    Ok(RestoreSummary { backup, file: summary, identity, revision })
}

/// The cluster id of a restore: the same for every member restored from the same file with the
/// same members, different for any other file or member list.
fn restored_cluster_id(backup_sha256: &str, members: &BTreeMap<NodeId, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"raftkv restore\0");
    hasher.update(backup_sha256.as_bytes());
    for (id, addr) in members {
        hasher.update(format!("\0{id}={addr}").as_bytes());
    }
    hex(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_ids_depend_on_file_and_members() {
        let a = BTreeMap::from([(1, "h1:1".to_string()), (2, "h2:1".to_string())]);
        let b = BTreeMap::from([(1, "h1:1".to_string()), (2, "h3:1".to_string())]);
        let id = restored_cluster_id("ab", &a);
        assert!(ClusterIdentity::is_valid_id(&id));
        assert_eq!(id, restored_cluster_id("ab", &a.clone()));
        assert_ne!(id, restored_cluster_id("ab", &b));
        assert_ne!(id, restored_cluster_id("ac", &a));
    }
}
