//! Recovery measurements on clusters this tool starts itself: failover time (SIGKILL of the leader
//! under a write load until the first write acknowledged after it) and catch-up time (a member
//! restarted after missing N writes, until it has applied them), for raftkv and etcd alike.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_client::{Client, Consistency};
use serde::Serialize;

use crate::target::{ConnectOptions, System, Target, etcd_status, leads};

/// What to measure, on which system.
#[derive(Debug, Clone)]
pub struct RecoverySpec {
    /// The system.
    pub system: System,
    /// Its server binary (`raftkv` or `etcd`).
    pub bin: PathBuf,
    /// First of the consecutive ports the cluster uses.
    pub base_port: u16,
    /// Leader kills to time.
    pub rounds: usize,
    /// Writes a restarted member has missed.
    pub catch_up_writes: usize,
    /// Where the data goes (one subdirectory per member).
    pub dir: PathBuf,
}

/// Failover and catch-up times, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryResult {
    /// The system.
    pub system: System,
    /// Each round's time from SIGKILL of the leader to the first write acknowledged after it.
    pub failover_ms: Vec<f64>,
    /// Median of `failover_ms`.
    pub failover_median_ms: f64,
    /// Writes the restarted member missed.
    pub catch_up_writes: usize,
    /// Time from restarting it to its having applied everything committed before the restart
    /// (process start included).
    pub catch_up_ms: f64,
}

/// One member process.
struct Member {
    client_url: String,
    args: Vec<String>,
    child: Option<Child>,
}

/// A three-member cluster of `spec.system`, killed on drop.
pub(crate) struct ProcCluster {
    system: System,
    bin: PathBuf,
    members: Vec<Member>,
}

