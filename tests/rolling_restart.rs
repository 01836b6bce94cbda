//! The documented rolling restart (docs/operations.md), on real processes with a client writing
//! throughout: for each node, move leadership away if it leads, stop it with SIGTERM, start it
//! again and wait until it has caught up. No acknowledged write may be lost, and no write may
//! fail with anything but a retryable error (one that says it certainly did nothing).

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    let load = WriteLoad::start(&cluster.endpoints(), 4, "rolling");
    load.wait_acked_beyond(0, 50, Duration::from_secs(20)).await;

    for id in [1, 2, 3] {
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
        if leader == id {
            let to = [1, 2, 3].into_iter().find(|other| *other != id).unwrap();
            phase(&format!("node {id} leads: transfer leadership to node {to}"));
            let moved = client.transfer_leader(to).await.expect("leader transfer");
            assert_eq!(moved.leader, to);
        }
        phase(&format!("restart node {id}"));
        cluster.node(id).terminate();
        let acked = load.acked();
        load.wait_acked_beyond(acked, 20, Duration::from_secs(20)).await;
        cluster.node(id).start();
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
    }
    let acked = load.acked();
    load.wait_acked_beyond(acked, 20, Duration::from_secs(20)).await;
    let log = load.stop().await;

    phase("check");
    eprintln!(
        "acked {}, refused {}, unknown {}, longest stall {:?}, errors {:?}",
        log.acked.len(),
        log.refused.len(),
        log.unknown.len(),
        log.longest_stall,
        log.errors.iter().take(5).collect::<Vec<_>>()
    );
    assert!(log.unknown.is_empty(), "writes with unknown outcome during a rolling restart: {:?}", log.errors);
    for (key, value) in &log.acked {
        let got = client.get(key, Consistency::Linearizable).await.expect("read back");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost");
    }
}
