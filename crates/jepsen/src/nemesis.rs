//! Faults: kill, pause, partition, membership changes, power loss and slow disks, one at a time,
//! each recorded with its start and end.

use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;

use crate::cluster::Cluster;
use crate::workload::{Recorder, Rng};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a node (half the time the leader), restart it afterwards.
    Kill,
    /// SIGSTOP a node (half the time the leader), SIGCONT it afterwards.
    Pause,
    /// Cut links with nftables: isolate a node, isolate the leader, split majority from
    /// minority, or cut one direction of one link. Needs the test network.
    Partition,
    /// Only isolate the current leader (a partition schedule for targeted tests).
    PartitionLeader,
    /// Remove a voter from the membership (joint consensus), then add it back as a learner and
    /// promote it again.
    Member,
    /// Cut the power of a node (half the time the leader), or a third of the time of every node
    /// at once: SIGKILL, then drop everything its disk had not fsynced; restart afterwards. Needs
    /// the fault disks.
    PowerLoss,
    /// Only cut the power of every node at once (the worst case, for targeted tests and the
    /// positive control).
    PowerLossAll,
    /// Make the fsyncs of one or two followers answer 100 ms to 2 s late; heal afterwards. Needs
    /// the fault disks.
    SlowDisk,
}

impl Fault {
    /// Every fault, in the order `--nemesis` documents them.
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Partition,
        Fault::PartitionLeader,
        Fault::Member,
        Fault::PowerLoss,
        Fault::PowerLossAll,
        Fault::SlowDisk,
    ];

    /// Whether the fault needs the namespaced test network.
    pub fn needs_network(self) -> bool {
        matches!(self, Fault::Partition | Fault::PartitionLeader)
    }

    /// Whether the fault needs every node on a fault disk (root, FUSE).
    pub fn needs_disks(self) -> bool {
        matches!(self, Fault::PowerLoss | Fault::PowerLossAll | Fault::SlowDisk)
    }

    /// The fault's name on the command line and in histories.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::PartitionLeader => "partition-leader",
            Fault::Member => "member",
            Fault::PowerLoss => "power-loss",
            Fault::PowerLossAll => "power-loss-all",
            Fault::SlowDisk => "slow-disk",
        }
    }
}

/// Parses `--nemesis`: a comma list of `kill`, `pause`, `partition`, `partition-leader`, `member`,
/// `power-loss`, `power-loss-all`, `slow-disk`, or `all` (kill, pause, partition, member), `disk` (power-loss,
/// slow-disk) or `none`.
pub fn parse_faults(s: &str) -> anyhow::Result<Vec<Fault>> {
    let mut faults = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => faults.extend([Fault::Kill, Fault::Pause, Fault::Partition, Fault::Member]),
            "disk" => faults.extend([Fault::PowerLoss, Fault::SlowDisk]),
            "none" => {}
            other => faults.push(other.parse()?),
        }
    }
    faults.dedup();
    Ok(faults)
}

impl FromStr for Fault {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Fault> {
        match Fault::ALL.into_iter().find(|f| f.name() == s) {
            Some(fault) => Ok(fault),
            None => {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                bail!("unknown fault {s:?}; expected {}, all, disk or none", names.join(", "))
            }
        }
    }
}

/// What is currently broken, so that it can be repaired.
enum Active {
    /// Killed, and whether for good (not restarted: the autopilot's standbys take over).
    Killed(usize, bool),
    Paused(usize),
    Partitioned,
    Removed(usize),
    PowerLost(Vec<usize>),
    SlowDisks(Vec<usize>),
}

/// Injects one fault at a time.
pub struct Nemesis {
    faults: Vec<Fault>,
    rng: Rng,
    round: u64,
    active: Option<(Active, &'static str)>,
    /// Kills that may still be permanent (one per standby).
    permanent_kills: usize,
    kills: u64,
}

impl Nemesis {
    /// A nemesis choosing among `faults`.
    pub fn new(faults: Vec<Fault>, seed: u64) -> Nemesis {
        Nemesis { faults, rng: Rng::new(seed), round: 0, active: None, permanent_kills: 0, kills: 0 }
    }

    /// Makes every second kill permanent, `n` times: the killed voter is never restarted, and the
    /// autopilot must replace it by a standby for the cluster to stay available.
    pub fn with_permanent_kills(mut self, n: usize) -> Nemesis {
        self.permanent_kills = n;
        self
    }

