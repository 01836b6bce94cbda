//! Synchronous replication to a DR zone on real processes: writes wait for the DR member; when it
//! stops answering, writes stall at most the zone wait timeout and the cluster goes asynchronous
//! through a logged entry; once it answers again and has caught up, synchronous again. Losing the
//! primary site in synchronous mode and promoting the DR member loses no acknowledged write.

mod support;

use std::time::{Duration, Instant};

use raftkv::{Consistency, ReplicationMode, ReplicationUpdate};
use support::cli::raftkv_ok;
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase, wait_for};

/// How long a write waits for the DR zone before the cluster goes asynchronous.
const WAIT_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_dr_zone_degrade_when_it_is_cut_off_and_lose_nothing_on_promotion() {
    phase("three voters and a DR learner in zone dr; writes wait for the DR zone");
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_node(4, true, &["--zone", "dr"]).start();
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let client = cluster.client();
    let endpoints = cluster.endpoints().join(",");
    let out =
        raftkv_ok(&["replication", "set", "--endpoints", &endpoints, "--zones", "dr", "--wait-timeout", "1500ms"]);
    assert!(out.contains("mode sync"), "{out}");
    client.put("sync-1", "a").await.expect("a synchronous write");
    let status = cluster.leader_status().await.expect("leader status");
    assert_eq!(status.replication_mode, Some(ReplicationMode::Sync));

    phase("the DR member stops answering: a write stalls at most the wait timeout, then the cluster goes async");
    cluster.node(4).pause();
    let started = Instant::now();
    client.put("degrading", "b").await.expect("the write goes through in asynchronous mode");
    let stalled = started.elapsed();
    eprintln!("the write that found the DR zone gone took {stalled:?} (wait timeout {WAIT_MS} ms)");
    assert!(stalled >= Duration::from_millis(WAIT_MS), "it waited for the zone first: {stalled:?}");
    let replication = client.replication().await.unwrap();
    assert_eq!(replication.mode, Some(ReplicationMode::Async));
    let health = client.health().await.unwrap();
    assert!(!health.healthy && health.problems.iter().any(|p| p.contains("asynchronous")), "{:?}", health.problems);
    let leader = cluster.leader_status().await.expect("leader status").id;
    let metrics = client.metrics_of(&cluster.addr(leader)).await.unwrap();
    assert!(metrics.lines().any(|l| l == "raftkv_replication_sync_degraded 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "raftkv_replication_sync_zones 1"), "{metrics}");
    let started = Instant::now();
    for i in 0..20 {
        client.put(&format!("async-{i}"), "c").await.expect("asynchronous write");
    }
    eprintln!("20 writes in asynchronous mode took {:?}", started.elapsed());

    phase("the DR member answers again: once caught up, synchronous again");
    cluster.node(4).resume();
    wait_for(Duration::from_secs(30), "synchronous mode again", || async {
        let r = client.replication().await.ok()?;
        (r.mode == Some(ReplicationMode::Sync)).then_some(())
    })
    .await;
    let events = client.events().await.unwrap().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let async_at = kinds.iter().position(|k| *k == "replication_async").expect("async event");
    assert!(kinds[async_at..].contains(&"replication_sync"), "{kinds:?}");

    phase("in synchronous mode, the primary site is lost");
    let load = WriteLoad::start(&cluster.endpoints()[..3], 4, "site");
    load.wait_acked_beyond(0, 200, Duration::from_secs(30)).await;
    for id in [1, 2, 3] {
        cluster.node(id).kill9();
    }
    let log = load.stop().await;
    cluster.node(4).kill9();

    phase("promote the DR member: it reports the synchronous mode, and has every acknowledged write");
    let dr = cluster.node(4).data_dir.display().to_string();
    let inspected = raftkv_ok(&["recover", "inspect", "--data-dir", &dr]);
    assert!(inspected.contains("replication:   sync to zones [\"dr\"]"), "{inspected}");
    let out = raftkv_ok(&["recover", "force-new-cluster", "--data-dir", &dr, "--accept-data-loss"]);
    assert!(out.contains("SYNC") && out.contains("recovery point zero"), "{out}");
    cluster.node(4).start();
    let dr_client = cluster.client_of(4);
    wait_for(Duration::from_secs(30), "the DR member to serve", || async {
        dr_client.put("dr-serving", "ok").await.ok()
    })
    .await;
    let mut missing = Vec::new();
    for (key, value) in &log.acked {
        match dr_client.get(key, Consistency::Linearizable).await.expect("read on the DR member") {
            Some(v) => assert_eq!(v, value.as_bytes()),
            None => missing.push(key.clone()),
        }
    }
    eprintln!("{} acknowledged writes, {} missing on the promoted DR member", log.acked.len(), missing.len());
    assert!(missing.is_empty(), "acknowledged writes lost in synchronous mode: {missing:?}");
    for key in ["sync-1", "degrading", "async-19"] {
        assert!(dr_client.get(key, Consistency::Linearizable).await.unwrap().is_some(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_zone_settings_are_checked() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    let refused = |r: Result<raftkv::ReplicationStatus, raftkv::ClientError>| match r {
        Err(raftkv::ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("accepted: {other:?}"),
    };
    let unknown = ReplicationUpdate { zones: vec!["dr".into()], wait_timeout_ms: None };
    assert_eq!(refused(client.set_replication(&unknown).await), (400, "unknown_zone".into()));
    let bad = ReplicationUpdate { zones: vec!["d r".into()], wait_timeout_ms: None };
    assert_eq!(refused(client.set_replication(&bad).await), (400, "invalid_zone".into()));
    let off = ReplicationUpdate { zones: vec![], wait_timeout_ms: Some(10) };
    assert_eq!(refused(client.set_replication(&off).await), (400, "invalid_replication".into()));
    let r = client.set_replication(&ReplicationUpdate { zones: vec![], wait_timeout_ms: None }).await.unwrap();
    assert_eq!(r.mode, None, "no zones: plain majority replication");
}
