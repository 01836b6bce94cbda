//! Online membership changes on real processes: growing from 3 to 5 voters and back under a write
//! load, replacing a voter, and the changes that must be refused.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use raftkv::{Consistency, MemberRole};
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase, wait_for};

fn voters(members: &raftkv::MembersResponse) -> BTreeSet<u64> {
    members.members.iter().filter(|m| m.role != MemberRole::Learner).map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_voters_and_shrink_back_under_load() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    let load = WriteLoad::start(&cluster.endpoints(), 4, "grow");
    load.wait_acked_beyond(0, 50, Duration::from_secs(20)).await;

    phase("add nodes 4 and 5 as learners, then promote them");
    for id in [4, 5] {
        cluster.add_node(id, false, &[]).start();
        client.add_learner(id, &cluster.addr(id)).await.expect("add learner");
    }
    for id in [4, 5] {
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
        let members = client.promote(id, false).await.expect("promote");
        assert!(voters(&members).contains(&id), "{members:?}");
    }
    // The node answering may learn that the change committed a heartbeat later than the leader.
    let members = wait_for(Duration::from_secs(5), "the change to show as committed", || async {
        client.members().await.ok().filter(|m| !m.change_in_progress)
    })
    .await;
    assert_eq!(voters(&members), BTreeSet::from([1, 2, 3, 4, 5]));
    let acked = load.acked();
    load.wait_acked_beyond(acked, 50, Duration::from_secs(20)).await;

    phase("five voters survive two failures");
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let down: Vec<u64> = [1, 2, 3, 4, 5].into_iter().filter(|id| *id != leader).take(2).collect();
    for id in &down {
        cluster.node(*id).kill9();
    }
    let acked = load.acked();
    load.wait_acked_beyond(acked, 30, Duration::from_secs(20)).await;
    for id in &down {
        cluster.node(*id).start();
    }

    phase("shrink back: remove nodes 4 and 5");
    for id in [4, 5] {
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
        let members = wait_for(Duration::from_secs(20), "the removal to be accepted", || async {
            match client.remove_member(id, false).await {
                Ok(m) => Some(m),
                // A removal right after another, or while a restarted member catches up.
                Err(e) if matches!(e.code(), Some("change_in_progress" | "unsafe_change" | "not_leader")) => None,
                Err(e) => panic!("remove {id}: {e}"),
            }
        })
        .await;
        assert!(members.members.iter().all(|m| m.id != id), "{members:?}");
    }
    // The node answering may be a follower that applies the last removal a moment after the
    // leader answered it: wait until its view has both removals, committed.
    let members = wait_for(Duration::from_secs(5), "the change to show as committed", || async {
        client.members().await.ok().filter(|m| !m.change_in_progress && m.members.iter().all(|x| x.id < 4))
    })
    .await;
    assert_eq!(voters(&members), BTreeSet::from([1, 2, 3]));
    let acked = load.acked();
    load.wait_acked_beyond(acked, 30, Duration::from_secs(20)).await;
    let log = load.stop().await;

    phase("no acknowledged write lost; writes never stalled longer than an election");
    for (key, value) in &log.acked {
        let got = client.get(key, Consistency::Linearizable).await.expect("read back");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost");
    }
    eprintln!(
        "acked {}, refused {}, unknown {}, longest stall {:?}",
        log.acked.len(),
        log.refused.len(),
        log.unknown.len(),
        log.longest_stall
    );
    // Generous: an election (300-600 ms) plus the leader wait (3 s); changes alone take far less.
    assert!(log.longest_stall < Duration::from_secs(5), "writes stalled {:?}", log.longest_stall);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_voter_and_refuse_unsafe_changes() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    client.put("k", "v").await.unwrap();

    phase("bad input: unknown members");
    let err = client.remove_member(9, false).await.expect_err("no node 9");
    assert_eq!(err.code(), Some("unknown_member"), "{err}");
    let err = client.promote(9, false).await.expect_err("no node 9");
    assert_eq!(err.code(), Some("unknown_member"), "{err}");
    let err = client.transfer_leader(9).await.expect_err("no node 9");
    assert_eq!(err.code(), Some("unknown_member"), "{err}");

    phase("a replacement that waits for its new node holds the change lock: concurrent changes are refused");
    // Node 4 is set up (address chosen) but not started yet: the replacement waits for it.
    let new_addr = cluster.add_node(4, false, &[]).addr.clone();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let old = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let replacing = {
        let client = client.clone();
        let addr = new_addr.clone();
        tokio::spawn(async move { client.replace_member(old, 4, &addr, false).await })
    };
    // Once node 4 shows as a learner, the replacement is waiting for it to catch up.
    wait_for(Duration::from_secs(10), "node 4 added as a learner by the replacement", || async {
        client.members().await.ok().filter(|m| m.members.iter().any(|m| m.id == 4))
    })
    .await;
    let err = client.add_learner(5, "127.0.0.1:1").await.expect_err("a concurrent change");
    assert_eq!(err.code(), Some("change_in_progress"), "{err}");
    assert!(err.to_string().contains("in progress"), "{err}");

    phase("the new node starts; the replacement completes with joint consensus");
    cluster.node(4).start();
    let members = replacing.await.unwrap().expect("replace");
    assert_eq!(voters(&members), [1, 2, 3, 4].into_iter().filter(|id| *id != old).collect());
    cluster.node(old).kill9();
    client.put("after-replace", "1").await.expect("write after replace");
    assert_eq!(cluster.client_of(4).get("k", Consistency::Linearizable).await.unwrap(), Some(b"v".to_vec()));

    phase("with one of three voters down, removing another live one is refused unless forced");
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let survivors: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != old).collect();
    let victim = survivors.iter().copied().find(|id| *id != leader).unwrap();
    let other = survivors.iter().copied().find(|id| *id != leader && *id != victim).unwrap();
    cluster.node(other).kill9();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let err = client.remove_member(victim, false).await.expect_err("would lose the quorum");
    assert_eq!(err.code(), Some("unsafe_change"), "{err}");
    assert!(err.to_string().contains("force"), "{err}");

    phase("leader transfer: not to a dead node, not to a learner");
    let err = client.transfer_leader(other).await.expect_err("dead target");
    assert_eq!(err.code(), Some("target_unreachable"), "{err}");
    cluster.node(other).start();
    cluster.add_node(6, false, &[]).start();
    client.add_learner(6, &cluster.addr(6)).await.unwrap();
    let err = client.transfer_leader(6).await.expect_err("learner target");
    assert_eq!(err.code(), Some("not_a_voter"), "{err}");
    cluster.wait_caught_up(other, Duration::from_secs(30)).await;
    let started = Instant::now();
    let moved =
        wait_for(Duration::from_secs(20), "the transfer", || async { client.transfer_leader(other).await.ok() }).await;
    assert_eq!(moved.leader, other);
    eprintln!("leader transfer took {:?}", started.elapsed());
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(10)).await, other);
}
