//! A cluster of real `raftkv serve` processes on free loopback ports and temporary directories,
//! for the scenario tests in this directory.

#![allow(dead_code)]

pub mod browser;
pub mod cli;
pub mod load;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftkv::{Client, NodeStatus, Role};
use tempfile::TempDir;

/// The `raftkv` binary: `RAFTKV_BIN`, or the one cargo built next to this test.
pub fn raftkv_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("RAFTKV_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join("raftkv");
    assert!(bin.exists(), "{} not found: run `cargo build --bins` first (or set RAFTKV_BIN)", bin.display());
    bin
}

/// Whether the test may run: it needs root (for `what`). Without root it skips with a message,
/// except under `CI`, where it fails.
pub fn root_or_skip(test: &str, what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs root ({what}), and CI must run it");
    eprintln!("skipping {test}: needs root for {what}");
    false
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind port 0").port()
}

/// One `raftkv serve` process.
pub struct ProcNode {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `http` or `https`.
    pub scheme: &'static str,
    args: Vec<String>,
    child: Option<Child>,
}

impl ProcNode {
    /// The node's base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Whether the process is running (as far as this harness knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Notices that the process exited by itself (then [`ProcNode::is_running`] says so); returns
    /// its exit status if it did.
    pub fn reap(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("wait for node")?;
        self.child = None;
        Some(status)
    }

    /// Starts the process (again), with its original arguments.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open node log");
        let child = Command::new(raftkv_bin())
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RAFTKV_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn raftkv serve");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process is alive but answers nothing (a partition, as its peers see it).
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP).expect("SIGSTOP");
        }
    }

    /// SIGCONT after [`ProcNode::pause`].
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT).expect("SIGCONT");
        }
    }

    /// SIGTERM and wait for a clean exit (panics if it does not exit cleanly within 15 s).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = child.try_wait().expect("wait for node") {
                    assert!(status.success(), "node {} exited with {status} after SIGTERM", self.id);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("node {} did not exit within 15 s of SIGTERM", self.id);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `raftkv serve` arguments for node `id` at `addr` with data in `data_dir`.
fn serve_args(id: u64, addr: &str, data_dir: &Path) -> Vec<String> {
    let args = ["serve", "--id", &id.to_string(), "--listen", addr, "--data-dir", &data_dir.display().to_string()];
    args.iter().map(|a| a.to_string()).collect()
}

/// Options for [`Cluster::start`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: u64,
    /// Extra arguments for every `raftkv serve`.
    pub extra_args: Vec<String>,
    /// Extra arguments for node N's `raftkv serve` only (index N - 1; missing: none).
    pub node_args: Vec<Vec<String>>,
    /// How the harness's clients speak to the nodes: TLS with these files (the nodes' port must
    /// be TLS), or plain HTTP.
    pub tls: Option<raftkv::ClientTlsFiles>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { nodes: 3, extra_args: Vec::new(), node_args: Vec::new(), tls: None }
    }
}

/// A cluster of real processes. Dropping it kills them and, unless the test failed, removes the
/// data; after a failure the directory is kept and its path printed, logs included.
pub struct Cluster {
    pub nodes: Vec<ProcNode>,
    dir: Option<TempDir>,
    /// The harness's TLS client files, for a cluster whose port is TLS.
    pub tls: Option<raftkv::ClientTlsFiles>,
}

impl Cluster {
    /// Starts `opts.nodes` nodes and waits for a leader.
    pub async fn start(opts: ClusterOptions) -> Cluster {
        let dir = tempfile::Builder::new().prefix("raftkv-test-").tempdir().expect("temp dir");
        let addrs: Vec<String> = (0..opts.nodes).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
        let initial = initial.join(",");
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = dir.path().join(format!("node-{id}"));
            let mut args = serve_args(id, addr, &data_dir);
            args.extend(["--initial-cluster".to_string(), initial.clone()]);
            args.extend(opts.extra_args.iter().cloned());
            args.extend(opts.node_args.get(i).into_iter().flatten().cloned());
            let log = dir.path().join(format!("node-{id}.log"));
            let scheme = if opts.tls.is_some() { "https" } else { "http" };
            nodes.push(ProcNode { id, addr: addr.clone(), data_dir, log, scheme, args, child: None });
        }
        for node in &mut nodes {
            node.start();
        }
        let cluster = Cluster { nodes, dir: Some(dir), tls: opts.tls };
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// A cluster of nodes started (here) on data directories prepared beforehand, e.g. by
    /// `raftkv backup restore`: each `(id, addr, data_dir)` is started with `extra_args`.
    pub async fn from_dirs(nodes: Vec<(u64, String, PathBuf)>, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("raftkv-test-").tempdir().expect("temp dir");
        let mut procs = Vec::new();
        for (id, addr, data_dir) in nodes {
            let mut args = serve_args(id, &addr, &data_dir);
            args.extend(extra_args.iter().map(|a| a.to_string()));
            let log = dir.path().join(format!("node-{id}.log"));
            procs.push(ProcNode { id, addr, data_dir, log, scheme: "http", args, child: None });
        }
        for node in &mut procs {
            node.start();
        }
        let cluster = Cluster { nodes: procs, dir: Some(dir), tls: None };
        cluster.wait_for_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// Adds node `id` (not started) on a free port: with `join`, started with `--join` and the
    /// current endpoints, so it asks to be added as a learner; without, it starts with no
    /// cluster state and waits for an operator to add it.
    pub fn add_node(&mut self, id: u64, join: bool, extra_args: &[&str]) -> &mut ProcNode {
        let addr = format!("127.0.0.1:{}", free_port());
        let data_dir = self.dir().join(format!("node-{id}"));
        let mut args = serve_args(id, &addr, &data_dir);
        if join {
            args.push("--join".into());
            args.push(self.endpoints().join(","));
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let log = self.dir().join(format!("node-{id}.log"));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.nodes.push(ProcNode { id, addr, data_dir, log, scheme, args, child: None });
        self.nodes.last_mut().expect("just pushed")
    }

    /// The address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.nodes.iter().find(|n| n.id == id).expect("node id").addr.clone()
    }

    /// The current leader's status, asked of every running node.
    pub async fn leader_status(&self) -> Option<NodeStatus> {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if let Some(s) = self.status(node.id).await
                && s.role == Role::Leader
            {
                return Some(s);
            }
        }
        None
    }

