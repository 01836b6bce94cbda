//! `GET /metrics` of in-process nodes: the Prometheus text format (and OpenMetrics), each node's
//! own metrics (three nodes in one process do not mix), writes moving the write counters and the
//! fsync histogram, no key in any label, the registry an embedding service merges them into, and
//! the plain operations port.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use prometheus_client::registry::Registry;
use prometheus_parse::{Scrape, Value};
use raftkv_node::{Node, NodeConfig};

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

async fn scrape(base: &str) -> (String, Scrape) {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
    (text, parsed)
}

/// The value of `name` with these labels (all of them must match), summed over the rest.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => 0.0,
        })
        .sum()
}

fn has(scrape: &Scrape, name: &str) -> bool {
    scrape.samples.iter().any(|s| s.metric == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_exports_its_own_metrics_and_writes_move_them() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let mut config =
            NodeConfig::new(*id, addr.clone(), dirs[*id as usize - 1].path()).with_initial_cluster(members.clone());
        config.ops_listen = Some("127.0.0.1:0".into());
        nodes.push(Node::start(config).await.unwrap());
    }
    let leader_id = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let leader = nodes.iter().find(|n| n.id() == leader_id).unwrap();
    leader.put("warm-up", "1").await.unwrap();

    let (_, before) = scrape(&leader.url()).await;
    let committed_before = value(&before, "raftkv_raft_proposals_total", &[("result", "committed")]);
    let fsyncs_before = value(&before, "raftkv_disk_wal_fsync_duration_seconds_count", &[]);
    let http = reqwest::Client::new();
    for i in 0..20 {
        let put = http.put(format!("{}/v1/kv/secret-key-{i}", leader.url())).body("v").send().await.unwrap();
        assert!(put.status().is_success());
    }
    let (text, after) = scrape(&leader.url()).await;
    assert!(
        value(&after, "raftkv_raft_proposals_total", &[("result", "committed")]) >= committed_before + 20.0,
        "{text}"
    );
    assert!(value(&after, "raftkv_disk_wal_fsync_duration_seconds_count", &[]) > fsyncs_before, "{text}");
    assert!(value(&after, "raftkv_disk_wal_fsync_entries_sum", &[]) > 0.0, "{text}");
    // (prometheus-parse misreads braces inside label values: read this line as it is.)
    let puts: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"raftkv_http_requests_total{route="/v1/kv/{key}",method="PUT",code="200"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(puts >= 20.0, "{text}");
    assert!(!text.contains("secret-key"), "a key in a label: {text}");

    phase_check_leader_view(&after, &text, leader_id);
    // Heartbeats go out every 100 ms: their round trips show up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (text, now) = scrape(&leader.url()).await;
        if value(&now, "raftkv_network_peer_round_trip_time_seconds_count", &[]) > 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no heartbeat round trip recorded: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every node: its own id, one leader among them, the same commit index eventually.
    let mut leaders = 0.0;
    for node in &nodes {
        // The disk monitor measures every 500 ms: its first figures may be a moment away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (text, own) = loop {
            let (text, own) = scrape(&node.url()).await;
            if has(&own, "raftkv_disk_free_bytes") || tokio::time::Instant::now() > deadline {
                break (text, own);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let id = node.id().to_string();
        assert_eq!(value(&own, "raftkv_node_info", &[("node_id", &id)]), 1.0, "{text}");
        assert_eq!(
            own.samples.iter().filter(|s| s.metric == "raftkv_node_info").count(),
            1,
            "one node per registry: {text}"
        );
        assert_eq!(value(&own, "raftkv_server_has_leader", &[]), 1.0);
        leaders += value(&own, "raftkv_server_is_leader", &[]);
        for name in [
            "raftkv_raft_term",
            "raftkv_raft_applied_index",
            "raftkv_raft_snapshot_index",
            "raftkv_raft_purged_index",
            "raftkv_rocksdb_memtable_bytes",
            "raftkv_rocksdb_pending_compaction_bytes",
            "raftkv_rocksdb_write_stops_total",
            "raftkv_disk_free_bytes",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
        ] {
            assert!(has(&own, name), "node {id} lacks {name}: {text}");
        }
        if node.id() != leader_id {
            // A follower holds the leader's entries: it appended and fsynced them too.
            assert!(value(&own, "raftkv_disk_wal_fsync_duration_seconds_count", &[]) > 0.0, "{text}");
            assert!(!has(&own, "raftkv_replication_lag_entries"), "replication is the leader's view: {text}");
        }

        // The operations port serves the same metrics, the probes and the dashboard, and no key.
        let ops = format!("http://{}", node.ops_addr().expect("ops port"));
        let (_, ops_scrape) = scrape(&ops).await;
        assert_eq!(value(&ops_scrape, "raftkv_node_info", &[("node_id", &id)]), 1.0);
        assert_eq!(reqwest::get(format!("{ops}/livez")).await.unwrap().status(), 200);
        let ui = reqwest::get(format!("{ops}/ui")).await.unwrap();
        assert!(ui.text().await.unwrap().contains("<title>raftkv</title>"));
        assert_eq!(reqwest::get(format!("{ops}/v1/kv/warm-up")).await.unwrap().status(), 404);
    }
    assert_eq!(leaders, 1.0, "exactly one node says it leads");

    // OpenMetrics when asked.
    let open = http
        .get(format!("{}/metrics", leader.url()))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(open.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    // An embedding service's own registry: the node's families join it, under a label of its own.
    let mut registry = Registry::default();
    leader.register_metrics(registry.sub_registry_with_label(("node".into(), leader_id.to_string().into())));
    let mut merged = String::new();
    prometheus_client::encoding::text::encode(&mut merged, &registry).unwrap();
    assert!(merged.contains(&format!("raftkv_server_is_leader{{node=\"{leader_id}\"}} 1")), "{merged}");
    assert!(!merged.contains("process_cpu"), "the process's metrics stay the service's own");
    assert_eq!(leader.encode_metrics(false).lines().filter(|l| l.starts_with("raftkv_node_info")).count(), 1);

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// What only the leader exports: replication per member and the failure tolerance.
fn phase_check_leader_view(scrape: &Scrape, text: &str, leader_id: u64) {
    assert_eq!(value(scrape, "raftkv_server_is_leader", &[]), 1.0, "{text}");
    assert_eq!(value(scrape, "raftkv_raft_failure_tolerance", &[]), 1.0, "{text}");
    for peer in (1..=3u64).filter(|p| *p != leader_id) {
        let peer = peer.to_string();
        assert!(value(scrape, "raftkv_replication_matched_index", &[("peer", &peer)]) > 0.0, "{text}");
        assert!(has(scrape, "raftkv_replication_lag_entries"), "{text}");
        assert!(value(scrape, "raftkv_network_peer_sent_bytes_total", &[("peer", &peer)]) > 0.0, "{text}");
        assert!(value(scrape, "raftkv_network_peer_received_bytes_total", &[("peer", &peer)]) > 0.0, "{text}");
    }
}
