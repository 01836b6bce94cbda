//! A node's background tasks: joining a cluster (`--join`), founding one (giving it its
//! identity), and announcing its return from a planned restart.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use raftkv_client::ClientError;
use raftkv_types::NodeId;

use crate::kv_handle::{KvHandle, MemberAccess};

/// Whether another founding member already holds a cluster (it has founded one, or has log
/// entries): then a founder with an empty data directory (a lost volume, a pod rescheduled onto
/// an empty disk) must not initialise a cluster of its own. It starts empty instead, and the
/// leader, which still counts it a member, brings it back with a snapshot and the log. Members
/// that do not answer (a new cluster whose other members are not up yet) hold nothing.
pub(crate) async fn a_founder_holds_a_cluster(
    own: NodeId,
    founders: &BTreeMap<NodeId, String>,
    access: &MemberAccess,
) -> Option<NodeId> {
    let endpoints = founders.values().map(|a| access.url(a));
    let client = access.client(endpoints, Duration::from_secs(1)).ok()?;
    for (id, addr) in founders.iter().filter(|(id, _)| **id != own) {
        match client.status_of(&access.url(addr)).await {
            Ok(status) if status.cluster_id.is_some() || status.last_log_index > 0 => {
                return Some(*id);
            }
            Ok(_) | Err(_) => {}
        }
    }
    None
}

/// Tells the cluster's leader that this member (`own`) lost its data, before this node serves
/// anything: the leader then replicates to it from the beginning (openraft's procedure for a
/// member whose data was removed), instead of taking its empty log for a reverted one. Tries the
/// founders for the leader for up to 20 s; returns whether the leader took the notice.
pub(crate) async fn announce_data_lost(
    own: NodeId,
    founders: &BTreeMap<NodeId, String>,
    rpc: &raftkv_network::MemberRpc,
    access: &MemberAccess,
) -> bool {
    const PATIENCE: Duration = Duration::from_secs(20);
    let endpoints = founders.values().map(|a| access.url(a));
    let Ok(client) = access.client(endpoints, Duration::from_secs(1)) else {
        return false;
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        for addr in founders.iter().filter(|(id, _)| **id != own).map(|(_, a)| a) {
            let Ok(status) = client.status_of(&access.url(addr)).await else { continue };
            let Some(leader) = status.leader.and_then(|l| status.members.get(&l)) else { continue };
            let leader = raftkv_types::PeerNode::new(leader.addr.clone());
            match rpc.data_lost(&leader, own, Duration::from_secs(2)).await {
                Ok(()) => return true,
                Err(e) => tracing::debug!(%e, "leader did not take the data-lost notice yet"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Gives the cluster its identity: once this node leads a cluster whose state machine has none
/// (a new cluster, or one whose data predates identities), proposes a random cluster id. The first
/// one applied wins; every member then has it, and snapshots carry it to new members.
pub(crate) async fn found_cluster(handle: KvHandle) {
    const CHECK_EVERY: Duration = Duration::from_millis(200);
    let mut metrics = handle.raft.metrics();
    while !handle.state_machine.is_founded() {
        if handle.leads() {
            handle.found().await;
        }
        // Wakes up as soon as this node becomes leader (a metrics change), or to check again.
        let _ = tokio::time::timeout(CHECK_EVERY, metrics.changed()).await;
    }
}

/// Asks the cluster at `endpoints` to add this node as a learner until it is a member. Adding
/// is idempotent, so a node restarted with `--join` asks again harmlessly.
pub(crate) async fn join_cluster(
    id: NodeId,
    advertise: String,
    zone: Option<String>,
    standby: bool,
    endpoints: Vec<String>,
    raft: raftkv_network::KvRaft,
    access: MemberAccess,
) {
    const RETRY: Duration = Duration::from_secs(1);
    let client = match access.client(&endpoints, Duration::from_secs(10)) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "cannot join: bad --join endpoints");
            return;
        }
    };
    loop {
        let member = raftkv_types::api::NewMember { id, addr: advertise.clone(), zone: zone.clone(), standby };
        match client.add_member(&member).await {
            Ok(members) if members.members.iter().any(|m| m.id == id) => {
                tracing::info!(id, %advertise, leader = ?members.leader, "joined the cluster as a learner");
                return;
            }
            Ok(_) => tracing::warn!("join answered without this node among the members; asking again"),
            Err(ClientError::Api { status, code, message }) if status == 409 && code != "change_in_progress" => {
                tracing::error!(%code, %message, "the cluster refused to add this node; not retrying");
                return;
            }
            Err(err) => tracing::warn!(%err, "could not join yet; retrying"),
        }
        if raft.metrics().borrow_watched().membership_config.membership().get_node(&id).is_some() {
            tracing::info!(id, "this node is a member");
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Once this node is back from a planned restart (it is a member and hears from a leader), tells
/// the leader so, ending the absence it announced when it stopped: from then on the autopilot
/// treats it like any voter again. Ends when no absence of this node is recorded.
pub(crate) async fn announce_return(handle: KvHandle) {
    const CHECK_EVERY: Duration = Duration::from_secs(1);
    const FRESH: Duration = Duration::from_secs(2);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if !handle.state_machine.cluster_state().leaving.contains_key(&handle.id) {
            return;
        }
        let notice = raftkv_types::health::LeavingNotice { id: handle.id, for_ms: 0 };
        let told = if handle.leads() {
            handle.update_cluster(raftkv_network::ClusterRequest::Leaving(notice)).await.map_err(|e| e.to_string())
        } else if handle.staleness().is_some_and(|s| s < FRESH)
            && let Some((_, leader)) = handle.known_leader()
        {
            match handle.access.client([handle.access.url(&leader.addr)], Duration::from_secs(5)) {
                Ok(client) => client.leaving(handle.id, Duration::ZERO).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            continue;
        };
        match told {
            Ok(()) => tracing::info!(id = handle.id, "back from a planned restart: told the leader"),
            Err(e) => tracing::debug!(%e, "could not tell the leader this node is back yet"),
        }
    }
}
