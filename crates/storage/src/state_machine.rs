//! The key-value state machine, in RocksDB.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::type_config::alias::SnapshotOf;
use openraft::{OptionalSend, Snapshot};
use raftkv_types::{
    ClusterIdentity, ClusterState, CommandResult, Entry, LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig,
    Versioned,
};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::applied_state::AppliedState;
use crate::apply::ApplyBatch;
use crate::codec::encode;
use crate::database::Database;
use crate::error::{Result, StorageError};
use crate::keys::{
    CF_SM_AUX, CF_SM_DATA, CF_SM_META, CF_WATCH_LOG, KEY_GENERATION, data_key, generation_start, history_key,
};
use crate::snapshot::{SnapshotFile, SnapshotReader};
use crate::snapshot_builder::KvSnapshotBuilder;
use crate::snapshot_header::SnapshotHeader;
use crate::state_record::{RawRecord, raw_record};
use crate::store::sync_dir;
use crate::value_record::decode_value;
use crate::watch_history::{HistoryRetention, trim_history};

/// Entries applied per RocksDB batch when openraft hands over a long run (e.g. after a restart).
const APPLY_CHUNK: usize = 4096;
/// Bytes per batch when installing a snapshot.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
/// Snapshot files kept: the newest, and the one before it that may still be being sent.
const SNAPSHOTS_KEPT: usize = 2;

/// The replicated key-value map: data in `sm_data`; last applied log id, membership, revision,
/// clock and cluster identity ([`AppliedState`]) in `sm_meta`.
///
/// # Durability and atomicity
/// Each apply writes the data and the applied state it leads to in one atomic RocksDB batch, so the stored state is always the result of a prefix of the log. Applies skip RocksDB's
/// write-ahead log: the log entries they come from are already fsynced in it, so writing the same
/// data there a second time would only double the bytes each group commit syncs. An apply reaches
/// disk with the next memtable flush (all column families at once, see `atomic_flush` in
/// `db_options`); a crash or power cut before that leaves the state machine at an earlier applied
/// id, and openraft re-applies the committed entries after it from the log on restart. The log is
/// never purged past what is on disk here: purging follows a snapshot, and the checkpoint a
/// snapshot is built from flushes the memtables first. Installing a snapshot is fsynced.
///
/// # Snapshots
/// Data keys are prefixed by a generation. Installing a snapshot writes it into the next
/// generation, then switches generation, last applied and membership in one fsynced batch; a crash
/// before the switch leaves the old state intact, and the partial generation is removed on open.
///
/// Cloning is cheap; clones share the database. The node keeps a clone to serve reads.
#[derive(Clone)]
pub struct KvStateMachine {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    snapshot_dir: PathBuf,
    /// The live data generation. Readers hold the read lock while they read, so a generation
    /// switch never pulls data from under a read.
    generation: RwLock<u64>,
    applied: Mutex<AppliedState>,
    /// Index of the last applied entry (0 before any), readable without a lock.
    applied_index: AtomicU64,
    /// Whether the applied state has a cluster identity, readable without a lock.
    founded: AtomicBool,
    snapshot_seq: AtomicU64,
    /// The node that owns the data directory, named in the files it writes.
    node_id: OnceLock<NodeId>,
    /// The applied revision, for watchers.
    revision: tokio::sync::watch::Sender<u64>,
    /// How much watch history is kept.
    retention: HistoryRetention,
}

/// One page of a prefix scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Keys and values with their revisions, in key order.
    pub entries: Vec<(String, Versioned)>,
    /// Whether more keys match after the last one returned.
    pub more: bool,
}

impl KvStateMachine {
    pub(crate) fn open(
        db: Arc<Database>,
        snapshot_dir: PathBuf,
        retention: HistoryRetention,
    ) -> Result<KvStateMachine> {
        let (generation, applied) = AppliedState::read(&db)?;
        let sm = KvStateMachine {
            inner: Arc::new(Inner {
                revision: tokio::sync::watch::Sender::new(applied.revision),
                retention,
                snapshot_dir,
                generation: RwLock::new(generation),
                applied_index: AtomicU64::new(applied.applied_index()),
                founded: AtomicBool::new(applied.identity.is_some()),
                applied: Mutex::new(applied),
                snapshot_seq: AtomicU64::new(0),
                node_id: OnceLock::new(),
                db,
            }),
        };
        sm.remove_leftovers(generation)?;
        Ok(sm)
    }

