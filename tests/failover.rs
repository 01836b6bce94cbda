//! Kill -9 the leader under a steady write load: a new leader is elected, writes resume, nothing
//! acknowledged is lost, and the old leader rejoins as a follower and catches up.

mod support;

use std::time::Duration;

use raftkv::{Consistency, Role};
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_no_acknowledged_write() {
    phase("start a three-node cluster");
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(20)).await;

    phase("steady write load through every node");
    let load = WriteLoad::start(&cluster.endpoints(), 6, "failover");
    load.wait_acked_beyond(0, 200, Duration::from_secs(30)).await;

    phase("kill -9 the leader");
    cluster.node(old_leader).kill9();
    let at_kill = load.acked();

    phase("the survivors elect a new leader and accept writes again");
    let new_leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    assert_ne!(new_leader, old_leader);
    load.wait_acked_beyond(at_kill, 200, Duration::from_secs(30)).await;
    let log = load.stop().await;
    eprintln!(
        "acked {}, refused {}, unknown {}; errors: {:?}",
        log.acked.len(),
        log.refused.len(),
        log.unknown.len(),
        log.errors.iter().take(5).collect::<Vec<_>>()
    );

    phase("the old leader restarts, rejoins as a follower and catches up");
    cluster.node(old_leader).start();
    let leader_status = cluster.status(new_leader).await.expect("leader status");
    cluster.wait_applied(old_leader, leader_status.commit_index, Duration::from_secs(30)).await;
    let rejoined = cluster.status(old_leader).await.expect("old leader status");
    assert_eq!(rejoined.role, Role::Follower);
    assert_eq!(rejoined.leader, Some(new_leader));

    phase("every acknowledged write is there, on the leader and on the rejoined node");
    let client = cluster.client();
    let rejoined_client = cluster.client_of(old_leader);
    for (key, value) in &log.acked {
        let got = client.get(key, Consistency::Linearizable).await.expect("read");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost");
        let local = rejoined_client.get(key, Consistency::Stale).await.expect("stale read");
        assert_eq!(local.as_deref(), Some(value.as_bytes()), "rejoined node misses {key}");
    }

    phase("writes refused during the election did not happen");
    for key in &log.refused {
        assert_eq!(
            client.get(key, Consistency::Linearizable).await.expect("read"),
            None,
            "refused write {key} applied"
        );
    }
}
