//! The cluster-operations API as [`Client`] calls: health, events, the autopilot, sync zones,
//! planned restarts, standby flags and fenced writes.

use std::time::Duration;

use hyper::Method;
use raftkv_types::api::{MembersResponse, PutResponse};
use raftkv_types::health::{
    AutopilotPause, AutopilotStatus, AutopilotUpdate, ClusterHealth, EventsResponse, LeavingNotice, ReplicationStatus,
    ReplicationUpdate, StandbyFlag,
};
use raftkv_types::{LeaderToken, NodeId};

use crate::client::{Client, Payload, encode, key_path};
use crate::error::{ClientError, Result};

impl Client {
    /// The cluster's health from the leader. An unhealthy cluster (HTTP 429) is an answer too:
    /// check [`ClusterHealth::healthy`].
    pub async fn health(&self) -> Result<ClusterHealth> {
        match self.send(Method::GET, "/v1/cluster/health", Payload::Empty).await {
            Ok(answer) => self.json(answer),
            Err(ClientError::Api { status: 429, message, .. }) => serde_json::from_str(&message)
                .map_err(|e| ClientError::BadAnswer { endpoint: "leader".into(), reason: e.to_string() }),
            Err(e) => Err(e),
        }
    }

    /// The cluster's event log, oldest first.
    pub async fn events(&self) -> Result<EventsResponse> {
        self.json(self.send(Method::GET, "/v1/cluster/events", Payload::Empty).await?)
    }

    /// The autopilot's settings and state.
    pub async fn autopilot(&self) -> Result<AutopilotStatus> {
        self.json(self.send(Method::GET, "/v1/cluster/autopilot", Payload::Empty).await?)
    }

    /// Changes the autopilot settings `update` names; returns them all.
    pub async fn set_autopilot(&self, update: &AutopilotUpdate) -> Result<AutopilotStatus> {
        self.json(self.send(Method::PUT, "/v1/cluster/autopilot", Payload::json(encode(update)?)).await?)
    }

    /// Pauses the autopilot for `period` (zero resumes it).
    pub async fn pause_autopilot(&self, period: Duration) -> Result<AutopilotStatus> {
        let body = encode(&AutopilotPause { for_ms: period.as_millis() as u64 })?;
        self.json(self.send(Method::POST, "/v1/cluster/autopilot/pause", Payload::json(body)).await?)
    }

    /// Synchronous replication to zones.
    pub async fn replication(&self) -> Result<ReplicationStatus> {
        self.json(self.send(Method::GET, "/v1/cluster/replication", Payload::Empty).await?)
    }

    /// Makes every write wait for a member of each of `update.zones` (none: off).
    pub async fn set_replication(&self, update: &ReplicationUpdate) -> Result<ReplicationStatus> {
        self.json(self.send(Method::PUT, "/v1/cluster/replication", Payload::json(encode(update)?)).await?)
    }

    /// Tells the leader that member `id` is stopping for a restart and will be back within
    /// `period` (zero: it is back), so that the autopilot does not replace it meanwhile.
    pub async fn leaving(&self, id: NodeId, period: Duration) -> Result<()> {
        let body = encode(&LeavingNotice { id, for_ms: period.as_millis() as u64 })?;
        self.send(Method::POST, "/v1/cluster/leaving", Payload::json(body)).await.map(|_| ())
    }

    /// Flags learner `id` as a standby (or clears the flag).
    pub async fn set_standby(&self, id: NodeId, standby: bool) -> Result<MembersResponse> {
        let body = encode(&StandbyFlag { standby })?;
        let path = format!("/v1/cluster/members/{id}/standby");
        self.json(self.send(Method::POST, &path, Payload::json(body)).await?)
    }

    /// Writes `value` under `key` only while the leadership `token` names is current; error
    /// `fenced` (HTTP 409, nothing written) once another leader has been elected.
    pub async fn put_if_leader(&self, token: LeaderToken, key: &str, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        let path = format!("{}?leader_token={token}", key_path(key, ""));
        self.json(self.write(Method::PUT, &path, Payload::raw(value)).await?)
    }
}
