//! The client HTTP API under `/v1/` (the contract is `docs/api.md`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use raftkv_types::api::{
    CasRequest, CasResponse, Consistency, DeleteResponse, Durability, KeyValue, LeaderTransferRequest, NewMember,
    PutResponse, ScanResponse,
};
use raftkv_types::{Command, LeaderToken, NodeId, Outcome, Versioned};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::api_request::{ApiState, Origin, json_of, member_id_of, parsed, query_of, read_body};
use crate::kv_service::{KvService, MembershipChange};
use crate::leader_proxy::{LeaderProxy, ReceivedRequest};
use crate::watch_routes::{DEFAULT_LONG_POLL, MAX_LONG_POLL, duration_of, flag_of, wait_for_change};

/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 4096;

/// Keys per scan page when `limit` is not given.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// Largest `limit` a scan accepts.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// Routes of the client API, served by every node. Requests that only the leader can serve are
/// forwarded to it, once.
pub fn client_router<S: KvService>(service: S, proxy: LeaderProxy) -> Router {
    Router::new()
        .route("/v1/kv", get(scan::<S>))
        .route("/v1/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .route("/v1/kv/{key}", get(read::<S>).put(put::<S>).delete(delete::<S>))
        .route("/v1/kv/{key}/cas", post(cas::<S>))
        .route("/v1/txn", post(crate::txn_routes::txn::<S>))
        .route("/v1/watch", get(crate::watch_routes::watch::<S>))
        .route("/v1/leases", get(crate::lease_routes::list::<S>).post(crate::lease_routes::grant::<S>))
        .route("/v1/leases/{id}", get(crate::lease_routes::show::<S>).delete(crate::lease_routes::revoke::<S>))
        .route("/v1/leases/{id}/keepalive", post(crate::lease_routes::keep_alive::<S>))
        .route("/v1/sessions", post(crate::session_routes::register::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/cluster/members", get(members::<S>).post(add_learner::<S>))
        .route("/v1/cluster/members/{id}", axum::routing::delete(remove_member::<S>))
        .route("/v1/cluster/members/{id}/promote", post(promote::<S>))
        .route("/v1/cluster/members/{id}/replace", post(replace::<S>))
        .route("/v1/cluster/leader", post(transfer_leader::<S>))
        .with_state(ApiState { service: service.clone(), proxy: proxy.clone() })
        .merge(crate::cluster_router::cluster_router(service.clone(), proxy))
        .merge(crate::admin_router::admin_router(service))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

#[derive(Debug, Default, Deserialize)]
struct ReadParams {
    consistency: Option<String>,
    max_lag_ms: Option<String>,
    meta: Option<String>,
    wait_revision: Option<String>,
    wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WriteParams {
    durability: Option<String>,
    leader_token: Option<String>,
    lease: Option<String>,
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

/// The durability of a write and the leader token it is fenced by, if any.
pub(crate) fn write_params_of(
    query: Result<Query<WriteParams>, QueryRejection>,
) -> Result<(Durability, Option<LeaderToken>), ApiError> {
    write_params(query_of(query)?)
}

fn write_params(params: WriteParams) -> Result<(Durability, Option<LeaderToken>), ApiError> {
    let durability = params.durability.as_deref().map_or(Ok(Durability::default()), |s| {
        s.parse().map_err(|e: String| ApiError::bad_request("invalid_durability", e))
    })?;
    let token = params
        .leader_token
        .as_deref()
        .map(|t| t.parse::<LeaderToken>().map_err(|e| ApiError::bad_request("invalid_leader_token", e)))
        .transpose()?;
    Ok((durability, token))
}

/// `command`, fenced by `token` when there is one.
pub(crate) fn fenced(command: Command, token: Option<LeaderToken>) -> Command {
    match token {
        Some(token) => Command::Fenced { token, command: Box::new(command) },
        None => command,
    }
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

/// The member id in the path and the `force` flag of a membership change.
fn target_of(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<(NodeId, bool), ApiError> {
    Ok((member_id_of(path)?, force_of(query)?))
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
    let params = parsed!(query_of(query));
    let lease = parsed!(
        params
            .lease
            .as_deref()
            .map(|raw| raw.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| ApiError::bad_request(
                "invalid_lease_id",
                format!("lease must be a positive integer, got {raw:?}")
            )))
            .transpose()
    );
    let (durability, token) = parsed!(write_params(params));
    let (req, dedup) = origin.write_with_body(body.clone());
    let command = match lease {
        // A put attached to a lease is a one-operation transaction, whose apply checks the lease.
        Some(id) => Command::Txn(raftkv_types::Txn {
            success: vec![raftkv_types::TxnOp::Put { key, value: body.to_vec(), lease: Some(id) }],
            ..raftkv_types::Txn::default()
        }),
        None => Command::Put { key, value: body.to_vec() },
    };
    let write = parsed!(s.dedup_write(&req, dedup, fenced(command, token)));
    s.serve(req, || async {
        let result = s.write(&write, durability).await?;
        if let Outcome::Lease(raftkv_types::LeaseOutcome::NotFound { id }) = result.outcome {
            return Err(ApiError::LeaseNotFound(id));
        }
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
    let (durability, token) = parsed!(write_params_of(query));
    let (req, dedup) = origin.write_with_body(Bytes::new());
    let write = parsed!(s.dedup_write(&req, dedup, fenced(Command::Delete { key }, token)));
    s.serve(req, || async {
        let result = s.write(&write, durability).await?;
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
    let (durability, token) = parsed!(write_params_of(query));
    let cas: CasRequest = parsed!(
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("cas body: {e}")))
    );
    if let Some(v) = std::iter::once(&cas.value).chain(cas.expected.as_ref()).find(|v| v.len() > limit) {
        return ApiError::ValueTooLarge { size: v.len(), limit }.into_response();
    }
    let (req, dedup) = origin.write_with_body(body.clone());
    let command = fenced(
        Command::Cas { key, expected: cas.expected.map(String::into_bytes), value: cas.value.into_bytes() },
        token,
    );
    let write = parsed!(s.dedup_write(&req, dedup, command));
    s.serve(req, || async {
        let result = s.write(&write, durability).await?;
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
    let meta = parsed!(flag_of("meta", params.meta.as_deref(), false));
    let wait_revision = parsed!(
        params
            .wait_revision
            .as_deref()
            .map(|raw| raw.parse::<u64>().map_err(|_| ApiError::bad_request(
                "invalid_revision",
                format!("wait_revision must be a whole number, got {raw:?}")
            )))
            .transpose()
    );
    let wait = match params.wait.as_deref() {
        None => DEFAULT_LONG_POLL,
        Some(raw) => parsed!(duration_of("wait", raw, MAX_LONG_POLL)),
    };
    if let Some(after) = wait_revision {
        // A long poll is served where it arrives, like a watch: it waits on this node's history.
        if let Err(e) = wait_for_change(&s.service, &key, after, wait).await {
            return e.into_response();
        }
    }
    let req = origin.with_body(Bytes::new());
    let floor = wait_revision.unwrap_or(0);
    s.serve(req, || async {
        let found = s.service.read(key.clone(), consistency, max_lag).await?;
        Ok(read_answer(&key, found, meta, floor))
    })
    .await
}

/// Headers that carry a key's revisions on a plain read.
pub const CREATE_REVISION_HEADER: &str = "x-raftkv-create-revision";
/// See [`CREATE_REVISION_HEADER`].
pub const MOD_REVISION_HEADER: &str = "x-raftkv-mod-revision";
/// See [`CREATE_REVISION_HEADER`].
pub const VERSION_HEADER: &str = "x-raftkv-version";
/// See [`CREATE_REVISION_HEADER`].
pub const LEASE_HEADER: &str = "x-raftkv-lease";
/// On a long poll's answer: the revision to wait after next time.
pub const REVISION_HEADER: &str = "x-raftkv-revision";

/// The answer to a read: the raw value with its revisions in headers, or with `meta` a JSON
/// [`KeyValue`]; 404 when absent. `x-raftkv-revision` is the key's mod revision (at least
/// `floor`, the revision a long poll waited after).
fn read_answer(key: &str, found: Option<Versioned>, meta: bool, floor: u64) -> Response {
    let Some(found) = found else {
        let mut response = ApiError::KeyNotFound(key.to_string()).into_response();
        response.headers_mut().insert(REVISION_HEADER, HeaderValue::from(floor));
        return response;
    };
    let m = found.meta;
    let mut response =
        if meta { Json(KeyValue::new(key.to_string(), found)).into_response() } else { found.value.into_response() };
    let headers = response.headers_mut();
    headers.insert(CREATE_REVISION_HEADER, HeaderValue::from(m.create_revision));
    headers.insert(MOD_REVISION_HEADER, HeaderValue::from(m.mod_revision));
    headers.insert(VERSION_HEADER, HeaderValue::from(m.version));
    if let Some(lease) = m.lease {
        headers.insert(LEASE_HEADER, HeaderValue::from(lease));
    }
    headers.insert(REVISION_HEADER, HeaderValue::from(m.mod_revision.max(floor)));
    response
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
        let entries = page.entries.into_iter().map(|(key, value)| KeyValue::new(key, value)).collect();
        Ok(Json(ScanResponse { entries, more: page.more, next }).into_response())
    })
    .await
}

pub(crate) async fn status<S: KvService>(State(s): State<ApiState<S>>) -> Response {
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
    let change_of =
        MembershipChange::AddLearner { id: member.id, addr: member.addr, zone: member.zone, standby: member.standby };
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

pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}
