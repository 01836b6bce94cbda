//! The cluster-operations routes under `/v1/cluster/`: health, events, the autopilot, sync
//! zones, planned restarts and standby flags. All are served by the leader; other nodes forward.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use raftkv_types::health::{AutopilotPause, AutopilotUpdate, LeavingNotice, ReplicationUpdate, StandbyFlag};

use crate::api_error::ApiError;
use crate::api_request::{ApiState, Origin, json_of, member_id_of, parsed};
use crate::kv_service::{ClusterRequest, KvService};
use crate::leader_proxy::LeaderProxy;

/// The `/v1/cluster/*` operations routes.
pub fn cluster_router<S: KvService>(service: S, proxy: LeaderProxy) -> Router {
    Router::new()
        .route("/v1/cluster/health", get(health::<S>))
        .route("/v1/cluster/events", get(events::<S>))
        .route("/v1/cluster/autopilot", get(autopilot::<S>).put(set_autopilot::<S>))
        .route("/v1/cluster/autopilot/pause", post(pause_autopilot::<S>))
        .route("/v1/cluster/replication", get(replication::<S>).put(set_replication::<S>))
        .route("/v1/cluster/leaving", post(leaving::<S>))
        .route("/v1/cluster/members/{id}/standby", post(standby::<S>))
        .with_state(ApiState { service, proxy })
}

/// `200` with the health when healthy, `429` with the same body when not (as Consul does), so
/// that a monitor can use the status code alone.
pub(crate) async fn health<S: KvService>(State(s): State<ApiState<S>>, origin: Origin) -> Response {
    s.serve(origin.with_body(Bytes::new()), || async {
        let health = s.service.cluster_health().await?;
        let status = if health.healthy { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        Ok((status, Json(health)).into_response())
    })
    .await
}

pub(crate) async fn events<S: KvService>(State(s): State<ApiState<S>>, origin: Origin) -> Response {
    s.serve(origin.with_body(Bytes::new()), || async { Ok(Json(s.service.cluster_events().await?).into_response()) })
        .await
}

async fn autopilot<S: KvService>(State(s): State<ApiState<S>>, origin: Origin) -> Response {
    s.serve(origin.with_body(Bytes::new()), || async { Ok(Json(s.service.autopilot().await?).into_response()) }).await
}

async fn set_autopilot<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let update: AutopilotUpdate = parsed!(json_of("autopilot settings", &body));
    update_then(&s, origin, body, ClusterRequest::Autopilot(update), Answer::Autopilot).await
}

async fn pause_autopilot<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let pause: AutopilotPause = parsed!(json_of("autopilot pause", &body));
    update_then(&s, origin, body, ClusterRequest::PauseAutopilot { for_ms: pause.for_ms }, Answer::Autopilot).await
}

async fn replication<S: KvService>(State(s): State<ApiState<S>>, origin: Origin) -> Response {
    s.serve(origin.with_body(Bytes::new()), || async { Ok(Json(s.service.replication().await?).into_response()) }).await
}

async fn set_replication<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let update: ReplicationUpdate = parsed!(json_of("replication settings", &body));
    update_then(&s, origin, body, ClusterRequest::Replication(update), Answer::Replication).await
}

async fn leaving<S: KvService>(State(s): State<ApiState<S>>, origin: Origin, body: Bytes) -> Response {
    let notice: LeavingNotice = parsed!(json_of("leaving notice", &body));
    if notice.id == 0 {
        return ApiError::bad_request("invalid_member_id", "member id must be a positive integer, got 0")
            .into_response();
    }
    update_then(&s, origin, body, ClusterRequest::Leaving(notice), Answer::Health).await
}

async fn standby<S: KvService>(
    State(s): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    origin: Origin,
    body: Bytes,
) -> Response {
    let id = parsed!(member_id_of(path));
    let flag: StandbyFlag = parsed!(json_of("standby flag", &body));
    let request = ClusterRequest::Standby { id, standby: flag.standby };
    let req = origin.with_body(body);
    s.serve(req, || async {
        s.service.update_cluster(request.clone()).await?;
        Ok(Json(s.service.members().await?).into_response())
    })
    .await
}

/// What a change answers with.
#[derive(Clone, Copy)]
enum Answer {
    Autopilot,
    Replication,
    Health,
}

/// Applies `request` on the leader, then answers with the view `answer` names.
async fn update_then<S: KvService>(
    s: &ApiState<S>,
    origin: Origin,
    body: Bytes,
    request: ClusterRequest,
    answer: Answer,
) -> Response {
    s.serve(origin.with_body(body), || async {
        s.service.update_cluster(request.clone()).await?;
        Ok(match answer {
            Answer::Autopilot => Json(s.service.autopilot().await?).into_response(),
            Answer::Replication => Json(s.service.replication().await?).into_response(),
            // A leaving notice needs no view: the health shows it.
            Answer::Health => StatusCode::NO_CONTENT.into_response(),
        })
    })
    .await
}
