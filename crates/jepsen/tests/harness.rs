//! The harness end to end on real `raftkv` processes in network namespaces: it must catch a broken
//! system (stale reads while the leader is isolated) and pass a correct one under kill, pause and
//! partition, linearizable backups included; the counter, bank and watch workloads hold their
//! properties, and blind retries without sessions are caught. Needs root; without it the tests skip, except under `CI`, where they fail.

use std::path::PathBuf;
use std::process::Command;

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs root (network namespaces, nftables), and CI must run it");
    eprintln!("skipping {test}: needs root for network namespaces and nftables");
    false
}

fn raftkv_bin() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_raftkv-jepsen"));
    let bin = exe.with_file_name("raftkv");
    assert!(bin.exists(), "{} not found: run `cargo build --bins` first", bin.display());
    bin
}

fn jepsen(args: &[&str]) -> (i32, String, serde_json::Value) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raftkv-jepsen"))
        .arg("run")
        .args(args)
        .args(["--raftkv-bin", &raftkv_bin().display().to_string(), "--out", &out_dir.path().display().to_string()])
        .output()
        .expect("run raftkv-jepsen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{}{stdout}", String::from_utf8_lossy(&out.stderr));
    let results = std::fs::read(out_dir.path().join("results.json")).map(|b| serde_json::from_slice(&b).unwrap());
    for file in ["history.jsonl", "report.html"] {
        assert!(out_dir.path().join(file).exists(), "{file} written");
    }
    (out.status.code().unwrap_or(-1), stdout, results.unwrap_or_default())
}

