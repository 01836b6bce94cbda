//! A few-second smoke run of `raftkv-bench` against a real three-node raftkv cluster: the tool
//! builds, drives load, and reports sane figures. Speed itself is measured by
//! `scripts/bench-vs-etcd.sh`, never asserted here.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `raftkv-bench` binary under test and the `raftkv` binary next to it.
fn binaries() -> (PathBuf, PathBuf) {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_raftkv-bench"));
    let raftkv = bench.with_file_name("raftkv");
    assert!(raftkv.exists(), "{} not found: run `cargo build --workspace --bins` first", raftkv.display());
    (bench, raftkv)
}

#[test]
fn bench_drives_a_real_cluster() {
    let (bench, raftkv) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let mut nodes = Nodes(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let child = Command::new(&raftkv)
            .args(["serve", "--id", &(i + 1).to_string(), "--listen", addr])
            .args(["--data-dir", &dir.path().join(format!("n{i}")).display().to_string()])
            .args(["--initial-cluster", &initial.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        nodes.0.push(child);
    }
    let endpoints: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let put =
            Command::new(&raftkv).args(["put", "ready", "1", "--endpoints", &endpoints.join(",")]).output().unwrap();
        if put.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }

    for (workload, placement) in [("write", "leader"), ("read", "spread"), ("cas", "spread")] {
        let json = dir.path().join(format!("{workload}.json"));
        let out = Command::new(&bench)
            .args([
                "run",
                "--workload",
                workload,
                "--clients",
                "4",
                "--duration",
                "2",
                "--warmup",
                "0.5",
                "--keys",
                "200",
                "--placement",
                placement,
            ])
            .args(["--endpoints", &endpoints.join(","), "--json", &json.display().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{workload}: {}", String::from_utf8_lossy(&out.stderr));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("ops/s") && table.contains("p99"), "{table}");
        let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert!(result["ops"].as_u64().unwrap() > 0, "{workload}: {result}");
        assert_eq!(result["errors"], 0, "{workload}: {result}");
        assert!(result["p99_ms"].as_f64().unwrap() >= result["p50_ms"].as_f64().unwrap());
    }

    let bad = Command::new(&bench).args(["run", "--clients", "0"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: "));
}

#[test]
fn recovery_times_failover_and_catch_up() {
    let (bench, raftkv) = binaries();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("recovery.json");
    // Below the kernel's ephemeral range (32768 and up by default): a port in it can be taken
    // before the member listens, by any outgoing connection, even one to that very port (a
    // connection attempt that happens to get it as its source port connects to itself).
    let base = 20_000 + (std::process::id() % 600) as u16 * 20;
    let out = Command::new(&bench)
        .args(["recovery", "--raftkv-bin", &raftkv.display().to_string(), "--rounds", "1"])
        .args(["--catch-up-writes", "300", "--base-port", &base.to_string()])
        .args(["--json", &json.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let raftkv = &results[0];
    assert_eq!(raftkv["system"], "raftkv");
    assert!(raftkv["failover_median_ms"].as_f64().unwrap() > 0.0, "{raftkv}");
    assert!(raftkv["catch_up_ms"].as_f64().unwrap() > 0.0, "{raftkv}");
}