    /// Waits until node `id` has applied everything the leader has committed (at the time of
    /// asking), and returns that index.
    pub async fn wait_caught_up(&self, id: u64, timeout: Duration) -> u64 {
        let target = wait_for(timeout, "a leader's status", || self.leader_status()).await.commit_index;
        self.wait_applied(id, target, timeout).await;
        target
    }

    /// The node with `id`.
    pub fn node(&mut self, id: u64) -> &mut ProcNode {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Endpoints of all nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(ProcNode::url).collect()
    }

    /// A client of `endpoints`, over TLS when the cluster's port is TLS.
    pub fn client_for(&self, endpoints: &[String], timeout: Duration) -> Client {
        match &self.tls {
            Some(tls) => Client::with_tls(endpoints, timeout, tls).expect("TLS client"),
            None => Client::with_timeout(endpoints, timeout).expect("client"),
        }
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        self.client_for(&self.endpoints(), Duration::from_secs(10))
    }

    /// A client of node `id` only.
    pub fn client_of(&self, id: u64) -> Client {
        let node = self.nodes.iter().find(|n| n.id == id).expect("node id");
        self.client_for(&[node.url()], Duration::from_secs(10))
    }

    /// The status of node `id`, if it answers.
    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        let node = self.nodes.iter().find(|n| n.id == id)?;
        self.client_for(&[node.url()], Duration::from_secs(2)).status().await.ok()
    }

    /// Hands the leadership to node `id` and waits until it leads, retrying the transfer while a
    /// leader just elected does not yet see `id` acknowledge it.
    pub async fn hand_leadership_to(&self, id: u64) {
        wait_for(Duration::from_secs(20), &format!("node {id} to lead"), || async {
            if self.leader_status().await.is_some_and(|s| s.id == id) {
                return Some(());
            }
            let _ = self.client().transfer_leader(id).await;
            None
        })
        .await
    }

    /// Waits until a running node reports itself leader and a majority of running nodes agree.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let running: Vec<u64> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.id).collect();
        wait_for(timeout, "a leader", || async {
            let mut statuses = Vec::new();
            for id in &running {
                if let Some(s) = self.status(*id).await {
                    statuses.push(s);
                }
            }
            let leader = statuses.iter().filter(|s| s.role == Role::Leader).max_by_key(|s| s.term)?;
            // The voters as the leader knows them: the configuration may have changed (a forced
            // recovery shrinks it to one).
            let voters: Vec<u64> = leader.members.values().filter(|m| m.voter).map(|m| m.id).collect();
            let agree = statuses.iter().filter(|s| voters.contains(&s.id) && s.leader == Some(leader.id)).count();
            (agree * 2 > voters.len()).then_some(leader.id)
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        wait_for(timeout, &format!("node {id} to apply index {index}"), || async {
            self.status(id).await.filter(|s| s.applied_index >= index).map(|_| ())
        })
        .await
    }

    /// Path of the cluster's directory (data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("cluster dir").path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test failed: cluster data and node logs kept in {}", kept.display());
            for node in &self.nodes {
                if let Ok(log) = std::fs::read_to_string(&node.log) {
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    eprintln!("--- last lines of node {} log ---", node.id);
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Copies the directory tree `from` to `to` (a data directory, say).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Prints a test phase, so that a failure's output shows where it happened.
pub fn phase(name: &str) {
    eprintln!("--- {name}");
}
