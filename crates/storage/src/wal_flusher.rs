//! Group commit: one WAL fsync for many log appends.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use openraft::storage::IOFlushed;
use raftkv_types::TypeConfig;

use crate::database::Database;

/// A dedicated thread that makes appended log entries durable and then reports them flushed.
///
/// [`RocksLogStore`](crate::RocksLogStore)`::append` writes entries to RocksDB without syncing (they are readable at
/// once) and hands its completion callback here. The thread takes every callback queued so far,
/// fsyncs the write-ahead log once, and completes them all in order: while one fsync runs, the
/// appends that arrive meanwhile queue up and share the next one. Since all column families share
/// one WAL, that fsync also covers every earlier unsynced write (truncations, purges, applies).
///
/// Callbacks complete in the order they were queued, and only after an fsync that began after their
/// entries were written: an entry reported flushed is on disk.
///
/// Dropping the last handle flushes what is queued and joins the thread, so that the database is
/// released when the store is (a reopen in the same process must not find it still locked).
pub struct WalFlusher {
    tx: Option<mpsc::Sender<Pending>>,
    thread: Option<thread::JoinHandle<()>>,
    stats: Arc<Counters>,
}

/// How much group commit saved: appends made durable, and the fsyncs that took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Append callbacks completed.
    pub appends: u64,
    /// WAL fsyncs done for them.
    pub fsyncs: u64,
}

/// An append waiting for the fsync: its callback and how many entries it wrote.
struct Pending {
    callback: IOFlushed<TypeConfig>,
    entries: u64,
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    fsyncs: AtomicU64,
}

impl WalFlusher {
    /// Starts the flush thread for `db`. It ends when the `WalFlusher` is dropped.
    pub(crate) fn start(db: Arc<Database>) -> io::Result<WalFlusher> {
        let (tx, rx) = mpsc::channel::<Pending>();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let thread = thread::Builder::new().name("raftkv-wal-flush".into()).spawn(move || run(db, rx, &counters))?;
        Ok(WalFlusher { tx: Some(tx), thread: Some(thread), stats })
    }

    /// Appends flushed and fsyncs done so far.
    pub fn stats(&self) -> WalStats {
        WalStats {
            appends: self.stats.appends.load(Ordering::Relaxed),
            fsyncs: self.stats.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Queues `callback`, to be completed once everything written before this call is fsynced;
    /// `entries` is how many log entries that append wrote (for the group commit's metrics).
    pub fn flush_then(&self, callback: IOFlushed<TypeConfig>, entries: u64) -> io::Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("wal flush thread stopped"))?
            .send(Pending { callback, entries })
            .map_err(|_| io::Error::other("wal flush thread stopped"))
    }
}

impl Drop for WalFlusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has flushed what is queued.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: Arc<Database>, rx: mpsc::Receiver<Pending>, counters: &Counters) {
    let mut batch = Vec::new();
    // Blocks for the first callback, then takes whatever else is already queued.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        // `flush_wal(false)` still hands the WAL to the operating system, without fsync: what the
        // test-only `unsafe_no_fsync` asks for, so that a power cut loses acknowledged entries.
        let started = Instant::now();
        let result = db.flush_wal(db.fsyncs());
        let metrics = db.metrics();
        metrics.wal_fsync_duration.observe(started.elapsed().as_secs_f64());
        metrics.wal_fsync_entries.observe(batch.iter().map(|p| p.entries).sum::<u64>() as f64);
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        counters.appends.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for Pending { callback, .. } in batch.drain(..) {
            callback.io_completed(result.clone().map_err(|e| io::Error::other(format!("wal fsync failed: {e}"))));
        }
        if result.is_err() {
            tracing::error!("wal fsync failed; log appends can no longer be made durable");
        }
    }
}
