//! [`RocksDbStats`]: what RocksDB reports about itself, read on demand (a metrics scrape).

use crate::keys::ALL_CFS;
use crate::state_machine::KvStateMachine;

/// RocksDB's own figures, summed over the column families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RocksDbStats {
    /// Estimated size of the live data (`rocksdb.estimate-live-data-size`).
    pub live_data_bytes: u64,
    /// Size of the SST files (`rocksdb.total-sst-files-size`).
    pub sst_files_bytes: u64,
    /// Memory held by the memtables (`rocksdb.cur-size-all-mem-tables`).
    pub memtable_bytes: u64,
    /// Bytes compaction would have to rewrite to bring every level under its target
    /// (`rocksdb.estimate-pending-compaction-bytes`); growing means compaction falls behind.
    pub pending_compaction_bytes: u64,
    /// Writes slowed down so far because compaction or flushes fell behind.
    pub write_delays: u64,
    /// Writes stopped so far for the same reason.
    pub write_stops: u64,
    /// Whether writes are stopped now (`rocksdb.is-write-stopped`).
    pub write_stopped: bool,
}

impl KvStateMachine {
    /// Reads RocksDB's figures. Cheap: in-memory counters, no I/O.
    pub fn rocksdb_stats(&self) -> RocksDbStats {
        let db = self.db();
        let mut stats = RocksDbStats::default();
        let int = |cf, name: &str| db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        for name in ALL_CFS {
            let Some(cf) = db.cf_handle(name) else { continue };
            stats.live_data_bytes += int(cf, "rocksdb.estimate-live-data-size");
            stats.sst_files_bytes += int(cf, "rocksdb.total-sst-files-size");
            stats.memtable_bytes += int(cf, "rocksdb.cur-size-all-mem-tables");
            stats.pending_compaction_bytes += int(cf, "rocksdb.estimate-pending-compaction-bytes");
            if let Ok(Some(text)) = db.property_value_cf(cf, "rocksdb.cf-write-stall-stats") {
                stats.write_delays += stall_count(&text, "total-delays");
                stats.write_stops += stall_count(&text, "total-stops");
            }
        }
        stats.write_stopped = db.property_int_value("rocksdb.is-write-stopped").ok().flatten().unwrap_or(0) > 0;
        stats
    }
}

/// The count named `key` in RocksDB's `cf-write-stall-stats` text
/// (`Write Stall (count): ..., total-delays: 3, total-stops: 0`).
fn stall_count(text: &str, key: &str) -> u64 {
    text.split([',', '\n'])
        .filter_map(|part| part.trim().strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_counts_are_read_from_the_stats_text() {
        let text = "Write Stall (count): cf-l0-file-count-limit-delays-with-ongoing-compaction: 0, \
                    memtable-limit-stops: 1, total-delays: 3, total-stops: 2\n";
        assert_eq!(stall_count(text, "total-delays"), 3);
        assert_eq!(stall_count(text, "total-stops"), 2);
        assert_eq!(stall_count("", "total-stops"), 0);
    }

    #[test]
    fn a_fresh_store_reports_memtables_and_no_stalls() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let stats = store.state_machine.rocksdb_stats();
        assert!(stats.memtable_bytes > 0, "{stats:?}");
        assert_eq!((stats.write_delays, stats.write_stops, stats.write_stopped), (0, 0, false));
    }
}
