//! The client HTTP API under `/v1/` (the contract is `docs/api.md`).

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use raftkv_types::Command;
use raftkv_types::NodeId;
use raftkv_types::Outcome;
use raftkv_types::api::{
    CasRequest, CasResponse, Consistency, DeleteResponse, Durability, LeaderTransferRequest, NewMember, PutResponse,
    ScanEntry, ScanResponse,
};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::kv_service::{KvService, MembershipChange};
use crate::leader_proxy::{FORWARDED_HEADER, ForwardError, LeaderProxy, ReceivedRequest};

/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 4096;
/// How long a request forwarded to a leader that has just been replaced may still take to answer
/// before the outcome is called unknown.
const REPLACED_LEADER_GRACE: Duration = Duration::from_secs(1);

/// Keys per scan page when `limit` is not given.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// Largest `limit` a scan accepts.
pub const MAX_SCAN_LIMIT: usize = 10_000;

#[derive(Clone)]
struct ApiState<S> {
    service: S,
    proxy: LeaderProxy,
}

/// Routes of the client API, served by every node. Requests that only the leader can serve are
/// forwarded to it, once.
pub fn client_router<S: KvService>(service: S, proxy: LeaderProxy) -> Router {
    Router::new()
        .route("/v1/kv", get(scan::<S>))
        .route("/v1/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .route("/v1/kv/{key}", get(read::<S>).put(put::<S>).delete(delete::<S>))
        .route("/v1/kv/{key}/cas", post(cas::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/cluster/members", get(members::<S>).post(add_learner::<S>))
        .route("/v1/cluster/members/{id}", axum::routing::delete(remove_member::<S>))
        .route("/v1/cluster/members/{id}/promote", post(promote::<S>))
        .route("/v1/cluster/members/{id}/replace", post(replace::<S>))
        .route("/v1/cluster/leader", post(transfer_leader::<S>))
        .with_state(ApiState { service: service.clone(), proxy })
        .merge(crate::admin_router::admin_router(service))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

#[derive(Debug, Default, Deserialize)]
struct ReadParams {
    consistency: Option<String>,
    max_lag_ms: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WriteParams {
    durability: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChangeParams {
    force: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ScanParams {
    prefix: Option<String>,
    limit: Option<String>,
    start_after: Option<String>,
    consistency: Option<String>,
}

impl<S: KvService> ApiState<S> {
    /// Runs `attempt` and answers with its result, forwarding the request to the leader when that
    /// is the answer. When the known leader cannot be connected to (it has just died: nothing was
    /// sent), waits for the next leader and tries again, within the service's leader wait.
    async fn serve<F, Fut>(&self, req: ReceivedRequest, attempt: F) -> Response
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

/// How a request arrived: what it takes to replay it to the leader, taken from any request.
struct Origin {
    method: Method,
    path_and_query: String,
    forwarded: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri = &parts.uri;
        Ok(Origin {
            method: parts.method.clone(),
            path_and_query: uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            forwarded: parts.headers.contains_key(FORWARDED_HEADER),
        })
    }
}

impl Origin {
    /// The request to replay, with `body`.
    fn with_body(self, body: Bytes) -> ReceivedRequest {
        ReceivedRequest { method: self.method, path_and_query: self.path_and_query, body, forwarded: self.forwarded }
    }
}

fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| ApiError::bad_request("invalid_key", format!("invalid key: {e}")))?;
    validate_key(&key)?;
    Ok(key)
}

/// Checks the key rules: 1 byte to [`MAX_KEY_BYTES`] of UTF-8.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("invalid_key", "key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(())
}

fn consistency_of(raw: Option<&str>) -> Result<Consistency, ApiError> {
    raw.map_or(Ok(Consistency::default()), |s| {
        s.parse().map_err(|e: String| ApiError::bad_request("invalid_consistency", e))
    })
}

fn durability_of(query: Result<Query<WriteParams>, QueryRejection>) -> Result<Durability, ApiError> {
    let params = query_of(query)?;
    params.durability.as_deref().map_or(Ok(Durability::default()), |s| {
        s.parse().map_err(|e: String| ApiError::bad_request("invalid_durability", e))
    })
}

fn force_of(query: Result<Query<ChangeParams>, QueryRejection>) -> Result<bool, ApiError> {
    match query_of(query)?.force.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request("invalid_query", format!("force must be true or false, got {other:?}")))
        }
    }
}

fn max_lag_of(raw: Option<&str>, consistency: Consistency) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let ms: u64 = raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_max_lag",
            format!("max_lag_ms must be a whole number of milliseconds, got {raw:?}"),
        )
    })?;
    if consistency != Consistency::Stale {
        return Err(ApiError::bad_request(
            "invalid_max_lag",
            format!("max_lag_ms bounds stale reads only; a {consistency} read is never behind"),
        ));
    }
    Ok(Some(Duration::from_millis(ms)))
}

