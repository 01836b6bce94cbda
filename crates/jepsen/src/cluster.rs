//! The nodes under test: real `raftkv serve` processes, in their own namespaces when the test
//! network is available, on loopback otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftkv_client::{Client, Role};

use crate::testnet::TestNet;

/// Port every node listens on inside its namespace.
const NETNS_PORT: u16 = 7000;

/// One `raftkv serve` process.
pub struct NodeProc {
    /// 1-based id.
    pub id: usize,
    /// `host:port` it serves on.
    pub addr: String,
    netns: Option<String>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn start(&mut self, bin: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start node {}", self.id))?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The cluster under test. Dropping it kills every node and removes the test network.
pub struct Cluster {
    /// The nodes, by index `id - 1`.
    pub nodes: Vec<NodeProc>,
    /// The namespaces, when running as root.
    pub net: Option<TestNet>,
    bin: PathBuf,
}

impl Cluster {
    /// Starts `n` nodes with data under `dir`: in namespaces if `net` is given, on loopback ports
    /// otherwise.
    pub fn start(bin: PathBuf, n: usize, dir: &Path, net: Option<TestNet>) -> anyhow::Result<Cluster> {
        let addrs: Vec<String> = (1..=n)
            .map(|i| match &net {
                Some(net) => format!("{}:{NETNS_PORT}", net.addr(i)),
                None => {
                    let port =
                        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
                    format!("127.0.0.1:{}", port.unwrap_or(0))
                }
            })
            .collect();
        let initial: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
        let initial = initial.join(",");
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i + 1;
            let args = vec![
                "serve".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--data-dir".into(),
                dir.join(format!("n{id}")).display().to_string(),
                "--initial-cluster".into(),
                initial.clone(),
                // Short write timeout: a client that gives up sooner would see more `info`.
                "--write-timeout-ms".into(),
                "2000".into(),
            ];
            nodes.push(NodeProc {
                id,
                addr: addr.clone(),
                netns: net.as_ref().map(|net| net.netns(id)),
                args,
                log: dir.join(format!("n{id}.log")),
                child: None,
            });
        }
        let mut cluster = Cluster { nodes, net, bin };
        for i in 0..n {
            cluster.restart(i + 1)?;
        }
        Ok(cluster)
    }

    /// Starts node `id` (again).
    pub fn restart(&mut self, id: usize) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        self.nodes[id - 1].start(&bin)
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: usize) {
        self.nodes[id - 1].kill9();
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&self, id: usize) {
        self.nodes[id - 1].signal(Signal::SIGSTOP);
    }

    /// SIGCONTs node `id`.
    pub fn resume(&self, id: usize) {
        self.nodes[id - 1].signal(Signal::SIGCONT);
    }

    /// The endpoints of all nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(NodeProc::url).collect()
    }

    /// The node that reports itself leader with the highest term, if any answers.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for node in &self.nodes {
            let Ok(client) = Client::with_timeout([node.url()], Duration::from_millis(500)) else { continue };
            if let Ok(s) = client.status().await
                && s.role == Role::Leader
                && best.is_none_or(|(term, _)| s.term > term)
            {
                best = Some((s.term, node.id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Waits up to `timeout` for a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
    }
}
