//! The operations routes: `/livez`, `/readyz`, `/metrics` and the `/ui` dashboard.
//!
//! They are served on the main port beside the API, and alone (with the read-only status,
//! health and events the dashboard polls) on the optional operations port
//! ([`ops_only_router`]), which stays plain HTTP for probes and scrapers.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::api_request::ApiState;
use crate::kv_service::KvService;
use crate::leader_proxy::LeaderProxy;
use crate::probe_routes;

/// The dashboard: one self-contained page (HTML, CSS and script inline; nothing fetched from
/// anywhere but the node serving it).
const DASHBOARD: &str = include_str!("dashboard.html");

/// The content type of the OpenMetrics text format.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
pub(crate) struct OpsState<S> {
    pub(crate) api: ApiState<S>,
    registry: Arc<Registry>,
}

/// `/livez`, `/readyz`, `/metrics` (this node's `registry`) and `/ui`, for the main port.
pub fn ops_router<S: KvService>(service: S, proxy: LeaderProxy, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/livez", get(probe_routes::livez::<S>))
        .route("/readyz", get(probe_routes::readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/ui", get(dashboard))
        .with_state(OpsState { api: ApiState { service, proxy }, registry })
}

/// The operations port: [`ops_router`], plus the read-only `GET /v1/status`,
/// `/v1/cluster/health` and `/v1/cluster/events` the dashboard polls. Nothing that reads keys or
/// changes the cluster is served here.
pub fn ops_only_router<S: KvService>(service: S, proxy: LeaderProxy, registry: Arc<Registry>) -> Router {
    let api = ApiState { service: service.clone(), proxy: proxy.clone() };
    Router::new()
        .route("/v1/status", get(crate::client_router::status::<S>))
        .route("/v1/cluster/health", get(crate::cluster_router::health::<S>))
        .route("/v1/cluster/events", get(crate::cluster_router::events::<S>))
        .with_state(api)
        .merge(ops_router(service, proxy, registry))
        .fallback(crate::client_router::no_route)
}

/// `GET /metrics`: the Prometheus text format, or OpenMetrics when the scraper asks for it
/// (`Accept: application/openmetrics-text`).
async fn metrics<S: KvService>(State(s): State<OpsState<S>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
    let mut body = String::with_capacity(16 << 10);
    let (encoded, content_type) = if openmetrics {
        (prometheus_client::encoding::text::encode(&mut body, &s.registry), OPENMETRICS_CONTENT_TYPE)
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &s.registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    if let Err(e) = encoded {
        return crate::ApiError::Internal(format!("encoding metrics: {e}")).into_response();
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        DASHBOARD,
    )
        .into_response()
}
