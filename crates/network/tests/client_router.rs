//! The client API router on its own, with an in-memory service: request parsing, limits and
//! error mapping, driven with `tower::ServiceExt::oneshot`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use raftkv_network::leader_proxy::FORWARDED_HEADER;
use raftkv_network::{ApiError, ApiLimits, ClusterRequest, KvService, LeaderProxy, MembershipChange, client_router};
use raftkv_storage::ScanPage;
use raftkv_types::api::{
    BackupConsistency, Consistency, Durability, LeaderTransferResponse, MembersResponse, NodeStatus, Role,
};
use raftkv_types::health::{AutopilotStatus, AutopilotUpdate, ClusterHealth, EventsResponse, ReplicationStatus};
use raftkv_types::{AutopilotSettings, Command, CommandResult, LeaderToken, NodeId, Outcome};
use serde_json::Value;
use tower::ServiceExt;

/// A single-replica map; `leader: false` makes every request answer "not leader, no leader known".
#[derive(Clone, Default)]
struct MapService {
    map: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    revision: Arc<Mutex<u64>>,
    last_change: Arc<Mutex<Option<MembershipChange>>>,
    last_command: Arc<Mutex<Option<Command>>>,
    last_cluster: Arc<Mutex<Option<ClusterRequest>>>,
    unhealthy: bool,
    follower: bool,
}

impl KvService for MapService {
    fn limits(&self) -> ApiLimits {
        ApiLimits { max_value_bytes: 16, leader_wait: Duration::from_millis(200), ..ApiLimits::default() }
    }

