//! Durable storage of a raftkv node: the Raft log and the key-value state machine, both in one
//! RocksDB, implementing openraft's [`RaftLogStorage`](openraft::storage::RaftLogStorage) and
//! [`RaftStateMachine`](openraft::storage::RaftStateMachine).
//!
//! # Where data becomes durable
//! - A log entry: when openraft's flush callback fires, after a WAL fsync shared by every append
//!   queued meanwhile (group commit, [`WalFlusher`]).
//! - The vote: before `save_vote` returns.
//! - State-machine data: it is derived from the log and re-applied from it, so applies are written
//!   atomically but outside the WAL; they reach disk with the next memtable flush (all column
//!   families at once), and the log is kept until they have.
//! - A snapshot: its file is fsynced before it is published; an installed snapshot is switched to
//!   with one fsynced batch.
//!
//! # Layout
//! - [`store`]: [`Store::open`] opens the database and recovers; [`StoreClosed`] tells when it
//!   has been closed again.
//! - [`log_store`]: [`RocksLogStore`], the log and vote.
//! - [`wal_flusher`]: [`WalFlusher`], group commit.
//! - [`state_machine`]: [`KvStateMachine`], the key-value map and its reads.
//! - `apply` and [`applied_state`]: how commands are evaluated, and the revision, clock and
//!   identity kept beside the data.
//! - [`snapshot`], [`snapshot_header`] and [`snapshot_builder`]: the checksummed file format of
//!   snapshots and backups, and how one is built.
//! - [`backup`]: backups of a running state machine, and [`restore`] into a new cluster.
//! - [`recovery`]: offline inspection and forced recovery of a data directory; [`store_check`]
//!   verifies one (every checksum, every record, the log's continuity, every snapshot).
//! - [`watch_history`]: the history of changes by revision that watches read, and its trimming.
//! - [`state_record`] and `value_record`: records of snapshot files, and how a key's value and
//!   revisions are stored.
//! - [`keys`], [`codec`] and [`data_format`]: column families, key layout, record encoding, and
//!   the data directory's format version and upgrades.
//!
//! # Example
//! ```no_run
//! let store = raftkv_storage::Store::open("/var/lib/raftkv/node-1")?;
//! assert_eq!(store.state_machine.get("greeting")?, None);
//! # Ok::<(), raftkv_storage::StorageError>(())
//! ```

pub mod applied_state;
pub(crate) mod apply;
pub mod backup;
pub mod codec;
pub mod data_format;
mod database;
mod error;
mod hashing_io;
pub mod keys;
pub mod leases;
pub mod log_store;
pub mod recovery;
pub mod rocksdb_stats;
pub mod sessions;
pub mod snapshot;
pub mod snapshot_builder;
pub mod snapshot_header;
pub mod state_machine;
pub mod state_record;
pub mod storage_metrics;
pub mod store;
pub mod store_check;
mod value_record;
pub mod wal_flusher;
pub mod watch_history;

pub use applied_state::AppliedState;
pub use backup::{RestoreSummary, finish_backup_file, part_path, restore};
pub use data_format::DATA_FORMAT_VERSION;
pub use database::StoreClosed;
pub use error::{Result, StorageError};
pub use log_store::RocksLogStore;
pub use recovery::{DataDirReport, RecoverySummary};
pub use rocksdb_stats::RocksDbStats;
pub use snapshot::{FileSummary, SnapshotFile, SnapshotReader, SnapshotWriter};
pub use snapshot_builder::KvSnapshotBuilder;
pub use snapshot_header::{BackupConsistency, FileKind, SnapshotHeader};
pub use state_machine::{KvStateMachine, ScanPage};
pub use state_record::StateRecord;
pub use storage_metrics::StorageMetrics;
pub use store::{Store, StoreOptions, sync_dir};
pub use store_check::{CheckReport, check};
pub use wal_flusher::{WalFlusher, WalStats};
pub use watch_history::{HistoryRead, HistoryRetention};
