//! A node whose data directory runs out of space refuses writes with a clear error, keeps serving
//! reads, hands its leadership to a node with room, never corrupts its store, and recovers by
//! itself once space is freed. The small disk is a size-limited tmpfs. Needs root (mounts);
//! without it the tests skip, except under `CI`, where they fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, free_port, phase, wait_for};

/// A 64 MiB tmpfs at `dir`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(dir).status().unwrap();
        assert!(status.success(), "mount a tmpfs at {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }

    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.0).unwrap();
        s.blocks_available() as u64 * s.fragment_size() as u64
    }

    /// Fills the disk until `left` bytes are free.
    fn fill_until(&self, left: u64) {
        let size = self.free().saturating_sub(left);
        std::fs::write(self.0.join("ballast"), vec![0u8; size as usize]).unwrap();
    }

    fn empty_ballast(&self) {
        std::fs::remove_file(self.0.join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const RESERVE: &[&str] = &["--min-free-disk", "24MiB"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_serves_reads_and_recovers_by_itself() {
    if !support::root_or_skip("a_full_disk_refuses_writes_with_507_serves_reads_and_recovers_by_itself", "tmpfs mounts")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"));
    let addr = format!("127.0.0.1:{}", free_port());
    let initial = format!("1={addr}");
    let mut args = vec!["--initial-cluster", &initial];
    args.extend(RESERVE);
    let mut cluster = Cluster::from_dirs(vec![(1, addr, disk.0.join("data"))], &args).await;
    let client = cluster.client();
    wait_for(Duration::from_secs(20), "a first write", || async { client.put("before", "full").await.ok() }).await;

    phase("the disk fills up below the reserve");
    disk.fill_until(16 << 20);
    wait_for(Duration::from_secs(10), "the node to report its disk full", || async {
        cluster.status(1).await.and_then(|s| s.storage).filter(|s| s.low)
    })
    .await;
    let http = reqwest::Client::new();
    let url = cluster.nodes[0].url();
    let refused = http.put(format!("{url}/v1/kv/during")).body("x").send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::INSUFFICIENT_STORAGE);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("reserve"), "{body}");
    let read = client.get("before", Consistency::Linearizable).await.expect("reads are still served");
    assert_eq!(read.as_deref(), Some(&b"full"[..]));
    let cli = Command::new(support::raftkv_bin()).args(["status", "--endpoints", &url]).output().unwrap();
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(table.contains("FULL"), "raftkv status names the full disk:\n{table}");

    phase("space is freed: writes are taken again, by themselves");
    disk.empty_ballast();
    wait_for(Duration::from_secs(10), "a write after space is freed", || async {
        client.put("after", "freed").await.ok()
    })
    .await;

    phase("the store survived intact");
    cluster.node(1).kill9();
    cluster.node(1).start();
    for (key, value) in [("before", "full"), ("after", "freed")] {
        let got = wait_for(Duration::from_secs(20), "a read after the restart", || async {
            client.get(key, Consistency::Linearizable).await.ok()
        })
        .await;
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key}");
    }
    assert_eq!(client.get("during", Consistency::Linearizable).await.unwrap(), None, "the refused write");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_fills_hands_over_and_the_cluster_keeps_writing() {
    if !support::root_or_skip("a_leader_whose_disk_fills_hands_over_and_the_cluster_keeps_writing", "tmpfs mounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"));
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let initial = initial.join(",");
    let dirs = [disk.0.join("data"), dir.path().join("node-2"), dir.path().join("node-3")];
    let nodes = (0..3).map(|i| (i as u64 + 1, addrs[i].clone(), dirs[i].clone())).collect();
    let mut args = vec!["--initial-cluster", &initial];
    args.extend(RESERVE);
    let cluster = Cluster::from_dirs(nodes, &args).await;
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    cluster.hand_leadership_to(1).await;
    let client = cluster.client();
    client.put("k", "1").await.expect("a write before the disk fills");

    phase("node 1's disk fills: it hands the leadership over");
    disk.fill_until(16 << 20);
    let new_leader = wait_for(Duration::from_secs(20), "a leader other than node 1", || async {
        cluster.leader_status().await.map(|s| s.id).filter(|id| *id != 1)
    })
    .await;
    for n in 2..=20 {
        client.put("k", n.to_string()).await.expect("the nodes with room keep committing");
    }
    let stale = cluster.client_of(1).get("k", Consistency::Stale).await.expect("node 1 still serves reads");
    assert!(stale.is_some());

    phase("space is freed: node 1 catches up by itself");
    disk.empty_ballast();
    let committed = cluster.status(new_leader).await.expect("leader status").commit_index;
    cluster.wait_applied(1, committed, Duration::from_secs(30)).await;
    let got = cluster.client_of(1).get("k", Consistency::Stale).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"20"[..]));
    drop(cluster);
}
