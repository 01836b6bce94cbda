//! Leases on three in-process nodes: keys that vanish on every replica at one revision when their
//! lease runs out or is revoked, kept alive across a leader's death.

use std::time::{Duration, Instant};

use futures::StreamExt;
use raftkv_node::{Consistency, Node, WatchEvent, WatchOptions};

mod support;

use support::three_nodes;

/// The revision at which `key` was deleted, from `node`'s watch history after `from`.
async fn deleted_at(node: &Node, key: &str, from: u64) -> u64 {
    let mut options = WatchOptions::key(key).from_revision(from);
    options.require_leader = false;
    let mut events = node.watch(options).await.unwrap().boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("the delete within 30 s") {
            Some(WatchEvent::Delete { revision, .. }) => return revision,
            Some(WatchEvent::Put { .. } | WatchEvent::Created { .. } | WatchEvent::Progress { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_lease_survives_a_failover_and_its_keys_go_everywhere_at_once() {
    let (_dirs, mut nodes) = three_nodes(|_| {}).await;
    let lease = nodes[1].grant_lease(2_000).await.unwrap();
    let first = nodes[1].put_with_lease("svc/a", "up", lease.id).await.unwrap().revision;
    nodes[2].put_with_lease("svc/b", "up", lease.id).await.unwrap();
    let listed = nodes[0].leases().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].keys, vec!["svc/a".to_string(), "svc/b".to_string()]);
    let kv = nodes[0].get_versioned("svc/a", Consistency::Linearizable).await.unwrap().unwrap();
    assert_eq!(kv.meta.lease, Some(lease.id));

    // Keep it alive every 400 ms for 6 s (three lease lifetimes), killing the leader meanwhile.
    let leader = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let at = nodes.iter().position(|n| n.id() == leader).unwrap();
    let started = Instant::now();
    let mut stopping = None;
    while started.elapsed() < Duration::from_secs(6) {
        let survivor = nodes.iter().find(|n| n.id() != leader).unwrap();
        match survivor.keep_alive_lease(lease.id).await {
            Ok(_) => {}
            // During the election a renewal may fail (it is tried again); it never finds the
            // lease gone.
            Err(e) => assert!(!e.to_string().contains("not found"), "{e}"),
        }
        if stopping.is_none() && started.elapsed() > Duration::from_secs(1) {
            // Stopped beside the renewals, which go on through the others meanwhile.
            let leader_node = nodes.remove(at);
            stopping = Some(tokio::spawn(async move { leader_node.shutdown().await }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    stopping.unwrap().await.unwrap().unwrap();
    for node in &nodes {
        let kv = node.get_versioned("svc/b", Consistency::Linearizable).await.unwrap();
        assert!(kv.is_some(), "a kept-alive lease keeps its keys across the failover");
    }
    // No more renewals: both keys go, on every replica at the same revision.
    let mut revisions = Vec::new();
    for node in &nodes {
        let a = deleted_at(node, "svc/a", first).await;
        let b = deleted_at(node, "svc/b", first).await;
        assert_eq!(a, b, "one revision for all of a lease's keys");
        revisions.push(a);
    }
    assert!(revisions.windows(2).all(|w| w[0] == w[1]), "{revisions:?}");
    assert!(nodes[0].leases().await.unwrap().is_empty());
    let err = nodes[0].keep_alive_lease(lease.id).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_deletes_the_keys_and_an_unknown_lease_writes_nothing() {
    let (_dirs, nodes) = three_nodes(|_| {}).await;
    let lease = nodes[0].grant_lease(60_000).await.unwrap();
    nodes[0].put_with_lease("s/1", "x", lease.id).await.unwrap();
    nodes[1].put_with_lease("s/2", "x", lease.id).await.unwrap();
    // Written again without the lease: detached, so it survives the revocation.
    nodes[1].put_with_lease("s/3", "x", lease.id).await.unwrap();
    nodes[2].put("s/3", "plain").await.unwrap();
    let revoked = nodes[2].revoke_lease(lease.id).await.unwrap();
    assert_eq!(revoked.deleted, 2);
    for node in &nodes {
        assert_eq!(node.get("s/1", Consistency::Linearizable).await.unwrap(), None);
        assert_eq!(node.get("s/3", Consistency::Linearizable).await.unwrap(), Some(b"plain".to_vec()));
    }
    let err = nodes[1].put_with_lease("s/4", "x", lease.id).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    assert_eq!(nodes[1].get("s/4", Consistency::Linearizable).await.unwrap(), None);
    assert!(nodes[0].grant_lease(10).await.is_err(), "a lease shorter than a second is refused");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_passes_on_when_its_holder_stops_and_the_stale_holder_is_fenced() {
    let (_dirs, nodes) = three_nodes(|_| {}).await;
    let client = raftkv_client::Client::new(nodes.iter().map(|n| n.url())).unwrap();
    let first = client.lock("locks/job", Duration::from_secs(1)).await.unwrap();
    first.put_fenced("job/state", "first").await.unwrap();
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.lock("locks/job", Duration::from_secs(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock is held");
    // The first holder stops renewing (dropping the handle stops its renewals, as a paused or
    // dead process would) without releasing; what it knew is kept for its late write.
    let stale_token = first.fencing_token();
    let stale_key = first.key().to_string();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(20), waiter).await.unwrap().unwrap().unwrap();
    assert!(second.fencing_token() > stale_token);
    let late = raftkv_client::TxnRequest::new()
        .when(&stale_key, "create_revision", "=", stale_token)
        .then(raftkv_client::TxnRequestOp::put("job/state", "first, late"));
    assert!(!client.txn(&late).await.unwrap().succeeded, "the stale holder's guarded write is refused");
    second.put_fenced("job/state", "second").await.unwrap();
    assert_eq!(nodes[0].get("job/state", Consistency::Linearizable).await.unwrap(), Some(b"second".to_vec()));

    let leader = client.campaign("elect/x", "node-a", Duration::from_secs(2)).await.unwrap();
    let seen = client.election_leader("elect/x").await.unwrap().unwrap();
    assert_eq!(seen.value, "node-a");
    let observer = tokio::spawn({
        let client = client.clone();
        let seen = seen.clone();
        async move { client.observe_leader("elect/x", Some(&seen)).await }
    });
    leader.unlock().await.unwrap();
    let after = tokio::time::timeout(Duration::from_secs(20), observer).await.unwrap().unwrap().unwrap();
    assert_eq!(after, None, "nobody leads after the resignation");
    second.unlock().await.unwrap();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
