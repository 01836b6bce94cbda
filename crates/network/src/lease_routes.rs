//! `/v1/leases`: grant, keep alive, revoke, list and inspect leases. Grants, renewals and
//! revocations are log entries (forwarded to the leader); expiry is the leader's, through the log
//! too (see `docs/api.md`, Leases).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use raftkv_types::api::{Durability, LeaseGrantRequest, LeaseInfo, LeaseResponse, LeaseRevokeResponse, LeasesResponse};
use raftkv_types::{Command, CommandResult, LeaseOutcome, Outcome};

use crate::api_error::ApiError;
use crate::api_request::{ApiState, Origin, json_of, parsed};
use crate::kv_service::KvService;

/// Shortest time to live a lease may have, ms: shorter ones would end during an ordinary
/// election.
pub const MIN_LEASE_TTL_MS: u64 = 1_000;
/// Longest time to live, ms: a week.
pub const MAX_LEASE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Lease ids stay within what a JSON number holds exactly.
pub const MAX_LEASE_ID: u64 = (1 << 53) - 1;

/// `POST /v1/leases`.
pub(crate) async fn grant<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let request: LeaseGrantRequest = parsed!(json_of("lease body", &body));
    let command = parsed!(grant_command(&request));
    let (req, dedup) = origin.write_with_body(body);
    let write = parsed!(s.dedup_write(&req, dedup, command));
    s.serve(req, || async {
        let result = s.write(&write, Durability::Majority).await?;
        Ok(Json(lease_response(result)?).into_response())
    })
    .await
}

/// The grant `request` asks for, with an id picked here when it names none.
pub fn grant_command(request: &LeaseGrantRequest) -> Result<Command, ApiError> {
    if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&request.ttl_ms) {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_ms must be from {MIN_LEASE_TTL_MS} to {MAX_LEASE_TTL_MS}, got {}", request.ttl_ms),
        ));
    }
    let id = match request.id {
        Some(id) if (1..=MAX_LEASE_ID).contains(&id) => id,
        Some(id) => {
            return Err(ApiError::bad_request(
                "invalid_lease_id",
                format!("a lease id is 1 to {MAX_LEASE_ID}, got {id}"),
            ));
        }
        None => rand::random::<u64>() % MAX_LEASE_ID + 1,
    };
    Ok(Command::LeaseGrant { id, ttl_ms: request.ttl_ms })
}

/// The answer to a grant or keep-alive that was applied as `result`.
pub fn lease_response(result: CommandResult) -> Result<LeaseResponse, ApiError> {
    match result.outcome {
        Outcome::Lease(LeaseOutcome::Granted { id, ttl_ms } | LeaseOutcome::KeptAlive { id, ttl_ms }) => {
            Ok(LeaseResponse { id, ttl_ms })
        }
        other => Err(lease_error(other)),
    }
}

/// The answer to a revocation that was applied as `result`.
pub fn revoke_response(result: CommandResult) -> Result<LeaseRevokeResponse, ApiError> {
    match result.outcome {
        Outcome::Lease(LeaseOutcome::Ended { id, deleted }) => {
            Ok(LeaseRevokeResponse { id, revision: result.revision, deleted })
        }
        other => Err(lease_error(other)),
    }
}

/// The error a lease command's other outcomes mean.
pub fn lease_error(outcome: Outcome) -> ApiError {
    match outcome {
        Outcome::Lease(LeaseOutcome::NotFound { id }) => ApiError::LeaseNotFound(id),
        Outcome::Lease(LeaseOutcome::Exists { id }) => {
            ApiError::conflict("lease_exists", format!("lease {id} exists already; pick another id or none"))
        }
        other => ApiError::Internal(format!("unexpected outcome of a lease command: {other:?}")),
    }
}

fn id_of(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_lease_id", e.to_string()))?;
    raw.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid_lease_id", format!("a lease id is a positive integer, got {raw:?}"))
    })
}

/// `POST /v1/leases/{id}/keepalive`.
pub(crate) async fn keep_alive<S: KvService>(
    state: State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    origin: Origin,
) -> Response {
    lease_command(state, path, origin, |id| Command::LeaseKeepAlive { id }, |r| Ok(Json(lease_response(r)?))).await
}

/// `DELETE /v1/leases/{id}`.
pub(crate) async fn revoke<S: KvService>(
    state: State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    origin: Origin,
) -> Response {
    lease_command(state, path, origin, |id| Command::LeaseRevoke { id }, |r| Ok(Json(revoke_response(r)?))).await
}

/// Runs the command `command_of` makes for the lease in the path (on the leader) and answers
/// what `answer_of` makes of its result.
async fn lease_command<S: KvService, A: IntoResponse>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    origin: Origin,
    command_of: impl Fn(u64) -> Command,
    answer_of: impl Fn(CommandResult) -> Result<A, ApiError>,
) -> Response {
    let command = command_of(parsed!(id_of(path)));
    let (req, dedup) = origin.write_with_body(Bytes::new());
    let write = parsed!(s.dedup_write(&req, dedup, command));
    s.serve(req, || async {
        let result = s.write(&write, Durability::Majority).await?;
        Ok(answer_of(result)?.into_response())
    })
    .await
}

/// `GET /v1/leases`.
pub(crate) async fn list<S: KvService>(State(s): State<ApiState<S>>) -> Response {
    match s.service.leases().await {
        Ok(leases) => Json(LeasesResponse { leases }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/leases/{id}`.
pub(crate) async fn show<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let id = parsed!(id_of(path));
    match s.service.leases().await {
        Ok(leases) => match leases.into_iter().find(|l| l.id == id) {
            Some(lease) => Json::<LeaseInfo>(lease).into_response(),
            None => ApiError::LeaseNotFound(id).into_response(),
        },
        Err(e) => e.into_response(),
    }
}
