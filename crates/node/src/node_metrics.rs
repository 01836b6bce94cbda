//! [`NodeMetrics`]: everything a node exports to Prometheus, in one registry per node.
//!
//! Three kinds of sources:
//! - counters and histograms recorded where things happen (the storage's fsyncs and applies, the
//!   network's requests and peer traffic, proposals and read-index rounds here);
//! - openraft's own recorder (batch sizes, votes, heartbeats);
//! - a collector that reads the current state at scrape time (Raft's indexes and roles, each
//!   member's replication, RocksDB's figures, the disk, the process), so that nothing is kept up
//!   to date between scrapes.
//!
//! Names follow etcd's under `raftkv_` (`raftkv_server_has_leader`,
//! `raftkv_disk_wal_fsync_duration_seconds`, ...), so that dashboards and alerts port over.

use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::metrics::MetricsRecorder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use raftkv_network::NetworkMetrics;
use raftkv_storage::StorageMetrics;

use crate::kv_handle::KvHandle;
use crate::scrape_collector::ScrapeCollector;

/// The outcome of a proposal.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProposalLabels {
    /// `committed`, `failed` (refused or lost with the leadership) or `timeout` (outcome unknown).
    pub(crate) result: &'static str,
}

/// What made a write exactly-once.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DedupLabels {
    /// `session` or `idempotency_key`.
    pub(crate) kind: &'static str,
}

/// A read's consistency level.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReadLabels {
    /// `linearizable`, `lease` or `stale`.
    pub(crate) consistency: &'static str,
}

/// The node's metrics. Cheap to clone: clones share the values.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub(crate) storage: StorageMetrics,
    pub(crate) network: NetworkMetrics,
    pub(crate) proposals: Family<ProposalLabels, Counter>,
    pub(crate) proposals_pending: Gauge,
    pub(crate) reads: Family<ReadLabels, Counter>,
    pub(crate) read_index_rounds: Counter,
    pub(crate) reads_per_round: Histogram,
    pub(crate) leader_changes: Counter,
    pub(crate) dedup_replays: Family<DedupLabels, Counter>,
    pub(crate) raft: Arc<RaftRecorder>,
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics {
            storage: StorageMetrics::default(),
            network: NetworkMetrics::default(),
            proposals: Family::default(),
            proposals_pending: Gauge::default(),
            reads: Family::default(),
            read_index_rounds: Counter::default(),
            reads_per_round: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            leader_changes: Counter::default(),
            dedup_replays: Family::default(),
            raft: Arc::new(RaftRecorder::default()),
        }
    }
}

impl NodeMetrics {
    /// Registers the recorded metrics under `registry` (without the `raftkv_` prefix); the
    /// collector of current state is registered by [`NodeMetrics::register_collector`].
    pub(crate) fn register(&self, registry: &mut Registry) {
        self.storage.register(registry);
        self.network.register(registry);
        registry.register("raft_proposals", "Proposals by outcome", self.proposals.clone());
        registry.register("raft_proposals_pending", "Proposals waiting for commit", self.proposals_pending.clone());
        registry.register("kv_reads", "Reads by consistency level", self.reads.clone());
        registry.register(
            "kv_read_index_rounds",
            "Read-index rounds this node asked the leader for (follower and learner reads)",
            self.read_index_rounds.clone(),
        );
        registry.register(
            "kv_read_index_reads_per_round",
            "Reads served by one read-index round",
            self.reads_per_round.clone(),
        );
        registry.register(
            "server_leader_changes_seen",
            "Leader changes seen by this node",
            self.leader_changes.clone(),
        );
        registry.register(
            "kv_dedup_replays",
            "Retried writes answered with their first result instead of applied again, by kind",
            self.dedup_replays.clone(),
        );
        self.raft.register(registry);
    }

    /// Registers the collector that reads `handle`'s current state at each scrape.
    pub(crate) fn register_collector(registry: &mut Registry, handle: &KvHandle) {
        registry.register_collector(Box::new(ScrapeCollector::new(handle.clone())));
    }

    /// Counts leader changes as this node sees them, until Raft stops.
    pub(crate) async fn watch_leader(self, handle: KvHandle) {
        let mut metrics = handle.raft.metrics();
        let mut leader = metrics.borrow_watched().current_leader;
        while metrics.changed().await.is_ok() {
            let now = metrics.borrow_watched().current_leader;
            if now != leader {
                if now.is_some() {
                    self.leader_changes.inc();
                }
                leader = now;
            }
        }
    }
}

/// What openraft's core reports as it works: batch sizes and RPC counts.
#[derive(Debug)]
pub(crate) struct RaftRecorder {
    append_batch: Histogram,
    write_batch: Histogram,
    votes: Counter,
    heartbeats: Counter,
    appends: Counter,
}

impl Default for RaftRecorder {
    fn default() -> RaftRecorder {
        RaftRecorder {
            append_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            write_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            votes: Counter::default(),
            heartbeats: Counter::default(),
            appends: Counter::default(),
        }
    }
}

impl RaftRecorder {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "raft_append_batch_entries",
            "Log entries appended to storage per batch",
            self.append_batch.clone(),
        );
        registry.register(
            "raft_write_batch_entries",
            "Client writes merged into one batch by the leader",
            self.write_batch.clone(),
        );
        registry.register("raft_votes", "Vote requests this node handled", self.votes.clone());
        registry.register("raft_heartbeats", "Heartbeats this node sent", self.heartbeats.clone());
        registry.register("raft_appends", "AppendEntries this node sent", self.appends.clone());
    }
}

// Called on openraft's core task: atomic additions only. The gauges openraft offers here are read
// from its metrics at scrape time instead (`ScrapeCollector`).
impl MetricsRecorder for RaftRecorder {
    fn record_apply_batch(&self, _entry_count: u64) {}

    fn record_append_batch(&self, entry_count: u64) {
        self.append_batch.observe(entry_count as f64);
    }

    fn record_write_batch(&self, entry_count: u64) {
        self.write_batch.observe(entry_count as f64);
    }

    fn set_current_term(&self, _term: u64) {}
    fn set_last_log_index(&self, _index: u64) {}
    fn set_committed_index(&self, _index: u64) {}
    fn set_applied_index(&self, _index: u64) {}
    fn set_snapshot_index(&self, _index: u64) {}
    fn set_purged_index(&self, _index: u64) {}
    fn set_server_state(&self, _state: u8) {}

    fn increment_vote(&self) {
        self.votes.inc();
    }

    fn increment_heartbeat(&self) {
        self.heartbeats.inc();
    }

    fn increment_append(&self) {
        self.appends.inc();
    }
}
