//! Standbys and the autopilot on real processes: a dead voter is replaced by a standby in one
//! joint-consensus change and the cluster survives a second loss; planned restarts, flapping
//! voters and a missing standby cause no replacement; two dead voters of five are replaced one
//! per cooldown; a voter cut off (alive, but answering nothing) is replaced safely and comes back
//! as a standby; bad settings are refused.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use raftkv::{AutopilotUpdate, Client, ClientError, Consistency, MemberRole, MembersResponse};
use support::cli::{raftkv, stderr};
use support::load::WriteLoad;
use support::{Cluster, ClusterOptions, phase, wait_for};

/// The dead period of these tests: above three election timeouts (the defaults are 300-600 ms).
const DEAD_AFTER_MS: u64 = 3_000;

/// Starts `voters` voters and the standbys `standbys` (joined with `--join --standby`), and
/// waits until every standby shows as one.
async fn cluster_with_standbys(voters: u64, standbys: &[u64]) -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions { nodes: voters, ..ClusterOptions::default() }).await;
    for id in standbys {
        cluster.add_node(*id, true, &["--standby"]).start();
    }
    let client = cluster.client();
    wait_for(Duration::from_secs(30), "standbys to join", || async {
        let members = client.members().await.ok()?;
        standbys.iter().all(|id| role_of(&members, *id) == Some(MemberRole::Standby)).then_some(())
    })
    .await;
    cluster
}

/// Turns the autopilot on with this file's short periods.
async fn enable_autopilot(client: &Client, cooldown_ms: u64) {
    let update = AutopilotUpdate {
        enabled: Some(true),
        dead_after_ms: Some(DEAD_AFTER_MS),
        min_stable_ms: Some(1_000),
        cooldown_ms: Some(cooldown_ms),
        max_trailing_entries: None,
    };
    let status = client.set_autopilot(&update).await.expect("enable the autopilot");
    assert!(status.settings.enabled);
    assert_eq!(status.settings.dead_after_ms, DEAD_AFTER_MS);
}

fn role_of(members: &MembersResponse, id: u64) -> Option<MemberRole> {
    members.members.iter().find(|m| m.id == id).map(|m| m.role)
}

fn voters(members: &MembersResponse) -> BTreeSet<u64> {
    members.members.iter().filter(|m| matches!(m.role, MemberRole::Leader | MemberRole::Voter)).map(|m| m.id).collect()
}

/// Waits until the voters are `want` and no change is in progress.
async fn wait_voters(client: &Client, want: &[u64], timeout: Duration) -> MembersResponse {
    let want: BTreeSet<u64> = want.iter().copied().collect();
    wait_for(timeout, &format!("voters {want:?}"), || async {
        let members = client.members().await.ok()?;
        (voters(&members) == want && !members.change_in_progress).then_some(members)
    })
    .await
}

/// Waits until member `id` is a standby.
async fn wait_standby(client: &Client, id: u64) {
    wait_for(Duration::from_secs(10), &format!("node {id} to be a standby"), || async {
        let members = client.members().await.ok()?;
        (role_of(&members, id) == Some(MemberRole::Standby)).then_some(())
    })
    .await;
}

/// How many replacements the event log shows.
async fn replacements(client: &Client) -> usize {
    let events = client.events().await.expect("events");
    events.events.iter().filter(|e| e.kind == "voter_replaced").count()
}

/// A voter other than the leader (and not in `not`).
async fn follower(cluster: &Cluster, among: &[u64], not: &[u64]) -> u64 {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    *among.iter().find(|id| **id != leader && !not.contains(id)).expect("a follower")
}

