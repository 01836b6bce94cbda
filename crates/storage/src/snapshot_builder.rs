//! Building a snapshot file from a point-in-time checkpoint of the state machine.

use std::io;
use std::path::PathBuf;

use openraft::type_config::alias::SnapshotOf;
use openraft::{RaftSnapshotBuilder, Snapshot};
use raftkv_types::{SnapshotMeta, TypeConfig};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions};

use crate::error::{Result, StorageError};
use crate::keys::{ALL_CFS, CF_SM_DATA, generation_start};
use crate::snapshot::{SnapshotFile, SnapshotWriter};
use crate::state_machine::{KvStateMachine, SmMeta};
use crate::store::db_options;

/// Builds one snapshot from a RocksDB checkpoint taken between two applies.
///
/// The checkpoint (hard links to the database's files) fixes the view; the builder then reads it
/// on a blocking thread, writes a snapshot file, publishes it and removes the checkpoint. Applies
/// go on meanwhile.
pub struct KvSnapshotBuilder {
    sm: KvStateMachine,
    checkpoint: std::result::Result<PathBuf, String>,
}

impl KvSnapshotBuilder {
    /// Takes a checkpoint of `sm`'s database. Blocking: call it off the async workers.
    pub(crate) fn checkpoint(sm: KvStateMachine) -> KvSnapshotBuilder {
        let path = sm.scratch_path("checkpoint-", "");
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(sm.db())
            .and_then(|c| c.create_checkpoint(&path))
            .map(|()| path)
            .map_err(|e| format!("create checkpoint: {e}"));
        KvSnapshotBuilder { sm, checkpoint }
    }

    /// A builder that reports `reason` when run.
    pub(crate) fn failed(sm: KvStateMachine, reason: String) -> KvSnapshotBuilder {
        KvSnapshotBuilder { sm, checkpoint: Err(reason) }
    }

    fn build_blocking(sm: &KvStateMachine, checkpoint: &PathBuf) -> Result<(SnapshotMeta, SnapshotFile)> {
        let db = DB::open_cf_for_read_only(&db_options(), checkpoint, ALL_CFS, false)
            .map_err(StorageError::rocks("open checkpoint"))?;
        let data_cf = db.cf_handle(CF_SM_DATA).expect("checkpoint has sm_data");
        let SmMeta { generation, last_applied, membership } = SmMeta::read(&db)?;
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership };

        let part = sm.scratch_path("building-", ".part");
        let mut writer = SnapshotWriter::create(&part, &meta)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(generation_start(generation + 1).to_vec());
        let start = generation_start(generation);
        for item in db.iterator_cf_opt(data_cf, opts, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item.map_err(StorageError::rocks("read checkpoint data"))?;
            writer.push(&key[8..], &value)?;
        }
        let file = writer.finish()?;
        let file = sm.publish_snapshot(&file, &meta)?;
        Ok((meta, file))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvSnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        let checkpoint = self.checkpoint.clone().map_err(io::Error::other)?;
        let sm = self.sm.clone();
        let (meta, snapshot) = tokio::task::spawn_blocking(move || {
            let result = Self::build_blocking(&sm, &checkpoint);
            if let Err(err) = std::fs::remove_dir_all(&checkpoint) {
                tracing::warn!(path = %checkpoint.display(), %err, "could not remove checkpoint");
            }
            result
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, path = %snapshot.path().display(), "built snapshot");
        Ok(Snapshot { meta, snapshot })
    }
}
