//! [`NetworkMetrics`]: the HTTP API's requests and the traffic with each peer, for Prometheus.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use raftkv_types::NodeId;

/// Labels of a client or peer HTTP request: the route pattern (`/v1/kv/{key}`, never the path
/// itself, so that keys never reach a label), the method and the status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route, or `unmatched`.
    pub route: String,
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The status code answered.
    pub code: u16,
}

/// Labels of a request's duration: route pattern and method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route, or `unmatched`.
    pub route: String,
    /// `GET`, `PUT`, ...
    pub method: String,
}

/// Labels of the traffic with one peer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's node id.
    pub peer: String,
}

impl PeerLabels {
    /// The labels of node `id`.
    pub fn of(id: NodeId) -> PeerLabels {
        PeerLabels { peer: id.to_string() }
    }
}

/// Labels of a configuration file's reload: which file, and whether the new version was taken.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `auth`, `tls` or `peer_tls`.
    pub file: String,
    /// `ok`, or `failed` (the previous version stays in force).
    pub result: String,
}

impl ReloadLabels {
    /// The labels of a reload of `file` that ended in `result`.
    pub fn of(file: &str, result: &str) -> ReloadLabels {
        ReloadLabels { file: file.to_string(), result: result.to_string() }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The network layer's metrics. Cheap to clone: clones share the values.
#[derive(Debug, Clone)]
pub struct NetworkMetrics {
    /// HTTP requests answered, by route pattern, method and status.
    pub http_requests: Family<RequestLabels, Counter>,
    /// Seconds from a request's arrival to its answer's head, by route pattern and method.
    pub http_request_duration: HistogramFamily<RouteLabels>,
    /// Requests being served now.
    pub http_in_flight: Gauge,
    /// Client requests this node relayed to the leader.
    pub forwarded: Counter,
    /// `outcome_unknown` answers given: writes whose outcome this node could not learn.
    pub outcome_unknown: Counter,
    /// Bytes of Raft RPCs sent to each peer (replication, votes, snapshots).
    pub peer_sent_bytes: Family<PeerLabels, Counter>,
    /// Bytes of Raft RPC answers received from each peer.
    pub peer_received_bytes: Family<PeerLabels, Counter>,
    /// Raft RPCs to each peer that failed (unreachable, timed out, broken connection).
    pub peer_sent_failures: Family<PeerLabels, Counter>,
    /// Round trip of a heartbeat to each peer: the network and the peer's answer (no entries to
    /// write).
    pub peer_round_trip: HistogramFamily<PeerLabels>,
    /// Seconds to send a snapshot to a peer (as far as its answer).
    pub snapshot_send_duration: HistogramFamily<PeerLabels>,
    /// Bytes of snapshots sent to each peer.
    pub snapshot_sent_bytes: Family<PeerLabels, Counter>,
    /// Reloads of the auth file and the TLS files, taken or refused.
    pub config_reloads: Family<ReloadLabels, Counter>,
}

fn request_buckets() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn rtt_buckets() -> Histogram {
    // 100 µs to about 1.6 s, as etcd's peer_round_trip_time_seconds.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

fn snapshot_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

impl Default for NetworkMetrics {
    fn default() -> NetworkMetrics {
        NetworkMetrics {
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(request_buckets),
            http_in_flight: Gauge::default(),
            forwarded: Counter::default(),
            outcome_unknown: Counter::default(),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            peer_sent_failures: Family::default(),
            peer_round_trip: Family::new_with_constructor(rtt_buckets),
            snapshot_send_duration: Family::new_with_constructor(snapshot_buckets),
            snapshot_sent_bytes: Family::default(),
            config_reloads: Family::default(),
        }
    }
}

/// A response produced here (not relayed from the leader) for an [`ApiError`](crate::ApiError):
/// its code, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// A response relayed from the leader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relayed;

impl NetworkMetrics {
    /// Registers every metric under `registry` (names without the `raftkv_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("http_requests", "HTTP requests answered", self.http_requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response head)",
            Unit::Seconds,
            self.http_request_duration.clone(),
        );
        registry.register("http_requests_in_flight", "HTTP requests being served", self.http_in_flight.clone());
        registry.register("kv_forwarded", "Client requests relayed to the leader", self.forwarded.clone());
        registry.register(
            "kv_outcome_unknown",
            "Answers of outcome_unknown: writes whose outcome could not be learned",
            self.outcome_unknown.clone(),
        );
        registry.register_with_unit(
            "network_peer_sent",
            "Bytes of Raft RPCs sent to a peer",
            Unit::Bytes,
            self.peer_sent_bytes.clone(),
        );
        registry.register_with_unit(
            "network_peer_received",
            "Bytes of Raft RPC answers received from a peer",
            Unit::Bytes,
            self.peer_received_bytes.clone(),
        );
        registry.register(
            "network_peer_sent_failures",
            "Raft RPCs to a peer that failed",
            self.peer_sent_failures.clone(),
        );
        registry.register_with_unit(
            "network_peer_round_trip_time",
            "Round trip of a heartbeat to a peer",
            Unit::Seconds,
            self.peer_round_trip.clone(),
        );
        registry.register_with_unit(
            "snapshot_send_duration",
            "Time to send a snapshot to a peer",
            Unit::Seconds,
            self.snapshot_send_duration.clone(),
        );
        registry.register_with_unit(
            "snapshot_sent",
            "Bytes of snapshots sent to a peer",
            Unit::Bytes,
            self.snapshot_sent_bytes.clone(),
        );
        registry.register(
            "config_reloads",
            "Reloads of the auth file and TLS files after they changed (result=failed: the previous version stays)",
            self.config_reloads.clone(),
        );
    }

    /// Counts a peer RPC: bytes each way, or a failure.
    pub(crate) fn peer_rpc(&self, peer: NodeId, sent: usize, received: Option<usize>) {
        let labels = PeerLabels::of(peer);
        self.peer_sent_bytes.get_or_create(&labels).inc_by(sent as u64);
        match received {
            Some(n) => {
                self.peer_received_bytes.get_or_create(&labels).inc_by(n as u64);
            }
            None => {
                self.peer_sent_failures.get_or_create(&labels).inc();
            }
        }
    }
}

/// Axum middleware: counts and times every request by route pattern.
pub async fn track_requests(State(metrics): State<NetworkMetrics>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    metrics.http_in_flight.inc();
    let response = next.run(request).await;
    metrics.http_in_flight.dec();
    let code = response.status().as_u16();
    metrics
        .http_request_duration
        .get_or_create(&RouteLabels { route: route.clone(), method: method.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.http_requests.get_or_create(&RequestLabels { route, method, code }).inc();
    if response.extensions().get::<Relayed>().is_some() {
        metrics.forwarded.inc();
    }
    if response.extensions().get::<ErrorCode>().is_some_and(|c| c.0 == "outcome_unknown") {
        metrics.outcome_unknown.inc();
    }
    response
}