    /// A running voter to break (the current voters: standbys promoted by the autopilot count):
    /// half the time the leader.
    async fn target(&mut self, cluster: &Cluster) -> usize {
        if self.rng.below(2) == 0
            && let Some(leader) = cluster.leader().await
        {
            return leader;
        }
        let voters: Vec<usize> =
            cluster.current_voters().await.into_iter().filter(|id| cluster.is_running(*id)).collect();
        if voters.is_empty() {
            return self.rng.below(cluster.voters as u64) as usize + 1;
        }
        voters[self.rng.below(voters.len() as u64) as usize]
    }

    /// Starts the next fault and records `start-<fault>`.
    pub async fn start(&mut self, cluster: &mut Cluster, rec: &Recorder) -> anyhow::Result<()> {
        if self.faults.is_empty() {
            return Ok(());
        }
        let fault = self.faults[(self.round % self.faults.len() as u64) as usize];
        self.round += 1;
        // Faults hit the voters; learners only replicate from them.
        let n = cluster.voters;
        match fault {
            Fault::Kill => {
                let node = self.target(cluster).await;
                self.kills += 1;
                let permanent = self.permanent_kills > 0 && self.kills.is_multiple_of(2);
                if permanent {
                    self.permanent_kills -= 1;
                }
                cluster.kill(node);
                let what = if permanent { format!("n{node} for good") } else { format!("n{node}") };
                rec.nemesis("start-kill", what);
                self.active = Some((Active::Killed(node, permanent), "stop-kill"));
            }
            Fault::Pause => {
                let node = self.target(cluster).await;
                cluster.pause(node);
                rec.nemesis("start-pause", format!("n{node}"));
                self.active = Some((Active::Paused(node), "stop-pause"));
            }
            Fault::Partition | Fault::PartitionLeader => {
                let Some(net) = &cluster.net else {
                    bail!("partitions need the namespaced test network (run as root)")
                };
                let leader = cluster.leader().await.unwrap_or(1);
                let others = |x: &[usize]| (1..=n).filter(|i| !x.contains(i)).collect::<Vec<_>>();
                let kind = if fault == Fault::PartitionLeader { 1 } else { self.rng.below(4) };
                let described = match kind {
                    0 => {
                        // Any node, learners included: an isolated learner falls behind.
                        let all = cluster.nodes.len();
                        let node = self.rng.below(all as u64) as usize + 1;
                        let others = |x: &[usize]| (1..=all).filter(|i| !x.contains(i)).collect::<Vec<_>>();
                        net.split(&[node], &others(&[node]))?;
                        format!("isolate n{node}")
                    }
                    1 => {
                        net.split(&[leader], &others(&[leader]))?;
                        format!("isolate leader n{leader}")
                    }
                    2 => {
                        let minority: Vec<usize> = (1..=n).filter(|i| *i != leader).take((n - 1) / 2).collect();
                        let mut minority = minority;
                        minority.push(leader);
                        net.split(&minority, &others(&minority))?;
                        format!("split {minority:?} | {:?}", others(&minority))
                    }
                    _ => {
                        let to = others(&[leader])[self.rng.below(n as u64 - 1) as usize];
                        net.cut(leader, to)?;
                        format!("one-way n{leader} -> n{to}")
                    }
                };
                rec.nemesis("start-partition", described);
                self.active = Some((Active::Partitioned, "stop-partition"));
            }
            Fault::Member => {
                let node = self.target(cluster).await;
                let client = admin_client(cluster)?;
                let removed = retry_change(|| client.remove_member(node as u64, false)).await;
                let what = match &removed {
                    Ok(_) => format!("remove n{node}"),
                    Err(e) => format!("remove n{node} refused: {e}"),
                };
                rec.nemesis("start-member", what);
                self.active = Some((Active::Removed(node), "stop-member"));
            }
            Fault::PowerLoss | Fault::PowerLossAll => {
                let targets: Vec<usize> = if fault == Fault::PowerLossAll || self.rng.below(3) == 0 {
                    (1..=cluster.nodes.len()).filter(|id| cluster.is_running(*id)).collect()
                } else {
                    vec![self.target(cluster).await]
                };
                let mut described = Vec::new();
                for &node in &targets {
                    let cut = cluster.power_cut(node)?;
                    described.push(format!("n{node} ({cut})"));
                }
                let scope = if targets.len() > 1 { "all nodes: " } else { "" };
                rec.nemesis("start-power-loss", format!("{scope}{}", described.join(", ")));
                self.active = Some((Active::PowerLost(targets), "stop-power-loss"));
            }
            Fault::SlowDisk => {
                let leader = cluster.leader().await;
                let mut followers: Vec<usize> = cluster
                    .current_voters()
                    .await
                    .into_iter()
                    .filter(|id| Some(*id) != leader && cluster.is_running(*id))
                    .collect();
                let count = (1 + self.rng.below(2) as usize).min(followers.len());
                let mut slowed = Vec::new();
                for _ in 0..count {
                    slowed.push(followers.remove(self.rng.below(followers.len() as u64) as usize));
                }
                let delay = Duration::from_millis(100 + self.rng.below(1_900));
                for &node in &slowed {
                    cluster.set_fsync_delay(node, delay)?;
                }
                let names: Vec<String> = slowed.iter().map(|n| format!("n{n}")).collect();
                rec.nemesis("start-slow-disk", format!("{} fsync +{} ms", names.join(" "), delay.as_millis()));
                self.active = Some((Active::SlowDisks(slowed), "stop-slow-disk"));
            }
        }
        Ok(())
    }

