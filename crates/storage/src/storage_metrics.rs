//! [`StorageMetrics`]: what the disk and the state machine do, for Prometheus.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The storage layer's metrics. Cheap to clone: clones share the values.
///
/// Recording is a few atomic additions beside work that takes at least a disk write, so it costs
/// nothing measurable on the write path. A store opened without metrics still records into its
/// own, which nobody reads.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    /// Seconds per WAL fsync (one per group commit).
    pub wal_fsync_duration: Histogram,
    /// Log entries made durable by one WAL fsync: the group commit's batch.
    pub wal_fsync_entries: Histogram,
    /// Seconds to apply one batch of committed entries to the state machine.
    pub apply_duration: Histogram,
    /// Entries per applied batch.
    pub apply_batch_entries: Histogram,
    /// Seconds to build a snapshot.
    pub snapshot_build_duration: Histogram,
    /// Seconds to install a snapshot received from the leader.
    pub snapshot_install_duration: Histogram,
    /// Size of the last snapshot built or installed, in bytes.
    pub snapshot_size: Gauge,
    /// Bytes of snapshots installed.
    pub snapshot_installed_bytes: Counter,
}

impl Default for StorageMetrics {
    fn default() -> StorageMetrics {
        StorageMetrics {
            // 1 ms to 8 s, as etcd's wal_fsync_duration_seconds.
            wal_fsync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            wal_fsync_entries: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 100 µs to about 3 s.
            apply_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            apply_batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 10 ms to about 20 min.
            snapshot_build_duration: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
            snapshot_install_duration: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
            snapshot_size: Gauge::default(),
            snapshot_installed_bytes: Counter::default(),
        }
    }
}

impl StorageMetrics {
    /// Registers every metric under `registry` (names without the `raftkv_` prefix, which the
    /// caller's registry adds).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "disk_wal_fsync_duration",
            "Time of one WAL fsync (a group commit)",
            Unit::Seconds,
            self.wal_fsync_duration.clone(),
        );
        registry.register(
            "disk_wal_fsync_entries",
            "Log entries made durable by one WAL fsync (group commit size)",
            self.wal_fsync_entries.clone(),
        );
        registry.register_with_unit(
            "disk_apply_duration",
            "Time to apply one batch of committed entries to the state machine",
            Unit::Seconds,
            self.apply_duration.clone(),
        );
        registry.register(
            "raft_apply_batch_entries",
            "Committed entries applied per state machine batch",
            self.apply_batch_entries.clone(),
        );
        registry.register_with_unit(
            "snapshot_build_duration",
            "Time to build a snapshot",
            Unit::Seconds,
            self.snapshot_build_duration.clone(),
        );
        registry.register_with_unit(
            "snapshot_install_duration",
            "Time to install a snapshot received from the leader",
            Unit::Seconds,
            self.snapshot_install_duration.clone(),
        );
        registry.register_with_unit(
            "snapshot_size",
            "Size of the last snapshot built or installed",
            Unit::Bytes,
            self.snapshot_size.clone(),
        );
        registry.register_with_unit(
            "snapshot_installed",
            "Bytes of snapshots installed",
            Unit::Bytes,
            self.snapshot_installed_bytes.clone(),
        );
    }
}
