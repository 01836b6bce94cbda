//! `GET /livez` and `GET /readyz`: liveness never depends on a leader or a quorum; readiness says
//! which check failed and why; `?sync` waits until the node has caught up.

mod support;

use std::time::Duration;

use support::{Cluster, ClusterOptions, phase, wait_for};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

async fn probe(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("probe answers");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_survives_a_lost_quorum_and_readiness_names_the_failed_check() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    for url in &urls {
        assert_eq!(probe(&format!("{url}/livez")).await, (200, "ok\n".into()));
        wait_for(Duration::from_secs(20), "every node ready", || async {
            (probe(&format!("{url}/readyz")).await.0 == 200).then_some(())
        })
        .await;
    }
    let (_, verbose) = probe(&format!("{}/readyz?verbose", urls[0])).await;
    for name in ["raft", "storage", "member", "leader", "applied"] {
        assert!(verbose.contains(&format!("[+] {name} ok")), "{verbose}");
    }

    phase("two of three nodes killed: the last one is live, not ready");
    cluster.node(2).kill9();
    cluster.node(3).kill9();
    let url = &urls[0];
    let (status, body) = wait_for(Duration::from_secs(20), "node 1 not ready", || async {
        let (status, body) = probe(&format!("{url}/readyz?verbose")).await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("[-] leader failed") && body.ends_with("failed\n"), "{body}");
    assert_eq!(probe(&format!("{url}/livez")).await.0, 200, "liveness never depends on a quorum");
    let (status, body) = probe(&format!("{url}/readyz?verbose&exclude=leader")).await;
    assert!(body.contains("[ ] leader excluded"), "{body}");
    assert_eq!(status, 200, "{body}");

    phase("raftkv probe: exit codes for container health checks");
    let addr = &cluster.nodes[0].addr;
    let live = support::cli::raftkv(&["probe", "live", "--addr", addr]);
    assert!(live.status.success(), "{}", support::cli::stderr(&live));
    let ready = support::cli::raftkv(&["probe", "ready", "--addr", addr]);
    assert_eq!(ready.status.code(), Some(1));
    assert!(support::cli::stdout(&ready).contains("[-] leader failed"), "{}", support::cli::stdout(&ready));
    assert!(support::cli::stderr(&ready).contains("is not ready"), "{}", support::cli::stderr(&ready));
}

/// Forwards connections to `target` while the gate is open; closing it cuts every connection and
/// refuses new ones, as a network partition between the leader and the node behind it would.
async fn gated_proxy(listener: TcpListener, target: String, open: watch::Receiver<bool>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        if !*open.borrow() {
            continue;
        }
        let (target, mut open) = (target.clone(), open.clone());
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = open.wait_for(|open| !open) => {}
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_sync_waits_until_a_lagging_learner_has_caught_up() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    let (gate, open) = watch::channel(true);

    phase("node 4 joins as a learner; the leader reaches it through a proxy");
    cluster.add_node(4, true, &["--advertise", &proxy_addr]).start();
    let learner_url = cluster.node(4).url();
    tokio::spawn(gated_proxy(proxy, cluster.addr(4), open));
    wait_for(Duration::from_secs(20), "node 4 among the members", || async {
        client.members().await.ok().filter(|m| m.members.iter().any(|m| m.id == 4))
    })
    .await;
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let (status, body) = probe(&format!("{learner_url}/readyz?sync&timeout=10s&verbose")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[+] sync ok"), "{body}");

    phase("the leader cannot reach it: writes go on, ?sync times out and says why");
    gate.send_replace(false);
    for i in 0..200 {
        client.put(&format!("lag-{i}"), "v").await.expect("write");
    }
    let committed = cluster.leader_status().await.expect("a leader").commit_index;
    let (status, body) = probe(&format!("{learner_url}/readyz?sync&timeout=1s&verbose")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[-] sync failed: applied index"), "{body}");
    let (status, body) = probe(&format!("{learner_url}/readyz?sync&timeout=soon")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_timeout"), "{body}");

    phase("reconnected: ?sync answers once the learner has applied the leader's commit index");
    let waiting = tokio::spawn({
        let url = format!("{learner_url}/readyz?sync&timeout=60s&verbose&exclude=leader");
        async move { probe(&url).await }
    });
    gate.send_replace(true);
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let applied = cluster.status(4).await.expect("learner status").applied_index;
    assert!(applied >= committed, "applied {applied} < committed {committed} when ?sync answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_cluster_stays_ready() {
    // Its leader hears from no follower: it is a quorum by itself, and stays in contact.
    let cluster = Cluster::start(ClusterOptions { nodes: 1, ..ClusterOptions::default() }).await;
    let url = format!("{}/readyz?verbose", cluster.nodes[0].url());
    wait_for(Duration::from_secs(20), "node 1 ready", || async { (probe(&url).await.0 == 200).then_some(()) }).await;
    // Well past two election timeouts, the longest a leader may go without a quorum's answer.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let (status, body) = probe(&url).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
