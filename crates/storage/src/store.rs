//! Opening a node's RocksDB and handing out its log store and state machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use raftkv_types::NodeId;

use crate::codec::{decode, encode};
use crate::data_format;
use crate::database::{Database, StoreClosed};
use crate::error::{Result, StorageError};
use crate::keys::{ALL_CFS, CF_RAFT_META, CF_SM_DATA, KEY_NODE_ID};
use crate::log_store::RocksLogStore;
use crate::state_machine::KvStateMachine;
use crate::storage_metrics::StorageMetrics;

/// Memtable size of the state machine's data column family.
const SM_DATA_WRITE_BUFFER_BYTES: usize = 8 << 20;

/// The two halves of a node's storage, sharing one RocksDB.
///
/// Opening is also recovery: leftovers of an interrupted snapshot build or install are removed,
/// and the state machine comes back at its last applied log id. A data directory of an older
/// format is upgraded first; one of a newer format is refused (see [`crate::data_format`]).
pub struct Store {
    /// The Raft log and vote.
    pub log: RocksLogStore,
    /// The key-value state machine and its snapshots.
    pub state_machine: KvStateMachine,
    /// Resolves once the database is closed, after the log store, the state machine and every
    /// clone of them are dropped.
    pub closed: StoreClosed,
}

/// How a store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// **Test only; loses acknowledged writes on power loss.** Log appends and votes are written
    /// to the operating system but never fsynced. It exists so that power-loss tests can show
    /// their checker catches lost writes (a positive control, like etcd's `--unsafe-no-fsync`).
    pub unsafe_no_fsync: bool,
    /// Where the store records fsync, apply and snapshot times (the node registers them).
    pub metrics: StorageMetrics,
    /// How much watch history the state machine keeps.
    pub history: crate::HistoryRetention,
}

impl Store {
    /// Opens (creating if needed) the store under `dir`: RocksDB in `dir/db`, snapshot files in
    /// `dir/snapshots`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref();
        let db_dir = dir.join("db");
        let snapshot_dir = dir.join("snapshots");
        let created = !db_dir.join("CURRENT").exists();
        std::fs::create_dir_all(&snapshot_dir).map_err(StorageError::io("create directory", &snapshot_dir))?;

        let db = open_db(&db_dir)?;
        data_format::check_and_upgrade(&db, dir, &snapshot_dir, created)?;
        let history = options.history;
        let (db, closed) = Database::new(db, options.unsafe_no_fsync, options.metrics);
        let db = Arc::new(db);
        let log = RocksLogStore::new(db.clone())?;
        let state_machine = KvStateMachine::open(db, snapshot_dir, history)?;
        if let Some(id) = log.node_id()? {
            state_machine.set_node_id(id);
        }
        Ok(Store { log, state_machine, closed })
    }

    /// Opens the store under `dir` for node `id`: records the id on first use and refuses a
    /// directory that belongs to another node.
    pub fn open_as(dir: impl AsRef<Path>, id: NodeId) -> Result<Store> {
        Store::open_as_with(dir, id, StoreOptions::default())
    }

    /// [`Store::open_as`] with `options`.
    pub fn open_as_with(dir: impl AsRef<Path>, id: NodeId, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref();
        let store = Store::open_with(dir, options)?;
        match store.log.node_id()? {
            Some(owner) if owner != id => {
                return Err(StorageError::Refused(format!(
                    "data directory {} belongs to node {owner}, not node {id}: start it with --id {owner}, or give node {id} a directory of its own",
                    dir.display()
                )));
            }
            Some(_) => {}
            None => store.log.set_node_id(id)?,
        }
        store.state_machine.set_node_id(id);
        Ok(store)
    }

    /// The id of the node that owns the data directory, if it has been started as one.
    pub fn node_id(&self) -> Result<Option<NodeId>> {
        self.log.node_id()
    }
}

impl crate::RocksLogStore {
    /// The id recorded by [`Store::open_as`].
    pub(crate) fn node_id(&self) -> Result<Option<NodeId>> {
        let meta = self.db().cf_handle(CF_RAFT_META).expect("raft_meta column family is created at open");
        let bytes = self.db().get_cf(meta, KEY_NODE_ID).map_err(StorageError::rocks("read node id"))?;
        bytes.map(|b| decode("node id", &b)).transpose()
    }

    fn set_node_id(&self, id: NodeId) -> Result<()> {
        let meta = self.db().cf_handle(CF_RAFT_META).expect("raft_meta column family is created at open");
        let mut synced = rocksdb::WriteOptions::default();
        synced.set_sync(true);
        self.db().put_cf_opt(meta, KEY_NODE_ID, encode(&id)?, &synced).map_err(StorageError::rocks("write node id"))
    }
}

/// RocksDB options for a node: one WAL for all column families (that is what lets one fsync cover
/// them all), no WAL syncing of its own (the log store decides when to sync).
///
/// Applies bypass the WAL (see [`KvStateMachine`]), so the state machine's column families reach
/// disk only through memtable flushes: `atomic_flush` flushes all column families at one sequence
/// number, so that the data, the last applied id and the membership on disk always come from the
/// same prefix of the log.
pub(crate) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_atomic_flush(true);
    // Concurrent memtable inserts find each key's place from the top of the skip list; the one
    // writer that inserts a whole group keeps its position between keys, which makes the log's
    // ascending keys nearly free to insert. On a few cores there is no parallelism to win back.
    opts.set_allow_concurrent_memtable_write(false);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Refuse to open a database whose files do not match their checksums or the manifest, rather
    // than serving from it (RocksDB's default, kept explicit). Reads verify block checksums too.
    opts.set_paranoid_checks(true);
    // After a crash or power loss the WAL may end in a record cut off halfway: that tail was
    // never acknowledged (its fsync did not complete) and is dropped. A damaged record anywhere
    // else is corruption: the node refuses to open rather than forget entries it may have
    // acknowledged to a leader (RocksDB's default would silently stop replaying there).
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    opts
}

/// Per-column-family options.
///
/// `sm_data` takes overwrites of the same keys: a small memtable keeps the skip list that every
/// apply inserts into shallow and in cache (its flushes are cheap: overwritten versions are
/// dropped), where RocksDB's default 64 MiB grows it to hundreds of thousands of versions.
pub(crate) fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == CF_SM_DATA {
        opts.set_write_buffer_size(SM_DATA_WRITE_BUFFER_BYTES);
    }
    opts
}

fn open_db(path: &PathBuf) -> Result<DB> {
    let opts = db_options();
    let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
    DB::open_cf_descriptors(&opts, path, cfs).map_err(StorageError::rocks("open"))
}

/// Fsyncs the directory `dir`, so that a file created or renamed in it survives a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io("fsync directory", dir))
}
