//! A snapshot damaged on its way to a follower: a proxy between the leader and a new learner flips
//! one byte of the first snapshot it carries. The learner refuses it (its checksums do not match),
//! installs nothing, and the leader sends the snapshot again; the learner then catches up.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, ClusterOptions, phase, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The start of a snapshot transfer on the wire.
const SNAPSHOT_REQUEST: &[u8] = b"POST /raft/v1/snapshot";
/// Where the byte is flipped, counted from the start of the request: past its head, the vote and
/// the file's header, inside the records.
const FLIP_AT: usize = 4000;

/// A TCP proxy to `target` that counts the snapshot requests it carries and damages the first.
async fn start_proxy(target: String, snapshots: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else { return };
            let (target, snapshots) = (target.clone(), snapshots.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(&target).await else { return };
                let (mut from_leader, mut to_leader) = inbound.into_split();
                let (mut from_node, mut to_node) = outbound.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    // Bytes left before the byte to flip, while the first snapshot passes.
                    let mut until_flip: Option<usize> = None;
                    loop {
                        let n = match from_leader.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let chunk = &mut buf[..n];
                        if let Some(pos) = chunk.windows(SNAPSHOT_REQUEST.len()).position(|w| w == SNAPSHOT_REQUEST)
                            && snapshots.fetch_add(1, Ordering::SeqCst) == 0
                        {
                            until_flip = Some(pos + FLIP_AT);
                        }
                        if let Some(k) = until_flip {
                            if k < n {
                                chunk[k] ^= 0x01;
                                until_flip = None;
                            } else {
                                until_flip = Some(k - n);
                            }
                        }
                        if to_node.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut from_node, &mut to_leader).await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_damaged_in_transit_is_refused_and_sent_again() {
    phase("a cluster that has compacted its log");
    let extra = ["--snapshot-every", "100", "--keep-logs", "10"].map(String::from).to_vec();
    let mut cluster = Cluster::start(ClusterOptions { nodes: 3, extra_args: extra, ..ClusterOptions::default() }).await;
    let client = cluster.client();
    for i in 0..400 {
        client.put(&format!("key{i:04}"), format!("value {i} {}", "x".repeat(100))).await.unwrap();
    }

    phase("a new learner, reached through a proxy that damages the first snapshot it carries");
    let snapshots = Arc::new(AtomicUsize::new(0));
    let learner = cluster.add_node(4, false, &[]);
    let target = learner.addr.clone();
    learner.start();
    let proxy = start_proxy(target, snapshots.clone()).await;
    client.add_learner(4, &proxy).await.expect("add the learner at the proxy's address");

    phase("the damaged snapshot is refused, the leader sends it again, the learner catches up");
    let learner_client = cluster.client_of(4);
    wait_for(Duration::from_secs(60), "the learner to have the last key", || async {
        learner_client.get("key0399", Consistency::Stale).await.ok().flatten()
    })
    .await;
    assert!(snapshots.load(Ordering::SeqCst) >= 2, "the snapshot was sent again after the damaged one");
    for i in [0, 123, 399] {
        let value = learner_client.get(&format!("key{i:04}"), Consistency::Stale).await.unwrap();
        assert_eq!(value, Some(format!("value {i} {}", "x".repeat(100)).into_bytes()), "key{i:04}");
    }
}
