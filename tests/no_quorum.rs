//! With a majority down, the survivor refuses writes and linearizable reads with a retryable 503
//! (nothing applied), still answers stale reads, and recovers when a peer returns.

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_refuses_writes_and_recovers() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let client = cluster.client_of(leader);
    client.put("before", "1").await.expect("put");
    let followers: Vec<u64> = cluster.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();

    phase("stop both followers");
    for id in &followers {
        cluster.node(*id).terminate();
    }

    phase("the lone leader refuses writes once its lease lapses: 503, not applied");
    // A write proposed while the lease still held times out with outcome_unknown; after that the
    // leader refuses before proposing.
    let mut attempt = 0;
    let (refused_key, err) = support::wait_for(Duration::from_secs(30), "a write to be refused", || {
        attempt += 1;
        let key = format!("during-{attempt}");
        let client = client.clone();
        async move {
            match client.put(&key, "x").await {
                Err(e) if matches!(e.code(), Some("unavailable" | "no_leader")) => Some((key, e)),
                Err(e) if e.code() == Some("outcome_unknown") => None,
                Err(e) => panic!("expected a retryable refusal, got {e}"),
                Ok(_) => panic!("a write succeeded without a quorum"),
            }
        }
    })
    .await;
    assert!(!err.may_have_applied(), "{err}");

    phase("linearizable reads fail, stale reads still answer");
    let read = client.get("before", Consistency::Linearizable).await.expect_err("no quorum for a linearizable read");
    assert!(matches!(read.code(), Some("unavailable" | "no_leader")), "{read}");
    assert_eq!(client.get("before", Consistency::Stale).await.expect("stale read"), Some(b"1".to_vec()));

    phase("a follower returns: a quorum again, writes succeed");
    cluster.node(followers[0]).start();
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let client = cluster.client();
    support::wait_for(Duration::from_secs(20), "a write to succeed", || async { client.put("after", "2").await.ok() })
        .await;
    assert_eq!(client.get("after", Consistency::Linearizable).await.expect("read"), Some(b"2".to_vec()));
    assert_eq!(client.get(&refused_key, Consistency::Linearizable).await.expect("read"), None, "refused write applied");
}