impl ProcCluster {
    /// Starts the members, with data in `spec.dir/<system>-<i>` (i from 1).
    pub(crate) fn start(spec: &RecoverySpec) -> anyhow::Result<ProcCluster> {
        let p = |i: u16| spec.base_port + i;
        let data = |i: usize| spec.dir.join(format!("{}-{i}", spec.system)).display().to_string();
        let members: Vec<Member> = match spec.system {
            System::Raftkv => {
                let initial: Vec<String> = (1..=3).map(|i| format!("{i}=127.0.0.1:{}", p(i))).collect();
                (1..=3)
                    .map(|i| Member {
                        client_url: format!("http://127.0.0.1:{}", p(i)),
                        args: [
                            "serve",
                            "--id",
                            &i.to_string(),
                            "--listen",
                            &format!("127.0.0.1:{}", p(i)),
                            "--data-dir",
                            &data(i as usize),
                            "--initial-cluster",
                            &initial.join(","),
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                        child: None,
                    })
                    .collect()
            }
            System::Etcd => {
                let peer = |i: u16| format!("http://127.0.0.1:{}", p(10 + i));
                let initial: Vec<String> = (1..=3).map(|i| format!("e{i}={}", peer(i))).collect();
                (1..=3)
                    .map(|i| {
                        let client = format!("http://127.0.0.1:{}", p(i));
                        Member {
                            client_url: client.clone(),
                            args: [
                                "--name",
                                &format!("e{i}"),
                                "--data-dir",
                                &data(i as usize),
                                "--listen-client-urls",
                                &client,
                                "--advertise-client-urls",
                                &client,
                                "--listen-peer-urls",
                                &peer(i),
                                "--initial-advertise-peer-urls",
                                &peer(i),
                                "--initial-cluster",
                                &initial.join(","),
                                "--initial-cluster-state",
                                "new",
                            ]
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                            child: None,
                        }
                    })
                    .collect()
            }
        };
        let mut cluster = ProcCluster { system: spec.system, bin: spec.bin.clone(), members };
        for i in 0..3 {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let child = Command::new(&self.bin)
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The index of the member that leads, as the members report it.
    pub(crate) async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_some() && leads(self.system, &m.client_url).await {
                return Some(i);
            }
        }
        None
    }

    /// (applied index of member `i`, last index of the leader), as each reports it.
    async fn progress(&self, i: usize, leader: usize) -> Option<(u64, u64)> {
        let url = |j: usize| self.members[j].client_url.clone();
        match self.system {
            System::Raftkv => {
                let status = |j: usize| async move {
                    Client::with_timeout([url(j)], Duration::from_millis(500)).ok()?.status().await.ok()
                };
                Some((status(i).await?.applied_index, status(leader).await?.commit_index))
            }
            System::Etcd => {
                let mine = etcd_status(&url(i)).await.ok()?;
                let theirs = etcd_status(&url(leader)).await.ok()?;
                Some((mine.applied_index, theirs.raft_index))
            }
        }
    }

    pub(crate) async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("{}: no leader within {timeout:?}", self.system);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Writers that put unique keys until stopped, recording when each acknowledged write was sent.
struct Writers {
    stop: Arc<AtomicBool>,
    /// (sent, acknowledged) of every acknowledged write.
    acks: Arc<Mutex<Vec<(Instant, Instant)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(system: System, endpoints: &[String], clients: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|n| {
                let (stop, acks) = (stop.clone(), acks.clone());
                let endpoints = endpoints.to_vec();
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    let mut target = None;
                    while !stop.load(Ordering::Relaxed) {
                        if target.is_none() {
                            // Every endpoint, so that a client whose node died moves on.
                            target = connect(system, &endpoints, n).await;
                            if target.is_none() {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        }
                        seq += 1;
                        let sent = Instant::now();
                        let key = format!("recovery/{n}/{seq}");
                        let ok = tokio::time::timeout(
                            Duration::from_secs(2),
                            target.as_mut().expect("connected").put(&key, b"x"),
                        )
                        .await;
                        match ok {
                            Ok(Ok(())) => acks.lock().expect("acks").push((sent, Instant::now())),
                            _ => {
                                target = None;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acks, tasks }
    }

    /// The first write sent after `t` and acknowledged, waiting up to `timeout`.
    async fn first_ack_after(&self, t: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let first = self.acks.lock().expect("acks").iter().filter(|(sent, _)| *sent >= t).map(|(_, a)| *a).min();
            if first.is_some() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A writer's connection: short timeouts, and every member to fail over to.
async fn connect(system: System, endpoints: &[String], n: usize) -> Option<Target> {
    let options =
        ConnectOptions { timeout: Some(Duration::from_secs(2)), fail_over: true, ..ConnectOptions::default() };
    Target::connect_with(system, endpoints, n, Consistency::Linearizable, options).await.ok()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Runs the failover rounds, then the catch-up measurement, on a fresh cluster.
pub async fn measure(spec: RecoverySpec) -> anyhow::Result<RecoveryResult> {
    std::fs::create_dir_all(&spec.dir)?;
    let mut cluster = ProcCluster::start(&spec)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let endpoints = cluster.endpoints();

    let mut failover_ms = Vec::new();
    for round in 0..spec.rounds {
        let writers = Writers::start(spec.system, &endpoints, 8);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let killed = Instant::now();
        cluster.kill(leader);
        let Some(first) = writers.first_ack_after(killed, Duration::from_secs(30)).await else {
            bail!("{}: no write acknowledged within 30 s of killing the leader", spec.system);
        };
        let ms = (first - killed).as_secs_f64() * 1000.0;
        eprintln!("{} failover round {}: {ms:.0} ms", spec.system, round + 1);
        failover_ms.push(ms);
        writers.stop().await;
        cluster.start_member(leader)?;
        settle(&cluster, leader).await?;
    }

    // Catch-up: a follower misses `catch_up_writes` writes, then restarts.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let live: Vec<String> =
        endpoints.iter().enumerate().filter(|(i, _)| *i != follower).map(|(_, e)| e.clone()).collect();
    let writers = Writers::start(spec.system, &live, 32);
    while writers.acks.lock().expect("acks").len() < spec.catch_up_writes {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writers.stop().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let Some((_, target)) = cluster.progress(leader, leader).await else {
        bail!("{}: could not read the leader's progress", spec.system)
    };
    let restarted = Instant::now();
    cluster.start_member(follower)?;
    loop {
        if let Some((applied, _)) = cluster.progress(follower, leader).await
            && applied >= target
        {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(120) {
            bail!("{}: the restarted member did not catch up within 120 s", spec.system);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let catch_up_ms = restarted.elapsed().as_secs_f64() * 1000.0;
    eprintln!("{} catch-up after {} missed writes: {catch_up_ms:.0} ms", spec.system, spec.catch_up_writes);
    Ok(RecoveryResult {
        system: spec.system,
        failover_median_ms: median(&failover_ms),
        failover_ms,
        catch_up_writes: spec.catch_up_writes,
        catch_up_ms,
    })
}

/// Waits until the restarted member `i` has caught up and a leader is established.
async fn settle(cluster: &ProcCluster, i: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        if let Some((applied, last)) = cluster.progress(i, leader).await
            && applied >= last
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: member {} did not catch up after restart", cluster.system, i + 1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
