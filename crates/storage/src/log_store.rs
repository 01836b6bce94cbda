//! The Raft log and vote, in RocksDB.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use raftkv_types::{Entry, LogId, TypeConfig, Vote};
use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{FORMAT_V2, decode, decode_versions, encode};
use crate::database::Database;
use crate::error::{Result, StorageError};
use crate::keys::{CF_LOG, CF_RAFT_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, log_index, log_key};
use crate::wal_flusher::{WalFlusher, WalStats};

/// The Raft log store: entries in the `log` column family, vote and log pointers in `raft_meta`.
///
/// # Durability
/// - [`append`](RaftLogStorage::append) writes entries unsynced, so they are readable when it
///   returns, and reports them flushed only after a WAL fsync that covers them (group commit, see
///   [`WalFlusher`]).
/// - [`save_vote`](RaftLogStorage::save_vote) fsyncs before it returns.
/// - Truncation and purge are single atomic batches: the log never has a hole, whatever the crash
///   point. They are made durable by the next fsync; losing one to a power cut leaves the log as it
///   was before, which is a state the log really had.
///
/// Cloning is cheap: clones share the database and the flush thread, and serve as log readers.
#[derive(Clone)]
pub struct RocksLogStore {
    db: Arc<Database>,
    flusher: Arc<WalFlusher>,
}

impl RocksLogStore {
    pub(crate) fn new(db: Arc<Database>) -> Result<RocksLogStore> {
        let flusher = WalFlusher::start(db.clone()).map_err(StorageError::io("start wal flush thread", "-"))?;
        Ok(RocksLogStore { db, flusher: Arc::new(flusher) })
    }

    pub(crate) fn db(&self) -> &rocksdb::DB {
        &self.db
    }

    /// The whole log, read without openraft (offline inspection and recovery).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.read_entries(0..)
    }

    /// The vote, the committed log id and the last purged log id, read without openraft.
    pub fn raft_state(&self) -> Result<(Option<Vote>, Option<LogId>, Option<LogId>)> {
        let committed = self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        Ok((self.get_meta(KEY_VOTE)?, committed, self.get_meta(KEY_LAST_PURGED)?))
    }

    /// The id of the last entry in the log (or the last purged one when the log is empty).
    pub fn last_log_id(&self) -> Result<Option<LogId>> {
        Ok(self.last_entry_log_id()?.or(self.get_meta(KEY_LAST_PURGED)?))
    }

    /// Empties the log as if everything up to `last` had been compacted into the state machine,
    /// and records `last` as committed; one synced batch. Used by a forced recovery once the
    /// state machine has applied everything up to `last`.
    pub(crate) fn reset_to(&self, last: LogId) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.log_cf(), log_key(0), log_key(u64::MAX));
        batch.delete_cf(self.log_cf(), log_key(u64::MAX));
        batch.put_cf(self.meta_cf(), KEY_LAST_PURGED, encode(&last)?);
        batch.put_cf(self.meta_cf(), KEY_COMMITTED, encode(&Some(last))?);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(StorageError::rocks("reset log"))
    }

    /// Group-commit counters of this store's WAL flush thread.
    pub fn wal_stats(&self) -> WalStats {
        self.flusher.stats()
    }

    fn log_cf(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_LOG).expect("log column family is created at open")
    }

    fn meta_cf(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_RAFT_META).expect("raft_meta column family is created at open")
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &'static [u8]) -> Result<Option<T>> {
        let what = "raft metadata";
        match self.db.get_pinned_cf(self.meta_cf(), key).map_err(StorageError::rocks("read raft metadata"))? {
            Some(bytes) => Ok(Some(decode(what, &bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &'static [u8], value: &T, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.db.fsyncs());
        self.db
            .put_cf_opt(self.meta_cf(), key, encode(value)?, &opts)
            .map_err(StorageError::rocks("write raft metadata"))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>> {
        let mut iter = self.db.iterator_cf(self.log_cf(), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (_, value) = item.map_err(StorageError::rocks("read last log entry"))?;
                let entry: Entry = decode_versions("log entry", &value, &[FORMAT_V2])?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    fn read_entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let iter = self.db.iterator_cf(self.log_cf(), IteratorMode::From(&log_key(start), Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(StorageError::rocks("read log entries"))?;
            let index = log_index(&key).ok_or_else(|| StorageError::corrupt("log key", "not 8 bytes"))?;
            if !range.contains(&index) {
                break;
            }
            entries.push(decode_versions("log entry", &value, &[FORMAT_V2])?);
        }
        Ok(entries)
    }

    fn write(&self, batch: WriteBatch, op: &'static str) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts).map_err(StorageError::rocks(op))
    }
}

impl RaftLogReader<TypeConfig> for RocksLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        Ok(self.read_entries(range)?)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.get_meta(KEY_VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for RocksLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        Ok(self.put_meta(KEY_VOTE, vote, true)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Unsynced: the next log fsync covers it, and a lost `committed` only means re-applying
        // from the state machine's own last applied id.
        Ok(self.put_meta(KEY_COMMITTED, &committed, false)?)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = <TypeConfig as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut count = 0;
        for entry in entries {
            batch.put_cf(self.log_cf(), log_key(entry.log_id.index), encode(&entry)?);
            count += 1;
        }
        self.write(batch, "append log entries")?;
        self.flusher.flush_then(callback, count)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.log_cf(), log_key(from), log_key(u64::MAX));
        batch.delete_cf(self.log_cf(), log_key(u64::MAX));
        Ok(self.write(batch, "truncate log")?)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // Recording the purge point and deleting up to it in one batch: readers never see a log
        // whose first entry is past `last_purged + 1`.
        let mut batch = WriteBatch::default();
        batch.put_cf(self.meta_cf(), KEY_LAST_PURGED, encode(&log_id)?);
        batch.delete_range_cf(self.log_cf(), log_key(0), log_key(log_id.index + 1));
        Ok(self.write(batch, "purge log")?)
    }
}
