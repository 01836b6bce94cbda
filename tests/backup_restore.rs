//! Backups of a running cluster and restores into new clusters, on real processes through the
//! command line: a backup taken under load is exactly the state at its revision; three fresh
//! directories restored from it form a cluster that serves every key byte for byte and refuses
//! to mix with the old one; damaged files and bad input are refused with one clear line.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use raftkv::Consistency;
use support::cli::{assert_one_line_error, raftkv, raftkv_ok, stderr};
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, free_port, phase, wait_for};

/// The `revision N` field of a `backup save` line.
fn saved_revision(line: &str) -> u64 {
    let rest = line.split("revision ").nth(1).unwrap_or_else(|| panic!("no revision in {line:?}"));
    rest.split(',').next().unwrap().parse().unwrap()
}

/// `backup export FILE` as a map of key to exported JSON object.
fn export(file: &Path) -> BTreeMap<String, serde_json::Value> {
    let out = raftkv_ok(&["backup", "export", &file.display().to_string()]);
    out.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            (v["key"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Sends one peer RPC to `url` carrying `cluster_id` and `epoch`, and returns its status and
/// error code.
async fn peer_rpc_as(url: &str, cluster_id: &str, epoch: u64) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}/raft/v1/read-index"))
        .header("x-raftkv-cluster", cluster_id)
        .header("x-raftkv-epoch", epoch.to_string())
        .send()
        .await
        .expect("peer rpc");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_new_cluster() {
    phase("a three-node cluster under a steady write load");
    let old = Cluster::start(ClusterOptions { nodes: 3, ..Default::default() }).await;
    let endpoints = old.endpoints().join(",");
    let client = old.client();
    client.put("binary", vec![0xffu8, 0x00, 0x80]).await.expect("put a value that is not UTF-8");
    let load = WriteLoad::start(&old.endpoints(), 4, "bk");
    load.wait_acked_beyond(0, 200, Duration::from_secs(30)).await;

    phase("backup save while writes continue");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("cluster.rkvbak");
    let file_arg = file.display().to_string();
    let saved = raftkv_ok(&["backup", "save", &file_arg, "--endpoints", &endpoints]);
    let revision = saved_revision(&saved);
    assert!(saved.contains("sha256") && saved.contains("linearizable"), "{saved}");
    assert!(!work.path().join("cluster.rkvbak.part").exists(), "no .part left behind");
    load.wait_acked_beyond(load.acked(), 50, Duration::from_secs(30)).await;
    let log = load.stop().await;

    phase(&format!("the backup is the state at revision {revision}: every acknowledged write up to it, none after"));
    let exported = export(&file);
    let (mut before, mut after) = (0, 0);
    for ((key, value), rev) in log.acked.iter().zip(&log.acked_revisions) {
        if *rev <= revision {
            let got = exported.get(key).unwrap_or_else(|| panic!("{key} (revision {rev}) missing from the backup"));
            assert_eq!(got["value"].as_str(), Some(value.as_str()));
            before += 1;
        } else {
            assert!(!exported.contains_key(key), "{key} has revision {rev}, after the backup's {revision}");
            after += 1;
        }
    }
    assert!(before >= 200 && after > 0, "{before} writes before the backup, {after} after");
    assert_eq!(exported["binary"]["value_base64"].as_str(), Some("/wCA"));
    assert!(exported.values().all(|v| v["revision"].as_u64() == Some(revision)));

    phase("inspect verifies every checksum");
    let inspected = raftkv_ok(&["backup", "inspect", &file_arg]);
    assert!(
        inspected.contains(&format!("revision:     {revision}")) && inspected.contains("status:       OK"),
        "{inspected}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&raftkv_ok(&["backup", "inspect", &file_arg, "--json"])).unwrap();
    assert_eq!(json["header"]["revision"].as_u64(), Some(revision));
    assert_eq!(json["keys"].as_u64(), Some(exported.len() as u64));
    assert!(json["records"].as_u64() >= Some(exported.len() as u64));
    let old_cluster = json["header"]["identity"]["cluster_id"].as_str().expect("the old cluster has an id").to_string();

    phase("a stale backup from a follower is at most as new as the leader's state");
    let leader = old.wait_for_leader(Duration::from_secs(10)).await;
    let follower = old.nodes.iter().find(|n| n.id != leader).unwrap().url();
    let stale = work.path().join("stale.rkvbak");
    let saved = raftkv_ok(&[
        "backup",
        "save",
        &stale.display().to_string(),
        "--consistency",
        "stale",
        "--endpoints",
        &follower,
    ]);
    assert!(saved.contains("stale backup"), "{saved}");
    let stale_json: serde_json::Value =
        serde_json::from_str(&raftkv_ok(&["backup", "inspect", &stale.display().to_string(), "--json"])).unwrap();
    assert_eq!(stale_json["header"]["consistency"], "stale");

    phase("restore into three fresh data directories");
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let initial = initial.join(",");
    let mut dirs = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = (i + 1).to_string();
        let dir = work.path().join(format!("restored-{id}"));
        let out = raftkv_ok(&[
            "backup",
            "restore",
            &file_arg,
            "--data-dir",
            &dir.display().to_string(),
            "--id",
            &id,
            "--initial-cluster",
            &initial,
        ]);
        assert!(out.contains("new cluster") && out.contains(&format!("revision {revision}")), "{out}");
        dirs.push((i as u64 + 1, addr.clone(), dir));
    }

    phase("restoring into a directory that holds data is refused");
    let used = dirs[0].2.display().to_string();
    let again =
        raftkv(&["backup", "restore", &file_arg, "--data-dir", &used, "--id", "1", "--initial-cluster", &initial]);
    assert_one_line_error(&again, "is not empty");
    let running = old.nodes[0].data_dir.display().to_string();
    let into_running =
        raftkv(&["backup", "restore", &file_arg, "--data-dir", &running, "--id", "1", "--initial-cluster", &initial]);
    assert_one_line_error(&into_running, "new member");

    phase("the restored cluster elects a leader and serves every key byte for byte");
    let restored = Cluster::from_dirs(dirs, &[]).await;
    let new_client = restored.client();
    for (key, value) in &exported {
        let got = new_client.get(key, Consistency::Linearizable).await.expect("read restored key");
        let expected: Vec<u8> = match value["value"].as_str() {
            Some(text) => text.as_bytes().to_vec(),
            None => vec![0xff, 0x00, 0x80],
        };
        assert_eq!(got.as_deref(), Some(expected.as_slice()), "{key}");
    }
    let put = new_client.put("after-restore", "x").await.expect("write to the restored cluster");
    assert!(put.revision > revision, "new writes go on above the backup's revision ({} <= {revision})", put.revision);
    let status = new_client.status().await.unwrap();
    let new_cluster = status.cluster_id.clone().expect("restored cluster id");
    assert_ne!(new_cluster, old_cluster);
    assert_eq!(status.epoch, Some(1));

    phase("a node of the old cluster and one of the new refuse each other");
    let (code, err) = peer_rpc_as(&restored.nodes[0].url(), &old_cluster, 1).await;
    assert_eq!((code, err.as_str()), (409, "wrong_cluster"));
    let (code, err) = peer_rpc_as(&old.nodes[0].url(), &new_cluster, 1).await;
    assert_eq!((code, err.as_str()), (409, "wrong_cluster"));
    // The old leader told to replicate to a node of the new cluster gets refused every time.
    let old_client = old.client();
    let learner_addr = restored.nodes[1].addr.clone();
    old_client.add_learner(9, &learner_addr).await.expect("add the foreign node as a learner");
    wait_for(Duration::from_secs(15), "the foreign node to refuse the old leader", || async {
        std::fs::read_to_string(&restored.nodes[1].log).ok()?.contains("wrong_cluster").then_some(())
    })
    .await;
    let still = restored.client_of(2).status().await.unwrap();
    assert_eq!(still.cluster_id.as_deref(), Some(new_cluster.as_str()), "the new node kept its cluster");
    assert!(new_client.get("after-restore", Consistency::Linearizable).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_and_bad_input_are_refused() {
    let cluster = Cluster::start(ClusterOptions { nodes: 1, ..Default::default() }).await;
    let client = cluster.client();
    for i in 0..50 {
        client.put(&format!("k{i}"), vec![b'v'; 3000]).await.unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.rkvbak");
    raftkv_ok(&["backup", "save", &good.display().to_string(), "--endpoints", &cluster.endpoints()[0]]);
    let bytes = std::fs::read(&good).unwrap();

    let check = |name: &str, content: &[u8], expect: &str| {
        let path = work.path().join(name);
        std::fs::write(&path, content).unwrap();
        let p = path.display().to_string();
        assert_one_line_error(&raftkv(&["backup", "inspect", &p]), expect);
        let dir = work.path().join(format!("{name}-restore")).display().to_string();
        let restore =
            raftkv(&["backup", "restore", &p, "--data-dir", &dir, "--id", "1", "--initial-cluster", "1=127.0.0.1:1"]);
        assert_one_line_error(&restore, expect);
        assert!(!Path::new(&dir).exists(), "a refused restore creates nothing");
    };
    phase("a flipped byte");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x20;
    check("flipped", &flipped, "checksum mismatch");
    phase("a truncated file");
    check("truncated", &bytes[..bytes.len() * 2 / 3], "truncated");
    phase("a missing trailer");
    check("no-trailer", &bytes[..bytes.len() - 49], "trailer is missing");
    phase("a file of another format");
    check("other", b"SQLite format 3\0 and more bytes than a header", "not a raftkv snapshot or backup file");

    phase("bad input: one clear line and a non-zero exit");
    let missing = work.path().join("missing.rkvbak").display().to_string();
    assert_one_line_error(&raftkv(&["backup", "inspect", &missing]), "No such file");
    let dir = work.path().display().to_string();
    assert_one_line_error(&raftkv(&["backup", "inspect", &dir]), "is a directory");
    assert_one_line_error(&raftkv(&["backup", "save", &dir, "--endpoints", &cluster.endpoints()[0]]), "is a directory");
    let unknown = raftkv(&["backup", "save", "x", "--bogus"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    let level = raftkv(&["backup", "save", "x", "--consistency", "lease"]);
    assert!(stderr(&level).contains("expected linearizable or stale"), "{}", stderr(&level));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = work.path().join("dead.rkvbak").display().to_string();
    assert_one_line_error(&raftkv(&["backup", "save", &out, "--endpoints", &dead]), "no endpoint reachable");
    let bad_members = raftkv(&[
        "backup",
        "restore",
        &good.display().to_string(),
        "--data-dir",
        &work.path().join("r").display().to_string(),
        "--id",
        "1",
        "--initial-cluster",
        "1=nowhere",
    ]);
    assert_one_line_error(&bad_members, "HOST:PORT");
    assert_one_line_error(
        &raftkv(&["recover", "inspect", "--data-dir", &work.path().join("nothing").display().to_string()]),
        "not a raftkv data directory",
    );
    let http = reqwest::get(format!("{}/v1/admin/backup?consistency=eventual", cluster.endpoints()[0])).await.unwrap();
    assert_eq!(http.status().as_u16(), 400);
    let body: serde_json::Value = http.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_consistency");
}