    async fn backup(&self, _: BackupConsistency) -> Result<raftkv_network::BackupStream, ApiError> {
        let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"backup bytes"))]);
        Ok(raftkv_network::BackupStream { revision: *self.revision.lock().unwrap(), node: 1, body: Box::pin(body) })
    }

    async fn await_new_leader(&self, _: Option<NodeId>, deadline: Instant) -> bool {
        tokio::time::sleep_until(deadline.into()).await;
        false
    }

    async fn write(&self, command: Command, _: Durability) -> Result<CommandResult, ApiError> {
        if self.follower {
            return Err(ApiError::NotLeader {
                leader_id: Some(2),
                leader: Some(raftkv_types::PeerNode::new("127.0.0.1:1")),
            });
        }
        *self.last_command.lock().unwrap() = Some(command.clone());
        let command = match command {
            Command::Fenced { command, .. } => *command,
            other => other,
        };
        let mut map = self.map.lock().unwrap();
        let mut rev = self.revision.lock().unwrap();
        *rev += 1;
        let outcome = match command {
            Command::Put { key, value } => {
                map.insert(key, value);
                Outcome::Put
            }
            Command::Delete { key } => Outcome::Delete { deleted: map.remove(&key).is_some() },
            Command::Cas { key, expected, value } => {
                let current = map.get(&key).cloned();
                let succeeded = current == expected;
                if succeeded {
                    map.insert(key, value);
                }
                Outcome::Cas { succeeded, current }
            }
            Command::Txn(txn) => {
                Outcome::Txn(raftkv_types::TxnOutcome { succeeded: txn.compare.is_empty(), results: Vec::new() })
            }
            _ => Outcome::None,
        };
        Ok(CommandResult { revision: *rev, log_index: *rev, outcome })
    }

    async fn read(
        &self,
        key: String,
        _: Consistency,
        _: Option<Duration>,
    ) -> Result<Option<raftkv_types::Versioned>, ApiError> {
        Ok(self.map.lock().unwrap().get(&key).cloned().map(|v| raftkv_types::Versioned::new(v, Default::default())))
    }

    async fn watch(
        &self,
        _: raftkv_types::WatchOptions,
    ) -> Result<futures::stream::BoxStream<'static, raftkv_types::WatchEvent>, ApiError> {
        Err(ApiError::Unavailable("no watches here".into()))
    }

    async fn scan(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        _: Consistency,
    ) -> Result<ScanPage, ApiError> {
        let map = self.map.lock().unwrap();
        let mut entries: Vec<(String, raftkv_types::Versioned)> = map
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && after.as_ref().is_none_or(|a| *k > a))
            .map(|(k, v)| (k.clone(), raftkv_types::Versioned::new(v.clone(), Default::default())))
            .collect();
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok(ScanPage { entries, more })
    }

    async fn status(&self) -> Result<NodeStatus, ApiError> {
        Ok(NodeStatus {
            id: 1,
            cluster_id: None,
            epoch: None,
            revision: *self.revision.lock().unwrap(),
            recovered: None,
            role: Role::Leader,
            term: 1,
            leader: Some(1),
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            snapshot_index: 0,
            replication_lag_ms: Some(0),
            members: BTreeMap::new(),
            replication_mode: None,
            leader_token: None,
            storage: None,
        })
    }

    async fn members(&self) -> Result<MembersResponse, ApiError> {
        Ok(MembersResponse { leader: Some(1), members: Vec::new(), change_in_progress: false })
    }

    async fn change_membership(&self, change: MembershipChange) -> Result<MembersResponse, ApiError> {
        *self.last_change.lock().unwrap() = Some(change);
        self.members().await
    }

    async fn transfer_leader(&self, to: NodeId) -> Result<LeaderTransferResponse, ApiError> {
        Ok(LeaderTransferResponse { leader: to })
    }

    async fn cluster_health(&self) -> Result<ClusterHealth, ApiError> {
        Ok(ClusterHealth {
            healthy: !self.unhealthy,
            failure_tolerance: 0,
            leader: 1,
            voters: 1,
            quorum: 1,
            healthy_voters: 1,
            ready_standbys: 0,
            problems: Vec::new(),
            members: Vec::new(),
            autopilot: self.autopilot().await?,
            replication: self.replication().await?,
        })
    }

    async fn cluster_events(&self) -> Result<EventsResponse, ApiError> {
        Ok(EventsResponse { events: Vec::new() })
    }

    async fn autopilot(&self) -> Result<AutopilotStatus, ApiError> {
        Ok(AutopilotStatus { settings: AutopilotSettings::default(), paused_until_ms: None, last_action: None })
    }

    async fn replication(&self) -> Result<ReplicationStatus, ApiError> {
        Ok(ReplicationStatus { zones: Vec::new(), wait_timeout_ms: 5000, mode: None })
    }

    async fn update_cluster(&self, request: ClusterRequest) -> Result<(), ApiError> {
        *self.last_cluster.lock().unwrap() = Some(request);
        Ok(())
    }
}

async fn call(service: &MapService, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let router = client_router(service.clone(), LeaderProxy::new(raftkv_network::PeerTransport::plain()).unwrap());
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    (status, to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec())
}

fn req(method: &str, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(body.into()).unwrap()
}

fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("JSON error body");
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn round_trip_through_the_router() {
    let s = MapService::default();
    let (st, body) = call(&s, req("PUT", "/v1/kv/a%2Fb", "1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["revision"], 1);
    assert_eq!(call(&s, req("GET", "/v1/kv/a%2Fb", Body::empty())).await, (StatusCode::OK, b"1".to_vec()));
    let (st, body) = call(&s, req("POST", "/v1/kv/a%2Fb/cas", r#"{"expected":"1","value":"2"}"#)).await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((v["succeeded"].clone(), v["current"].clone()), (Value::Bool(true), Value::from("1")));
    let (_, body) = call(&s, req("GET", "/v1/kv?prefix=a&limit=1", Body::empty())).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["entries"][0]["key"], "a/b");
    let (st, body) = call(&s, req("DELETE", "/v1/kv/a%2Fb", Body::empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["deleted"], true);
}

#[tokio::test]
async fn bad_requests_map_to_documented_errors() {
    let s = MapService::default();
    let cases = [
        (req("PUT", "/v1/kv/", "x"), StatusCode::BAD_REQUEST, "invalid_key"),
        (req("GET", "/v1/kv/k?consistency=strong", Body::empty()), StatusCode::BAD_REQUEST, "invalid_consistency"),
        (req("PUT", "/v1/kv/k", vec![0u8; 17]), StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
        (req("POST", "/v1/kv/k/cas", "[]"), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            req("POST", "/v1/kv/k/cas", r#"{"expected":null,"value":"xxxxxxxxxxxxxxxxx"}"#),
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
        ),
        (req("POST", "/v1/kv/k/cas", r#"{"value":"x","extra":1}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("GET", "/v1/kv/missing", Body::empty()), StatusCode::NOT_FOUND, "key_not_found"),
        (req("GET", "/v1/kv?limit=100000", Body::empty()), StatusCode::BAD_REQUEST, "invalid_limit"),
        (req("PATCH", "/v1/kv/k", Body::empty()), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (req("GET", "/elsewhere", Body::empty()), StatusCode::NOT_FOUND, "not_found"),
        (req("PUT", "/v1/kv/k?durability=some", "x"), StatusCode::BAD_REQUEST, "invalid_durability"),
        (
            req("GET", "/v1/kv/k?consistency=stale&max_lag_ms=soon", Body::empty()),
            StatusCode::BAD_REQUEST,
            "invalid_max_lag",
        ),
        (req("GET", "/v1/kv/k?max_lag_ms=100", Body::empty()), StatusCode::BAD_REQUEST, "invalid_max_lag"),
        (req("POST", "/v1/cluster/members", r#"{"id":0,"addr":"h:1"}"#), StatusCode::BAD_REQUEST, "invalid_member_id"),
        (req("POST", "/v1/cluster/members", r#"{"id":4,"addr":"nowhere"}"#), StatusCode::BAD_REQUEST, "invalid_addr"),
        (req("POST", "/v1/cluster/members", r#"{"id":"four"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("POST", "/v1/cluster/members/x/promote", Body::empty()), StatusCode::BAD_REQUEST, "invalid_member_id"),
        (req("DELETE", "/v1/cluster/members/-1", Body::empty()), StatusCode::BAD_REQUEST, "invalid_member_id"),
        (req("DELETE", "/v1/cluster/members/2?force=maybe", Body::empty()), StatusCode::BAD_REQUEST, "invalid_query"),
        (req("POST", "/v1/cluster/leader", r#"{"to":"two"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("PUT", "/v1/kv/k?leader_token=7-2", "x"), StatusCode::BAD_REQUEST, "invalid_leader_token"),
        (req("PUT", "/v1/cluster/autopilot", r#"{"dead_after_ms":"soon"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("PUT", "/v1/cluster/autopilot", r#"{"dead_after":60}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("PUT", "/v1/cluster/autopilot", r#"{"enabled":"yes"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("POST", "/v1/cluster/autopilot/pause", r#"{"for_ms":-1}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("PUT", "/v1/cluster/replication", r#"{"zones":"dr"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        (req("POST", "/v1/cluster/leaving", r#"{"id":0,"for_ms":1000}"#), StatusCode::BAD_REQUEST, "invalid_member_id"),
        (
            req("POST", "/v1/cluster/members/x/standby", r#"{"standby":true}"#),
            StatusCode::BAD_REQUEST,
            "invalid_member_id",
        ),
        (req("POST", "/v1/cluster/members/4/standby", r#"{"standby":1}"#), StatusCode::BAD_REQUEST, "invalid_json"),
    ];
    for (request, status, want) in cases {
        let uri = request.uri().clone();
        let (st, body) = call(&s, request).await;
        assert_eq!(st, status, "{uri}");
        if !want.is_empty() {
            assert_eq!(code(&body), want, "{uri}");
        }
    }
    assert!(s.map.lock().unwrap().is_empty(), "bad requests wrote nothing");
    assert!(s.last_change.lock().unwrap().is_none(), "bad requests changed no membership");
    assert!(s.last_cluster.lock().unwrap().is_none(), "bad requests changed no cluster setting");
}

#[tokio::test]
async fn cluster_operations_reach_the_service() {
    let s = MapService::default();
    let (st, body) = call(&s, req("PUT", "/v1/cluster/autopilot", r#"{"enabled":true,"dead_after_ms":9000}"#)).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let update = AutopilotUpdate { enabled: Some(true), dead_after_ms: Some(9000), ..AutopilotUpdate::default() };
    assert_eq!(*s.last_cluster.lock().unwrap(), Some(ClusterRequest::Autopilot(update)));
    let (st, _) = call(&s, req("POST", "/v1/cluster/members/4/standby", r#"{"standby":true}"#)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(*s.last_cluster.lock().unwrap(), Some(ClusterRequest::Standby { id: 4, standby: true }));
    let (st, _) = call(&s, req("POST", "/v1/cluster/leaving", r#"{"id":2,"for_ms":60000}"#)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // Health answers 200 when healthy and 429 with the same body when not.
    let (st, body) = call(&s, req("GET", "/v1/cluster/health", Body::empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["healthy"], true);
    let sick = MapService { unhealthy: true, ..MapService::default() };
    let (st, body) = call(&sick, req("GET", "/v1/cluster/health", Body::empty())).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["healthy"], false);

    // A write with a leader token is proposed fenced by it.
    let (st, _) = call(&s, req("PUT", "/v1/kv/job?leader_token=7-2-130", "x")).await;
    assert_eq!(st, StatusCode::OK);
    let token = LeaderToken { term: 7, leader: 2, since_index: 130 };
    let fenced = Command::Fenced { token, command: Box::new(Command::Put { key: "job".into(), value: b"x".to_vec() }) };
    assert_eq!(*s.last_command.lock().unwrap(), Some(fenced));
}

#[tokio::test]
async fn admin_routes_reach_the_service() {
    let s = MapService::default();
    let cases = [
        (
            req("POST", "/v1/cluster/members", r#"{"id":4,"addr":"127.0.0.1:7004"}"#),
            MembershipChange::AddLearner { id: 4, addr: "127.0.0.1:7004".into(), zone: None, standby: false },
        ),
        (
            req("POST", "/v1/cluster/members/4/promote", Body::empty()),
            MembershipChange::Promote { id: 4, force: false },
        ),
        (
            req("DELETE", "/v1/cluster/members/2?force=true", Body::empty()),
            MembershipChange::Remove { id: 2, force: true },
        ),
        (
            req("POST", "/v1/cluster/members/3/replace", r#"{"id":5,"addr":"127.0.0.1:7005"}"#),
            MembershipChange::Replace { old: 3, new: 5, addr: "127.0.0.1:7005".into(), force: false },
        ),
    ];
    for (request, want) in cases {
        let uri = request.uri().clone();
        let (st, _) = call(&s, request).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        assert_eq!(s.last_change.lock().unwrap().take(), Some(want), "{uri}");
    }
    let (st, body) = call(&s, req("POST", "/v1/cluster/leader", r#"{"to":3}"#)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["leader"], 3);
    let (st, body) = call(&s, req("GET", "/v1/cluster/members", Body::empty())).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["leader"], 1);
}

#[tokio::test]
async fn a_forwarded_request_is_not_forwarded_again() {
    let s = MapService { follower: true, ..MapService::default() };
    let request =
        Request::builder().method("PUT").uri("/v1/kv/k").header(FORWARDED_HEADER, "1").body(Body::from("v")).unwrap();
    let (st, body) = call(&s, request).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "not_leader");

    // Without the header the follower forwards; the leader it names (port 1) stays unreachable
    // through the leader wait, which certainly did nothing: 503, not 504.
    let (st, body) = call(&s, req("PUT", "/v1/kv/k", "v")).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "unavailable");
}
