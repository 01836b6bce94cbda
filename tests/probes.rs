//! `GET /livez` and `GET /readyz`: liveness never depends on a leader or a quorum; readiness says
//! which check failed and why.

mod support;

use std::time::Duration;

use support::{Cluster, ClusterOptions, phase, wait_for};

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
