//! Opening a node's RocksDB and handing out its log store and state machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use crate::error::{Result, StorageError};
use crate::keys::ALL_CFS;
use crate::log_store::RocksLogStore;
use crate::state_machine::KvStateMachine;

/// The two halves of a node's storage, sharing one RocksDB.
///
/// Opening is also recovery: leftovers of an interrupted snapshot build or install are removed,
/// and the state machine comes back at its last applied log id.
pub struct Store {
    /// The Raft log and vote.
    pub log: RocksLogStore,
    /// The key-value state machine and its snapshots.
    pub state_machine: KvStateMachine,
}

impl Store {
    /// Opens (creating if needed) the store under `dir`: RocksDB in `dir/db`, snapshot files in
    /// `dir/snapshots`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref();
        let db_dir = dir.join("db");
        let snapshot_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snapshot_dir).map_err(StorageError::io("create directory", &snapshot_dir))?;

        let db = Arc::new(open_db(&db_dir)?);
        let log = RocksLogStore::new(db.clone())?;
        let state_machine = KvStateMachine::open(db, snapshot_dir)?;
        Ok(Store { log, state_machine })
    }
}

/// RocksDB options for a node: one WAL for all column families (that is what lets one fsync cover
/// them all), no WAL syncing of its own (the log store decides when to sync).
pub(crate) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

fn open_db(path: &PathBuf) -> Result<DB> {
    let opts = db_options();
    let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    DB::open_cf_descriptors(&opts, path, cfs).map_err(StorageError::rocks("open"))
}

/// Fsyncs the directory `dir`, so that a file created or renamed in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io("fsync directory", dir))
}
