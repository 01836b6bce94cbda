//! The admin API under `/v1/admin/`: backups.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use raftkv_types::api::{BackupConsistency, backup_headers};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::kv_service::KvService;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupParams {
    consistency: Option<String>,
}

/// Routes of the admin API, served by every node; merged into the client API's router.
pub fn admin_router<S: KvService>(service: S) -> Router {
    Router::new().route("/v1/admin/backup", get(backup::<S>)).with_state(service)
}

/// `GET /v1/admin/backup?consistency=linearizable|stale`: the backup file, streamed as the node
/// reads its checkpoint. The revision is in `x-raftkv-revision`; the file carries its own
/// checksums. No time limit applies to the whole answer.
async fn backup<S: KvService>(
    State(service): State<S>,
    params: Result<Query<BackupParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let consistency = match params.consistency.as_deref() {
        None => BackupConsistency::Linearizable,
        Some(s) => s.parse().map_err(|e: String| ApiError::bad_request("invalid_consistency", e))?,
    };
    let backup = service.backup(consistency).await?;
    let mut response = Body::from_stream(backup.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(backup_headers::REVISION, HeaderValue::from(backup.revision));
    headers.insert(backup_headers::NODE, HeaderValue::from(backup.node));
    Ok(response)
}
