//! Building a snapshot file from a point-in-time checkpoint of the state machine.

use std::io::{self, Write};
use std::path::PathBuf;

use openraft::type_config::alias::SnapshotOf;
use openraft::{RaftSnapshotBuilder, Snapshot};
use raftkv_types::{NodeId, TypeConfig};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions};

use crate::applied_state::AppliedState;
use crate::error::{Result, StorageError};
use crate::keys::{ALL_CFS, CF_SM_AUX, CF_SM_DATA, generation_start};
use crate::snapshot::{FileSummary, SnapshotFile, SnapshotWriter};
use crate::snapshot_header::{BackupConsistency, FILE_FORMAT_VERSION, FileKind, SnapshotHeader};
use crate::state_machine::KvStateMachine;
use crate::state_record::{aux_record_key, data_record_key};
use crate::store::db_options;

/// Builds one snapshot from a RocksDB checkpoint taken between two applies.
///
/// The checkpoint (hard links to the database's files) fixes the view; the builder then reads it
/// on a blocking thread, writes a snapshot file, publishes it and removes the checkpoint. Applies
/// go on meanwhile.
pub struct KvSnapshotBuilder {
    sm: KvStateMachine,
    /// Taken out when the snapshot is built; removed from disk when dropped either way.
    checkpoint: std::result::Result<StateCheckpoint, String>,
}

/// A RocksDB checkpoint of the state machine's database in its snapshot directory, removed when
/// dropped.
pub(crate) struct StateCheckpoint {
    path: PathBuf,
}

impl StateCheckpoint {
    /// Takes a checkpoint of `sm`'s database: a consistent view at one apply batch boundary (all
    /// column families are flushed together first). Blocking.
    pub(crate) fn take(sm: &KvStateMachine) -> Result<StateCheckpoint> {
        let path = sm.scratch_path("checkpoint-", "");
        rocksdb::checkpoint::Checkpoint::new(sm.db())
            .and_then(|c| c.create_checkpoint(&path))
            .map_err(StorageError::rocks("create checkpoint"))?;
        Ok(StateCheckpoint { path })
    }

    /// Writes the checkpoint's state to `out` as a snapshot or backup file of `kind`.
    /// `on_header` sees the header before any record is written.
    pub(crate) fn write_to<W: Write>(
        &self,
        out: W,
        kind: FileKind,
        consistency: Option<BackupConsistency>,
        source_node: Option<NodeId>,
        on_header: impl FnOnce(&SnapshotHeader),
    ) -> Result<(W, SnapshotHeader, FileSummary)> {
        let db = DB::open_cf_for_read_only(&db_options(), &self.path, ALL_CFS, false)
            .map_err(StorageError::rocks("open checkpoint"))?;
        let (generation, state) = AppliedState::read(&db)?;
        let header = header_for(&state, kind, consistency, source_node);
        on_header(&header);
        let mut writer = SnapshotWriter::new(out, &header)?;
        for_each_record(&db, generation, |key, value| writer.push(key, value))?;
        let (out, summary) = writer.finish()?;
        Ok((out, header, summary))
    }
}

impl Drop for StateCheckpoint {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove checkpoint");
        }
    }
}

/// The header of a file holding `state`.
pub(crate) fn header_for(
    state: &AppliedState,
    kind: FileKind,
    consistency: Option<BackupConsistency>,
    source_node: Option<NodeId>,
) -> SnapshotHeader {
    SnapshotHeader {
        format_version: FILE_FORMAT_VERSION,
        kind,
        consistency,
        identity: state.identity.clone(),
        revision: state.revision,
        clock_ms: state.clock_ms,
        last_log_id: state.last_applied,
        membership: state.membership.clone(),
        recovery: state.recovery.clone(),
        cluster: (*state.cluster).clone(),
        source_node,
        created_at: SnapshotHeader::now_rfc3339(),
        raftkv_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Calls `f` with every record of the state of `generation` in `db`, as a format 3 file holds
/// them: the data keys in key order, then the leases and sessions (see [`crate::state_record`]).
pub(crate) fn for_each_record(db: &DB, generation: u64, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
    for (cf_name, record_key) in [(CF_SM_DATA, data_record_key as fn(&[u8]) -> Vec<u8>), (CF_SM_AUX, aux_record_key)] {
        let cf = db.cf_handle(cf_name).expect("database has every column family");
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(generation_start(generation + 1).to_vec());
        let start = generation_start(generation);
        for item in db.iterator_cf_opt(cf, opts, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item.map_err(StorageError::rocks("read state data"))?;
            f(&record_key(&key[8..]), &value)?;
        }
    }
    Ok(())
}

impl KvSnapshotBuilder {
    /// Takes a checkpoint of `sm`'s database. Blocking: call it off the async workers.
    pub(crate) fn checkpoint(sm: KvStateMachine) -> KvSnapshotBuilder {
        let checkpoint = StateCheckpoint::take(&sm).map_err(|e| e.to_string());
        KvSnapshotBuilder { sm, checkpoint }
    }

    /// A builder that reports `reason` when run.
    pub(crate) fn failed(sm: KvStateMachine, reason: String) -> KvSnapshotBuilder {
        KvSnapshotBuilder { sm, checkpoint: Err(reason) }
    }

    fn build_blocking(sm: &KvStateMachine, checkpoint: StateCheckpoint) -> Result<(SnapshotHeader, SnapshotFile)> {
        let part = sm.scratch_path("building-", ".part");
        let file = std::fs::File::create(&part).map_err(StorageError::io("create snapshot", &part))?;
        let out = io::BufWriter::with_capacity(1 << 20, file);
        let (out, header, _) = checkpoint
            .write_to(out, FileKind::Snapshot, None, sm.node_id(), |_| {})
            .map_err(|e| e.at_path("write snapshot", &part))?;
        drop(checkpoint);
        let file = out.into_inner().map_err(|e| StorageError::io("flush snapshot", &part)(e.into_error()))?;
        file.sync_all().map_err(StorageError::io("fsync snapshot", &part))?;
        let file = sm.publish_snapshot(&SnapshotFile::new(&part), &header)?;
        Ok((header, file))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvSnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        let taken = std::mem::replace(&mut self.checkpoint, Err("this builder already built its snapshot".into()));
        let checkpoint = taken.map_err(io::Error::other)?;
        let sm = self.sm.clone();
        let started = std::time::Instant::now();
        let (header, snapshot) = tokio::task::spawn_blocking(move || Self::build_blocking(&sm, checkpoint))
            .await
            .map_err(io::Error::other)??;
        let metrics = self.sm.metrics();
        metrics.snapshot_build_duration.observe(started.elapsed().as_secs_f64());
        metrics.snapshot_size.set(std::fs::metadata(snapshot.path()).map_or(0, |m| m.len()) as i64);
        tracing::info!(last_log_id = ?header.last_log_id, revision = header.revision, path = %snapshot.path().display(), "built snapshot");
        Ok(Snapshot { meta: header.snapshot_meta(), snapshot })
    }
}