async fn check_acked(client: &Client, log: &support::load::WriteLog) {
    for (key, value) in &log.acked {
        let got = client.get(key, Consistency::Linearizable).await.expect("read back");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "acknowledged write {key} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replaces_a_dead_voter_and_the_cluster_survives_a_second_loss() {
    let mut cluster = cluster_with_standbys(3, &[4]).await;
    let client = cluster.client();
    enable_autopilot(&client, 3_000).await;
    let load = WriteLoad::start(&cluster.endpoints(), 2, "autopilot");
    load.wait_acked_beyond(0, 20, Duration::from_secs(20)).await;
    wait_for(Duration::from_secs(20), "the standby to be ready", || async {
        client.health().await.ok().filter(|h| h.ready_standbys == 1 && h.failure_tolerance == 1).map(|_| ())
    })
    .await;

    let first = follower(&cluster, &[1, 2, 3], &[]).await;
    phase(&format!("SIGKILL voter {first} for good"));
    cluster.node(first).kill9();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != first).chain([4]).collect();
    wait_voters(&client, &survivors, Duration::from_millis(DEAD_AFTER_MS) + Duration::from_secs(30)).await;
    // The swap commits first, then the entry that records it and flags the old voter a standby.
    wait_standby(&client, first).await;
    assert_eq!(replacements(&client).await, 1);
    let health = client.health().await.expect("health");
    assert!(health.problems.iter().all(|p| !p.contains("voter")), "voters healthy again: {:?}", health.problems);
    assert_eq!(health.failure_tolerance, 1, "the cluster can lose one more voter again");

    let second = follower(&cluster, &[1, 2, 3], &[first]).await;
    phase(&format!("SIGKILL a second original voter, {second}: without the autopilot this would be an outage"));
    cluster.node(second).kill9();
    let acked = load.acked();
    load.wait_acked_beyond(acked, 20, Duration::from_secs(30)).await;
    let log = load.stop().await;
    eprintln!(
        "acked {}, unknown {}, errors {:?}",
        log.acked.len(),
        log.unknown.len(),
        &log.errors[..log.errors.len().min(5)]
    );
    check_acked(&client, &log).await;

    phase(&format!("restart voter {first}: it comes back as a standby"));
    cluster.node(first).start();
    wait_for(Duration::from_secs(30), "the old voter to be a healthy standby", || async {
        let health = client.health().await.ok()?;
        health.members.iter().find(|m| m.id == first && m.role == MemberRole::Standby && m.healthy).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_flapping_voter_cause_no_replacement() {
    let mut cluster = cluster_with_standbys(3, &[4]).await;
    let client = cluster.client();
    enable_autopilot(&client, 1_000).await;
    let load = WriteLoad::start(&cluster.endpoints(), 2, "rolling");
    load.wait_acked_beyond(0, 20, Duration::from_secs(20)).await;

    for id in [1, 2, 3] {
        phase(&format!("planned restart of node {id}, away longer than the dead period"));
        cluster.node(id).terminate();
        // Away for longer than the dead period: only the leaving notice keeps it a voter.
        tokio::time::sleep(Duration::from_millis(DEAD_AFTER_MS + 1_500)).await;
        cluster.node(id).start();
        cluster.wait_caught_up(id, Duration::from_secs(30)).await;
    }
    let flapper = follower(&cluster, &[1, 2, 3], &[]).await;
    for round in 0..3 {
        phase(&format!("voter {flapper} crashes and is back within the dead period ({round})"));
        cluster.node(flapper).kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.node(flapper).start();
        cluster.wait_caught_up(flapper, Duration::from_secs(30)).await;
    }
    let acked = load.acked();
    load.wait_acked_beyond(acked, 20, Duration::from_secs(20)).await;
    let log = load.stop().await;
    check_acked(&client, &log).await;

    let members = wait_voters(&client, &[1, 2, 3], Duration::from_secs(10)).await;
    assert_eq!(role_of(&members, 4), Some(MemberRole::Standby));
    assert_eq!(replacements(&client).await, 0, "no replacement: {:?}", client.events().await.unwrap().events);
    let events = client.events().await.unwrap().events;
    let leaving = events.iter().filter(|e| e.kind == "member_leaving").count();
    assert!(leaving >= 3, "each planned restart was announced: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_standby_nothing_happens_and_zero_failure_tolerance_is_reported() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    enable_autopilot(&client, 1_000).await;
    let health = client.health().await.expect("health");
    assert!(health.healthy, "{:?}", health.problems);
    assert_eq!((health.voters, health.quorum, health.failure_tolerance), (3, 2, 1));

    let victim = follower(&cluster, &[1, 2, 3], &[]).await;
    cluster.node(victim).kill9();
    let health = wait_for(Duration::from_secs(30), "the dead voter to show", || async {
        client.health().await.ok().filter(|h| h.members.iter().any(|m| m.id == victim && m.dead))
    })
    .await;
    assert!(!health.healthy);
    assert_eq!(health.failure_tolerance, 0, "the cluster can lose no more voters");
    wait_for(Duration::from_secs(20), "the decision not to act", || async {
        let events = client.events().await.ok()?;
        events.events.iter().find(|e| e.kind == "skipped:no_standby").map(|_| ())
    })
    .await;
    // The status code alone tells a monitor.
    let status = http_status(&format!("{}/v1/cluster/health", cluster.endpoints()[(victim % 3) as usize])).await;
    assert_eq!(status, 429);
    let members = client.members().await.unwrap();
    assert_eq!(voters(&members), BTreeSet::from([1, 2, 3]), "never shrinks the voter set");
    let out = raftkv(&["health", "--endpoints", &cluster.endpoints().join(",")]);
    assert!(!out.status.success(), "raftkv health exits non-zero on an unhealthy cluster");
    assert!(stderr(&out).contains("not healthy"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dead_voters_of_five_are_replaced_one_per_cooldown() {
    let mut cluster = cluster_with_standbys(5, &[6, 7]).await;
    let client = cluster.client();
    let cooldown_ms = 4_000;
    enable_autopilot(&client, cooldown_ms).await;
    let load = WriteLoad::start(&cluster.endpoints(), 2, "five");
    load.wait_acked_beyond(0, 20, Duration::from_secs(20)).await;
    wait_for(Duration::from_secs(20), "both standbys ready", || async {
        client.health().await.ok().filter(|h| h.ready_standbys == 2).map(|_| ())
    })
    .await;

    let a = follower(&cluster, &[1, 2, 3, 4, 5], &[]).await;
    let b = follower(&cluster, &[1, 2, 3, 4, 5], &[a]).await;
    phase(&format!("SIGKILL voters {a} and {b} together"));
    cluster.node(a).kill9();
    cluster.node(b).kill9();
    let want: Vec<u64> = [1, 2, 3, 4, 5, 6, 7].into_iter().filter(|id| *id != a && *id != b).collect();
    wait_voters(&client, &want, Duration::from_secs(60)).await;
    // The second replacement's event is recorded once its change has committed: it may come a
    // moment after the voters are what they should be.
    let events = wait_for(Duration::from_secs(20), "both replacements in the event log", || async {
        let events = client.events().await.ok()?.events;
        (events.iter().filter(|e| e.kind == "voter_replaced").count() >= 2).then_some(events)
    })
    .await;
    let replaced: Vec<u64> = events.iter().filter(|e| e.kind == "voter_replaced").map(|e| e.at_ms).collect();
    assert_eq!(replaced.len(), 2, "{events:?}");
    // The cooldown runs from when a replacement begins; its event is stamped once the joint change
    // has committed, a little later, so two stamps may be closer than the cooldown by that much.
    assert!(replaced[1] - replaced[0] >= cooldown_ms * 3 / 4, "one replacement per cooldown: {events:?}");
    assert!(
        events.iter().any(|e| e.kind == "skipped:cooldown" && e.at_ms > replaced[0] && e.at_ms < replaced[1]),
        "the second dead voter waited for the cooldown: {events:?}"
    );
    let acked = load.acked();
    load.wait_acked_beyond(acked, 20, Duration::from_secs(20)).await;
    let log = load.stop().await;
    check_acked(&client, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_cut_off_but_alive_is_replaced_and_returns_as_a_learner() {
    let mut cluster = cluster_with_standbys(3, &[4]).await;
    let client = cluster.client();
    enable_autopilot(&client, 1_000).await;
    wait_for(Duration::from_secs(20), "the standby to be ready", || async {
        client.health().await.ok().filter(|h| h.ready_standbys == 1).map(|_| ())
    })
    .await;
    let cut = follower(&cluster, &[1, 2, 3], &[]).await;
    phase(&format!("voter {cut} stops answering (SIGSTOP) but is alive"));
    cluster.node(cut).pause();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != cut).chain([4]).collect();
    wait_voters(&client, &survivors, Duration::from_secs(40)).await;
    client.put("after-replacement", "x").await.expect("write after the replacement");

    phase("it answers again: it learns it is a learner, and writes go on");
    cluster.node(cut).resume();
    let own = cluster.client_of(cut);
    wait_for(Duration::from_secs(30), "the cut-off voter to see itself as a learner", || async {
        let status = own.status().await.ok()?;
        (status.role == raftkv::Role::Learner && status.members.get(&cut).is_some_and(|m| !m.voter)).then_some(())
    })
    .await;
    wait_standby(&client, cut).await;
    client.put("after-heal", "y").await.expect("write after the heal");
    assert_eq!(own.get("after-heal", Consistency::Linearizable).await.unwrap().as_deref(), Some(&b"y"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_autopilot_settings_and_standby_flags_are_refused() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let client = cluster.client();
    let below = AutopilotUpdate { dead_after_ms: Some(1_000), ..AutopilotUpdate::default() };
    assert_eq!(api_code(client.set_autopilot(&below).await), (400, "invalid_autopilot".into()));
    let none = AutopilotUpdate { max_trailing_entries: Some(0), ..AutopilotUpdate::default() };
    assert_eq!(api_code(client.set_autopilot(&none).await), (400, "invalid_autopilot".into()));
    assert_eq!(api_code(client.set_standby(2, true).await), (400, "standby_on_voter".into()));
    assert_eq!(api_code(client.set_standby(9, true).await), (404, "unknown_member".into()));
    let nowhere = raftkv::ReplicationUpdate { zones: vec!["nowhere".into()], wait_timeout_ms: None };
    assert_eq!(api_code(client.set_replication(&nowhere).await), (400, "unknown_zone".into()));
    assert!(!client.autopilot().await.unwrap().settings.enabled, "nothing was changed");

    let endpoints = cluster.endpoints().join(",");
    let out = raftkv(&["autopilot", "set", "--endpoints", &endpoints, "--dead-after", "1s"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("dead_after_ms must be at least three election timeouts"), "{}", stderr(&out));
    let out = raftkv(&["autopilot", "set", "--endpoints", &endpoints, "--dead-after", "soon"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--dead-after"), "{}", stderr(&out));
    let out = raftkv(&["member", "standby", "--endpoints", &endpoints, "2"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only a learner can be a standby"), "{}", stderr(&out));
    let out = raftkv(&["serve", "--id", "9", "--listen", "127.0.0.1:0", "--data-dir", "/tmp/x", "--standby"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--join"), "{}", stderr(&out));

    // The good settings, through the CLI, are replicated: a new leader has them.
    let out = raftkv(&["autopilot", "set", "--endpoints", &endpoints, "--enabled", "true", "--dead-after", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.node(leader).terminate();
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let settings = client.autopilot().await.unwrap().settings;
    assert!(settings.enabled && settings.dead_after_ms == 60_000, "{settings:?}");
}

/// The status and code of a refusal.
fn api_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The HTTP status of a GET of `url`.
async fn http_status(url: &str) -> u16 {
    reqwest::get(url).await.expect("GET").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_replaced_out_of_the_voters_steps_down() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    cluster.add_node(4, true, &[]).start();
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let client = cluster.client();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    phase(&format!("replace the leader, node {leader}, by node 4"));
    let addr = cluster.addr(4);
    client.replace_member(leader, 4, &addr, false).await.expect("replace the leader");
    let old = cluster.client_of(leader);
    wait_for(Duration::from_secs(20), "the old leader to step down", || async {
        let status = old.status().await.ok()?;
        // Removed from the configuration, it hears from no leader any more: it only stops leading.
        (status.role == raftkv::Role::Learner).then_some(())
    })
    .await;
    let want: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != leader).collect();
    let members = wait_voters(&client, &want, Duration::from_secs(10)).await;
    assert!(members.leader.is_some_and(|l| l != leader), "another node leads: {members:?}");
    client.put("after-step-down", "x").await.expect("write under the new leader");
}
