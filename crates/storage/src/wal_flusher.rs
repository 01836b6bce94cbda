//! Group commit: one WAL fsync for many log appends.

use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use openraft::storage::IOFlushed;
use raftkv_types::TypeConfig;
use rocksdb::DB;

/// A dedicated thread that makes appended log entries durable and then reports them flushed.
///
/// [`crate::RocksLogStore::append`] writes entries to RocksDB without syncing (they are readable at
/// once) and hands its completion callback here. The thread takes every callback queued so far,
/// fsyncs the write-ahead log once, and completes them all in order: while one fsync runs, the
/// appends that arrive meanwhile queue up and share the next one. Since all column families share
/// one WAL, that fsync also covers every earlier unsynced write (truncations, purges, applies).
///
/// Callbacks complete in the order they were queued, and only after an fsync that began after their
/// entries were written: an entry reported flushed is on disk.
pub struct WalFlusher {
    tx: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl WalFlusher {
    /// Starts the flush thread for `db`. It ends when the last `WalFlusher` clone is dropped.
    pub fn start(db: Arc<DB>) -> io::Result<WalFlusher> {
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        thread::Builder::new()
            .name("raftkv-wal-flush".into())
            .spawn(move || run(db, rx))?;
        Ok(WalFlusher { tx })
    }

    /// Queues `callback`, to be completed once everything written before this call is fsynced.
    pub fn flush_then(&self, callback: IOFlushed<TypeConfig>) -> io::Result<()> {
        self.tx
            .send(callback)
            .map_err(|_| io::Error::other("wal flush thread stopped"))
    }
}

fn run(db: Arc<DB>, rx: mpsc::Receiver<IOFlushed<TypeConfig>>) {
    let mut batch = Vec::new();
    // Blocks for the first callback, then takes whatever else is already queued.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        let result = db.flush_wal(true);
        for callback in batch.drain(..) {
            callback.io_completed(
                result
                    .clone()
                    .map_err(|e| io::Error::other(format!("wal fsync failed: {e}"))),
            );
        }
        if result.is_err() {
            tracing::error!("wal fsync failed; log appends can no longer be made durable");
        }
    }
}