fn member_id_of(path: Result<Path<String>, PathRejection>) -> Result<NodeId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_member_id", format!("invalid member id: {e}")))?;
    raw.parse::<NodeId>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid_member_id", format!("member id must be a positive integer, got {raw:?}"))
    })
}

/// The member id in the path and the `force` flag of a membership change.
fn target_of(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<(NodeId, bool), ApiError> {
    Ok((member_id_of(path)?, force_of(query)?))
}

fn json_of<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("{what}: {e}")))
}

fn new_member_of(body: &[u8]) -> Result<NewMember, ApiError> {
    let member: NewMember = json_of("member body", body)?;
    if member.id == 0 {
        return Err(ApiError::bad_request("invalid_member_id", "member id must be a positive integer, got 0"));
    }
    if member.addr.parse::<std::net::SocketAddr>().is_err() && !member.addr.contains(':') {
        return Err(ApiError::bad_request("invalid_addr", format!("addr must be host:port, got {:?}", member.addr)));
    }
    if let Some(zone) = &member.zone
        && !valid_zone(zone)
    {
        return Err(ApiError::bad_request(
            "invalid_zone",
            format!("zone must be 1 to 64 letters, digits, '-', '_' or '.', got {zone:?}"),
        ));
    }
    Ok(member)
}

/// Whether `zone` is a usable zone name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_zone(zone: &str) -> bool {
    (1..=64).contains(&zone.len()) && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn query_of<T: Default>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// Reads the whole body, refusing one over `limit` bytes with a 413.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
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

fn utf8_lossy(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

async fn put<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteParams>, QueryRejection>,
    origin: Origin,
    body: Body,
) -> Response {
    let body = parsed!(read_body(body, s.service.limits().max_value_bytes).await);
    let key = parsed!(key_of(path));
    let durability = parsed!(durability_of(query));
    let req = origin.with_body(body.clone());
    let command = Command::Put { key, value: body.to_vec() };
    s.serve(req, || async {
        let result = s.service.write(command.clone(), durability).await?;
        Ok(Json(PutResponse { revision: result.revision }).into_response())
    })
    .await
}

async fn delete<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteParams>, QueryRejection>,
    origin: Origin,
) -> Response {
    let key = parsed!(key_of(path));
    let durability = parsed!(durability_of(query));
    let req = origin.with_body(Bytes::new());
    s.serve(req, || async {
        let result = s.service.write(Command::Delete { key: key.clone() }, durability).await?;
        let deleted = matches!(result.outcome, Outcome::Delete { deleted: true });
        Ok(Json(DeleteResponse { revision: result.revision, deleted }).into_response())
    })
    .await
}

async fn cas<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteParams>, QueryRejection>,
    origin: Origin,
    body: Body,
) -> Response {
    let limit = s.service.limits().max_value_bytes;
    // JSON escaping can at most sextuple a value; expected and new value both count.
    let body = parsed!(read_body(body, 2 * 6 * limit + 1024).await);
    let key = parsed!(key_of(path));
    let durability = parsed!(durability_of(query));
    let cas: CasRequest = parsed!(
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("cas body: {e}")))
    );
    if let Some(v) = std::iter::once(&cas.value).chain(cas.expected.as_ref()).find(|v| v.len() > limit) {
        return ApiError::ValueTooLarge { size: v.len(), limit }.into_response();
    }
    let req = origin.with_body(body.clone());
    let command = Command::Cas { key, expected: cas.expected.map(String::into_bytes), value: cas.value.into_bytes() };
    s.serve(req, || async {
        let result = s.service.write(command.clone(), durability).await?;
        let Outcome::Cas { succeeded, current } = result.outcome else {
            return Err(ApiError::Internal("cas applied without a cas outcome".into()));
        };
        Ok(Json(CasResponse { succeeded, current: utf8_lossy(current), revision: result.revision }).into_response())
    })
    .await
}

