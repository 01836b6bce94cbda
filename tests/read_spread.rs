//! Reads spread over replicas (active redundancy) on real processes: with `any`, linearizable
//! reads go to every member, learners included, and still see every acknowledged write; a failed
//! member is skipped; `nearest` and `leader` serve too; stale reads respect `max_lag`.

mod support;

use std::time::Duration;

use raftkv::{Consistency, MemberRole};
use raftkv_client::ReadPreference;
use support::cli::raftkv_ok;
use support::{Cluster, ClusterOptions, phase, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_every_member_and_stay_linearizable() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    for id in [4, 5] {
        cluster.add_node(id, true, &[]).start();
    }
    let admin = cluster.client();
    wait_for(Duration::from_secs(30), "two learners", || async {
        let members = admin.members().await.ok()?;
        (members.members.iter().filter(|m| m.role == MemberRole::Learner).count() == 2).then_some(())
    })
    .await;
    for id in [4, 5] {
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
    }

    phase("any: every read sees the write acknowledged just before it, whichever member serves it");
    // The client is given the voters only: it finds the learners itself.
    let voters: Vec<String> = cluster.endpoints()[..3].to_vec();
    let client = raftkv::Client::new(&voters).unwrap().with_read_preference(ReadPreference::Any);
    for i in 0..150 {
        let value = format!("v{i}");
        client.put("spread", value.clone()).await.expect("write");
        let read = client.get("spread", Consistency::Linearizable).await.expect("read");
        assert_eq!(read.as_deref(), Some(value.as_bytes()), "read {i} missed the write before it");
    }
    let served = client.read_distribution();
    eprintln!("reads served per member: {served:?}");
    assert_eq!(served.len(), 5, "all five members are read from: {served:?}");
    assert!(served.iter().all(|(_, n, _)| *n >= 10), "every member serves a share: {served:?}");

    phase("a failed member is skipped");
    cluster.node(5).kill9();
    for i in 0..50 {
        client.get("spread", Consistency::Linearizable).await.unwrap_or_else(|e| panic!("read {i} after a kill: {e}"));
    }
    let dead = cluster.addr(5);
    let after = client.read_distribution();
    let served_by_dead = |d: &[(String, u64, Option<Duration>)]| d.iter().find(|(a, _, _)| *a == dead).map(|t| t.1);
    assert_eq!(served_by_dead(&after), served_by_dead(&served), "the dead member served nothing more");

    phase("stale reads within a bound, spread too");
    for _ in 0..20 {
        let v = client.get_bounded("spread", Duration::from_secs(5)).await.expect("bounded read");
        assert_eq!(v.as_deref(), Some(&b"v149"[..]));
    }

    phase("nearest and leader serve as well");
    let nearest = raftkv::Client::new(&voters).unwrap().with_read_preference(ReadPreference::Nearest);
    let leader = raftkv::Client::new(&voters).unwrap().with_read_preference(ReadPreference::Leader);
    for _ in 0..30 {
        assert!(nearest.get("spread", Consistency::Linearizable).await.unwrap().is_some());
        assert!(leader.get("spread", Consistency::Linearizable).await.unwrap().is_some());
    }
    let by_nearest = nearest.read_distribution();
    let top = by_nearest.iter().map(|t| t.1).max().unwrap_or(0);
    assert!(top >= 25, "nearest sticks to one member while it answers: {by_nearest:?}");
    let out = raftkv_ok(&["get", "--endpoints", &voters.join(","), "--read-preference", "any", "spread"]);
    assert_eq!(out.trim(), "v149");
}
