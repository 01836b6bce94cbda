//! The `raftkv` command line: help, one-line errors with a non-zero exit, the client
//! subcommands, and `raftkv cluster` started and stopped like a user would.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::cli::{assert_one_line_error, raftkv, stderr, stdout};
use support::{Cluster, ClusterOptions, free_port, phase, raftkv_bin};

#[test]
fn help_and_bad_invocations() {
    let help = raftkv(&["--help"]);
    assert!(help.status.success());
    for cmd in [
        "serve", "cluster", "put", "get", "delete", "cas", "scan", "status", "member", "leader", "backup", "recover",
        "auth",
    ] {
        assert!(stdout(&help).contains(cmd), "--help lists {cmd}");
        assert!(raftkv(&[cmd, "--help"]).status.success(), "{cmd} --help");
    }

    let missing = raftkv(&["serve"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--id"), "{}", stderr(&missing));
    let unknown = raftkv(&["get", "k", "--bogus"]);
    assert_eq!(unknown.status.code(), Some(2));
    let level = raftkv(&["get", "k", "--consistency", "eventual"]);
    assert_eq!(level.status.code(), Some(2));
    assert!(stderr(&level).contains("unknown consistency level"), "{}", stderr(&level));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    assert_one_line_error(&raftkv(&["serve", "--id", "0", "--listen", &listen, "--data-dir", &data]), "--id");
    assert_one_line_error(
        &raftkv(&["serve", "--id", "1", "--listen", &listen, "--data-dir", &data, "--initial-cluster", "2=a:1"]),
        "does not include this node",
    );
    assert_one_line_error(
        &raftkv(&["serve", "--id", "1", "--listen", &listen, "--data-dir", &data, "--initial-cluster", "1=nope"]),
        "HOST:PORT",
    );
    assert_one_line_error(
        &raftkv(&["serve", "--id", "1", "--listen", "not-an-address", "--data-dir", &data]),
        "cannot listen on not-an-address",
    );
    assert_one_line_error(&raftkv(&["get", "k", "--endpoints", "http://127.0.0.1:1"]), "no endpoint reachable");

    // Auth file values: a hash of the password read from stdin, a token and its entry.
    let mut hashing = Command::new(raftkv_bin())
        .args(["auth", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut hashing.stdin.take().unwrap(), b"correct horse\n").unwrap();
    let hashed = hashing.wait_with_output().unwrap();
    assert!(hashed.status.success());
    let hash = stdout(&hashed);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"), "{hash}");
    let token = raftkv(&["auth", "new-token", "--name", "ci"]);
    let printed = stdout(&token);
    assert!(printed.starts_with("token: rk_") && printed.contains("name = \"ci\"") && printed.contains("sha256 = \""));
    assert_one_line_error(&raftkv(&["auth", "new-token", "--name", "a\"b"]), "--name");

    // TLS options: a certificate goes with its key and with a CA; files must exist.
    assert_eq!(raftkv(&["get", "k", "--cert", "c.pem"]).status.code(), Some(2));
    assert_one_line_error(&raftkv(&["get", "k", "--cert", "c.pem", "--key", "k.pem"]), "--cacert");
    assert_one_line_error(&raftkv(&["get", "k", "--cacert", "/nonexistent/ca.pem"]), "/nonexistent/ca.pem");
    assert_one_line_error(&raftkv(&["get", "k", "--endpoints", "https://127.0.0.1:1"]), "--cacert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_against_a_cluster() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let endpoints = cluster.endpoints().join(",");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--endpoints", &endpoints]);
        raftkv(&all)
    };

    phase("put, get, cas, scan, delete");
    let put = run(&["put", "cli/key", "hello world"]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert!(stdout(&put).starts_with("OK revision="));
    let get = run(&["get", "cli/key"]);
    assert_eq!(stdout(&get), "hello world");
    let stale = run(&["get", "cli/key", "--consistency", "stale"]);
    assert!(stale.status.success());
    assert!(run(&["cas", "cli/key", "bonjour", "--expected", "hello world"]).status.success());
    assert_one_line_error(&run(&["cas", "cli/key", "x", "--expected", "hello world"]), "not swapped");
    assert!(run(&["cas", "cli/new", "1", "--absent"]).status.success());
    let scan = run(&["scan", "--prefix", "cli/"]);
    assert_eq!(stdout(&scan), "cli/key\tbonjour\ncli/new\t1\n");
    assert!(stdout(&run(&["delete", "cli/key"])).starts_with("DELETED"));
    assert_one_line_error(&run(&["get", "cli/key"]), "not found");

    phase("an idempotency key makes a rerun of the same write a no-op, and refuses it for another");
    let first = run(&["put", "cli/once", "1", "--idempotency-key", "cli-once-1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let again = run(&["put", "cli/once", "1", "--idempotency-key", "cli-once-1"]);
    assert_eq!(stdout(&again), stdout(&first), "the rerun answers the first revision");
    assert_one_line_error(&run(&["put", "cli/once", "2", "--idempotency-key", "cli-once-1"]), "cli-once-1");
    let deleted = run(&["delete", "cli/once", "--idempotency-key", "cli-once-2"]);
    assert!(stdout(&deleted).starts_with("DELETED"), "{}", stderr(&deleted));
    let redo = run(&["delete", "cli/once", "--idempotency-key", "cli-once-2"]);
    assert_eq!(stdout(&redo), stdout(&deleted), "a rerun delete answers as the first did");
    assert_one_line_error(&run(&["put", "k", "v", "--idempotency-key", ""]), "idempotency key");

    phase("status table");
    let status = run(&["status"]);
    let table = stdout(&status);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(table.contains("leader") && table.contains("voter") && table.contains("LAG_MS"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("127.0.0.1:")).count(), 3, "{table}");

    phase("output: a closed pipe ends quietly, a full device is one error line, --watch redraws");
    output_behaves_like_a_unix_tool(&endpoints);

    phase("durability and bounded staleness");
    let all = run(&["put", "cli/all", "1", "--durability", "all"]);
    assert!(all.status.success(), "{}", stderr(&all));
    let bounded = run(&["get", "cli/all", "--consistency", "stale", "--max-lag-ms", "5000"]);
    assert_eq!(stdout(&bounded), "1", "{}", stderr(&bounded));
    assert_one_line_error(&run(&["get", "cli/all", "--max-lag-ms", "5000"]), "--consistency stale");
    let bad = run(&["put", "k", "v", "--durability", "some"]);
    assert_eq!(bad.status.code(), Some(2));

    phase("member and leader commands");
    let list = run(&["member", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert_eq!(stdout(&list).lines().filter(|l| l.contains("voter") || l.contains("leader")).count(), 3);
    assert_one_line_error(&run(&["member", "promote", "9"]), "not a member");
    assert_one_line_error(&run(&["member", "remove", "9"]), "not a member");
    assert_one_line_error(&run(&["leader", "transfer", "--to", "9"]), "not a member");
    let leader = cluster.wait_for_leader(std::time::Duration::from_secs(10)).await;
    let to = if leader == 1 { "2" } else { "1" };
    let transfer = run(&["leader", "transfer", "--to", to]);
    assert!(transfer.status.success(), "{}", stderr(&transfer));
    assert_eq!(stdout(&transfer).trim(), format!("node {to} leads"));

    phase("serve on an address already in use");
    let data = cluster.dir().join("extra").display().to_string();
    let taken = &cluster.nodes[0].addr;
    assert_one_line_error(&raftkv(&["serve", "--id", "9", "--listen", taken, "--data-dir", &data]), "in use");
}

/// `raftkv status | head -5`, `raftkv status > /dev/full`, `raftkv status --watch` and a get
/// on a terminal, as a user runs them.
fn output_behaves_like_a_unix_tool(endpoints: &str) {
    let spawn = |args: &[&str], stdout: Stdio| {
        Command::new(raftkv_bin())
            .args(args)
            .args(["--endpoints", endpoints])
            .env("RUST_LOG", "warn")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run raftkv")
    };
    // The reader is gone before the first line is written.
    let mut closed = spawn(&["status"], Stdio::piped());
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    assert!(closed.status.success(), "{:?}: {}", closed.status, stderr(&closed));
    assert_eq!(stderr(&closed), "", "a closed pipe ends it quietly");

    let full = spawn(&["status"], Stdio::from(std::fs::File::create("/dev/full").unwrap()));
    assert_one_line_error(&full.wait_with_output().unwrap(), "cannot write to standard output");
    let full = spawn(&["get", "cli/new"], Stdio::from(std::fs::File::create("/dev/full").unwrap()));
    assert_one_line_error(&full.wait_with_output().unwrap(), "No space left on device");

    // --watch: a header and a table per round, until interrupted.
    let mut watch = spawn(&["status", "--watch", "--interval", "100ms"], Stdio::piped());
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut rounds = 0;
    while rounds < 3 {
        let line = lines.next().expect("watch keeps printing").unwrap();
        rounds += usize::from(line.starts_with("every 100ms: "));
    }
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            panic!("--watch did not end on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ended.success(), "Ctrl-C ends --watch with success: {ended:?}");

    // A pipe gets the stored bytes; a terminal (script(1) gives it one) gets a newline after them.
    let piped = spawn(&["get", "cli/new"], Stdio::piped()).wait_with_output().unwrap();
    assert_eq!(piped.stdout, b"1");
    if Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let get = format!("{} get cli/new --endpoints {endpoints}", raftkv_bin().display());
        let tty = Command::new("script").args(["-qec", &get, "/dev/null"]).output().unwrap();
        assert_eq!(stdout(&tty), "1\r\n", "{}", stderr(&tty));
        let raw = Command::new("script").args(["-qec", &format!("{get} --raw"), "/dev/null"]).output().unwrap();
        assert_eq!(stdout(&raw), "1");
    }
}

#[test]
fn cluster_command_runs_and_stops_on_ctrl_c() {
    // Three consecutive free ports.
    let base = loop {
        let base = free_port();
        if base < 65_000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            break base;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(raftkv_bin())
        .args(["cluster", "--data-dir", &dir.path().display().to_string(), "--base-port", &base.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start raftkv cluster");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut printed = Vec::new();
    while Instant::now() < deadline {
        let line = lines.next().expect("cluster output").expect("utf-8");
        printed.push(line.clone());
        if line.starts_with("leader: node") {
            break;
        }
    }
    assert!(printed.iter().any(|l| l.starts_with("leader: node")), "no leader reported: {printed:?}");
    assert_eq!(printed.iter().filter(|l| l.contains(" -> http://127.0.0.1:")).count(), 3, "{printed:?}");

    let endpoints = (0..3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect::<Vec<_>>().join(",");
    let put = raftkv(&["put", "k", "v", "--endpoints", &endpoints]);
    assert!(put.status.success(), "{}", stderr(&put));

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "cluster exited with {status}: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
    for i in 0..3 {
        assert!(std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok(), "node port {} still in use", base + i);
    }
}