async fn read<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadParams>, QueryRejection>,
    origin: Origin,
) -> Response {
    let key = parsed!(key_of(path));
    let params = parsed!(query_of(query));
    let consistency = parsed!(consistency_of(params.consistency.as_deref()));
    let max_lag = parsed!(max_lag_of(params.max_lag_ms.as_deref(), consistency));
    let req = origin.with_body(Bytes::new());
    s.serve(req, || async {
        match s.service.read(key.clone(), consistency, max_lag).await? {
            Some(value) => Ok(value.into_response()),
            None => Err(ApiError::KeyNotFound(key.clone())),
        }
    })
    .await
}

async fn scan<S: KvService>(
    State(s): State<ApiState<S>>,
    query: Result<Query<ScanParams>, QueryRejection>,
    origin: Origin,
) -> Response {
    let params = parsed!(query_of(query));
    let consistency = parsed!(consistency_of(params.consistency.as_deref()));
    let limit = match params.limit.as_deref() {
        None => DEFAULT_SCAN_LIMIT,
        Some(raw) => parsed!(raw.parse::<usize>().ok().filter(|l| (1..=MAX_SCAN_LIMIT).contains(l)).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_limit",
                format!("limit must be a number from 1 to {MAX_SCAN_LIMIT}, got {raw:?}"),
            )
        })),
    };
    let prefix = params.prefix.unwrap_or_default();
    let req = origin.with_body(Bytes::new());
    s.serve(req, || async {
        let page = s.service.scan(prefix.clone(), params.start_after.clone(), limit, consistency).await?;
        let next = if page.more { page.entries.last().map(|(k, _)| k.clone()) } else { None };
        let entries = page
            .entries
            .into_iter()
            .map(|(key, value)| ScanEntry { key, value: utf8_lossy(Some(value)).unwrap_or_default() })
            .collect();
        Ok(Json(ScanResponse { entries, more: page.more, next }).into_response())
    })
    .await
}

async fn status<S: KvService>(State(s): State<ApiState<S>>) -> Response {
    match s.service.status().await {
        Ok(status) => Json(status).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn members<S: KvService>(State(s): State<ApiState<S>>) -> Response {
    match s.service.members().await {
        Ok(members) => Json(members).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Runs a membership change on the leader (forwarding it there).
async fn change<S: KvService>(s: &ApiState<S>, req: ReceivedRequest, change: MembershipChange) -> Response {
    s.serve(req, || async { Ok(Json(s.service.change_membership(change.clone()).await?).into_response()) }).await
}

async fn add_learner<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let member = parsed!(new_member_of(&body));
    let req = origin.with_body(body);
    let change_of = MembershipChange::AddLearner { id: member.id, addr: member.addr, zone: member.zone };
    change(&s, req, change_of).await
}

async fn promote<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChangeParams>, QueryRejection>,
    origin: Origin,
) -> Response {
    let (id, force) = parsed!(target_of(path, query));
    change(&s, origin.with_body(Bytes::new()), MembershipChange::Promote { id, force }).await
}

async fn remove_member<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChangeParams>, QueryRejection>,
    origin: Origin,
) -> Response {
    let (id, force) = parsed!(target_of(path, query));
    change(&s, origin.with_body(Bytes::new()), MembershipChange::Remove { id, force }).await
}

async fn replace<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChangeParams>, QueryRejection>,
    origin: Origin,
    body: Bytes,
) -> Response {
    let (old, force) = parsed!(target_of(path, query));
    let member = parsed!(new_member_of(&body));
    let req = origin.with_body(body);
    change(&s, req, MembershipChange::Replace { old, new: member.id, addr: member.addr, force }).await
}

async fn transfer_leader<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let transfer: LeaderTransferRequest = parsed!(json_of("leader transfer body", &body));
    let req = origin.with_body(body);
    s.serve(req, || async { Ok(Json(s.service.transfer_leader(transfer.to).await?).into_response()) }).await
}

async fn empty_key() -> ApiError {
    ApiError::bad_request("invalid_key", "key must not be empty")
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} {}", uri.path()))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}
