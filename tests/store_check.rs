//! Corruption on disk, on real processes: `raftkv recover check` verifies a stopped node's data
//! directory and names a damaged SST file or snapshot; a node started on a damaged store never
//! answers a wrong value; and the documented repair (wipe it, join a new node, replace) brings the
//! cluster back with every value.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use raftkv::Consistency;
use support::cli::{raftkv, raftkv_ok, stderr, stdout};
use support::{Cluster, ClusterOptions, phase, wait_for};

const KEYS: usize = 1500;

fn value_of(i: usize) -> String {
    format!("value-{i:05}-{}", "x".repeat(80))
}

/// The largest file in `dir` whose name ends with `suffix`.
fn largest(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .max_by_key(|p| p.metadata().map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no {suffix} file in {}", dir.display()))
}

/// Flips one bit in the middle of `file`.
fn flip_a_bit(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_found_never_served_and_repaired_by_rejoining() {
    let extra = ["--snapshot-every", "400"].map(String::from).to_vec();
    let mut cluster = Cluster::start(ClusterOptions { extra_args: extra, ..ClusterOptions::default() }).await;
    let client = cluster.client();
    for i in 0..KEYS {
        client.put(&format!("k{i:05}"), value_of(i)).await.unwrap();
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let [damaged, other] = {
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        [followers[0], followers[1]]
    };
    cluster.wait_caught_up(damaged, Duration::from_secs(30)).await;

    phase(&format!("a clean stop of node {damaged}: its directory checks OK"));
    cluster.node(damaged).terminate();
    let dir = cluster.node(damaged).data_dir.clone();
    let out = raftkv_ok(&["recover", "check", "--data-dir", &dir.display().to_string()]);
    assert!(out.contains(": OK") && out.contains("checksums verified"), "{out}");

    phase("one bit flipped in its largest SST file: check names the file");
    let sst = largest(&dir.join("db"), ".sst");
    flip_a_bit(&sst);
    let out = raftkv(&["recover", "check", "--data-dir", &dir.display().to_string()]);
    assert!(!out.status.success(), "a damaged directory must fail the check");
    let report = stdout(&out);
    let file_name = sst.file_name().unwrap().to_string_lossy().to_string();
    assert!(report.contains("DAMAGED") && report.contains(&file_name), "{report}");
    assert!(stderr(&out).contains("wipe it and let the node rejoin"), "{}", stderr(&out));

    phase("started anyway, the node refuses or fails reads; it never answers a wrong value");
    cluster.node(damaged).start();
    let own = cluster.client_of(damaged);
    let mut served = 0;
    let mut refused = 0;
    for i in (0..KEYS).step_by(7) {
        match own.get(&format!("k{i:05}"), Consistency::Stale).await {
            Ok(Some(v)) => {
                assert_eq!(v, value_of(i).as_bytes(), "node {damaged} answered a wrong value for k{i:05}");
                served += 1;
            }
            Ok(None) => panic!("node {damaged} answered that k{i:05} does not exist"),
            Err(_) => refused += 1,
        }
    }
    eprintln!("on the damaged node: {served} reads served correctly, {refused} refused");

    phase("the repair: wipe it, join a new node and swap it in");
    cluster.node(damaged).kill9();
    std::fs::remove_dir_all(&dir).unwrap();
    cluster.add_node(4, true, &[]).start();
    let addr = cluster.addr(4);
    let endpoints: Vec<String> =
        cluster.endpoints().into_iter().filter(|e| !e.ends_with(&cluster.addr(damaged))).collect();
    let healthy = raftkv::Client::new(&endpoints).unwrap();
    wait_for(Duration::from_secs(30), "node 4 to join", || async {
        let members = healthy.members().await.ok()?;
        members.members.iter().any(|m| m.id == 4).then_some(())
    })
    .await;
    // The join's own change (adding node 4 as a learner and waiting for it to catch up) may
    // still hold the leader's membership lock: `change_in_progress` says to retry.
    wait_for(Duration::from_secs(30), "the replacement of the damaged node", || async {
        match healthy.replace_member(damaged, 4, &addr, true).await {
            Ok(_) => Some(()),
            Err(e) if e.code() == Some("change_in_progress") => None,
            Err(e) => panic!("replace the damaged node: {e}"),
        }
    })
    .await;
    cluster.wait_caught_up(4, Duration::from_secs(60)).await;
    let new = cluster.client_of(4);
    for i in 0..KEYS {
        let v = new.get(&format!("k{i:05}"), Consistency::Stale).await.unwrap();
        assert_eq!(v.as_deref(), Some(value_of(i).as_bytes()), "k{i:05} on the new node");
    }

    phase("a damaged snapshot file is named too");
    cluster.node(other).terminate();
    let other_dir = cluster.node(other).data_dir.clone();
    let snapshot = largest(&other_dir.join("snapshots"), ".snap");
    flip_a_bit(&snapshot);
    let out = raftkv(&["recover", "check", "--data-dir", &other_dir.display().to_string()]);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains("PROBLEM: snapshot") && report.contains(&*snapshot.file_name().unwrap().to_string_lossy()),
        "{report}"
    );
}
