//! [`ScrapeCollector`]: the node's current state, read when Prometheus scrapes.

use std::fmt;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use raftkv_types::api::NodeStatus;

use crate::kv_handle::KvHandle;
use crate::status::node_status;

/// Reads Raft's metrics, the members' replication, RocksDB's figures and the disk at each scrape:
/// nothing is kept up to date between scrapes, and the write path does no work for them.
pub(crate) struct ScrapeCollector {
    handle: KvHandle,
}

impl fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeCollector").field("node", &self.handle.id).finish_non_exhaustive()
    }
}

impl ScrapeCollector {
    pub(crate) fn new(handle: KvHandle) -> ScrapeCollector {
        ScrapeCollector { handle }
    }
}

/// One gauge without labels.
pub(crate) fn gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> fmt::Result {
    let metric = ConstGauge::new(v);
    metric.encode(e.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// One counter without labels.
pub(crate) fn counter<V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> fmt::Result {
    let metric = ConstCounter::new(v);
    metric.encode(e.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// A gauge per member, labelled `peer` (and `zone` when `zoned`).
fn per_member(
    e: &mut DescriptorEncoder,
    status: &NodeStatus,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl Fn(&raftkv_types::api::MemberStatus) -> Option<f64>,
) -> fmt::Result {
    let rows: Vec<_> = status
        .members
        .values()
        .filter(|m| m.id != status.id)
        .filter_map(|m| Some((m.id.to_string(), m.zone.clone().unwrap_or_default(), value(m)?)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(name, help, unit, prometheus_client::metrics::MetricType::Gauge)?;
    for (peer, zone, v) in rows {
        let labels = [("peer", peer), ("zone", zone)];
        ConstGauge::new(v).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let h = &self.handle;
        let m = h.raft.metrics().borrow_watched().clone();
        let status = node_status(h, &m);
        let is_leader = m.state == ServerState::Leader;
        let index = |l: Option<&raftkv_types::LogId>| l.map_or(0, |l| l.index as i64);

        gauge(
            &mut e,
            "server_has_leader",
            "Whether this node knows a leader (1) or not (0)",
            None,
            i64::from(m.current_leader.is_some()),
        )?;
        gauge(&mut e, "server_is_leader", "Whether this node is the leader", None, i64::from(is_leader))?;
        gauge(&mut e, "raft_term", "The current term", None, status.term as i64)?;
        gauge(&mut e, "raft_last_log_index", "Index of the last log entry", None, status.last_log_index as i64)?;
        gauge(
            &mut e,
            "raft_commit_index",
            "Index of the last committed entry known here",
            None,
            status.commit_index as i64,
        )?;
        gauge(
            &mut e,
            "raft_applied_index",
            "Index of the last entry applied to the state machine",
            None,
            status.applied_index as i64,
        )?;
        gauge(&mut e, "raft_snapshot_index", "Index the last snapshot covers", None, status.snapshot_index as i64)?;
        gauge(
            &mut e,
            "raft_purged_index",
            "Index up to which the log has been purged",
            None,
            index(m.purged.as_ref()),
        )?;
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower => "follower",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        {
            let mut metric = e.encode_descriptor(
                "raft_state",
                "This node's Raft state (1 for the current one)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in ["leader", "candidate", "follower", "learner", "shutdown"] {
                ConstGauge::new(i64::from(s == state)).encode(metric.encode_family(&[("state", s)])?)?;
            }
        }
        let voters = status.members.values().filter(|m| m.voter).count();
        gauge(&mut e, "raft_voters", "Voters in the configuration", None, voters as i64)?;
        gauge(
            &mut e,
            "raft_learners",
            "Learners (standbys included) in the configuration",
            None,
            (status.members.len() - voters) as i64,
        )?;
        if is_leader {
            // Voters that acknowledge the leader, the leader included, beyond a quorum.
            let healthy =
                status.members.values().filter(|m| m.voter && (m.id == status.id || m.reachable == Some(true))).count();
            let tolerance = healthy.saturating_sub(voters / 2 + 1);
            gauge(
                &mut e,
                "raft_failure_tolerance",
                "Voters the cluster can lose and keep a quorum (leader only)",
                None,
                tolerance as i64,
            )?;
            per_member(
                &mut e,
                &status,
                "replication_matched_index",
                "Last log index known replicated to a member (leader only)",
                None,
                |m| m.matched_index.map(|v| v as f64),
            )?;
            per_member(
                &mut e,
                &status,
                "replication_lag_entries",
                "Entries a member is behind the leader's last log index (leader only)",
                None,
                |m| m.lag.map(|v| v as f64),
            )?;
            per_member(
                &mut e,
                &status,
                "replication_lag",
                "How far behind a member is, in time (leader only)",
                Some(&Unit::Seconds),
                |m| m.lag_ms.map(|v| v as f64 / 1000.0),
            )?;
            per_member(
                &mut e,
                &status,
                "replication_last_ack",
                "Time since a member last acknowledged the leader (leader only)",
                Some(&Unit::Seconds),
                |m| m.last_ack_ms.map(|v| v as f64 / 1000.0),
            )?;
            per_member(
                &mut e,
                &status,
                "replication_reachable",
                "Whether a member acknowledges the leader (leader only)",
                None,
                |m| m.reachable.map(|r| f64::from(u8::from(r))),
            )?;
        }

        // The replicated operating state: the autopilot and synchronous replication to zones.
        let cluster = h.state_machine.cluster_state();
        gauge(
            &mut e,
            "raft_standbys",
            "Learners flagged as standbys (the autopilot may promote them)",
            None,
            cluster.standbys.len() as i64,
        )?;
        gauge(
            &mut e,
            "autopilot_enabled",
            "Whether the autopilot replaces dead voters",
            None,
            i64::from(cluster.autopilot.enabled),
        )?;
        let paused = cluster.autopilot_paused_until_ms > crate::cluster_ops::now_ms();
        gauge(&mut e, "autopilot_paused", "Whether the autopilot is paused", None, i64::from(paused))?;
        let replaced = cluster.events.iter().filter(|ev| ev.kind == "voter_replaced").count();
        gauge(
            &mut e,
            "autopilot_replacements_logged",
            "Voter replacements in the cluster's event log (it keeps the latest events)",
            None,
            replaced as i64,
        )?;
        let zones = cluster.sync.zones.len();
        gauge(&mut e, "replication_sync_zones", "Zones every write must reach (0: majority only)", None, zones as i64)?;
        let degraded = cluster.sync_mode() == Some(raftkv_types::ReplicationMode::Async);
        gauge(
            &mut e,
            "replication_sync_degraded",
            "Whether writes are acknowledged without the sync zones (async)",
            None,
            i64::from(degraded),
        )?;

        // What services build on: revisions, the watch history, leases and client sessions.
        let sm = &h.state_machine;
        gauge(&mut e, "kv_revision", "The applied revision", None, sm.applied_meta().revision as i64)?;
        gauge(
            &mut e,
            "kv_watch_history_floor",
            "The oldest revision a watch can start from",
            None,
            sm.history_floor() as i64,
        )?;
        if let Ok(leases) = sm.leases() {
            gauge(&mut e, "kv_leases", "Leases of the applied state", None, leases.len() as i64)?;
        }
        if let Ok(counts) = sm.dedup_counts() {
            gauge(
                &mut e,
                "kv_sessions",
                "Client sessions of the applied state (expired ones until swept)",
                None,
                counts.sessions as i64,
            )?;
        }

        if let Some(storage) = h.storage.status() {
            gauge(
                &mut e,
                "disk_free",
                "Free space on the data directory's filesystem",
                Some(&Unit::Bytes),
                storage.free_bytes as i64,
            )?;
            gauge(
                &mut e,
                "disk_total",
                "Size of the data directory's filesystem",
                Some(&Unit::Bytes),
                storage.total_bytes as i64,
            )?;
            gauge(
                &mut e,
                "disk_reserve",
                "Free space below which writes are refused",
                Some(&Unit::Bytes),
                storage.reserve_bytes as i64,
            )?;
            gauge(
                &mut e,
                "disk_low",
                "Whether free space is below the reserve (writes refused)",
                None,
                i64::from(storage.low),
            )?;
        }
        let rocks = h.state_machine.rocksdb_stats();
        gauge(
            &mut e,
            "rocksdb_live_data",
            "Estimated size of RocksDB's live data",
            Some(&Unit::Bytes),
            rocks.live_data_bytes as i64,
        )?;
        gauge(
            &mut e,
            "rocksdb_sst_files",
            "Size of RocksDB's SST files",
            Some(&Unit::Bytes),
            rocks.sst_files_bytes as i64,
        )?;
        gauge(
            &mut e,
            "rocksdb_memtable",
            "Memory held by RocksDB's memtables",
            Some(&Unit::Bytes),
            rocks.memtable_bytes as i64,
        )?;
        gauge(
            &mut e,
            "rocksdb_pending_compaction",
            "Bytes compaction has yet to rewrite",
            Some(&Unit::Bytes),
            rocks.pending_compaction_bytes as i64,
        )?;
        counter(
            &mut e,
            "rocksdb_write_delays",
            "Writes RocksDB slowed down (compaction or flushes behind)",
            None,
            rocks.write_delays,
        )?;
        counter(
            &mut e,
            "rocksdb_write_stops",
            "Writes RocksDB stopped (compaction or flushes behind)",
            None,
            rocks.write_stops,
        )?;
        gauge(
            &mut e,
            "rocksdb_write_stopped",
            "Whether RocksDB stops writes now",
            None,
            i64::from(rocks.write_stopped),
        )?;

        let info = [
            ("cluster_id", status.cluster_id.clone().unwrap_or_default()),
            ("epoch", status.epoch.map(|e| e.to_string()).unwrap_or_default()),
            ("node_id", h.id.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        let mut metric = e.encode_descriptor(
            "node_info",
            "This node: cluster id and epoch (empty until founded), node id, version",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(metric.encode_family(&info)?)?;
        Ok(())
    }
}
