//! Damage to a node's write-ahead log between a kill and a restart, as Jepsen's `truncate` and
//! `bitflip` do: a torn tail (a record cut off, as a crash leaves it) is dropped and the node
//! catches up from the leader; a flipped bit inside the log makes the node refuse to start with a
//! message naming the damage, and `raftkv recover check` names it too. Either way the node never
//! serves a wrong value.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftkv::Consistency;
use support::cli::{raftkv, stdout};
use support::{Cluster, ClusterOptions, phase};

const KEYS: usize = 400;

fn value_of(i: usize, round: usize) -> String {
    format!("v{round}-{i:04}-{}", "y".repeat(60))
}

/// The newest (highest-numbered) WAL file of a data directory.
fn newest_wal(data_dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data_dir.join("db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p.metadata().map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    logs.sort();
    logs.pop().unwrap_or_else(|| panic!("no WAL in {}", data_dir.display()))
}

/// A cluster with every key written, and a follower that has applied them all and was then killed.
async fn cluster_with_a_killed_follower() -> (Cluster, u64) {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    for i in 0..KEYS {
        client.put(&format!("k{i:04}"), value_of(i, 0)).await.unwrap();
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.wait_caught_up(victim, Duration::from_secs(30)).await;
    cluster.node(victim).kill9();
    (cluster, victim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_wal_tail_is_dropped_and_the_node_catches_up() {
    let (mut cluster, victim) = cluster_with_a_killed_follower().await;
    // Writes the victim misses while it is down.
    let client = cluster.client();
    for i in (0..KEYS).step_by(3) {
        client.put(&format!("k{i:04}"), value_of(i, 1)).await.unwrap();
    }

    phase(&format!("node {victim}'s WAL loses its last 100 bytes, mid-record"));
    let wal = newest_wal(&cluster.node(victim).data_dir);
    let len = wal.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(len.saturating_sub(100)).unwrap();

    cluster.node(victim).start();
    cluster.wait_caught_up(victim, Duration::from_secs(30)).await;
    let own = cluster.client_of(victim);
    for i in 0..KEYS {
        let want = value_of(i, if i % 3 == 0 { 1 } else { 0 });
        let got = own.get(&format!("k{i:04}"), Consistency::Stale).await.unwrap();
        assert_eq!(got.as_deref(), Some(want.as_bytes()), "k{i:04} on node {victim}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flipped_inside_the_wal_makes_the_node_refuse_to_start() {
    let (mut cluster, victim) = cluster_with_a_killed_follower().await;
    let dir = cluster.node(victim).data_dir.clone();

    phase(&format!("one bit flipped in the middle of node {victim}'s WAL"));
    let wal = newest_wal(&dir);
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&wal, bytes).unwrap();

    cluster.node(victim).start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.node(victim).is_running() && Instant::now() < deadline {
        // The node must stop by itself; a status answer in the meantime would be a bug.
        assert!(cluster.status(victim).await.is_none(), "node {victim} serves from a damaged log");
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.node(victim).reap();
    }
    assert!(!cluster.node(victim).is_running(), "node {victim} did not refuse its damaged log");
    let log = std::fs::read_to_string(&cluster.node(victim).log).unwrap();
    assert!(log.contains("Corruption"), "the node's log names the corruption:\n{log}");

    let out = raftkv(&["recover", "check", "--data-dir", &dir.display().to_string()]);
    assert!(!out.status.success(), "recover check must fail on a damaged WAL");
    assert!(stdout(&out).contains("Corruption"), "{}", stdout(&out));

    // The others carry on.
    cluster.client().put("after", "damage").await.expect("the rest of the cluster commits");
}
