//! The `/ui` dashboard in a real browser: headless Chromium loads it from a running three-node
//! cluster, the DOM shows the leader and every member with its lag; after the leader is killed
//! the same page shows the new leader by itself, and once its node has lost the leader it says
//! so. Screenshots are saved under the target directory's `tmp/dashboard/`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::browser::{Browser, chromium_or_skip};
use support::{Cluster, ClusterOptions, phase, wait_for};

/// What the page shows: the leader it names, its members (id, role, reachable, lag) and whether
/// the "lost the leader" banner is up.
const VIEW: &str = r#"JSON.stringify({
  leader: document.body.dataset.leader ?? null,
  noLeader: !document.getElementById('no-leader').hidden,
  members: [...document.querySelectorAll('#members tbody tr')].map(r => ({
    id: r.dataset.id, role: r.dataset.role, reachable: r.dataset.reachable,
    lag: r.querySelector('.lag').textContent, lagMs: r.querySelector('.lag-ms').textContent })),
  events: document.getElementById('events').textContent,
})"#;

async fn view(browser: &Browser) -> Value {
    serde_json::from_str(browser.eval(VIEW).await.as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_cluster_and_follows_a_failover() {
    let Some(chromium) = chromium_or_skip("dashboard_shows_the_cluster_and_follows_a_failover") else { return };
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let client = cluster.client();
    for i in 0..50 {
        client.put(&format!("ui-{i}"), "v").await.expect("write");
    }
    // Served by a follower, which survives the leader's death.
    let host = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    let url = format!("{}/ui", cluster.node(host).url());
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");

    phase("the page shows the leader and three members with their lag");
    let browser = Browser::open(chromium, &url).await;
    let shown = wait_for(Duration::from_secs(30), "the leader and three members on the page", || async {
        let v = view(&browser).await;
        let members = v["members"].as_array()?;
        let id = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
        let complete = id(&v["leader"]) == Some(leader)
            && members.len() == 3
            && members.iter().all(|m| m["lag"].as_str().is_some_and(|l| l.parse::<u64>().is_ok()));
        complete.then_some(v)
    })
    .await;
    let roles: Vec<&str> = shown["members"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{shown}");
    assert_eq!(roles.iter().filter(|r| **r == "voter").count(), 2, "{shown}");
    assert_eq!(shown["noLeader"], false);
    // Writes through the serving node while the page watches: the charts draw them.
    let writer = tokio::spawn({
        let client = cluster.client_of(host);
        async move {
            for i in 0.. {
                let _ = client.put(&format!("chart-{i}"), "v").await;
            }
        }
    });
    wait_for(Duration::from_secs(30), "commits and writes on the charts", || async {
        let rate = |id: &str| {
            let id = id.to_string();
            let browser = &browser;
            async move {
                let shown = browser.eval(&format!("document.getElementById('{id}').textContent")).await;
                shown.as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            }
        };
        let samples = browser.eval("series.commits.length").await.as_u64().unwrap_or(0);
        (rate("v-commits").await > 0.0 && rate("v-writes").await > 0.0 && samples >= 3).then_some(())
    })
    .await;
    browser.screenshot(&shots.join("cluster.png")).await;
    writer.abort();

    phase("the leader is killed: the same page shows the new leader and the dead member");
    cluster.node(leader).kill9();
    let after = wait_for(Duration::from_secs(30), "a new leader on the page", || async {
        let v = view(&browser).await;
        let new = v["leader"].as_str()?.parse::<u64>().ok()?;
        let dead = v["members"].as_array()?.iter().find(|m| m["id"].as_str() == Some(&*leader.to_string()))?.clone();
        // (The page renders in steps: the events list may come a moment after the table.)
        let noted = v["events"].as_str()?.contains("leader_changed");
        (new != leader && dead["reachable"] == "false" && noted).then_some(v)
    })
    .await;
    assert_eq!(after["noLeader"], false, "{after}");
    browser.screenshot(&shots.join("failover.png")).await;

    phase("the serving node loses the leader: the page says so");
    let other = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader && *id != host).unwrap();
    cluster.node(other).kill9();
    wait_for(Duration::from_secs(30), "the lost-leader banner", || async {
        let v = view(&browser).await;
        (v["noLeader"] == true).then_some(())
    })
    .await;
    browser.screenshot(&shots.join("no-leader.png")).await;
}
