//! [`Node`]'s cluster operations (health, events, autopilot, sync zones, standbys) and the
//! building blocks of leader-only work (role changes, fencing tokens, fenced writes).

use std::time::Duration;

use raftkv_network::ClusterRequest;
use raftkv_types::api::{Durability, MembersResponse, PutResponse};
use raftkv_types::health::{
    AutopilotStatus, AutopilotUpdate, ClusterHealth, EventsResponse, LeavingNotice, ReplicationStatus,
    ReplicationUpdate,
};
use raftkv_types::{Command, LeaderToken, NodeId};

use crate::error::Result;
use crate::leadership::{Leadership, LeadershipReceiver};
use crate::node::Node;

/// How long a stopping node tries to tell the leader it is leaving.
const LEAVING_NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// A receiver of this node's role, leader and term, updated on every change. A service that
    /// must run work on one instance only starts it when [`Leadership::is_leader`] turns true and
    /// stops it when it turns false, and fences its writes with [`Leadership::token`].
    pub fn role_changes(&self) -> LeadershipReceiver {
        self.handle.leadership.subscribe()
    }

    /// This node's role, leader and term now.
    pub fn leadership(&self) -> Leadership {
        self.handle.leadership.borrow().clone()
    }

    /// Whether this node leads now (as far as it knows: a deposed leader may not have noticed
    /// yet, which is what [`Node::put_if_leader`] guards against).
    pub fn is_leader(&self) -> bool {
        self.handle.leads()
    }

    /// Writes `value` under `key` only if the leadership `token` names is still the current one:
    /// the write is refused with `fenced` (and nothing written, on any replica) once another
    /// leader has been elected, even if this node has not noticed yet.
    pub async fn put_if_leader(&self, token: LeaderToken, key: &str, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        let value = value.into();
        let command =
            Command::Fenced { token, command: Box::new(Command::Put { key: key.to_string(), value: value.clone() }) };
        self.with_leader(
            || async {
                use raftkv_network::KvService;
                Ok(PutResponse { revision: self.handle.write(command.clone(), Durability::Majority).await?.revision })
            },
            |client| {
                let value = value.clone();
                async move { client.put_if_leader(token, key, value).await }
            },
        )
        .await
    }

    /// The cluster's health, from the leader: per-member health, failure tolerance, autopilot
    /// and sync replication.
    pub async fn health(&self) -> Result<ClusterHealth> {
        self.with_leader(|| self.handle.cluster_health(), |client| async move { client.health().await }).await
    }

    /// The cluster's event log, from the leader.
    pub async fn events(&self) -> Result<EventsResponse> {
        self.with_leader(|| self.handle.cluster_events(), |client| async move { client.events().await }).await
    }

    /// The autopilot's settings and state.
    pub async fn autopilot(&self) -> Result<AutopilotStatus> {
        self.with_leader(|| self.handle.autopilot_view(), |client| async move { client.autopilot().await }).await
    }

    /// Changes the autopilot settings `update` names (replicated: every future leader has them).
    pub async fn set_autopilot(&self, update: AutopilotUpdate) -> Result<AutopilotStatus> {
        self.with_leader(
            || async {
                self.handle.update_cluster(ClusterRequest::Autopilot(update.clone())).await?;
                self.handle.autopilot_view().await
            },
            |client| {
                let update = update.clone();
                async move { client.set_autopilot(&update).await }
            },
        )
        .await
    }

    /// Pauses the autopilot for `period` (zero resumes it).
    pub async fn pause_autopilot(&self, period: Duration) -> Result<AutopilotStatus> {
        let for_ms = period.as_millis() as u64;
        self.with_leader(
            || async {
                self.handle.update_cluster(ClusterRequest::PauseAutopilot { for_ms }).await?;
                self.handle.autopilot_view().await
            },
            |client| async move { client.pause_autopilot(period).await },
        )
        .await
    }

    /// Synchronous replication to zones.
    pub async fn replication(&self) -> Result<ReplicationStatus> {
        self.with_leader(|| self.handle.replication_view(), |client| async move { client.replication().await }).await
    }

    /// Makes every write wait for a member of each zone of `update` (none: off).
    pub async fn set_replication(&self, update: ReplicationUpdate) -> Result<ReplicationStatus> {
        self.with_leader(
            || async {
                self.handle.update_cluster(ClusterRequest::Replication(update.clone())).await?;
                self.handle.replication_view().await
            },
            |client| {
                let update = update.clone();
                async move { client.set_replication(&update).await }
            },
        )
        .await
    }

    /// Flags learner `id` as a standby, or clears the flag.
    pub async fn set_standby(&self, id: NodeId, standby: bool) -> Result<MembersResponse> {
        self.with_leader(
            || async {
                self.handle.update_cluster(ClusterRequest::Standby { id, standby }).await?;
                Ok(self.handle.members_view())
            },
            |client| async move { client.set_standby(id, standby).await },
        )
        .await
    }

    /// Tells the leader this node stops for a restart and is back within the restart grace, so
    /// that the autopilot does not replace it. Best effort: a node that cannot say so (no
    /// leader, not a member) stops anyway.
    pub(crate) async fn announce_leaving(&self) {
        if self.handle.ensure_member().is_err() {
            return;
        }
        let notice = LeavingNotice { id: self.id(), for_ms: self.restart_grace.as_millis() as u64 };
        let grace = self.restart_grace;
        let told = tokio::time::timeout(
            LEAVING_NOTICE_TIMEOUT,
            self.with_leader(
                || async { self.handle.update_cluster(ClusterRequest::Leaving(notice)).await },
                |client| async move { client.leaving(notice.id, grace).await },
            ),
        )
        .await;
        match told {
            Ok(Ok(())) => tracing::info!(id = notice.id, ?grace, "told the leader this node is stopping for a restart"),
            Ok(Err(e)) => tracing::warn!(%e, "could not tell the leader this node is stopping"),
            Err(_) => {
                tracing::warn!("could not tell the leader this node is stopping within {LEAVING_NOTICE_TIMEOUT:?}")
            }
        }
    }
}