/// Each fault of a run's results as `"<fault> <what it did>"`.
fn fault_descriptions(results: &serde_json::Value) -> Vec<String> {
    results["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["fault"].as_str().unwrap(), f["value"].as_str().unwrap_or_default()))
        .collect()
}

#[test]
fn catches_stale_reads_while_the_leader_is_isolated() {
    if !root_or_skip("catches_stale_reads_while_the_leader_is_isolated") {
        return;
    }
    let (code, stdout, results) = jepsen(&[
        "--read-consistency",
        "stale",
        "--nemesis",
        "partition-leader",
        "--nemesis-interval",
        "3",
        "--time-limit",
        "12",
    ]);
    assert_eq!(code, 1, "expected exit 1 (not linearizable): {stdout}");
    assert!(stdout.starts_with("not linearizable"), "{stdout}");
    let failing = &results["check"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["verdict"] == "not-linearizable")
        .unwrap()["failing"];
    assert!(!failing.as_array().unwrap().is_empty(), "a violation names its operations");
}

#[test]
fn stays_linearizable_under_kill_pause_and_partition() {
    if !root_or_skip("stays_linearizable_under_kill_pause_and_partition") {
        return;
    }
    // Linearizable backups are taken throughout and checked as reads of every key in use.
    let (code, stdout, results) = jepsen(&[
        "--nemesis",
        "kill,pause,partition",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "20",
        "--backup-every-ms",
        "1000",
    ]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    let backups = results["backups"].as_u64().unwrap_or(0);
    assert!(backups >= 5, "only {backups} backups completed under faults");
    assert!(stdout.starts_with("linearizable"), "{stdout}");
    for f in ["read", "write", "cas"] {
        let ok = results["ops"][f]["ok"].as_u64().unwrap_or(0);
        assert!(ok >= 100, "only {ok} ok {f} operations");
    }
    let faults: Vec<&str> =
        results["faults"].as_array().unwrap().iter().map(|f| f["fault"].as_str().unwrap()).collect();
    for fault in ["kill", "pause", "partition"] {
        assert!(faults.contains(&fault), "no {fault} fault in {faults:?}");
    }
}

#[test]
fn learner_reads_stay_linearizable_under_membership_changes() {
    if !root_or_skip("learner_reads_stay_linearizable_under_membership_changes") {
        return;
    }
    let (code, stdout, results) = jepsen(&[
        "--learners",
        "1",
        "--read-from",
        "learners",
        "--nemesis",
        "member,kill",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "20",
    ]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    assert!(stdout.starts_with("linearizable"), "{stdout}");
    let ok_reads = results["ops"]["read"]["ok"].as_u64().unwrap_or(0);
    assert!(ok_reads >= 100, "only {ok_reads} ok reads from the learner");
    let faults = fault_descriptions(&results);
    assert!(faults.iter().any(|f| f.starts_with("member remove")), "no member fault in {faults:?}");
}

#[test]
fn catches_stale_reads_on_learners() {
    if !root_or_skip("catches_stale_reads_on_learners") {
        return;
    }
    let (code, stdout, _) = jepsen(&[
        "--learners",
        "1",
        "--read-from",
        "learners",
        "--read-consistency",
        "stale",
        "--nemesis",
        "none",
        "--time-limit",
        "12",
    ]);
    assert_eq!(code, 1, "expected exit 1 (not linearizable): {stdout}");
    assert!(stdout.starts_with("not linearizable"), "{stdout}");
}

#[test]
fn catches_stale_backups_on_learners() {
    if !root_or_skip("catches_stale_backups_on_learners") {
        return;
    }
    // Linearizable reads, but backups of the learner's own state: a backup that misses a write
    // acknowledged before it began must be caught.
    let (code, stdout, results) = jepsen(&[
        "--learners",
        "1",
        "--read-from",
        "learners",
        "--backup-every-ms",
        "200",
        "--backup-consistency",
        "stale",
        "--nemesis",
        "none",
        "--time-limit",
        "12",
    ]);
    assert_eq!(code, 1, "expected exit 1 (not linearizable): {stdout}");
    assert!(results["backups"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn check_command_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        concat!(
            r#"{"type":"invoke","process":0,"f":"write","key":"k","value":1,"time":0}"#,
            "\n",
            r#"{"type":"ok","process":0,"f":"write","key":"k","value":1,"time":10}"#,
            "\n",
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        concat!(
            r#"{"type":"invoke","process":0,"f":"read","key":"k","value":null,"time":0}"#,
            "\n",
            r#"{"type":"ok","process":0,"f":"read","key":"k","value":5,"time":10}"#,
            "\n",
        ),
    )
    .unwrap();
    let check =
        |path: &PathBuf| Command::new(env!("CARGO_BIN_EXE_raftkv-jepsen")).arg("check").arg(path).output().unwrap();
    let ok = check(&good);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("linearizable"));
    let not = check(&bad);
    assert_eq!(not.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not.stdout).starts_with("not linearizable"));
    let missing = check(&dir.path().join("absent.jsonl"));
    assert_eq!(missing.status.code(), Some(3));
    std::fs::write(&bad, "{not json").unwrap();
    assert_eq!(check(&bad).status.code(), Some(3));
}

#[test]
fn standbys_replace_voters_killed_for_good_and_stay_linearizable() {
    if !root_or_skip("standbys_replace_voters_killed_for_good_and_stay_linearizable") {
        return;
    }
    let (code, stdout, results) =
        jepsen(&["--standbys", "2", "--nemesis", "kill,partition", "--nemesis-interval", "2", "--time-limit", "24"]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    let faults = fault_descriptions(&results);
    assert!(faults.iter().any(|f| f.starts_with("kill") && f.ends_with("for good")), "no permanent kill: {faults:?}");
    let events: Vec<&str> =
        results["cluster_events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(events.contains(&"voter_replaced"), "the autopilot replaced no voter: {events:?}");
    let ok_writes = results["ops"]["write"]["ok"].as_u64().unwrap_or(0);
    assert!(ok_writes >= 100, "only {ok_writes} ok writes");
}

#[test]
fn a_leader_partitioned_away_is_replaced_and_the_history_stays_linearizable() {
    if !root_or_skip("a_leader_partitioned_away_is_replaced_and_the_history_stays_linearizable") {
        return;
    }
    // Each partition cuts the leader off for 5 s, longer than the dead period: the new leader
    // replaces it (alive, but unreachable) by a standby; healed, it is a learner.
    let (code, stdout, results) = jepsen(&[
        "--standbys",
        "2",
        "--nemesis",
        "partition-leader",
        "--nemesis-interval",
        "5",
        "--autopilot-dead-after-ms",
        "2000",
        "--time-limit",
        "22",
    ]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    let events: Vec<&str> =
        results["cluster_events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(events.contains(&"voter_replaced"), "the autopilot replaced no partitioned voter: {events:?}");
}

#[test]
fn power_loss_loses_no_acknowledged_write() {
    if !root_or_skip("power_loss_loses_no_acknowledged_write") {
        return;
    }
    // Each node on its own disk that drops what was not fsynced; one node, the leader or all of
    // them lose power at a time.
    let (code, stdout, results) =
        jepsen(&["--nemesis", "power-loss,power-loss-all", "--nemesis-interval", "2", "--time-limit", "20"]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    assert_eq!(results["lost_writes"].as_array().map(Vec::len), Some(0), "{stdout}");
    let faults = fault_descriptions(&results);
    assert!(faults.iter().any(|f| f.starts_with("power-loss all nodes")), "no power loss of all nodes: {faults:?}");
    let ok_writes = results["ops"]["write"]["ok"].as_u64().unwrap_or(0);
    assert!(ok_writes >= 50, "only {ok_writes} ok writes");
}

#[test]
fn power_loss_catches_a_cluster_that_does_not_fsync() {
    if !root_or_skip("power_loss_catches_a_cluster_that_does_not_fsync") {
        return;
    }
    // The positive control: the same fault against nodes that never fsync their log must be
    // reported as lost acknowledged writes. A check that cannot fail proves nothing.
    let (code, stdout, results) =
        jepsen(&["--unsafe-no-fsync", "--nemesis", "power-loss-all", "--nemesis-interval", "3", "--time-limit", "10"]);
    assert_eq!(code, 1, "expected exit 1 (not linearizable): {stdout}");
    let lost = results["lost_writes"].as_array().map(Vec::len).unwrap_or(0);
    assert!(lost > 0, "no lost acknowledged writes reported: {stdout}");
    assert!(stdout.contains("acknowledged writes lost"), "{stdout}");
}

#[test]
fn slow_follower_disks_slow_the_cluster_down_without_stopping_it() {
    if !root_or_skip("slow_follower_disks_slow_the_cluster_down_without_stopping_it") {
        return;
    }
    let (code, stdout, results) = jepsen(&["--nemesis", "slow-disk", "--nemesis-interval", "3", "--time-limit", "20"]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    let faults = fault_descriptions(&results);
    assert!(faults.iter().any(|f| f.starts_with("slow-disk n")), "no slow disk: {faults:?}");
    let ok_writes = results["ops"]["write"]["ok"].as_u64().unwrap_or(0);
    assert!(ok_writes >= 20, "only {ok_writes} ok writes: slow followers must not stop the cluster");
}

/// The clock-skew runs: node 1 leads with its clocks at a fifth of real speed (libfaketime), is
/// cut off for 10 s, and pinned readers keep asking it.
fn skewed_leader_run(consistency: &str) -> (i32, String, serde_json::Value) {
    jepsen(&[
        "--read-consistency",
        consistency,
        "--clock-rate",
        "1=0.2",
        "--initial-leader",
        "1",
        "--readers",
        "6",
        "--client-timeout-ms",
        "1000",
        "--nemesis",
        "partition-leader",
        "--nemesis-interval",
        "10",
        "--time-limit",
        "25",
    ])
}

#[test]
fn lease_reads_are_caught_when_the_leaders_clock_runs_slow() {
    if !root_or_skip("lease_reads_are_caught_when_the_leaders_clock_runs_slow") {
        return;
    }
    // A lease read trusts the leader's clock: running slow, it believes its lease for five times
    // as long as the followers wait before electing another leader, and serves stale reads.
    let (code, stdout, _) = skewed_leader_run("lease");
    assert_eq!(code, 1, "expected exit 1 (not linearizable): {stdout}");
}

#[test]
fn linearizable_reads_do_not_depend_on_clocks() {
    if !root_or_skip("linearizable_reads_do_not_depend_on_clocks") {
        return;
    }
    // The same skew and partition with read-index reads: a quorum confirms every read.
    let (code, stdout, results) = skewed_leader_run("linearizable");
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    assert_eq!(results["settings"]["clock_rates"], "{1: 0.2}", "{}", results["settings"]);
}

/// A run of `workload` under kill, pause and partition: it must pass with faults of each kind and
/// `ops` (f, at least this many ok) done.
fn workload_run_passes(workload: &str, ops: &[(&str, u64)]) -> serde_json::Value {
    let (code, stdout, results) = jepsen(&[
        "--workload",
        workload,
        "--nemesis",
        "kill,pause,partition",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "16",
        "--concurrency",
        "6",
    ]);
    assert_eq!(code, 0, "expected exit 0 (every property holds): {stdout}");
    assert!(stdout.starts_with(&format!("linearizable: {workload} workload")), "{stdout}");
    assert_eq!(results["check"]["workload"], workload);
    for (f, at_least) in ops {
        let ok = results["ops"][*f]["ok"].as_u64().unwrap_or(0);
        assert!(ok >= *at_least, "only {ok} ok {f} operations: {}", results["ops"]);
    }
    let faults: Vec<&str> =
        results["faults"].as_array().unwrap().iter().map(|f| f["fault"].as_str().unwrap()).collect();
    for fault in ["kill", "pause", "partition"] {
        assert!(faults.contains(&fault), "no {fault} fault in {faults:?}");
    }
    results
}

#[test]
fn counter_increments_through_sessions_are_neither_lost_nor_doubled() {
    if !root_or_skip("counter_increments_through_sessions_are_neither_lost_nor_doubled") {
        return;
    }
    let results = workload_run_passes("counter", &[("add", 100), ("read", 20)]);
    let properties: Vec<&str> =
        results["check"]["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert!(properties.contains(&"counter-bounds"), "{properties:?}");
}

#[test]
fn bank_transfers_conserve_the_total_under_faults() {
    if !root_or_skip("bank_transfers_conserve_the_total_under_faults") {
        return;
    }
    workload_run_passes("bank", &[("transfer", 50), ("read", 20)]);
}

#[test]
fn watches_see_the_committed_order_across_faults_and_reconnects() {
    if !root_or_skip("watches_see_the_committed_order_across_faults_and_reconnects") {
        return;
    }
    let results = workload_run_passes("watch", &[("put", 100), ("watch", 10)]);
    let sequences = results["check"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "watch-sequences")
        .expect("watch sequences checked")
        .clone();
    assert!(sequences["operations"].as_u64().unwrap() >= 10, "{sequences}");
}

#[test]
fn blind_retries_without_sessions_are_caught_applying_increments_twice() {
    if !root_or_skip("blind_retries_without_sessions_are_caught_applying_increments_twice") {
        return;
    }
    let (code, stdout, _) = jepsen(&[
        "--workload",
        "counter",
        "--unsafe-blind-retries",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "16",
        "--concurrency",
        "6",
    ]);
    assert_eq!(code, 1, "expected exit 1 (an add applied twice): {stdout}");
    assert!(stdout.contains("applied twice"), "{stdout}");
}

#[test]
fn a_mutual_tls_cluster_stays_linearizable_under_failover() {
    if !root_or_skip("a_mutual_tls_cluster_stays_linearizable_under_failover") {
        return;
    }
    // Members speak mutual TLS (certificates naming member ids), clients must present
    // certificates: replication, votes, forwarding and read-index rounds all go over TLS while
    // leaders are killed, paused and partitioned away.
    let (code, stdout, results) =
        jepsen(&["--tls", "--nemesis", "kill,pause,partition-leader", "--nemesis-interval", "2", "--time-limit", "20"]);
    assert_eq!(code, 0, "expected exit 0 (linearizable): {stdout}");
    assert!(stdout.starts_with("linearizable"), "{stdout}");
    assert_eq!(results["settings"]["tls"], "true", "the run was over TLS");
    for f in ["read", "write", "cas"] {
        let ok = results["ops"][f]["ok"].as_u64().unwrap_or(0);
        assert!(ok >= 100, "only {ok} ok {f} operations over TLS");
    }
}
