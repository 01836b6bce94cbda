//! A data directory written by the release before data directories recorded a format (kept in
//! `tests/fixtures/format1`) is upgraded in place by `raftkv serve`: every key reads back, the
//! cluster gets an identity, and revisions go on from where format 1 left them.

mod support;

use std::path::Path;
use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, copy_dir, free_port, phase, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_directory_is_upgraded_and_served() {
    phase("start raftkv on a copy of the format 1 fixture");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("node-1");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/node-1"), &data);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cluster = Cluster::from_dirs(vec![(1, addr, data)], &[]).await;
    let client = cluster.client();

    phase("every key reads back");
    assert_eq!(client.get("key1", Consistency::Linearizable).await.unwrap().as_deref(), Some(&b"swapped"[..]));
    assert_eq!(client.get("key2", Consistency::Linearizable).await.unwrap(), None);
    for i in 3..=25 {
        let value = client.get(&format!("key{i}"), Consistency::Linearizable).await.unwrap();
        assert_eq!(value, Some(format!("value{i}").into_bytes()), "key{i}");
    }
    assert_eq!(client.get("big", Consistency::Linearizable).await.unwrap(), Some(vec![b'x'; 3000]));
    assert_eq!(client.get("last-key", Consistency::Linearizable).await.unwrap().as_deref(), Some(&b"last-value"[..]));

    phase("the cluster is given an identity; revisions go on above format 1's last (30)");
    let status = wait_for(Duration::from_secs(10), "the cluster to be founded", || async {
        client.status().await.ok().filter(|s| s.cluster_id.is_some())
    })
    .await;
    assert_eq!(status.epoch, Some(1));
    assert!(status.revision >= 30, "revision went backwards: {}", status.revision);
    let put = client.put("new-key", "new").await.unwrap();
    assert_eq!(put.revision, status.revision + 1, "one write, one revision");

    phase("a restart reads the upgraded directory as it is");
    cluster.node(1).terminate();
    cluster.node(1).start();
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let again = client.status().await.unwrap();
    assert_eq!(again.cluster_id, status.cluster_id);
    assert_eq!(client.get("new-key", Consistency::Linearizable).await.unwrap().as_deref(), Some(&b"new"[..]));
    assert!(std::fs::read_to_string(&cluster.nodes[0].log).unwrap().contains("upgraded data directory from format 1"));
}