    /// Records which node owns the data directory (named in the snapshots and backups it writes).
    pub(crate) fn set_node_id(&self, id: NodeId) {
        let _ = self.inner.node_id.set(id);
    }

    pub(crate) fn node_id(&self) -> Option<NodeId> {
        self.inner.node_id.get().copied()
    }

    /// Removes what an interrupted snapshot build or install left behind: data of other
    /// generations, checkpoints and partial files.
    fn remove_leftovers(&self, generation: u64) -> Result<()> {
        let db = &self.inner.db;
        for name in [CF_SM_DATA, CF_SM_AUX] {
            let cf = db.cf_handle(name).expect("state column families are created at open");
            db.delete_range_cf(cf, generation_start(0), generation_start(generation))
                .map_err(StorageError::rocks("remove stale generations"))?;
            db.delete_range_cf(cf, generation_start(generation + 1), generation_start(u64::MAX))
                .map_err(StorageError::rocks("remove stale generations"))?;
        }
        let dir = &self.inner.snapshot_dir;
        for entry in std::fs::read_dir(dir).map_err(StorageError::io("list snapshots", dir))? {
            let path = entry.map_err(StorageError::io("list snapshots", dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("checkpoint-") {
                std::fs::remove_dir_all(&path).map_err(StorageError::io("remove checkpoint", &path))?;
            } else if name.ends_with(".part") {
                std::fs::remove_file(&path).map_err(StorageError::io("remove partial snapshot", &path))?;
            }
        }
        Ok(())
    }

    fn data_cf(&self) -> &ColumnFamily {
        self.inner.db.cf_handle(CF_SM_DATA).expect("sm_data column family is created at open")
    }

    fn meta_cf(&self) -> &ColumnFamily {
        self.inner.db.cf_handle(CF_SM_META).expect("sm_meta column family is created at open")
    }

    /// The value of `key` in the applied state, read from this node alone.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// The value of `key` with its revisions, read from this node alone.
    pub fn get_versioned(&self, key: &str) -> Result<Option<Versioned>> {
        let generation = self.inner.generation.read().expect("generation lock poisoned");
        self.inner
            .db
            .get_pinned_cf(self.data_cf(), data_key(*generation, key.as_bytes()))
            .map_err(StorageError::rocks("read key"))?
            .map(|bytes| decode_value(&bytes))
            .transpose()
    }

    /// Up to `limit` keys starting with `prefix` and greater than `start_after`, in key order, from
    /// one consistent view of the applied state.
    pub fn scan(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ScanPage> {
        let generation = *self.inner.generation.read().expect("generation lock poisoned");
        let lower = match start_after {
            Some(after) if after >= prefix => {
                let mut k = data_key(generation, after.as_bytes());
                k.push(0); // the smallest key greater than `after`
                k
            }
            _ => data_key(generation, prefix.as_bytes()),
        };
        let snapshot = self.inner.db.snapshot();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(generation_start(generation + 1).to_vec());
        let iter = snapshot.iterator_cf_opt(self.data_cf(), opts, IteratorMode::From(&lower, Direction::Forward));
        let mut page = ScanPage::default();
        for item in iter {
            let (key, value) = item.map_err(StorageError::rocks("scan keys"))?;
            let user_key = &key[8..];
            if !user_key.starts_with(prefix.as_bytes()) {
                break;
            }
            if page.entries.len() == limit {
                page.more = true;
                break;
            }
            let user_key = String::from_utf8_lossy(user_key).into_owned();
            page.entries.push((user_key, decode_value(&value)?));
        }
        Ok(page)
    }

    /// The revision of the applied state, announced after every apply batch is written (and
    /// after a snapshot install): a watcher that sees revision `r` here can read every change up
    /// to `r` from the history.
    pub fn subscribe_revision(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    fn publish_revision(&self) {
        let revision = self.inner.applied.lock().expect("applied lock poisoned").revision;
        self.inner.revision.send_replace(revision);
    }

    /// The last applied log id and membership.
    pub fn applied(&self) -> (Option<LogId>, StoredMembership) {
        let applied = self.inner.applied.lock().expect("applied lock poisoned");
        (applied.last_applied, applied.membership.clone())
    }

    /// Everything about the applied state but the data: position, membership, revision, clock,
    /// identity and recovery record.
    pub fn applied_meta(&self) -> AppliedState {
        self.inner.applied.lock().expect("applied lock poisoned").clone()
    }

    /// The cluster this state belongs to, once founded.
    pub fn identity(&self) -> Option<ClusterIdentity> {
        self.inner.applied.lock().expect("applied lock poisoned").identity.clone()
    }

    /// The cluster's operating state as applied here: standbys, autopilot, sync zones, events.
    pub fn cluster_state(&self) -> std::sync::Arc<ClusterState> {
        self.inner.applied.lock().expect("applied lock poisoned").cluster.clone()
    }

    /// The learners flagged as standbys.
    pub fn standbys(&self) -> std::collections::BTreeSet<NodeId> {
        self.inner.applied.lock().expect("applied lock poisoned").cluster.standbys.clone()
    }

    /// The sync zones writes wait for now: `Some` only when zones are set and the replication
    /// mode is synchronous.
    pub fn sync_requirement(&self) -> Option<raftkv_types::SyncReplication> {
        let applied = self.inner.applied.lock().expect("applied lock poisoned");
        applied.cluster.waits_for_zones().then(|| applied.cluster.sync.clone())
    }

    /// Whether the applied state has a cluster identity (the cluster has been founded).
    pub fn is_founded(&self) -> bool {
        self.inner.founded.load(Ordering::Acquire)
    }

    /// Index of the last applied log entry, 0 before any.
    pub fn applied_index(&self) -> u64 {
        self.inner.applied_index.load(Ordering::Acquire)
    }

    /// Where this store records its metrics.
    pub(crate) fn metrics(&self) -> &crate::StorageMetrics {
        self.inner.db.metrics()
    }

    /// The live data generation.
    pub(crate) fn generation(&self) -> u64 {
        *self.inner.generation.read().expect("generation lock poisoned")
    }

    pub(crate) fn db(&self) -> &DB {
        &self.inner.db
    }

    /// A unique path in the snapshot directory for a new file or checkpoint.
    pub(crate) fn scratch_path(&self, prefix: &str, suffix: &str) -> PathBuf {
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot_dir.join(format!("{prefix}{}-{seq}{suffix}", std::process::id()))
    }

    /// A fresh path in the snapshot directory for a snapshot being received from the leader.
    /// Files left there by an interrupted transfer are removed on open.
    pub fn incoming_snapshot_path(&self) -> PathBuf {
        self.scratch_path("incoming-", ".part")
    }

    /// Moves a complete snapshot file into place as the newest snapshot and drops older ones.
    pub(crate) fn publish_snapshot(&self, file: &SnapshotFile, header: &SnapshotHeader) -> Result<SnapshotFile> {
        let index = header.last_log_id.as_ref().map_or(0, |l| l.index);
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let dest = self.inner.snapshot_dir.join(format!("snap-{index:020}-{:020}-{seq}.snap", now_nanos()));
        std::fs::rename(file.path(), &dest).map_err(StorageError::io("publish snapshot", &dest))?;
        sync_dir(&self.inner.snapshot_dir)?;
        let mut all = self.snapshot_files()?;
        let newest_first = all.len().saturating_sub(SNAPSHOTS_KEPT);
        for old in all.drain(..newest_first) {
            // The newest by index is what matters; an older one may still be being sent.
            if old != dest {
                let _ = std::fs::remove_file(&old);
            }
        }
        Ok(SnapshotFile::new(dest))
    }

    /// Published snapshot files, oldest first.
    pub(crate) fn snapshot_files(&self) -> Result<Vec<PathBuf>> {
        snapshot_files(&self.inner.snapshot_dir)
    }

    /// Writes one apply batch with the applied state it leads to, then answers clients.
    fn commit_batch(
        &self,
        batch: &mut ApplyBatch<'_>,
        before: &mut AppliedState,
        responses: &mut Vec<(ApplyResponder<TypeConfig>, CommandResult)>,
    ) -> Result<()> {
        if batch.state.last_applied == before.last_applied {
            return Ok(());
        }
        let mut write = batch.take();
        trim_history(&self.inner.db, &mut batch.state, &mut write, &self.inner.retention)?;
        batch.state.write_changes(before, &self.inner.db, &mut write)?;
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        self.inner.db.write_opt(write, &opts).map_err(StorageError::rocks("apply entries"))?;
        *before = batch.state.clone();
        {
            let mut applied = self.inner.applied.lock().expect("applied lock poisoned");
            self.inner.applied_index.store(before.applied_index(), Ordering::Release);
            self.inner.founded.store(before.identity.is_some(), Ordering::Release);
            *applied = before.clone();
        }
        self.inner.revision.send_replace(before.revision);
        for (responder, result) in responses.drain(..) {
            responder.send(result);
        }
        Ok(())
    }

    /// Applies `entries` outside openraft (a recovery applying what the log holds beyond the last
    /// applied entry). Same evaluation, same batches, no one to answer.
    pub(crate) fn apply_entries(&self, entries: Vec<Entry>) -> Result<()> {
        let generation = *self.inner.generation.read().expect("generation lock poisoned");
        let mut before = self.applied_meta();
        let mut batch = ApplyBatch::new(&self.inner.db, generation, before.clone());
        for (n, entry) in entries.into_iter().enumerate() {
            batch.apply(entry)?;
            if (n + 1) % APPLY_CHUNK == 0 {
                self.commit_batch(&mut batch, &mut before, &mut Vec::new())?;
            }
        }
        self.commit_batch(&mut batch, &mut before, &mut Vec::new())
    }

    /// Replaces the applied state but the data (a recovery's new membership and epoch), with one
    /// synced write.
    pub(crate) fn overwrite_applied_state(&self, state: AppliedState) -> Result<()> {
        let mut batch = WriteBatch::default();
        state.write_all(&self.inner.db, &mut batch)?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        self.inner.db.write_opt(batch, &synced).map_err(StorageError::rocks("write applied state"))?;
        self.inner.applied_index.store(state.applied_index(), Ordering::Release);
        self.inner.founded.store(state.identity.is_some(), Ordering::Release);
        *self.inner.applied.lock().expect("applied lock poisoned") = state;
        self.publish_revision();
        Ok(())
    }

    /// Loads the records of `file` as the whole state, with `state` as the applied state (the
    /// file's own for a snapshot; a new identity and revision for a restore).
    pub(crate) fn install_blocking(&self, state: AppliedState, file: &SnapshotFile) -> Result<()> {
        let db = &self.inner.db;
        let old_generation = *self.inner.generation.read().expect("generation lock poisoned");
        let new_generation = old_generation + 1;
        // Anything left in the target generation by an earlier interrupted install goes first.
        for cf in [CF_SM_DATA, CF_SM_AUX] {
            let cf = db.cf_handle(cf).expect("state column families are created at open");
            db.delete_range_cf(cf, generation_start(new_generation), generation_start(new_generation + 1))
                .map_err(StorageError::rocks("clear snapshot generation"))?;
        }

        let mut reader = SnapshotReader::open(file.path())?;
        let (file_format, file_revision) = (reader.header().format_version, reader.header().revision);
        let aux_cf = db.cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        let mut batch = WriteBatch::default();
        // Records of a chunk are handed out only once its checksum matched, and the switch below
        // happens only once the trailer and the file's SHA-256 did: a damaged file leaves the
        // state as it was.
        while let Some((key, value)) = reader.next_record()? {
            match raw_record(file_format, file_revision, key, value)? {
                RawRecord::Data(key, value) => batch.put_cf(self.data_cf(), data_key(new_generation, &key), &value),
                RawRecord::Aux(key, value) => batch.put_cf(aux_cf, data_key(new_generation, &key), &value),
            }
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                db.write_opt(std::mem::take(&mut batch), &unsynced)
                    .map_err(StorageError::rocks("install snapshot data"))?;
            }
        }
        // The watch history before the snapshot is not this state's: it starts over after it.
        let mut state = state;
        state.history_floor = state.revision + 1;
        let history_cf = db.cf_handle(CF_WATCH_LOG).expect("watch_log column family is created at open");
        batch.delete_range_cf(history_cf, history_key(0), history_key(u64::MAX));
        // The switch: generation and applied state together, fsynced (which also makes the data
        // batches above durable, as they share the WAL).
        batch.put_cf(self.meta_cf(), KEY_GENERATION, encode(&new_generation)?);
        state.write_all(db, &mut batch)?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        {
            let mut generation = self.inner.generation.write().expect("generation lock poisoned");
            db.write_opt(batch, &synced).map_err(StorageError::rocks("switch to snapshot"))?;
            *generation = new_generation;
            let mut applied = self.inner.applied.lock().expect("applied lock poisoned");
            self.inner.applied_index.store(state.applied_index(), Ordering::Release);
            self.inner.founded.store(state.identity.is_some(), Ordering::Release);
            *applied = state;
        }
        for cf in [self.data_cf(), aux_cf] {
            db.delete_range_cf(cf, generation_start(0), generation_start(new_generation))
                .map_err(StorageError::rocks("drop replaced generation"))?;
        }
        self.publish_revision();
        Ok(())
    }
}

/// The applied state a snapshot or backup file describes.
pub(crate) fn state_of(header: &SnapshotHeader) -> AppliedState {
    AppliedState {
        last_applied: header.last_log_id,
        membership: header.membership.clone(),
        revision: header.revision,
        clock_ms: header.clock_ms,
        identity: header.identity.clone(),
        recovery: header.recovery.clone(),
        cluster: header.cluster.clone().into(),
        history_floor: header.revision + 1,
    }
}

/// Published snapshot files in `dir`, oldest first.
pub(crate) fn snapshot_files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(StorageError::io("list snapshots", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snap-") && n.ends_with(".snap"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = KvSnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok(self.applied())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        // Applies and installs both run on openraft's state-machine task, one at a time, so the
        // generation cannot change during this call.
        let generation = *self.inner.generation.read().expect("generation lock poisoned");
        let mut before = self.applied_meta();
        let mut batch = ApplyBatch::new(&self.inner.db, generation, before.clone());
        let mut responses = Vec::new();
        let mut pending = 0;
        let mut applied = 0u64;
        let started = std::time::Instant::now();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = batch.apply(entry)?;
            if let Some(responder) = responder {
                responses.push((responder, result));
            }
            pending += 1;
            applied += 1;
            if pending == APPLY_CHUNK {
                self.commit_batch(&mut batch, &mut before, &mut responses)?;
                pending = 0;
            }
        }
        self.commit_batch(&mut batch, &mut before, &mut responses)?;
        let metrics = self.metrics();
        metrics.apply_duration.observe(started.elapsed().as_secs_f64());
        metrics.apply_batch_entries.observe(applied as f64);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> KvSnapshotBuilder {
        // Called on the state-machine task between applies: the checkpoint taken here is exactly
        // the applied state. Errors surface when the builder runs.
        let sm = self.clone();
        let result = tokio::task::spawn_blocking(move || KvSnapshotBuilder::checkpoint(sm)).await;
        match result {
            Ok(builder) => builder,
            Err(join) => KvSnapshotBuilder::failed(self.clone(), format!("checkpoint task failed: {join}")),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> io::Result<()> {
        let sm = self.clone();
        let meta = meta.clone();
        let started = std::time::Instant::now();
        let size = std::fs::metadata(snapshot.path()).map_or(0, |m| m.len());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let header = SnapshotReader::open(snapshot.path())?.header().clone();
            if header.last_log_id != meta.last_log_id {
                return Err(StorageError::corrupt(
                    "snapshot",
                    format!("file holds state at {:?}, openraft installs {:?}", header.last_log_id, meta.last_log_id),
                ));
            }
            sm.install_blocking(state_of(&header), &snapshot)?;
            sm.publish_snapshot(&snapshot, &header)?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        let metrics = self.metrics();
        metrics.snapshot_install_duration.observe(started.elapsed().as_secs_f64());
        metrics.snapshot_size.set(size as i64);
        metrics.snapshot_installed_bytes.inc_by(size);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>> {
        let sm = self.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<_> {
            for path in sm.snapshot_files()?.into_iter().rev() {
                match SnapshotReader::open(&path) {
                    Ok(reader) => {
                        return Ok(Some((reader.header().snapshot_meta(), SnapshotFile::new(path))));
                    }
                    Err(err) => {
                        tracing::warn!(path = %path.display(), %err, "skipping unreadable snapshot")
                    }
                }
            }
            Ok(None)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(found.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
