//! The node's RocksDB, and knowing when it has been closed.

use std::ops::Deref;
use std::time::Duration;

use rocksdb::DB;
use tokio::sync::watch;

use crate::storage_metrics::StorageMetrics;

/// The open database, shared (in an `Arc`) by the log store, its flush thread, the state machine
/// and the node's readers. It closes when the last of them lets go; [`StoreClosed`] tells when
/// that has happened.
pub struct Database {
    /// Always `Some` until dropped.
    db: Option<DB>,
    closed: watch::Sender<bool>,
    /// Test-only: log appends and votes are written but never fsynced (see
    /// [`StoreOptions::unsafe_no_fsync`](crate::StoreOptions::unsafe_no_fsync)).
    unsafe_no_fsync: bool,
    metrics: StorageMetrics,
}

/// Resolves once a store's database is closed: its memtables flushed and its lock released, so
/// that the same directory can be opened again.
#[derive(Debug, Clone)]
pub struct StoreClosed {
    rx: watch::Receiver<bool>,
}

impl Database {
    pub(crate) fn new(db: DB, unsafe_no_fsync: bool, metrics: StorageMetrics) -> (Database, StoreClosed) {
        let (closed, rx) = watch::channel(false);
        (Database { db: Some(db), closed, unsafe_no_fsync, metrics }, StoreClosed { rx })
    }

    /// Where the store records what its disk and state machine do.
    pub(crate) fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    /// Whether a write the log store means to make durable is fsynced: always, unless the store
    /// was opened with the test-only `unsafe_no_fsync`.
    pub(crate) fn fsyncs(&self) -> bool {
        !self.unsafe_no_fsync
    }
}

impl Deref for Database {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.db.as_ref().expect("the database is open until dropped")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // RocksDB closes (flushing what only the memtables hold) in its own drop: report closed
        // only after it.
        drop(self.db.take());
        self.closed.send_replace(true);
    }
}

impl StoreClosed {
    /// Waits until the database is closed, at most `timeout`; returns whether it is.
    pub async fn wait(mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.rx.wait_for(|closed| *closed)).await.is_ok_and(|r| r.is_ok())
    }
}
