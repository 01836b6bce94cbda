//! A founding member that comes back with an empty data directory (a lost volume; a Kubernetes
//! pod rescheduled onto a new disk) while the others hold the cluster: it must not found a
//! cluster of its own. It starts empty, and the leader brings it back with the cluster's data.

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, ClusterOptions, phase, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_with_an_empty_volume_rejoins_instead_of_founding() {
    // A short snapshot interval: the returning member is brought back by a snapshot.
    let opts = ClusterOptions {
        extra_args: vec!["--snapshot-every".into(), "50".into(), "--keep-logs".into(), "10".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(opts).await;
    let client = cluster.client();
    for i in 0..200 {
        client.put(&format!("k{i}"), format!("v{i}")).await.expect("write");
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let cluster_id = cluster.leader_status().await.unwrap().cluster_id.expect("founded");

    phase("a follower loses its volume and starts again with --initial-cluster");
    let lost = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    cluster.node(lost).kill9();
    let dir = cluster.node(lost).data_dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();
    cluster.node(lost).start();

    phase("it is brought back into the same cluster, with its data");
    let committed = cluster.wait_caught_up(lost, Duration::from_secs(30)).await;
    let status = cluster.status(lost).await.expect("status of the returning node");
    assert_eq!(status.cluster_id.as_deref(), Some(cluster_id.as_str()), "same cluster, not a new one");
    assert!(status.applied_index >= committed);
    let returned = cluster.client_of(lost);
    assert_eq!(returned.get("k7", Consistency::Stale).await.unwrap(), Some(b"v7".to_vec()));
    for node in &cluster.nodes {
        let s = cluster.status(node.id).await.expect("status");
        assert_eq!(s.cluster_id.as_deref(), Some(cluster_id.as_str()), "node {}", node.id);
    }
    let log = std::fs::read_to_string(&cluster.node(lost).log).unwrap();
    assert!(log.contains("not initialising a new one"), "{log}");
    // The leader was told, and replicated to it from the beginning.
    let told = cluster
        .nodes
        .iter()
        .filter(|n| n.id != lost)
        .any(|n| std::fs::read_to_string(&n.log).is_ok_and(|l| l.contains("a member lost its data")));
    assert!(told, "no leader logged the data-lost notice");

    phase("writes go on with it as a voter");
    wait_for(Duration::from_secs(20), "the returning node acknowledging the leader", || async {
        let status = cluster.leader_status().await?;
        (status.members.get(&lost)?.reachable == Some(true)).then_some(())
    })
    .await;
    client.put("after", "1").await.expect("write after its return");
}
