//! A follower that was down while the leader compacted its log catches up through a snapshot.

mod support;

use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, ClusterOptions, phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_compacted_log_catches_up_by_snapshot() {
    phase("start with frequent snapshots and a short log tail");
    let opts = ClusterOptions {
        extra_args: ["--snapshot-every", "50", "--keep-logs", "10"].iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(opts).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");

    phase("stop a follower");
    cluster.node(follower).terminate();

    phase("write enough for the leader to snapshot and purge");
    let client = cluster.client_of(leader);
    for i in 0..400 {
        client.put(&format!("snap-{i:04}"), format!("{i}").repeat(20)).await.expect("put");
    }
    client.delete("snap-0003").await.expect("delete");
    let status = cluster.status(leader).await.expect("leader status");
    assert!(status.snapshot_index >= 300, "leader did not snapshot: {status:?}");

    phase("restart the follower: it installs a snapshot, then follows the log");
    cluster.node(follower).start();
    cluster.wait_applied(follower, status.commit_index, Duration::from_secs(30)).await;
    let caught_up = cluster.status(follower).await.expect("follower status");
    assert!(caught_up.snapshot_index > 0, "follower caught up without a snapshot: {caught_up:?}");

    phase("its data matches");
    let local = cluster.client_of(follower);
    for i in 0..400 {
        let got = local.get(&format!("snap-{i:04}"), Consistency::Stale).await.expect("stale read");
        let want = (i != 3).then(|| format!("{i}").repeat(20).into_bytes());
        assert_eq!(got, want, "snap-{i:04} on the follower");
    }

    phase("and it survives its own restart");
    cluster.node(follower).terminate();
    cluster.node(follower).start();
    cluster.wait_applied(follower, status.commit_index, Duration::from_secs(30)).await;
    assert_eq!(local.get("snap-0399", Consistency::Stale).await.expect("read"), Some("399".repeat(20).into_bytes()));
}
