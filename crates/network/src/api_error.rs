//! Error answers of the HTTP API.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use raftkv_types::api::{ErrorBody, ErrorDetail, LaggingMember};
use raftkv_types::{NodeId, PeerNode};

/// An error answer: a status and `{"error": {"code", "message"}}`.
///
/// Every code but `outcome_unknown` means the request changed nothing. `outcome_unknown` is
/// given only for a write that may have been applied (it was proposed, then the answer was lost or
/// late); a client must read before retrying it, or make the retry idempotent (e.g. with cas).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed; `code` says how.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code, e.g. `invalid_key`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// 404: the key does not exist.
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    /// 404: no such route.
    #[error("no route for {0}")]
    NoRoute(String),
    /// 405: the route exists but not with this method.
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),
    /// 413: the value exceeds the configured limit.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// The size received (at least).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// This node is not the leader. Turned into a forward to `leader` when one is known and the
    /// request was not already forwarded; otherwise a 503.
    #[error("node is not the leader{}", leader_hint(.leader_id))]
    NotLeader {
        /// The leader this node knows of.
        leader_id: Option<NodeId>,
        /// Its address.
        leader: Option<PeerNode>,
    },
    /// 404: no member with this id.
    #[error("node {0} is not a member of the cluster")]
    UnknownMember(NodeId),
    /// 409: the request conflicts with the cluster's state (a membership change in progress, an
    /// id or address taken, a change that would lose the quorum); `code` says which.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, e.g. `change_in_progress`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// 503: this node is not a member of the cluster (it was removed, or has not been added yet);
    /// another node will serve the request.
    #[error("node {0} is not a member of the cluster (removed, or not added yet); send the request to a member")]
    NotMember(NodeId),
    /// 503: this node is shutting down and takes no new requests; another node will serve it.
    #[error("node is shutting down; send the request to another node")]
    Stopping,
    /// 503: the request was not carried out (no quorum, shutting down, ...).
    #[error("{0}")]
    Unavailable(String),
    /// 503: a bounded-staleness read on a member that is further behind the leader than allowed.
    #[error(
        "this node is {} behind the leader; the read allows at most {max_lag_ms} ms",
        lag_ms.map_or("an unknown time".to_string(), |l| format!("{l} ms"))
    )]
    TooStale {
        /// How far behind this node is, if known.
        lag_ms: Option<u64>,
        /// The bound the read asked for.
        max_lag_ms: u64,
    },
    /// 504: a `durability=all` write is committed on a majority and applied by the leader, but
    /// not every member confirmed it in time.
    #[error(
        "write committed on a majority (revision {revision}) but not confirmed on all members: {}",
        lagging.iter().map(|m| format!("node {} ({})", m.id, m.reason)).collect::<Vec<_>>().join(", ")
    )]
    NotConfirmedOnAll {
        /// Log index of the write.
        revision: u64,
        /// The members that did not confirm.
        lagging: Vec<LaggingMember>,
    },
    /// 504: a write was proposed but whether it was applied is unknown.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// 507: this (leader) node's data directory is nearly full; writes are refused until space
    /// is freed (reads are still served).
    #[error("{0}")]
    InsufficientStorage(String),
    /// 404: no lease has this id (never granted, or ended).
    #[error("lease {0} not found (never granted, or it has ended)")]
    LeaseNotFound(u64),
    /// 410: a watch asked for history older than the node keeps.
    #[error(
        "revision {asked} is no longer in the watch history; the oldest kept is {floor}: read the current state and watch from after its revision"
    )]
    Compacted {
        /// The revision asked for.
        asked: u64,
        /// The oldest revision available.
        floor: u64,
    },
    /// 413 with `code`: a request beyond a limit other than the value size.
    #[error("{message}")]
    TooLarge {
        /// Machine-readable code, e.g. `txn_too_large`.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// 410: the client session a write names does not exist (it expired, or belongs to another
    /// cluster or to the time before a recovery). Nothing was written; register a new session.
    #[error("{0}")]
    SessionExpired(String),
    /// 429: the session keeps as many unacknowledged results as it may; acknowledge some
    /// (`x-raftkv-ack-below`) before sending more. Nothing was written.
    #[error("session {0} has too many unacknowledged writes; acknowledge answered ones first")]
    TooManyOutstanding(String),
    /// 422: the idempotency key was used before with a different request. Nothing was written.
    #[error("idempotency key {0:?} was used before for a different request")]
    IdempotencyKeyReused(String),
    /// 401: credentials are missing or wrong. The answer carries `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: the caller is known but lacks the permission, or the key is outside its prefixes;
    /// or a peer RPC lacks the cluster's peer identity.
    #[error("{0}")]
    PermissionDenied(String),
    /// 500: an internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

fn leader_hint(leader: &Option<NodeId>) -> String {
    match leader {
        Some(id) => format!("; the leader is node {id}"),
        None => "; no leader is known (election in progress?)".to_string(),
    }
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// A 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Conflict { code, message: message.into() }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::KeyNotFound(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ValueTooLarge { .. } | ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Compacted { .. } | ApiError::SessionExpired(_) => StatusCode::GONE,
            ApiError::TooManyOutstanding(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::LeaseNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnknownMember(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotLeader { .. }
            | ApiError::Unavailable(_)
            | ApiError::TooStale { .. }
            | ApiError::Stopping
            | ApiError::NotMember(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OutcomeUnknown(_) | ApiError::NotConfirmedOnAll { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::KeyNotFound(_) => "key_not_found",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::ValueTooLarge { .. } => "value_too_large",
            ApiError::NotLeader { leader_id: Some(_), .. } => "not_leader",
            ApiError::NotLeader { leader_id: None, .. } => "no_leader",
            ApiError::UnknownMember(_) => "unknown_member",
            ApiError::Conflict { code, .. } => code,
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Stopping => "node_stopping",
            ApiError::NotMember(_) => "not_a_member",
            ApiError::TooStale { .. } => "too_stale",
            ApiError::NotConfirmedOnAll { .. } => "not_confirmed_on_all",
            ApiError::OutcomeUnknown(_) => "outcome_unknown",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::Internal(_) => "internal",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Compacted { .. } => "compacted",
            ApiError::LeaseNotFound(_) => "lease_not_found",
            ApiError::SessionExpired(_) => "session_expired",
            ApiError::TooManyOutstanding(_) => "too_many_outstanding",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::TooLarge { code, .. } => code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let lagging = match &self {
            ApiError::NotConfirmedOnAll { lagging, .. } => lagging.clone(),
            _ => Vec::new(),
        };
        let compact_revision = match &self {
            ApiError::Compacted { floor, .. } => Some(*floor),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail { code: self.code().to_string(), message: self.to_string(), lagging, compact_revision },
        };
        let challenge = matches!(self, ApiError::Unauthenticated(_));
        let mut response = (self.status(), Json(body)).into_response();
        if challenge {
            // Both schemes the node takes, so that a client (curl, a browser) knows what to send.
            let headers = response.headers_mut();
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"raftkv\""));
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"raftkv\", charset=\"UTF-8\""),
            );
        }
        response.extensions_mut().insert(crate::network_metrics::ErrorCode(self.code()));
        response
    }
}
