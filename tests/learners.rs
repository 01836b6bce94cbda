//! Read replicas on real processes: a learner joins with `--join`, catches up by snapshot and
//! log, serves stale, bounded-staleness and linearizable (follower) reads, forwards writes, and
//! shows its lag; `durability=all` waits for it and names it when it cannot confirm.

mod support;

use std::time::Duration;

use raftkv::{Client, Consistency, Durability, MemberRole};
use support::{Cluster, ClusterOptions, phase, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_catches_up_and_serves_reads() {
    // A short snapshot interval, so that the learner's first catch-up is a snapshot.
    let opts = ClusterOptions {
        extra_args: vec!["--snapshot-every".into(), "100".into(), "--keep-logs".into(), "10".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(opts).await;
    let client = cluster.client();
    phase("write before the learner exists (compacted into a snapshot)");
    for i in 0..300 {
        client.put(&format!("early-{i}"), format!("v{i}")).await.expect("write");
    }

    phase("node 4 joins with --join");
    cluster.add_node(4, true, &["--snapshot-every", "100", "--keep-logs", "10"]).start();
    let members = wait_for(Duration::from_secs(20), "node 4 among the members", || async {
        client.members().await.ok().filter(|m| m.members.iter().any(|m| m.id == 4))
    })
    .await;
    let four = members.members.iter().find(|m| m.id == 4).unwrap();
    assert_eq!(four.role, MemberRole::Learner);
    assert_eq!(four.addr, cluster.addr(4));
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let own = cluster.status(4).await.expect("learner status");
    assert!(own.snapshot_index > 0, "the learner caught up through a snapshot: {own:?}");

    phase("lag is visible on the leader");
    let status = wait_for(Duration::from_secs(10), "leader to see node 4 caught up", || async {
        cluster.leader_status().await.filter(|s| s.members[&4].lag == Some(0))
    })
    .await;
    let m4 = &status.members[&4];
    assert_eq!(m4.role, MemberRole::Learner);
    assert!(!m4.voter);
    assert_eq!(m4.lag_ms, Some(0));
    assert_eq!(m4.reachable, Some(true));
    assert!(m4.last_ack_ms.is_some_and(|ms| ms < 2000), "{m4:?}");
    assert_eq!(status.members.values().filter(|m| m.voter).count(), 3, "a learner does not vote");

    phase("reads on the learner");
    let learner = cluster.client_of(4);
    assert_eq!(learner.get("early-7", Consistency::Stale).await.unwrap(), Some(b"v7".to_vec()));
    assert_eq!(learner.get_bounded("early-8", Duration::from_secs(5)).await.unwrap(), Some(b"v8".to_vec()));
    for i in 0..50 {
        // Written through a voter, then read at once on the learner: a linearizable read must see it.
        let key = format!("fresh-{i}");
        client.put(&key, "x").await.unwrap();
        assert_eq!(learner.get(&key, Consistency::Linearizable).await.unwrap(), Some(b"x".to_vec()), "{key}");
    }
    let lag = cluster.status(4).await.unwrap().replication_lag_ms;
    assert!(lag.is_some_and(|ms| ms < 5000), "learner's own lag: {lag:?}");

    phase("writes sent to the learner are forwarded");
    learner.put("via-learner", "1").await.expect("forwarded write");
    assert_eq!(client.get("via-learner", Consistency::Linearizable).await.unwrap(), Some(b"1".to_vec()));

    phase("durability=all waits for the learner");
    let rev = client.put_with("all-1", "1", Durability::All).await.expect("write confirmed on all").revision;
    // Acknowledged only after every member applied it: the learner has it without waiting.
    assert!(cluster.status(4).await.unwrap().applied_index >= rev);
    assert_eq!(learner.get("all-1", Consistency::Stale).await.unwrap(), Some(b"1".to_vec()));

    phase("bad input on the learner");
    let raw = reqwest::Client::new();
    let resp = raw.get(format!("{}/v1/kv/early-1?consistency=stale&max_lag_ms=soon", cluster.node(4).url()));
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_max_lag");

    phase("with the learner down, durability=all names it; majority writes go on");
    cluster.node(4).kill9();
    let err = client.put_with("all-2", "2", Durability::All).await.expect_err("learner cannot confirm");
    assert_eq!(err.code(), Some("not_confirmed_on_all"), "{err}");
    assert!(err.to_string().contains("node 4"), "{err}");
    assert!(err.may_have_applied());
    assert_eq!(client.get("all-2", Consistency::Linearizable).await.unwrap(), Some(b"2".to_vec()), "committed");
    client.put("majority", "1").await.expect("majority write without the learner");

    phase("the learner restarts (still with --join) and catches up");
    cluster.node(4).start();
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    assert_eq!(learner.get("all-2", Consistency::Stale).await.unwrap(), Some(b"2".to_vec()));

    phase("cut off from the leader, the learner refuses bounded reads but serves stale ones");
    for id in 1..=3 {
        cluster.node(id).kill9();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = learner.get_bounded("early-1", Duration::from_millis(500)).await.expect_err("too stale");
    assert_eq!(err.code(), Some("too_stale"), "{err}");
    assert!(err.to_string().contains("ms behind"), "{err}");
    assert_eq!(learner.get("early-1", Consistency::Stale).await.unwrap(), Some(b"v1".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_running_node_as_learner() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client: Client = cluster.client();
    client.put("k", "v").await.unwrap();
    // Started with no cluster state and no --join: it waits to be added.
    cluster.add_node(4, false, &[]).start();
    let addr = cluster.addr(4);
    let members = client.add_learner(4, &addr).await.expect("add learner");
    assert!(members.members.iter().any(|m| m.id == 4 && m.role == MemberRole::Learner));
    // Adding the same node again is a no-op; another id at its address is not.
    client.add_learner(4, &addr).await.expect("idempotent");
    let err = client.add_learner(5, &addr).await.expect_err("address taken");
    assert_eq!(err.code(), Some("address_in_use"), "{err}");
    let err = client.add_learner(2, "127.0.0.1:1").await.expect_err("id taken");
    assert_eq!(err.code(), Some("member_exists"), "{err}");
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    assert_eq!(cluster.client_of(4).get("k", Consistency::Linearizable).await.unwrap(), Some(b"v".to_vec()));
    // A learner can be removed like any member.
    let members = client.remove_member(4, false).await.expect("remove learner");
    assert!(members.members.iter().all(|m| m.id != 4));
}
