//! The replication stream between real processes, through proxies that damage or slow the link:
//! a bit flipped in transit is refused by the follower and the entry sent again (the follower's
//! copy is the leader's, never the corrupted one); a 1 MiB entry crosses a link of 256 KiB/s,
//! four seconds of transfer against a 100 ms RPC deadline, without being given up on and resent.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raftkv::Consistency;
use support::{Cluster, free_port, phase};
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

/// Three nodes whose peers reach node 3 through the proxy `serve` runs (given its listener and node
/// 3's real address), with a leader other than node 3: the data directory, the cluster, the leader.
async fn cluster_with_node_3_behind<F, Fut>(serve: F) -> (tempfile::TempDir, Cluster, u64)
where
    F: FnOnce(TcpListener, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    tokio::spawn(serve(proxy, addrs[2].clone()));
    let initial = format!("1={},2={},3={proxy_addr}", addrs[0], addrs[1]);
    let dir = tempfile::tempdir().unwrap();
    let nodes = (0..3).map(|i| (i as u64 + 1, addrs[i].clone(), dir.path().join(format!("node-{}", i + 1)))).collect();
    let cluster = Cluster::from_dirs(nodes, &["--initial-cluster", &initial]).await;
    let mut leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    if leader == 3 {
        cluster.hand_leadership_to(1).await;
        leader = 1;
    }
    (dir, cluster, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_append_is_refused_and_sent_again() {
    let flipped = Arc::new(AtomicBool::new(false));
    let marker = flipped.clone();
    let (_dir, cluster, leader) =
        cluster_with_node_3_behind(|proxy, target| corrupting_proxy(proxy, target, marker)).await;

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

/// Forwards connections from `listener` to `target`, the leader-to-node direction at
/// `bytes_per_sec` at most.
async fn throttling_proxy(listener: TcpListener, target: String, bytes_per_sec: usize) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else { return };
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else { return };
            let (mut from_leader, mut to_leader) = inbound.into_split();
            let (mut from_node, mut to_node) = outbound.into_split();
            let back = tokio::spawn(async move { tokio::io::copy(&mut from_node, &mut to_leader).await });
            let chunk = (bytes_per_sec / 20).max(1);
            let mut buf = vec![0u8; chunk];
            loop {
                let n = match from_leader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to_node.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            back.abort();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_entry_crosses_a_slow_link_without_being_resent() {
    let (_dir, cluster, leader) =
        cluster_with_node_3_behind(|proxy, target| throttling_proxy(proxy, target, 256 * 1024)).await;

    phase("a 1 MiB write; node 3 receives it at 256 KiB/s");
    let value = vec![b'z'; 1 << 20];
    cluster.client_of(leader).put("big", value.clone()).await.expect("the write commits on the fast majority");
    let committed = cluster.status(leader).await.expect("leader status").commit_index;
    cluster.wait_applied(3, committed, Duration::from_secs(60)).await;
    let copy = cluster.client_of(3).get("big", Consistency::Stale).await.expect("read node 3");
    assert_eq!(copy.as_deref(), Some(&value[..]));
    let log = std::fs::read_to_string(&cluster.nodes[leader as usize - 1].log).unwrap_or_default();
    let gave_up = log.lines().filter(|l| l.contains("stream-replication") && l.contains("->3")).count();
    assert_eq!(gave_up, 0, "the leader gave up on the slow link {gave_up} times");
}

/// The status line a node answers to an append-stream upgrade to `protocol`.
async fn upgrade_answer(addr: &str, protocol: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /raft/v1/append-stream HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: {protocol}\r\ncontent-length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 512];
    let n = tcp.read(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaks_both_append_stream_versions() {
    let cluster = Cluster::start(support::ClusterOptions { nodes: 1, ..Default::default() }).await;
    let addr = cluster.nodes[0].addr.clone();
    // Version 2 for this release's leaders, version 1 for a leader of an older release during a
    // rolling upgrade; anything else is refused, which is how a new leader knows to fall back.
    assert!(upgrade_answer(&addr, "raftkv-append/2").await.starts_with("HTTP/1.1 101"));
    assert!(upgrade_answer(&addr, "raftkv-append/1").await.starts_with("HTTP/1.1 101"));
    assert!(upgrade_answer(&addr, "raftkv-append/3").await.starts_with("HTTP/1.1 400"));
}
