//! A bit flipped in transit on the replication stream is refused by the follower and the entry is
//! sent again: the follower's copy is the leader's, never the corrupted one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, free_port, phase, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Offset into a replication connection at which the proxy flips a bit: past the protocol
/// switch, inside the first large append request.
const FLIP_AT: usize = 64 * 1024;

/// Forwards connections from `listener` to `target`; the first connection that switches to the
/// append stream gets one bit flipped at [`FLIP_AT`], once.
async fn corrupting_proxy(listener: TcpListener, target: String, flipped: Arc<AtomicBool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else { return };
        let (target, flipped) = (target.clone(), flipped.clone());
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else { return };
            let (mut from_leader, mut to_leader) = inbound.into_split();
            let (mut from_node, mut to_node) = outbound.into_split();
            let back = tokio::spawn(async move { tokio::io::copy(&mut from_node, &mut to_leader).await });
            let mut buf = vec![0u8; 16 * 1024];
            let mut seen = 0usize;
            let mut is_stream = false;
            loop {
                let n = match from_leader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if seen == 0 {
                    is_stream = String::from_utf8_lossy(&buf[..n]).contains("raftkv-append/2");
                }
                if is_stream && seen <= FLIP_AT && FLIP_AT < seen + n && !flipped.swap(true, Ordering::SeqCst) {
                    buf[FLIP_AT - seen] ^= 0x04;
                }
                seen += n;
                if to_node.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            back.abort();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_append_is_refused_and_sent_again() {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    let flipped = Arc::new(AtomicBool::new(false));
    tokio::spawn(corrupting_proxy(proxy, addrs[2].clone(), flipped.clone()));
    // Node 3's peers reach it through the proxy.
    let initial = format!("1={},2={},3={proxy_addr}", addrs[0], addrs[1]);
    let dir = tempfile::tempdir().unwrap();
    let nodes = (0..3).map(|i| (i as u64 + 1, addrs[i].clone(), dir.path().join(format!("node-{}", i + 1)))).collect();
    let cluster = Cluster::from_dirs(nodes, &["--initial-cluster", &initial]).await;
    let mut leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    if leader == 3 {
        cluster.client().transfer_leader(1).await.expect("move the leadership off node 3");
        leader = wait_for(Duration::from_secs(10), "a leader other than node 3", || async {
            cluster.leader_status().await.map(|s| s.id).filter(|id| *id != 3)
        })
        .await;
    }

    phase("a 256 KiB write crosses the corrupting link to node 3");
    let value: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    cluster.client_of(leader).put("big", value.clone()).await.expect("the write commits");
    let committed = cluster.status(leader).await.expect("leader status").commit_index;
    cluster.wait_applied(3, committed, Duration::from_secs(30)).await;
    assert!(flipped.load(Ordering::SeqCst), "the proxy never flipped a bit: the test did not test anything");
    let copy = cluster.client_of(3).get("big", Consistency::Stale).await.expect("read node 3");
    assert_eq!(copy.as_deref(), Some(&value[..]), "node 3 holds the leader's bytes");
    let log = std::fs::read_to_string(&cluster.nodes[2].log).unwrap_or_default();
    assert!(log.contains("checksum mismatch"), "node 3 did not report the corrupted frame");
}
