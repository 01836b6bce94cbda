//! [`ClusterGuard`]: every peer RPC carries this node's cluster identity, and RPCs of another
//! cluster or epoch are refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use raftkv_storage::KvStateMachine;
use raftkv_tls::ConnectionInfo;
use raftkv_types::{ClusterIdentity, NodeId};

use crate::api_error::ApiError;
use crate::peer_secret::PeerSecret;
use crate::peer_transport::PeerTransport;

/// Header of a peer RPC naming the sender's cluster id.
pub const HEADER_CLUSTER: HeaderName = HeaderName::from_static("x-raftkv-cluster");
/// Header of a peer RPC naming the sender's cluster epoch.
pub const HEADER_EPOCH: HeaderName = HeaderName::from_static("x-raftkv-epoch");

/// How often a refusal is logged per kind; peers retry every few milliseconds.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The identity check of peer RPC, on both ends.
///
/// A sender puts its cluster id and epoch in [`HEADER_CLUSTER`] and [`HEADER_EPOCH`]; a receiver
/// that has an identity refuses a request with another cluster id (`409 wrong_cluster`) or
/// another epoch (`409 stale_epoch`: the lower side was left out of a forced recovery) and logs
/// it. A node without an identity yet (a new or wiped node, or a cluster whose first leader has
/// not founded it) sends none and accepts any: it learns its identity from the log or a snapshot
/// of the cluster that adds it.
///
/// With a [`PeerSecret`], every outgoing RPC presents it and every incoming one must
/// (`403 permission_denied` otherwise, checked before anything else).
#[derive(Clone)]
pub struct ClusterGuard {
    state_machine: KvStateMachine,
    secret: Option<PeerSecret>,
    transport: PeerTransport,
    last_logged: Arc<Mutex<Option<Instant>>>,
}

impl ClusterGuard {
    /// The guard of the node whose applied state is `state_machine`.
    pub fn new(state_machine: KvStateMachine) -> ClusterGuard {
        ClusterGuard { state_machine, secret: None, transport: PeerTransport::plain(), last_logged: Arc::default() }
    }

    /// The same guard, presenting and requiring `secret` when it is `Some`.
    pub fn with_peer_secret(mut self, secret: Option<PeerSecret>) -> ClusterGuard {
        self.secret = secret;
        self
    }

    /// The same guard over `transport`: with peer TLS, every incoming peer RPC must come with a
    /// member certificate, and speaks only for the member it names.
    pub fn with_transport(mut self, transport: PeerTransport) -> ClusterGuard {
        self.transport = transport;
        self
    }

    /// How this node reaches other members.
    pub fn transport(&self) -> &PeerTransport {
        &self.transport
    }

    /// The peer secret, if the cluster has one.
    pub fn peer_secret(&self) -> Option<&PeerSecret> {
        self.secret.as_ref()
    }

    /// The state machine whose identity it guards.
    pub fn state_machine(&self) -> &KvStateMachine {
        &self.state_machine
    }

    /// This node's identity, once it has one.
    pub fn identity(&self) -> Option<ClusterIdentity> {
        self.state_machine.identity()
    }

    /// The headers an outgoing peer RPC carries (none before this node has an identity).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(secret) = &self.secret {
            headers.insert(header::AUTHORIZATION, secret.authorization());
        }
        if let Some(identity) = self.identity()
            && let Ok(cluster) = HeaderValue::from_str(&identity.cluster_id)
        {
            headers.insert(HEADER_CLUSTER, cluster);
            headers.insert(HEADER_EPOCH, HeaderValue::from(identity.epoch));
        }
        headers
    }

    /// Checks the identity an incoming peer RPC carries against this node's.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(secret) = &self.secret
            && !secret.presented_in(headers)
        {
            let refusal = ApiError::PermissionDenied(
                "peer RPC needs the cluster's peer secret (a client cannot speak Raft to a member)".into(),
            );
            self.log_refusal(&refusal);
            return Err(refusal);
        }
        let Some(ours) = self.identity() else { return Ok(()) };
        let Some(cluster) = headers.get(HEADER_CLUSTER) else { return Ok(()) };
        let cluster = cluster.to_str().unwrap_or_default();
        let epoch = headers.get(HEADER_EPOCH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let refusal = if cluster != ours.cluster_id {
            ApiError::conflict(
                "wrong_cluster",
                format!(
                    "the sender belongs to cluster {cluster}, this node to cluster {}: they must not exchange Raft messages (a restored or re-created cluster, or a wrong address?)",
                    ours.cluster_id
                ),
            )
        } else {
            match epoch {
                Some(epoch) if epoch == ours.epoch => return Ok(()),
                Some(epoch) if epoch < ours.epoch => ApiError::conflict(
                    "stale_epoch",
                    format!(
                        "the sender is at epoch {epoch} of cluster {cluster}, this node at epoch {}: the sender was left out of a forced recovery; wipe its data directory and join it again",
                        ours.epoch
                    ),
                ),
                Some(epoch) => ApiError::conflict(
                    "stale_epoch",
                    format!(
                        "this node is at epoch {} of cluster {cluster}, the sender at epoch {epoch}: this node was left out of a forced recovery; wipe its data directory and join it again",
                        ours.epoch
                    ),
                ),
                None => ApiError::bad_request("invalid_epoch", "x-raftkv-epoch is missing or not a number"),
            }
        };
        self.log_refusal(&refusal);
        Err(refusal)
    }

    fn log_refusal(&self, refusal: &ApiError) {
        let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(code = refusal.code(), "refused a peer RPC: {refusal}");
        }
    }
}

impl std::fmt::Debug for ClusterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterGuard").field("identity", &self.identity()).finish()
    }
}

/// The member an incoming peer RPC comes from, as its verified certificate names it (peer TLS
/// only). Handlers refuse messages that speak for another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMember(pub NodeId);

/// Refuses a message that claims to come from `claimed` on a connection whose certificate names
/// another member.
pub(crate) fn speaks_for(member: Option<&PeerMember>, claimed: NodeId, what: &str) -> Result<(), ApiError> {
    match member {
        Some(PeerMember(id)) if *id != claimed => Err(ApiError::PermissionDenied(format!(
            "a {what} claiming to come from node {claimed} arrived with the certificate of member {id}"
        ))),
        _ => Ok(()),
    }
}

/// Middleware of the peer routes: refuses RPCs that fail [`ClusterGuard::check`], and with peer
/// TLS those without a member certificate; leaves the [`PeerMember`] in the request.
pub async fn check_identity(State(guard): State<ClusterGuard>, mut request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<ConnectInfo<ConnectionInfo>>().map(|c| &c.0);
    match guard.transport.member_of(connection) {
        Ok(Some(id)) => {
            request.extensions_mut().insert(PeerMember(id));
        }
        Ok(None) => {}
        Err(reason) => {
            let refusal =
                ApiError::PermissionDenied(format!("peer RPC needs a member certificate of the peer CA: {reason}"));
            guard.log_refusal(&refusal);
            return refusal.into_response();
        }
    }
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}
