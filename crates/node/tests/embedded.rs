//! The embedding API: nodes started in-process, written to and read from through typed calls.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use raftkv_node::{Consistency, MemberRole, Node, NodeConfig, Role};

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// Three in-process nodes founding a cluster, with their data directories (removed when dropped).
async fn three_nodes() -> (Vec<tempfile::TempDir>, Vec<Node>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let config =
            NodeConfig::new(*id, addr.clone(), dirs[*id as usize - 1].path()).with_initial_cluster(members.clone());
        nodes.push(Node::start(config).await.unwrap());
    }
    (dirs, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_round_trip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = NodeConfig::new(1, addr.clone(), dir.path()).with_initial_cluster(BTreeMap::from([(1, addr.clone())]));
    let node = Node::start(config.clone()).await.unwrap();
    assert_eq!(node.wait_for_leader(Duration::from_secs(10)).await.unwrap(), 1);

    let put = node.put("a", "1").await.unwrap();
    for level in [Consistency::Linearizable, Consistency::Lease, Consistency::Stale] {
        assert_eq!(node.get("a", level).await.unwrap(), Some(b"1".to_vec()), "{level}");
    }
    let cas = node.cas("a", Some("1"), "2").await.unwrap();
    assert!(cas.succeeded && cas.revision > put.revision);
    assert!(!node.cas("a", Some("1"), "3").await.unwrap().succeeded);
    node.put("b", "x").await.unwrap();
    assert!(node.delete("b").await.unwrap().deleted);
    let page = node.scan("", None, 10, Consistency::Linearizable).await.unwrap();
    let entries: Vec<(String, Vec<u8>)> = page.entries.into_iter().map(|(k, v)| (k, v.value)).collect();
    assert_eq!(entries, vec![("a".to_string(), b"2".to_vec())]);
    let status = node.status().await.unwrap();
    assert_eq!(status.role, Role::Leader);
    assert!(status.applied_index >= cas.revision);
    node.shutdown().await.unwrap();

    // Once shutdown returns, the storage is closed: the directory opens again at once, with the
    // applies (written outside the WAL) flushed on close.
    let store = raftkv_storage::Store::open(dir.path()).expect("storage released by shutdown");
    assert_eq!(store.state_machine.get("a").unwrap(), Some(b"2".to_vec()));
    assert!(store.state_machine.applied_index() >= cas.revision);
    drop(store);

    // Same data directory: rejoins without re-initialising, state intact.
    let node = Node::start(config).await.unwrap();
    node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    assert_eq!(node.get("a", Consistency::Linearizable).await.unwrap(), Some(b"2".to_vec()));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_in_process_nodes_forward_to_the_leader() {
    let (_dirs, nodes) = three_nodes().await;
    let leader = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let follower = nodes.iter().find(|n| n.id() != leader).unwrap();

    follower.put("k", "v").await.expect("write forwarded to the leader");
    assert_eq!(follower.get("k", Consistency::Linearizable).await.unwrap(), Some(b"v".to_vec()));
    assert!(follower.cas("k", Some("v"), "w").await.unwrap().succeeded);
    let page = follower.scan("k", None, 10, Consistency::Lease).await.unwrap();
    let entries: Vec<(String, Vec<u8>)> = page.entries.into_iter().map(|(k, v)| (k, v.value)).collect();
    assert_eq!(entries, vec![("k".to_string(), b"w".to_vec())]);

    // Leadership moves over the transfer-leader RPC, and writes go on through the new leader.
    let leader_node = nodes.iter().find(|n| n.id() == leader).unwrap();
    let target = follower.id();
    leader_node.transfer_leader(target).await.expect("leader transfer");
    assert_eq!(leader_node.wait_for_leader(Duration::from_secs(5)).await.unwrap(), target);
    leader_node.put("after-transfer", "1").await.expect("write after transfer");
    assert_eq!(follower.status().await.unwrap().role, Role::Leader);
    // Asked of a follower, the transfer is forwarded to the leader. On a busy machine the new
    // leader may still be settling (an election timer that fired during the handover): a
    // `not_leader`/`no_leader` answer changed nothing and is retried, as any client does.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let moved = loop {
        match leader_node.transfer_leader(leader).await {
            Ok(moved) => break moved,
            Err(e) if !e.may_have_applied() && std::time::Instant::now() < deadline => {
                eprintln!("transfer back not served yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("transfer back, through a follower: {e}"),
        }
    };
    assert_eq!(moved.leader, leader);
    let err = follower.transfer_leader(9).await.expect_err("no node 9");
    assert!(err.to_string().contains("not a member"), "{err}");

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_through_the_embedding_api() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a1, a2) = (free_addr(), free_addr());
    let one =
        Node::start(NodeConfig::new(1, a1.clone(), dirs[0].path()).with_initial_cluster(BTreeMap::from([(1, a1)])))
            .await
            .unwrap();
    one.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    one.put("k", "v").await.unwrap();

    // Node 2 joins through node 1 and replicates as a learner.
    let two = Node::start(NodeConfig::new(2, a2, dirs[1].path()).with_join([one.url()])).await.unwrap();
    let mut caught_up = false;
    for _ in 0..200 {
        if two.get_bounded("k", Duration::from_secs(5)).await.ok().flatten().as_deref() == Some(b"v".as_slice()) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "learner never served the key");
    let members = two.members().await.unwrap();
    assert_eq!(members.members.iter().find(|m| m.id == 2).map(|m| m.role), Some(MemberRole::Learner));
    let status = one.status().await.unwrap();
    assert_eq!(status.members[&2].role, MemberRole::Learner);
    assert_eq!(status.members[&2].reachable, Some(true));
    assert_eq!(two.status().await.unwrap().role, Role::Learner);

    // Promoted through the learner itself (forwarded to the leader), then removed again.
    let members = two.promote(2, false).await.unwrap();
    assert_eq!(members.members.iter().find(|m| m.id == 2).map(|m| m.role), Some(MemberRole::Voter));
    let members = one.remove_member(2, false).await.unwrap();
    assert!(members.members.iter().all(|m| m.id != 2));
    let err = one.remove_member(1, true).await.expect_err("last voter");
    assert!(err.to_string().contains("last voter"), "{err}");
    two.shutdown().await.unwrap();
    one.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_node_has_an_identity_and_takes_backups() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = NodeConfig::new(1, addr.clone(), dir.path()).with_initial_cluster(BTreeMap::from([(1, addr)]));
    let node = Node::start(config).await.unwrap();
    node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let first = node.put("a", "1").await.unwrap();
    let second = node.put("b", "2").await.unwrap();
    assert_eq!(second.revision, first.revision + 1, "one write, one revision");
    assert_eq!(node.delete("missing").await.unwrap().revision, second.revision, "nothing deleted, no revision");
    assert_eq!(node.revision(), second.revision);
    let identity = node.cluster_identity().expect("the first leader founded the cluster");
    assert_eq!(identity.epoch, 1);
    assert_eq!(node.status().await.unwrap().cluster_id.as_deref(), Some(identity.cluster_id.as_str()));

    let file = dir.path().join("embedded.rkvbak");
    let (header, summary) = node.backup(&file, raftkv_node::BackupConsistency::Linearizable).await.unwrap();
    assert_eq!(header.revision, second.revision);
    assert_eq!(header.identity.as_ref(), Some(&identity));
    assert_eq!(summary.records, 2);
    let (verified, _) = raftkv_storage::SnapshotFile::new(&file).verify().unwrap();
    assert_eq!(verified, header);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_fencing_and_cluster_operations_through_the_embedding_api() {
    use raftkv_node::{AutopilotUpdate, LeaderToken, NodeError};

    let (_dirs, nodes) = three_nodes().await;
    // A new cluster's first leadership may end at once in a new election (the token then is
    // rightly fenced): take the token of the leadership in place until one lasts for the checks.
    let mut attempt = 0;
    let (leader_id, token) = loop {
        attempt += 1;
        assert!(attempt <= 5, "no leadership lasted through five attempts");
        let leader_id = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
        let leader = &nodes[leader_id as usize - 1];
        let term = leader.status().await.unwrap().term;
        let mut roles = leader.role_changes();
        let waited =
            tokio::time::timeout(Duration::from_secs(5), roles.wait_for(|l| l.token.is_some_and(|t| t.term >= term)))
                .await;
        let token = match waited {
            Ok(Ok(leadership)) => leadership.token,
            _ => None,
        };
        let Some(token) = token else { continue };
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        // A write with the current token lands, from the leader or through a follower.
        let landed = async {
            leader.put_if_leader(token, "job", "run 1").await?;
            follower.put_if_leader(token, "job", "run 2").await
        };
        match landed.await {
            Ok(_) => break (leader_id, token),
            Err(e) if attempt < 5 => eprintln!("leadership changed under the first token ({e}); again"),
            Err(e) => panic!("no leadership lasted: {e}"),
        }
    };
    let leader = &nodes[leader_id as usize - 1];
    let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
    assert!(leader.is_leader() && leader.leadership().is_leader());
    assert_eq!(token.leader, leader_id);
    let seen = follower.role_changes().wait_for(|l| l.leader == Some(leader_id)).await.unwrap().clone();
    assert!(!seen.is_leader() && !follower.is_leader());

    // A stale token is fenced and writes nothing.
    let stale = LeaderToken { term: token.term - 1, ..token };
    let fenced = leader.put_if_leader(stale, "job", "stale").await.unwrap_err();
    assert!(matches!(&fenced, NodeError::Api(e) if e.code() == "fenced"), "{fenced}");
    assert_eq!(leader.get("job", Consistency::Linearizable).await.unwrap(), Some(b"run 2".to_vec()));

    // Cluster operations: health, autopilot settings (checked), standbys refused on voters.
    let health = follower.health().await.unwrap();
    assert!(health.healthy && health.failure_tolerance == 1, "{health:?}");
    let bad = follower.set_autopilot(AutopilotUpdate { dead_after_ms: Some(10), ..Default::default() }).await;
    assert!(bad.is_err());
    let set = follower.set_autopilot(AutopilotUpdate { enabled: Some(true), ..Default::default() }).await.unwrap();
    assert!(set.settings.enabled);
    assert!(leader.set_standby(leader_id, true).await.is_err(), "a voter cannot be a standby");
    let events = follower.events().await.unwrap().events;
    assert!(events.iter().any(|e| e.kind == "autopilot_settings"), "{events:?}");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_calls_are_forwarded_over_peer_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca = raftkv_tls::ThrowawayCa::new("embedded test CA").unwrap();
    ca.write_cert(&pki.path().join("ca.crt")).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let (cert, key) =
            ca.issue_node(&["127.0.0.1"], Some(*id)).unwrap().write(pki.path(), &format!("n{id}")).unwrap();
        let mut config =
            NodeConfig::new(*id, addr.clone(), dirs[*id as usize - 1].path()).with_initial_cluster(members.clone());
        config.peer_tls = Some(raftkv_tls::PeerTlsFiles { ca: pki.path().join("ca.crt"), cert, key });
        nodes.push(Node::start(config).await.unwrap());
    }
    let leader = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let follower = nodes.iter().find(|n| n.id() != leader).unwrap();
    assert!(follower.url().starts_with("https://"), "{}", follower.url());
    // A follower forwards the call to the leader over the members' TLS, and a session client
    // reaches every member over it too.
    follower.put("k", "v").await.expect("write forwarded to the leader over TLS");
    let session = follower.session_client(raftkv_client::SessionOptions::default()).expect("session client");
    session.put("s", "1").await.expect("session write over TLS");
    assert_eq!(follower.get("s", Consistency::Linearizable).await.unwrap(), Some(b"1".to_vec()));
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
