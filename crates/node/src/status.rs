//! `/v1/status` from openraft's metrics.

use std::collections::BTreeMap;

use openraft::{RaftMetrics, ServerState};
use raftkv_types::api::{MemberStatus, NodeStatus, Role};
use raftkv_types::{NodeId, TypeConfig};

/// This node's view of the cluster. Per-member matched index and lag are known on the leader only.
pub fn node_status(id: NodeId, m: &RaftMetrics<TypeConfig>, applied_index: u64) -> NodeStatus {
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let last_log_index = m.last_log_index.unwrap_or(0);
    let role = match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    };
    let members: BTreeMap<NodeId, MemberStatus> = membership
        .nodes()
        .map(|(nid, node)| {
            let matched_index = m.replication.as_ref().map(|r| {
                if *nid == id { last_log_index } else { r.get(nid).cloned().flatten().map_or(0, |l| l.index) }
            });
            let status = MemberStatus {
                id: *nid,
                addr: node.addr.clone(),
                voter: voters.contains(nid),
                matched_index,
                lag: matched_index.map(|mi| last_log_index.saturating_sub(mi)),
            };
            (*nid, status)
        })
        .collect();
    NodeStatus {
        id,
        role,
        term: m.current_term,
        leader: m.current_leader,
        commit_index: m.local_committed.as_ref().map_or(0, |l| l.index),
        applied_index,
        last_log_index,
        snapshot_index: m.snapshot.as_ref().map_or(0, |l| l.index),
        members,
    }
}
