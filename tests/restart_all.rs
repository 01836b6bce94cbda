//! Stop every node, start them again: all data is there and a leader is elected.

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_all_data() {
    phase("start and write");
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    for i in 0..100 {
        client.put(&format!("key-{i}"), format!("value-{i}")).await.expect("put");
    }
    client.delete("key-7").await.expect("delete");
    let cas = client.cas("key-8", Some("value-8"), "swapped").await.expect("cas");
    assert!(cas.succeeded);

    phase("stop all three cleanly (SIGTERM)");
    for node in &mut cluster.nodes {
        node.terminate();
    }

    phase("start them again");
    for node in &mut cluster.nodes {
        node.start();
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    eprintln!("leader after restart: {leader}");

    phase("all data is there");
    for i in 0..100 {
        let got = client.get(&format!("key-{i}"), Consistency::Linearizable).await.expect("get");
        let want = match i {
            7 => None,
            8 => Some("swapped".to_string()),
            _ => Some(format!("value-{i}")),
        };
        assert_eq!(got, want.map(String::into_bytes), "key-{i}");
    }
    let page = client.scan("key-", 1000, None, Consistency::Linearizable).await.expect("scan");
    assert_eq!(page.entries.len(), 99);
    client.put("after-restart", "ok").await.expect("write after restart");
}
