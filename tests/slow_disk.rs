//! Slow follower disks slow the cluster down without stopping it: a 1 MiB entry reaches
//! followers whose every fsync takes 1.5 s, the writes commit, and the leader keeps its
//! leadership. Each node runs on a `raftkv-faultfs` disk. Needs root (FUSE); without it the test
//! skips, except under `CI`, where it fails.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use raftkv::Consistency;
use raftkv_faultfs::FaultFs;
use support::{Cluster, free_port, phase, wait_for};

/// Three nodes, each on its own fault disk under `dir`. The disks are returned first so that
/// they outlive the cluster (its nodes are killed before the disks unmount).
async fn cluster_on_fault_disks(dir: &std::path::Path) -> (Vec<FaultFs>, Cluster) {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let mut disks = Vec::new();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let mount: PathBuf = dir.join(format!("mnt-{id}"));
        std::fs::create_dir_all(&mount).unwrap();
        disks.push(FaultFs::mount(&dir.join(format!("disk-{id}")), &mount).expect("mount a fault disk"));
        nodes.push((id, addr.clone(), mount.join("data")));
    }
    let initial = initial.join(",");
    let cluster = Cluster::from_dirs(nodes, &["--initial-cluster", &initial]).await;
    (disks, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_entry_replicates_to_followers_with_slow_disks() {
    if !support::root_or_skip("a_large_entry_replicates_to_followers_with_slow_disks", "FUSE mounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (disks, cluster) = cluster_on_fault_disks(dir.path()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let term = cluster.status(leader).await.expect("leader status").term;
    let client = cluster.client();
    client.put("warm", "up").await.expect("a write before the disks slow down");

    phase("both followers' fsyncs take 1.5 s");
    for (i, disk) in disks.iter().enumerate() {
        if i as u64 + 1 != leader {
            disk.control().set_fsync_delay(Duration::from_millis(1500));
        }
    }
    let value = vec![b'x'; 1 << 20];
    for n in 0..3 {
        let started = Instant::now();
        let put = client.put(&format!("big-{n}"), value.clone()).await;
        let took = started.elapsed();
        put.unwrap_or_else(|e| panic!("1 MiB write {n} failed after {took:?} with slow followers: {e}"));
        eprintln!("1 MiB write {n} committed in {took:?}");
    }
    let now = cluster.status(leader).await.expect("leader status");
    assert_eq!((now.role, now.term), (raftkv::Role::Leader, term), "node {leader} lost its leadership");

    phase("the disks heal; the followers have every entry");
    for disk in &disks {
        disk.control().set_fsync_delay(Duration::ZERO);
    }
    let committed = cluster.status(leader).await.expect("leader status").commit_index;
    for node in cluster.nodes.iter().map(|n| n.id) {
        cluster.wait_applied(node, committed, Duration::from_secs(30)).await;
        let got = cluster.client_of(node).get("big-2", Consistency::Stale).await.expect("read");
        assert_eq!(got.as_deref(), Some(&value[..]), "node {node}'s copy");
    }
    // The replication stream never gave up on the slow followers: only the leader's heartbeats
    // (answered after the follower's fsync) may have timed out.
    let log = std::fs::read_to_string(&cluster.nodes[leader as usize - 1].log).unwrap_or_default();
    let resent = log.lines().filter(|l| l.contains("stream-replication") && l.contains("Timeout")).count();
    assert_eq!(resent, 0, "the leader timed out replication to a slow follower {resent} times");
    wait_for(Duration::from_secs(10), "a write with healthy disks", || async {
        cluster.client().put("after", "healed").await.ok()
    })
    .await;
}
