//! [`MemberRpc`]: the application's own member-to-member calls (read index, await applied), next
//! to openraft's RPCs on the same port.

use std::time::Duration;

use raftkv_types::{NodeId, PeerNode};

use crate::cluster_guard::ClusterGuard;
use crate::error::{NetworkError, Result};
use crate::peer_router::{
    AwaitApplied, PATH_AWAIT_APPLIED, PATH_DATA_LOST, PATH_READ_INDEX, PATH_STORAGE, ReadIndexRefusal,
};
use crate::wire;

/// Why a member call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberRpcError {
    /// The member could not be connected to: nothing was sent.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Sent, but no usable answer came back (timeout, broken connection, bad body).
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The leader answered that it cannot give a read index.
    #[error(transparent)]
    Refused(#[from] ReadIndexRefusal),
}

/// Makes member-to-member calls over pooled keep-alive connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemberRpc {
    http: reqwest::Client,
    guard: ClusterGuard,
}

impl MemberRpc {
    /// A caller with its own connection pool, whose calls carry the identity `guard` gives.
    pub fn new(guard: ClusterGuard) -> Result<MemberRpc> {
        let builder = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2));
        let http = guard.transport().http_client(builder).map_err(NetworkError::Client)?;
        Ok(MemberRpc { http, guard })
    }

    /// Asks `leader` for a linearizable read index: it confirms its leadership with a quorum and
    /// answers its commit index as of then.
    pub async fn read_index(&self, leader: &PeerNode, timeout: Duration) -> Result<u64, MemberRpcError> {
        let bytes = self.post(leader, PATH_READ_INDEX, Vec::new(), timeout).await?;
        let answer: Result<u64, ReadIndexRefusal> =
            wire::decode("read index answer", &bytes).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        Ok(answer?)
    }

    /// Asks `member` to wait up to `timeout` until it has applied `index`; returns the index it
    /// has applied (lower than `index` if the time ran out).
    pub async fn await_applied(&self, member: &PeerNode, index: u64, timeout: Duration) -> Result<u64, MemberRpcError> {
        let req = AwaitApplied { index, timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX) };
        let body = wire::encode(&req).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        // The member holds the request up to `timeout`; leave room for the answer to come back.
        let bytes = self.post(member, PATH_AWAIT_APPLIED, body, timeout + Duration::from_secs(1)).await?;
        wire::decode("await applied answer", &bytes).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))
    }

    /// Asks `member` how much room its disk has (`None`: not measured yet).
    pub async fn storage(
        &self,
        member: &PeerNode,
        timeout: Duration,
    ) -> Result<Option<raftkv_types::api::StorageStatus>, MemberRpcError> {
        let bytes = self.post(member, PATH_STORAGE, Vec::new(), timeout).await?;
        let answer: Result<Option<raftkv_types::api::StorageStatus>, crate::peer_router::RemoteFailure> =
            wire::decode("storage answer", &bytes).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        answer.map_err(|e| MemberRpcError::NoAnswer(e.to_string()))
    }

    /// Tells `leader` that member `id` restarted with its data lost, so that it replicates to it
    /// from the beginning. Refused by a member that is not the leader.
    pub async fn data_lost(&self, leader: &PeerNode, id: NodeId, timeout: Duration) -> Result<(), MemberRpcError> {
        let body = wire::encode(&id).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        let bytes = self.post(leader, PATH_DATA_LOST, body, timeout).await?;
        let answer: Result<(), crate::peer_router::RemoteFailure> =
            wire::decode("data lost answer", &bytes).map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        answer.map_err(|e| MemberRpcError::NoAnswer(e.to_string()))
    }

    async fn post(
        &self,
        to: &PeerNode,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, MemberRpcError> {
        let headers = self.guard.headers();
        let sent = self
            .http
            .post(format!("{}{path}", self.guard.transport().url(&to.addr)))
            .headers(headers)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| {
            if e.is_connect() {
                MemberRpcError::Unreachable(format!("{}: {e}", to.addr))
            } else {
                MemberRpcError::NoAnswer(format!("{}: {e}", to.addr))
            }
        })?;
        let response = response.error_for_status().map_err(|e| MemberRpcError::NoAnswer(e.to_string()))?;
        response.bytes().await.map_err(|e| MemberRpcError::NoAnswer(format!("{}: {e}", to.addr)))
    }
}
