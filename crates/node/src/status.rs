//! `/v1/status` from openraft's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use openraft::RaftMetrics;
use raftkv_types::api::{MemberStatus, NodeStatus};
use raftkv_types::{NodeId, TypeConfig};

use crate::kv_handle::KvHandle;
use crate::membership::role_of;

/// This node's view of the cluster. Per-member replication (matched index, lag, last
/// acknowledgement, reachability) is known on the leader only.
pub fn node_status(handle: &KvHandle, m: &RaftMetrics<TypeConfig>) -> NodeStatus {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    // One consistent read of the applied state: the standby flags and the identity shown together.
    let applied = handle.state_machine.applied_meta();
    let last_log_index = m.last_log_index.unwrap_or(0);
    let role = crate::leadership::role_of_state(m.state);
    let now = Instant::now();
    let members: BTreeMap<NodeId, MemberStatus> = membership
        .nodes()
        .map(|(nid, node)| {
            let replication = handle.replication_of(*nid, m);
            let matched_index = replication.map(|r| r.matched);
            let status = MemberStatus {
                id: *nid,
                addr: node.addr.clone(),
                zone: node.zone.clone(),
                voter: voters.contains(nid),
                role: role_of(*nid, &voters, &applied.cluster.standbys, m),
                matched_index,
                lag: matched_index.map(|mi| last_log_index.saturating_sub(mi)),
                lag_ms: matched_index.map(|mi| handle.clock.lag(mi, now).as_millis() as u64),
                last_ack_ms: replication.and_then(|r| r.last_ack).map(|a| a.as_millis() as u64),
                reachable: replication.map(|r| r.reachable),
            };
            (*nid, status)
        })
        .collect();
    NodeStatus {
        id: handle.id,
        cluster_id: applied.identity.as_ref().map(|i| i.cluster_id.clone()),
        epoch: applied.identity.as_ref().map(|i| i.epoch),
        revision: applied.revision,
        recovered: applied.recovery,
        role,
        term: m.current_term,
        leader: m.current_leader,
        commit_index: m.local_committed.as_ref().map_or(0, |l| l.index),
        applied_index: handle.state_machine.applied_index(),
        last_log_index,
        snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index),
        replication_lag_ms: handle.staleness().map(|s| s.as_millis() as u64),
        members,
        replication_mode: applied.cluster.sync_mode(),
        leader_token: handle.leader_token(m).map(|t| t.to_string()),
        storage: handle.storage.status(),
    }
}
