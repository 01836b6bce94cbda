//! `POST /v1/sessions`: registers a client session through the log (see [`crate::dedup`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use raftkv_types::api::{Durability, SessionRequest, SessionResponse};
use raftkv_types::session::{MAX_DEDUP_TTL_MS, MIN_DEDUP_TTL_MS};
use raftkv_types::{Command, CommandResult, Outcome, SessionOutcome};

use crate::api_error::ApiError;
use crate::api_request::{ApiState, Origin, json_of, parsed};
use crate::dedup::SessionId;
use crate::kv_service::KvService;

/// A session's time to live when the request names none: 10 minutes.
pub const DEFAULT_SESSION_TTL_MS: u64 = 10 * 60 * 1000;

/// `POST /v1/sessions` `{"ttl_ms": N}` (the body may be empty).
pub(crate) async fn register<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let request: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        parsed!(json_of("session body", &body))
    };
    let command = parsed!(register_command(&request));
    s.serve(origin.with_body(body), || async {
        let result = s.service.write(command.clone(), Durability::Majority).await?;
        Ok(Json(session_response(result, s.service.cluster_identity())?).into_response())
    })
    .await
}

/// The command that registers the session `request` asks for.
pub fn register_command(request: &SessionRequest) -> Result<Command, ApiError> {
    let ttl_ms = request.ttl_ms.unwrap_or(DEFAULT_SESSION_TTL_MS);
    if !(MIN_DEDUP_TTL_MS..=MAX_DEDUP_TTL_MS).contains(&ttl_ms) {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_ms must be from {MIN_DEDUP_TTL_MS} to {MAX_DEDUP_TTL_MS}, got {ttl_ms}"),
        ));
    }
    Ok(Command::RegisterSession { ttl_ms })
}

/// The answer to a registration applied as `result`, in the cluster `identity`.
pub fn session_response(
    result: CommandResult,
    identity: Option<raftkv_types::ClusterIdentity>,
) -> Result<SessionResponse, ApiError> {
    let Outcome::Session(SessionOutcome::Registered { id, ttl_ms }) = result.outcome else {
        return Err(ApiError::Internal(format!("session registration applied with outcome {:?}", result.outcome)));
    };
    let identity = identity.ok_or_else(|| ApiError::Unavailable("the cluster has no identity yet".into()))?;
    let session = SessionId { cluster_id: identity.cluster_id, epoch: identity.epoch, index: id };
    Ok(SessionResponse { session_id: session.to_string(), ttl_ms, revision: result.revision })
}
