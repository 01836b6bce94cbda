//! The watch history: what each revision changed, in `watch_log`, for watchers to read in order.
//!
//! Apply writes a revision's changes in the same batch as the data (`apply.rs`), so after a
//! crash the history and the data agree, with no gap. Each apply batch also trims it, in that
//! same batch: the oldest revisions beyond [`HistoryRetention::revisions`], and those whose
//! state-machine clock is older than [`HistoryRetention::max_age`]. The floor (the oldest revision
//! it may hold) is in `sm_meta`, so readers see floor and records from one RocksDB snapshot.

use std::time::Duration;

use raftkv_types::{KeyChange, RevisionChanges};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::applied_state::AppliedState;
use crate::codec::decode;
use crate::error::{Result, StorageError};
use crate::keys::{CF_SM_META, CF_WATCH_LOG, KEY_WATCH_FLOOR, history_key};
use crate::state_machine::KvStateMachine;

/// Revisions whose age is checked per apply batch: bounds the work of one trim.
const AGE_TRIM_SCAN: usize = 1024;

/// How much watch history a node keeps. Either limit trims; 0 (or zero duration) turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetention {
    /// The newest revisions kept (default 100 000).
    pub revisions: u64,
    /// Revisions older than this by the state-machine clock are dropped (default 1 hour).
    pub max_age: Duration,
}

impl Default for HistoryRetention {
    fn default() -> HistoryRetention {
        HistoryRetention { revisions: 100_000, max_age: Duration::from_secs(3600) }
    }
}

/// What a read of the history found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRead {
    /// Revisions from the one asked for on, in order (only those that changed data), up to the
    /// read's limits; empty when the history holds nothing newer.
    Page(Vec<RevisionChanges>),
    /// The revision asked for is older than what is kept: `floor` is the oldest one available.
    Compacted {
        /// The oldest revision the history holds.
        floor: u64,
    },
}

/// Adds to `batch` the deletion of history beyond `retention`, raising `state.history_floor`.
pub(crate) fn trim_history(
    db: &DB,
    state: &mut AppliedState,
    batch: &mut WriteBatch,
    retention: &HistoryRetention,
) -> Result<()> {
    let mut floor = state.history_floor;
    if retention.revisions > 0 && state.revision >= retention.revisions {
        floor = floor.max(state.revision + 1 - retention.revisions);
    }
    let cf = db.cf_handle(CF_WATCH_LOG).expect("watch_log column family is created at open");
    let max_age = retention.max_age.as_millis() as u64;
    if max_age > 0 && state.clock_ms > max_age {
        let cutoff = state.clock_ms - max_age;
        let start = history_key(floor);
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)).take(AGE_TRIM_SCAN) {
            let (key, value) = item.map_err(StorageError::rocks("read watch history"))?;
            if clock_of(&value)? >= cutoff {
                break;
            }
            floor = revision_of(&key)? + 1;
        }
    }
    if floor > state.history_floor {
        batch.delete_range_cf(cf, history_key(state.history_floor), history_key(floor));
        state.history_floor = floor;
    }
    Ok(())
}

fn revision_of(key: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| StorageError::corrupt("watch history key", "not 8 bytes"))?))
}

fn clock_of(value: &[u8]) -> Result<u64> {
    let bytes = value.get(..8).ok_or_else(|| StorageError::corrupt("watch history record", "shorter than 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

impl KvStateMachine {
    /// The history from revision `from` on: at most `max_revisions` revisions and (past the
    /// first) about `max_bytes` of records, from one consistent view. `Compacted` when `from` is
    /// below the oldest revision kept.
    pub fn history(&self, from: u64, max_revisions: usize, max_bytes: usize) -> Result<HistoryRead> {
        let db = self.db();
        let snapshot = db.snapshot();
        let meta = db.cf_handle(CF_SM_META).expect("sm_meta column family is created at open");
        let floor: u64 = snapshot
            .get_cf(meta, KEY_WATCH_FLOOR)
            .map_err(StorageError::rocks("read watch floor"))?
            .map(|b| decode("watch floor", &b))
            .transpose()?
            .unwrap_or(0);
        if from < floor {
            return Ok(HistoryRead::Compacted { floor });
        }
        let cf = db.cf_handle(CF_WATCH_LOG).expect("watch_log column family is created at open");
        let start = history_key(from);
        let mut page = Vec::new();
        let mut bytes = 0;
        for item in snapshot.iterator_cf_opt(cf, ReadOptions::default(), IteratorMode::From(&start, Direction::Forward))
        {
            if page.len() == max_revisions || (bytes >= max_bytes && !page.is_empty()) {
                break;
            }
            let (key, value) = item.map_err(StorageError::rocks("read watch history"))?;
            bytes += value.len();
            let changes: Vec<KeyChange> = decode("watch history record", &value[8..])?;
            page.push(RevisionChanges { revision: revision_of(&key)?, clock_ms: clock_of(&value)?, changes });
        }
        Ok(HistoryRead::Page(page))
    }

    /// The oldest revision the watch history holds.
    pub fn history_floor(&self) -> u64 {
        self.applied_meta().history_floor
    }
}
