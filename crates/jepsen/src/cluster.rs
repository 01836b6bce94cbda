//! The nodes under test: real `raftkv serve` processes, in their own namespaces when the test
//! network is available, on loopback otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raftkv_client::Role;
use raftkv_faultfs::{FaultFs, PowerCut};

use crate::testnet::TestNet;

/// The multi-threaded libfaketime (Debian's `faketime` package).
pub fn libfaketime() -> anyhow::Result<PathBuf> {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("skewed clocks need libfaketime (Debian: apt install faketime)")
}

/// How the nodes are started.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// Founding voters (ids `1..=voters`).
    pub voters: usize,
    /// Nodes that join with `--join` (after the voters).
    pub learners: usize,
    /// Nodes that join with `--join --standby` (after the learners).
    pub standbys: usize,
    /// Give every node a disk of its own: a [`FaultFs`] mount that loses what was not fsynced on
    /// a power cut and can be slowed down. Needs root.
    pub fault_disks: bool,
    /// Start the nodes with `--unsafe-no-fsync` (a positive control for power-loss tests).
    pub unsafe_no_fsync: bool,
    /// Nodes whose clocks run at another rate (`id -> rate`, 0.5: half speed), started under
    /// libfaketime: every clock the node reads, monotonic ones included, runs at that rate.
    pub clock_rates: std::collections::BTreeMap<usize, f64>,
    /// Run over TLS: a throwaway CA, members' mutual TLS with certificates naming their ids,
    /// and client certificates required of every client (the harness's included).
    pub tls: bool,
}

