//! Synchronous replication to zones: a write also waits until a member of each sync zone has it
//! on disk, and the cluster goes asynchronous (through a logged entry) when a zone does not
//! confirm in time.

use std::time::Duration;

use openraft::RaftMetrics;
use raftkv_network::ApiError;
use raftkv_types::{ClusterChange, ReplicationMode, SyncReplication, TypeConfig};

use crate::kv_handle::KvHandle;

impl KvHandle {
    /// Waits until every zone of `sync` has a member with the entry at `index` on disk. When one
    /// does not within the zone wait timeout, switches the cluster to asynchronous replication
    /// (one proposal, however many writes are waiting) and returns: the write is committed on a
    /// majority, which is all asynchronous mode promises.
    pub(crate) async fn wait_for_zones(&self, index: u64, sync: &SyncReplication) -> Result<(), ApiError> {
        let timeout = Duration::from_millis(sync.wait_timeout_ms);
        let confirmed = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    self.state_machine.sync_requirement().is_none()
                        || lacking_zones(self, m, &sync.zones, index).is_empty()
                },
                "sync zones have the entry",
            )
            .await;
        if confirmed.is_ok() {
            return Ok(());
        }
        let _degrading = self.sync_degrade.lock().await;
        if self.state_machine.sync_requirement().is_none() {
            // Another write switched modes while this one waited.
            return Ok(());
        }
        let lacking = {
            let metrics = self.raft.metrics();
            let m = openraft::async_runtime::watch::WatchReceiver::borrow_watched(&metrics).clone();
            lacking_zones(self, &m, &sync.zones, index)
        };
        if lacking.is_empty() {
            return Ok(());
        }
        let reason =
            format!("no member of zone(s) {lacking:?} confirmed log index {index} within {} ms", sync.wait_timeout_ms);
        tracing::warn!(%reason, "switching to asynchronous replication");
        match self
            .change_cluster_state(ClusterChange::SetReplicationMode { mode: ReplicationMode::Async, reason })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(ApiError::OutcomeUnknown(format!(
                "the write is committed on a majority, but zone(s) {lacking:?} did not confirm it and switching to \
                 asynchronous replication failed: {e}"
            ))),
        }
    }
}

/// The zones of `zones` in which no member has the entry at `index` on disk, as the leader's
/// metrics `m` show.
fn lacking_zones(handle: &KvHandle, m: &RaftMetrics<TypeConfig>, zones: &[String], index: u64) -> Vec<String> {
    let membership = m.membership_config.membership();
    zones
        .iter()
        .filter(|zone| {
            !membership.nodes().any(|(id, node)| {
                node.zone.as_deref() == Some(zone.as_str())
                    && handle.replication_of(*id, m).is_some_and(|r| r.matched >= index)
            })
        })
        .cloned()
        .collect()
}
