//! What every handler of the `/v1/` API shares: the service and leader proxy, forwarding to the
//! leader, how a request arrived, and parsing helpers that answer a 400 naming the problem.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use raftkv_types::api::Durability;
use raftkv_types::{Command, CommandResult, NodeId};

use crate::api_error::ApiError;
use crate::dedup::{Dedup, SessionId, dedup_answer};
use crate::kv_service::KvService;
use crate::leader_proxy::{FORWARDED_HEADER, ForwardError, LeaderProxy, ReceivedRequest};

/// How long a request forwarded to a leader that has just been replaced may still take to answer
/// before the outcome is called unknown.
const REPLACED_LEADER_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct ApiState<S> {
    pub(crate) service: S,
    pub(crate) proxy: LeaderProxy,
}

impl<S: KvService> ApiState<S> {
    /// Runs `attempt` and answers with its result, forwarding the request to the leader when that
    /// is the answer. When the known leader cannot be connected to (it has just died: nothing was
    /// sent), waits for the next leader and tries again, within the service's leader wait.
    pub(crate) async fn serve<F, Fut>(&self, req: ReceivedRequest, attempt: F) -> Response
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response, ApiError>>,
    {
        let limits = self.service.limits();
        let deadline = Instant::now() + limits.leader_wait;
        loop {
            let (leader_id, leader) = match attempt().await {
                Ok(response) => return response,
                Err(ApiError::NotLeader { leader_id, leader: Some(leader) }) if !req.forwarded => (leader_id, leader),
                Err(err) => return err.into_response(),
            };
            // A leader that stops answering (paused, partitioned away) holds the request until the
            // forward timeout; once the cluster has moved on to another leader, stop waiting.
            let forwarded = self.proxy.forward(&leader, &req, limits.forward_timeout);
            tokio::pin!(forwarded);
            let replaced = self.service.await_new_leader(leader_id, Instant::now() + limits.forward_timeout);
            tokio::select! {
                result = &mut forwarded => match result {
                    Ok(response) => return response,
                    Err(ForwardError::Unreachable(_)) if Instant::now() < deadline => {
                        self.service.await_new_leader(leader_id, deadline).await;
                    }
                    Err(ForwardError::Unreachable(err) | ForwardError::Failed(err)) => return err.into_response(),
                },
                true = replaced => {
                    // A leader that handed over (leader transfer) is alive and answers promptly:
                    // give it a moment before declaring the outcome unknown.
                    if let Ok(result) = tokio::time::timeout(REPLACED_LEADER_GRACE, &mut forwarded).await {
                        match result {
                            Ok(response) => return response,
                            Err(ForwardError::Failed(err)) => return err.into_response(),
                            Err(ForwardError::Unreachable(_)) => continue,
                        }
                    }
                    if req.method != Method::GET {
                        return ApiError::OutcomeUnknown(format!(
                            "the leader changed while the write was forwarded to node {}; \
                             it may or may not have been applied",
                            leader_id.map_or("?".to_string(), |id| id.to_string())
                        ))
                        .into_response();
                    }
                    // A read changes nothing: ask the new leader.
                }
            }
        }
    }
}

/// Answers `err` if `parsed` failed.
macro_rules! parsed {
    ($parsed:expr) => {
        match $parsed {
            Ok(v) => v,
            Err(err) => return ApiError::into_response(err),
        }
    };
}

pub(crate) use parsed;

/// How a request arrived: what it takes to replay it to the leader, and what it asks for
/// exactly-once, taken from any request.
pub(crate) struct Origin {
    method: Method,
    path_and_query: String,
    forwarded: bool,
    headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
    dedup: Result<Dedup, ApiError>,
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri = &parts.uri;
        Ok(Origin {
            method: parts.method.clone(),
            path_and_query: uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            forwarded: parts.headers.contains_key(FORWARDED_HEADER),
            headers: forwarded_headers(parts),
            dedup: Dedup::from_headers(&parts.headers),
        })
    }
}

/// The headers a forward carries to the leader: those of exactly-once writes, and the caller's
/// credentials, which the leader checks again.
fn forwarded_headers(parts: &Parts) -> Vec<(axum::http::HeaderName, axum::http::HeaderValue)> {
    let mut headers = Dedup::headers_of(parts);
    if let Some(authorization) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        headers.push((axum::http::header::AUTHORIZATION, authorization.clone()));
    }
    headers
}

impl Origin {
    /// The request to replay, with `body`.
    pub(crate) fn with_body(self, body: Bytes) -> ReceivedRequest {
        self.write_with_body(body).0
    }

    /// The request to replay, with `body`, and what it asks for exactly-once (or why its
    /// headers are wrong). For write handlers.
    pub(crate) fn write_with_body(self, body: Bytes) -> (ReceivedRequest, Result<Dedup, ApiError>) {
        let req = ReceivedRequest {
            method: self.method,
            path_and_query: self.path_and_query,
            body,
            forwarded: self.forwarded,
            headers: self.headers,
        };
        (req, self.dedup)
    }
}

/// A write as the leader proposes it: wrapped for exactly-once as its request asks.
pub(crate) struct DedupWrite {
    pub(crate) command: Command,
    session: Option<SessionId>,
}

impl<S: KvService> ApiState<S> {
    /// `command`, the write `req` asks for, wrapped as `dedup` (its headers) asks.
    pub(crate) fn dedup_write(
        &self,
        req: &ReceivedRequest,
        dedup: Result<Dedup, ApiError>,
        command: Command,
    ) -> Result<DedupWrite, ApiError> {
        let dedup = dedup?;
        let identity = if dedup.session.is_some() { self.service.cluster_identity() } else { None };
        let request = (req.method.as_str(), req.path_and_query.as_str(), &req.body[..]);
        let command = dedup.wrap(command, identity.as_ref(), request, self.service.limits().idempotency_ttl)?;
        Ok(DedupWrite { command, session: dedup.session.map(|(id, _)| id) })
    }

    /// Proposes `write` (see [`KvService::write`]); a retried write answers what it did the
    /// first time, and a refused one (expired session, reused key) its error.
    pub(crate) async fn write(&self, write: &DedupWrite, durability: Durability) -> Result<CommandResult, ApiError> {
        dedup_answer(self.service.write(write.command.clone(), durability).await?, write.session.as_ref())
    }
}

pub(crate) fn member_id_of(path: Result<Path<String>, PathRejection>) -> Result<NodeId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_member_id", format!("invalid member id: {e}")))?;
    raw.parse::<NodeId>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid_member_id", format!("member id must be a positive integer, got {raw:?}"))
    })
}

pub(crate) fn json_of<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("{what}: {e}")))
}

pub(crate) fn query_of<T: Default>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// Reads the whole body, refusing one over `limit` bytes with a 413.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` fails either because the limit was hit or because the connection broke.
        let source_is_limit = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if source_is_limit || e.to_string().contains("length limit") {
            ApiError::ValueTooLarge { size: limit + 1, limit }
        } else {
            ApiError::bad_request("invalid_body", format!("could not read request body: {e}"))
        }
    })
}
