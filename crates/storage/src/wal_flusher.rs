//! Group commit: one WAL fsync for many log appends.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use openraft::storage::IOFlushed;
use raftkv_types::TypeConfig;
use rocksdb::DB;

/// How long appends must have paused for the next one to be fsynced inline rather than queued.
pub const INLINE_AFTER_QUIET: std::time::Duration = std::time::Duration::from_micros(300);

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
    db: Arc<DB>,
    tx: Option<mpsc::Sender<IOFlushed<TypeConfig>>>,
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

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    fsyncs: AtomicU64,
    /// Callbacks handed to the thread and not completed yet.
    queued: AtomicU64,
    /// When the last callback was handed in, in nanoseconds since `epoch`.
    last_call_ns: AtomicU64,
    epoch: Option<std::time::Instant>,
}

impl WalFlusher {
    /// Starts the flush thread for `db`. It ends when the `WalFlusher` is dropped.
    pub fn start(db: Arc<DB>) -> io::Result<WalFlusher> {
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let stats = Arc::new(Counters { epoch: Some(std::time::Instant::now()), ..Counters::default() });
        let counters = stats.clone();
        let thread_db = db.clone();
        let thread =
            thread::Builder::new().name("raftkv-wal-flush".into()).spawn(move || run(thread_db, rx, &counters))?;
        Ok(WalFlusher { db, tx: Some(tx), thread: Some(thread), stats })
    }

    /// Appends flushed and fsyncs done so far.
    pub fn stats(&self) -> WalStats {
        WalStats {
            appends: self.stats.appends.load(Ordering::Relaxed),
            fsyncs: self.stats.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Completes `callback` once everything written before this call is fsynced.
    ///
    /// When nothing is queued or being flushed and no append came in the last
    /// [`INLINE_AFTER_QUIET`], the fsync is done here, on the caller's thread: a lone append (one
    /// client) then skips the hand-off to the flush thread and back. Otherwise the callback joins
    /// the queue and shares the thread's next fsync, and the caller goes on appending meanwhile. Either way callbacks
    /// complete in the order of the calls: the inline path is taken only when every earlier one
    /// has completed, and calls come from one caller (openraft's log IO, in sequence).
    pub fn flush_then(&self, callback: IOFlushed<TypeConfig>) -> io::Result<()> {
        let now_ns = self.stats.epoch.map_or(0, |e| e.elapsed().as_nanos() as u64);
        let previous_ns = self.stats.last_call_ns.swap(now_ns, Ordering::Relaxed);
        let quiet = now_ns.saturating_sub(previous_ns) >= INLINE_AFTER_QUIET.as_nanos() as u64;
        if quiet && self.stats.queued.load(Ordering::Acquire) == 0 {
            let result = self.db.flush_wal(true);
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.stats.appends.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                tracing::error!("wal fsync failed; log appends can no longer be made durable");
            }
            callback.io_completed(result.map_err(|e| io::Error::other(format!("wal fsync failed: {e}"))));
            return Ok(());
        }
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("wal flush thread stopped"))?
            .send(callback)
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

fn run(db: Arc<DB>, rx: mpsc::Receiver<IOFlushed<TypeConfig>>, counters: &Counters) {
    let mut batch = Vec::new();
    // Blocks for the first callback, then takes whatever else is already queued.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        let result = db.flush_wal(true);
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        counters.appends.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let completed = batch.len() as u64;
        for callback in batch.drain(..) {
            callback.io_completed(result.clone().map_err(|e| io::Error::other(format!("wal fsync failed: {e}"))));
        }
        counters.queued.fetch_sub(completed, Ordering::AcqRel);
        if result.is_err() {
            tracing::error!("wal fsync failed; log appends can no longer be made durable");
        }
    }
}