/// The `raftkv serve` arguments of node `id` of a run over TLS: members' mutual TLS, and client
/// certificates required on the port.
fn tls_serve_args(tls: &raftkv_tls::ThrowawayCluster, id: usize) -> Vec<String> {
    let files = tls.member(id as u64);
    let (ca, cert, key) =
        (files.ca.display().to_string(), files.cert.display().to_string(), files.key.display().to_string());
    [
        "--peer-tls-ca",
        &ca,
        "--peer-tls-cert",
        &cert,
        "--peer-tls-key",
        &key,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--tls-client-auth",
        "required",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Port every node listens on inside its namespace.
const NETNS_PORT: u16 = 7000;

/// One `raftkv serve` process.
pub struct NodeProc {
    /// 1-based id.
    pub id: usize,
    /// `host:port` it serves on.
    pub addr: String,
    netns: Option<String>,
    /// The rate of this node's clocks, if skewed.
    clock_rate: Option<f64>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    /// Base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", crate::cluster_client::scheme(), self.addr)
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
        // libfaketime preloaded into the node itself (the `faketime` wrapper would be a parent
        // process that a SIGKILL leaves the node running behind): every clock it reads runs at
        // `rate`, starting from now.
        if let Some(rate) = self.clock_rate {
            cmd.env("LD_PRELOAD", libfaketime()?).env("FAKETIME", format!("+0 x{rate}")).env("FAKETIME_NO_CACHE", "1");
        }
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
    /// The nodes, by index `id - 1`: first the voters, then the learners, then the standbys.
    pub nodes: Vec<NodeProc>,
    /// How many of the nodes are founding voters (ids `1..=voters`); the rest joined as learners.
    pub voters: usize,
    /// How many joined as plain learners (after the voters); the others joined as standbys.
    pub learners: usize,
    /// The namespaces, when running as root.
    pub net: Option<TestNet>,
    bin: PathBuf,
    /// Each node's disk, by index `id - 1`, with [`ClusterSpec::fault_disks`]. Declared after
    /// the nodes: they are killed (in `drop`) before their disks unmount.
    disks: Vec<FaultFs>,
}

impl Cluster {
    /// Starts the nodes of `spec` with data under `dir`: in namespaces if `net` is given, on
    /// loopback ports otherwise.
    pub fn start(bin: PathBuf, spec: &ClusterSpec, dir: &Path, net: Option<TestNet>) -> anyhow::Result<Cluster> {
        let ClusterSpec { voters, learners, standbys, .. } = *spec;
        let n = voters + learners + standbys;
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
        let initial: Vec<String> =
            addrs.iter().take(voters).enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
        let initial = initial.join(",");
        let tls = if spec.tls {
            // A new CA, a certificate per node for its address's host naming its member id, and
            // one for the harness's clients.
            let members: Vec<(u64, Vec<String>)> = addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u64 + 1, vec![a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h).to_string()]))
                .collect();
            Some(raftkv_tls::ThrowawayCa::new("raftkv-jepsen CA")?.write_cluster(
                &dir.join("tls"),
                &members,
                "raftkv-jepsen",
            )?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let join: Vec<String> = addrs.iter().take(voters).map(|a| format!("{scheme}://{a}")).collect();
        let join = join.join(",");
        let mut nodes = Vec::new();
        let mut disks = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i + 1;
            let data_dir = dir.join(format!("n{id}"));
            if spec.fault_disks {
                std::fs::create_dir_all(&data_dir)?;
                let disk = FaultFs::mount(&dir.join(format!("disk-n{id}")), &data_dir)
                    .with_context(|| format!("mount node {id}'s disk"))?;
                disks.push(disk);
            }
            let founding = if id <= voters { "--initial-cluster" } else { "--join" };
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                founding.into(),
                if id <= voters { initial.clone() } else { join.clone() },
                // Short write timeout: a client that gives up sooner would see more `info`.
                "--write-timeout-ms".into(),
                "2000".into(),
            ];
            if id > voters + learners {
                args.push("--standby".into());
            }
            if spec.unsafe_no_fsync {
                args.push("--unsafe-no-fsync".into());
            }
            if let Some(tls) = &tls {
                args.extend(tls_serve_args(tls, id));
            }
            nodes.push(NodeProc {
                id,
                addr: addr.clone(),
                netns: net.as_ref().map(|net| net.netns(id)),
                clock_rate: spec.clock_rates.get(&id).copied(),
                args,
                log: dir.join(format!("n{id}.log")),
                child: None,
            });
        }
        if let Some(tls) = tls {
            crate::cluster_client::use_tls(tls.client());
        }
        let mut cluster = Cluster { nodes, voters, learners, net, bin, disks };
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

    /// Cuts node `id`'s power: SIGKILLs it and drops everything its disk had not fsynced. Needs
    /// [`ClusterSpec::fault_disks`].
    pub fn power_cut(&mut self, id: usize) -> anyhow::Result<PowerCut> {
        self.kill(id);
        let disk = self.disks.get(id - 1).context("power cuts need the nodes' fault disks")?;
        Ok(disk.control().power_cut()?)
    }

    /// Makes node `id`'s disk answer every fsync `delay` late (zero: a healthy disk). Needs
    /// [`ClusterSpec::fault_disks`].
    pub fn set_fsync_delay(&self, id: usize, delay: Duration) -> anyhow::Result<()> {
        let disk = self.disks.get(id - 1).context("slow disks need the nodes' fault disks")?;
        disk.control().set_fsync_delay(delay);
        Ok(())
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

    /// The endpoints of the founding voters.
    pub fn voter_endpoints(&self) -> Vec<String> {
        self.nodes.iter().take(self.voters).map(NodeProc::url).collect()
    }

    /// The endpoints of the learners.
    pub fn learner_endpoints(&self) -> Vec<String> {
        self.nodes.iter().skip(self.voters).take(self.learners).map(NodeProc::url).collect()
    }

    /// The endpoints of every node that joined (learners and standbys).
    fn joined_endpoints(&self) -> Vec<String> {
        self.nodes.iter().skip(self.voters).map(NodeProc::url).collect()
    }

    /// Whether node `id` runs (it may be paused).
    pub fn is_running(&self, id: usize) -> bool {
        self.nodes[id - 1].child.is_some()
    }

    /// The current voters as the leader lists them (standbys promoted by the autopilot
    /// included), or the founding voters when no leader answers.
    pub async fn current_voters(&self) -> Vec<usize> {
        if let Ok(client) = crate::cluster_client::client(self.endpoints(), Duration::from_secs(2))
            && let Ok(members) = client.members().await
        {
            let voters: Vec<usize> = members
                .members
                .iter()
                .filter(|m| matches!(m.role, raftkv_client::MemberRole::Leader | raftkv_client::MemberRole::Voter))
                .map(|m| m.id as usize)
                .collect();
            if !voters.is_empty() {
                return voters;
            }
        }
        (1..=self.voters).collect()
    }

    /// Waits until every learner is a member and has applied what the leader had committed.
    pub async fn wait_for_learners(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(client) = crate::cluster_client::client(self.voter_endpoints(), Duration::from_secs(2)) else {
            return false;
        };
        while Instant::now() < deadline {
            let mut ready = true;
            let committed = client.status().await.map(|s| s.commit_index).unwrap_or(u64::MAX);
            for url in self.joined_endpoints() {
                let applied = client.status_of(&url).await.map(|s| s.applied_index).unwrap_or(0);
                ready &= applied >= committed;
            }
            if ready {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// The node that reports itself leader with the highest term, if any answers.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for node in &self.nodes {
            let Ok(client) = crate::cluster_client::client([node.url()], Duration::from_millis(500)) else { continue };
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