    /// Repairs the current fault, if any, and records `stop-<fault>`.
    pub async fn stop(&mut self, cluster: &mut Cluster, rec: &Recorder) -> anyhow::Result<()> {
        let Some((active, name)) = self.active.take() else { return Ok(()) };
        let what = match active {
            Active::Killed(node, true) => format!("n{node} stays dead"),
            Active::Killed(node, false) => {
                cluster.restart(node)?;
                format!("n{node}")
            }
            Active::Paused(node) => {
                cluster.resume(node);
                format!("n{node}")
            }
            Active::Partitioned => {
                if let Some(net) = &cluster.net {
                    net.heal()?;
                }
                "healed".to_string()
            }
            Active::Removed(node) => {
                let client = admin_client(cluster)?;
                let addr = cluster.nodes[node - 1].addr.clone();
                let readded = match retry_change(|| client.add_learner(node as u64, &addr)).await {
                    Ok(_) => retry_change(|| client.promote(node as u64, false)).await,
                    Err(e) => Err(e),
                };
                match readded {
                    Ok(_) => format!("re-add n{node}"),
                    Err(e) => format!("re-add n{node} failed: {e}"),
                }
            }
            Active::PowerLost(nodes) => {
                for &node in &nodes {
                    cluster.restart(node)?;
                }
                let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
                format!("power back on {}", names.join(" "))
            }
            Active::SlowDisks(nodes) => {
                for &node in &nodes {
                    cluster.set_fsync_delay(node, Duration::ZERO)?;
                }
                "healed".to_string()
            }
        };
        rec.nemesis(name, what);
        Ok(())
    }
}

/// Runs the nemesis: every `interval`, a fault for `interval`, until `stop` fires.
pub async fn run_schedule(
    nemesis: &mut Nemesis,
    cluster: &mut Cluster,
    rec: &Recorder,
    interval: Duration,
    until: std::time::Instant,
) -> anyhow::Result<()> {
    loop {
        if std::time::Instant::now() + 2 * interval > until {
            break;
        }
        tokio::time::sleep(interval).await;
        nemesis.start(cluster, rec).await?;
        tokio::time::sleep(interval).await;
        nemesis.stop(cluster, rec).await?;
    }
    Ok(())
}

/// A client of the voters, for membership changes.
fn admin_client(cluster: &Cluster) -> anyhow::Result<raftkv_client::Client> {
    Ok(crate::cluster_client::client(cluster.voter_endpoints(), Duration::from_secs(10))?)
}

/// Runs a membership change, retrying for up to 20 s while another change, an election or a
/// catching-up member stands in the way.
async fn retry_change<F, Fut>(mut change: F) -> Result<raftkv_client::MembersResponse, raftkv_client::ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<raftkv_client::MembersResponse, raftkv_client::ClientError>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match change().await {
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(
                        e.code(),
                        Some("change_in_progress" | "unsafe_change" | "no_leader" | "not_leader" | "unavailable")
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
