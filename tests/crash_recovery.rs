//! SIGKILL in the middle of a stream of acknowledged writes: after restart every acknowledged
//! write is present. Acknowledged means fsynced on a majority, so it survives even when every
//! node is killed at once.

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase};

async fn kill_all_mid_stream_then_verify(nodes: u64) {
    phase(&format!("start a {nodes}-node cluster and a write stream"));
    let mut cluster = Cluster::start(ClusterOptions { nodes, ..Default::default() }).await;
    let load = WriteLoad::start(&cluster.endpoints(), 8, "crash");
    load.wait_acked_beyond(0, 300, Duration::from_secs(30)).await;

    phase("SIGKILL every node while writes are in flight");
    for node in &mut cluster.nodes {
        node.kill9();
    }
    let log = load.stop().await;
    assert!(log.acked.len() >= 300);

    phase("restart");
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await;

    phase(&format!("all {} acknowledged writes are present", log.acked.len()));
    let client = cluster.client();
    for (key, value) in &log.acked {
        let got = client.get(key, Consistency::Linearizable).await.expect("read");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost in the crash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_sigkill_loses_no_acknowledged_write() {
    kill_all_mid_stream_then_verify(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_sigkill_loses_no_acknowledged_write() {
    kill_all_mid_stream_then_verify(3).await;
}
