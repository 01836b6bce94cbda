//! Disaster recovery on real processes: a quorum lost for good (two of three nodes killed and
//! their data deleted) recovered from the survivor with `raftkv recover force-new-cluster`, and a
//! primary site lost with its DR learner promoted, with the recovery point (RPO) and recovery time
//! (RTO) measured and printed.

mod support;

use std::time::{Duration, Instant};

use raftkv::Consistency;
use support::cli::{assert_one_line_error, raftkv, raftkv_ok};
use support::load::{WriteLoad, WriteLog};
use support::{Cluster, ClusterOptions, copy_dir, phase, wait_for};

/// The `revision` line of `recover inspect` for one directory.
fn inspected_revision(out: &str) -> u64 {
    let line = out.lines().find(|l| l.trim_start().starts_with("revision:")).expect("revision line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Acknowledged writes present on `client`'s cluster and missing from it, among `log`'s.
async fn present_and_missing(client: &raftkv::Client, log: &WriteLog) -> (Vec<u64>, Vec<u64>) {
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for ((key, value), rev) in log.acked.iter().zip(&log.acked_revisions) {
        match client.get(key, Consistency::Linearizable).await.expect("read after recovery") {
            Some(v) => {
                assert_eq!(v, value.as_bytes(), "{key} has a value that was never written");
                present.push(*rev)
            }
            None => missing.push(*rev),
        }
    }
    (present, missing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_lost_for_good_is_recovered_from_the_survivor() {
    phase("a three-node cluster under load");
    let mut cluster = Cluster::start(ClusterOptions { nodes: 3, ..Default::default() }).await;
    let load = WriteLoad::start(&cluster.endpoints(), 4, "dr");
    load.wait_acked_beyond(0, 300, Duration::from_secs(30)).await;

    phase("SIGKILL two nodes and delete their data; keep a copy of one as a stale survivor");
    let stale_copy = cluster.dir().join("stale-node-3");
    for id in [2, 3] {
        cluster.node(id).kill9();
    }
    let log = load.stop().await;
    copy_dir(&cluster.node(3).data_dir.clone(), &stale_copy);
    for id in [2, 3] {
        std::fs::remove_dir_all(&cluster.node(id).data_dir).unwrap();
    }
    cluster.node(1).kill9();

    phase("recover inspect shows the survivor's state");
    let survivor = cluster.node(1).data_dir.display().to_string();
    let inspected =
        raftkv_ok(&["recover", "inspect", "--data-dir", &survivor, "--data-dir", &stale_copy.display().to_string()]);
    assert!(inspected.contains("best survivor") && inspected.contains("epoch 1"), "{inspected}");
    let refused = raftkv(&["recover", "force-new-cluster", "--data-dir", &survivor]);
    assert_one_line_error(&refused, "--accept-data-loss");

    phase("force-new-cluster on the survivor");
    let out = raftkv_ok(&["recover", "force-new-cluster", "--data-dir", &survivor, "--accept-data-loss"]);
    assert!(out.contains("epoch 2") && out.contains("implicitly committed") && out.contains("DATA LOSS"), "{out}");
    let after_inspect = raftkv_ok(&["recover", "inspect", "--data-dir", &survivor]);
    let recovered_revision = inspected_revision(&after_inspect);
    assert!(after_inspect.contains("voters:        [1]") && after_inspect.contains("recovered:"), "{after_inspect}");
    cluster.node(1).start();
    cluster.wait_for_leader(Duration::from_secs(20)).await;

    phase("every write the survivor had is there, and it serves writes");
    let client = cluster.client_of(1);
    let (present, missing) = present_and_missing(&client, &log).await;
    assert!(present.iter().all(|r| *r <= recovered_revision));
    assert!(missing.iter().all(|r| *r > recovered_revision), "a write up to the survivor's revision is missing");
    eprintln!("{} acknowledged writes kept, {} lost with the two nodes", present.len(), missing.len());
    let status = client.status().await.unwrap();
    assert_eq!(status.epoch, Some(2));
    let recovered = status.recovered.expect("status shows the recovery");
    assert_eq!((recovered.old_epoch, recovered.new_epoch), (1, 2));
    assert_eq!(recovered.removed_members, vec![2, 3]);
    client.put("after-recovery", "ok").await.expect("write after recovery");

    phase("two new nodes join and catch up");
    let join = cluster.endpoints()[0].clone();
    for id in [4, 5] {
        cluster.add_node(id, false, &["--join", &join]).start();
    }
    for id in [4, 5] {
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
        let node = cluster.client_of(id);
        let value = node.get("after-recovery", Consistency::Stale).await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"ok"[..]), "node {id} caught up");
        assert_eq!(node.status().await.unwrap().epoch, Some(2));
    }

    phase("the stale survivor, started with its old data, is refused");
    let node3 = cluster.node(3);
    std::fs::rename(&stale_copy, &node3.data_dir).unwrap();
    node3.start();
    wait_for(Duration::from_secs(20), "node 1 to refuse the stale node", || async {
        std::fs::read_to_string(&cluster.nodes[0].log).ok()?.contains("stale_epoch").then_some(())
    })
    .await;
    let members = client.members().await.unwrap();
    assert!(members.members.iter().all(|m| m.id != 3), "the stale node is not a member");
    assert_eq!(members.leader, Some(1));
    client.put("still-serving", "yes").await.expect("the recovered cluster keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dr_learner_takes_over_when_the_primary_site_is_lost() {
    phase("primary site: three voters; DR site: one learner receiving the log asynchronously");
    let mut cluster = Cluster::start(ClusterOptions { nodes: 3, ..Default::default() }).await;
    cluster.add_node(4, true, &["--zone", "dr"]).start();
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let leader = wait_for(Duration::from_secs(30), "the DR learner in the leader's members", || async {
        cluster.leader_status().await.filter(|s| s.members.contains_key(&4))
    })
    .await;
    assert_eq!(leader.members[&4].zone.as_deref(), Some("dr"), "the DR learner's zone shows in status");
    let table = raftkv_ok(&["status", "--endpoints", &cluster.endpoints().join(",")]);
    assert!(table.lines().any(|l| l.starts_with('4') && l.contains(" dr ")), "{table}");
    let load = WriteLoad::start(&cluster.endpoints()[..3], 8, "site");
    load.wait_acked_beyond(0, 500, Duration::from_secs(30)).await;

    phase("the primary site is lost: every voter SIGKILLed at once");
    for id in [1, 2, 3] {
        cluster.node(id).kill9();
    }
    let lost_at = Instant::now();
    let log = load.stop().await;
    cluster.node(4).terminate();

    phase("promote the DR learner");
    let dr = cluster.node(4).data_dir.display().to_string();
    let started = Instant::now();
    let out = raftkv_ok(&["recover", "force-new-cluster", "--data-dir", &dr, "--accept-data-loss"]);
    assert!(out.contains("recovery point"), "{out}");
    cluster.node(4).start();
    let client = cluster.client_of(4);
    wait_for(Duration::from_secs(30), "the first acknowledged write", || async {
        client.put("dr-first-write", "ok").await.ok()
    })
    .await;
    let rto = started.elapsed();

    phase("measure what the DR site kept");
    let (present, missing) = present_and_missing(&client, &log).await;
    let newest_kept = present.iter().max().copied().unwrap_or(0);
    assert!(missing.iter().all(|r| *r > newest_kept), "the DR site kept a prefix of the acknowledged writes");
    eprintln!(
        "DR promotion: RPO = {} acknowledged writes lost of {} ({} kept, newest kept revision {}); RTO = {} ms from force-new-cluster to the first acknowledged write ({} ms after the primary site was lost)",
        missing.len(),
        log.acked.len(),
        present.len(),
        newest_kept,
        rto.as_millis(),
        lost_at.elapsed().as_millis(),
    );
    let status = client.status().await.unwrap();
    assert_eq!(status.epoch, Some(2));
    assert_eq!(status.members.len(), 1);
}
