//! Forwarding client requests from a follower to the leader.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use raftkv_types::PeerNode;

use crate::api_error::ApiError;
use crate::error::{NetworkError, Result};
use crate::peer_transport::PeerTransport;

/// Header set on a forwarded request. A node never forwards a request that carries it, so a
/// stale leader hint cannot make requests bounce between nodes.
pub const FORWARDED_HEADER: &str = "x-raftkv-forwarded";

/// Header set on the answer to a forwarded request: the base URL of the leader that served it, so
/// that a client can send its next writes there directly.
pub const LEADER_HEADER: &str = "x-raftkv-leader";

/// A client request as received, kept so that it can be replayed to the leader.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// The method.
    pub method: Method,
    /// Path and query, e.g. `/v1/kv/a?consistency=lease`.
    pub path_and_query: String,
    /// The body.
    pub body: Bytes,
    /// Whether another node already forwarded it here.
    pub forwarded: bool,
    /// Headers that go along to the leader (those of exactly-once writes).
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
}

/// Replays client requests to the leader over pooled keep-alive connections and relays the answer
/// unchanged.
#[derive(Clone)]
pub struct LeaderProxy {
    http: reqwest::Client,
    transport: PeerTransport,
}

impl LeaderProxy {
    /// A proxy with its own connection pool, reaching the leader over `transport` (with peer
    /// TLS, the leader sees this node's member certificate and the caller's credentials).
    pub fn new(transport: PeerTransport) -> Result<LeaderProxy> {
        let builder = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2));
        let http = transport.http_client(builder).map_err(NetworkError::Client)?;
        Ok(LeaderProxy { http, transport })
    }

    /// Sends `req` to `leader` and returns its answer. A leader that cannot be connected to is
    /// [`ForwardError::Unreachable`]: the request certainly did nothing. If the answer is lost
    /// after sending a write, its outcome is unknown (504).
    pub async fn forward(
        &self,
        leader: &PeerNode,
        req: &ReceivedRequest,
        timeout: Duration,
    ) -> Result<Response, ForwardError> {
        let leader_url = self.transport.url(&leader.addr);
        let url = format!("{leader_url}{}", req.path_and_query);
        let mut request = self.http.request(req.method.clone(), &url).header(FORWARDED_HEADER, "1");
        for (name, value) in &req.headers {
            request = request.header(name.as_str(), value.as_bytes());
        }
        let sent = request.timeout(timeout).body(req.body.clone()).send().await;
        let result = match sent {
            Ok(resp) => {
                let status = resp.status();
                let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
                resp.bytes().await.map(|body| (status, content_type, body))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((status, content_type, body)) => {
                let mut response =
                    (StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY), Body::from(body))
                        .into_response();
                if let Some(ct) = content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                if let Ok(url) = HeaderValue::from_str(&leader_url) {
                    response.headers_mut().insert(LEADER_HEADER, url);
                }
                response.extensions_mut().insert(crate::network_metrics::Relayed);
                Ok(response)
            }
            Err(e) if e.is_connect() => Err(ForwardError::Unreachable(ApiError::Unavailable(format!(
                "leader at {} is unreachable: {e}",
                leader.addr
            )))),
            Err(e) if req.method == Method::GET => Err(ForwardError::Failed(ApiError::Unavailable(format!(
                "read forwarded to leader at {} failed: {e}",
                leader.addr
            )))),
            Err(e) => Err(ForwardError::Failed(ApiError::OutcomeUnknown(format!(
                "write forwarded to leader at {} got no answer ({e}); it may or may not have been applied",
                leader.addr
            )))),
        }
    }
}

/// Why a forward produced no answer from the leader.
#[derive(Debug)]
pub enum ForwardError {
    /// The leader could not be connected to: nothing was sent, and the request may be retried
    /// with the next leader.
    Unreachable(ApiError),
    /// The request was sent but the answer was lost.
    Failed(ApiError),
}
