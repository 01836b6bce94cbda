//! Any node serves any request: writes and leader-only reads sent to a follower are forwarded.

mod support;

use std::time::Duration;

use raftkv::{Consistency, Role};
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_forwards_writes_and_linearizable_reads() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");
    let client = cluster.client_of(follower);
    assert_eq!(cluster.status(follower).await.expect("status").role, Role::Follower);

    phase("writes through a follower");
    let put = client.put("fwd/a b", "1").await.expect("put via follower");
    assert!(put.revision > 0);
    let put2 = client.put("fwd/c", "2").await.expect("put via follower");
    assert!(put2.revision > put.revision, "revisions grow");

    phase("reads at every level through the follower see the write");
    for level in [Consistency::Linearizable, Consistency::Lease] {
        assert_eq!(client.get("fwd/a b", level).await.expect("read"), Some(b"1".to_vec()), "{level}");
    }
    // A stale read is served locally; it catches up quickly.
    support::wait_for(Duration::from_secs(5), "stale read to catch up", || async {
        client.get("fwd/c", Consistency::Stale).await.ok().flatten()
    })
    .await;

    phase("cas and delete through the follower");
    let swapped = client.cas("fwd/c", Some("2"), "3").await.expect("cas");
    assert!(swapped.succeeded);
    assert_eq!(swapped.current.as_deref(), Some("2"));
    let refused = client.cas("fwd/c", Some("2"), "4").await.expect("cas");
    assert!(!refused.succeeded);
    assert_eq!(refused.current.as_deref(), Some("3"));
    let created = client.cas("fwd/new", None, "x").await.expect("cas on absent key");
    assert!(created.succeeded);
    let deleted = client.delete("fwd/a b").await.expect("delete");
    assert!(deleted.deleted);
    let again = client.delete("fwd/a b").await.expect("delete");
    assert!(!again.deleted);
    assert_eq!(client.get("fwd/a b", Consistency::Linearizable).await.expect("read"), None);

    phase("scan through the follower, paged");
    for i in 0..25 {
        client.put(&format!("page/{i:02}"), i.to_string()).await.expect("put");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client.scan("page/", 10, after.as_deref(), Consistency::Linearizable).await.expect("scan");
        seen.extend(page.entries.iter().map(|e| e.key.clone()));
        if !page.more {
            break;
        }
        after = page.next;
    }
    let want: Vec<String> = (0..25).map(|i| format!("page/{i:02}")).collect();
    assert_eq!(seen, want);

    phase("status shows the leader's view of lag");
    let status = cluster.client_of(leader).status().await.expect("status");
    assert_eq!(status.members.len(), 3);
    for m in status.members.values() {
        assert!(m.matched_index.is_some(), "leader reports matched index of {}", m.id);
    }
}
