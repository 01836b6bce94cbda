//! Writes with slow follower disks, raftkv and etcd alike: each member's data on a
//! `raftkv-faultfs` disk of its own, no, one or two followers' fsyncs answered late, and the
//! same closed-loop write load. What a slow disk costs, and whether the leader keeps its
//! leadership through it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raftkv_client::Consistency;
use raftkv_faultfs::FaultFs;
use serde::Serialize;

use crate::load::{LoadSpec, Workload};
use crate::recovery::{ProcCluster, RecoverySpec};
use crate::target::{Placement, System, leads};

/// What to measure.
#[derive(Debug, Clone)]
pub struct SlowDiskSpec {
    /// The systems and their server binaries.
    pub systems: Vec<(System, PathBuf)>,
    /// How late a slow disk answers each fsync.
    pub delay: Duration,
    /// Concurrent writers.
    pub clients: usize,
    /// Measured time per row.
    pub duration: Duration,
    /// Value size.
    pub value_size: usize,
    /// First of the ports the clusters use.
    pub base_port: u16,
    /// Where the disks go.
    pub dir: PathBuf,
}

/// One row: a system with some slow followers.
#[derive(Debug, Clone, Serialize)]
pub struct SlowDiskRow {
    /// The system.
    pub system: System,
    /// Followers with a slow disk.
    pub slow_followers: usize,
    /// The fsync delay of a slow disk, ms.
    pub delay_ms: u64,
    /// Acknowledged writes per second.
    pub writes_per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Failed writes.
    pub errors: u64,
    /// Whether the member that led before the disks slowed down still leads after the load.
    pub leader_kept: bool,
}

/// Measures every system with 0, 1 and 2 slow followers, each on a fresh cluster.
pub async fn measure(spec: &SlowDiskSpec) -> anyhow::Result<Vec<SlowDiskRow>> {
    let mut rows = Vec::new();
    for (system, bin) in &spec.systems {
        for slow in 0..=2 {
            rows.push(measure_one(spec, *system, bin, slow).await?);
        }
    }
    Ok(rows)
}

async fn measure_one(
    spec: &SlowDiskSpec,
    system: System,
    bin: &std::path::Path,
    slow: usize,
) -> anyhow::Result<SlowDiskRow> {
    let dir = spec.dir.join(format!("{system}-{slow}"));
    // The disks are mounted where the cluster keeps each member's data, and outlive it.
    let mut disks = Vec::new();
    for i in 1..=3 {
        let mount = dir.join(format!("{system}-{i}"));
        std::fs::create_dir_all(&mount)?;
        let disk = FaultFs::mount(&dir.join(format!("disk-{i}")), &mount)
            .with_context(|| format!("mount a fault disk at {}", mount.display()))?;
        disks.push(disk);
    }
    let recovery = RecoverySpec {
        system,
        bin: bin.to_path_buf(),
        base_port: spec.base_port,
        rounds: 0,
        catch_up_writes: 0,
        dir: dir.clone(),
    };
    let cluster = ProcCluster::start(&recovery)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let endpoints = cluster.endpoints();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &f in followers.iter().take(slow) {
        disks[f].control().set_fsync_delay(spec.delay);
    }
    let load = LoadSpec {
        system,
        endpoints: endpoints.clone(),
        placement: Placement::Leader,
        read_preference: raftkv_client::ReadPreference::default(),
        workload: Workload::Write,
        consistency: Consistency::Linearizable,
        clients: spec.clients,
        duration: spec.duration,
        warmup: Duration::from_secs(2),
        value_size: spec.value_size,
        keys: 10_000,
        read_ratio: 0.0,
        progress: false,
    };
    let result = crate::load::run(load).await?;
    let leader_kept = leads(system, &endpoints[leader]).await;
    drop(cluster);
    drop(disks);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(SlowDiskRow {
        system,
        slow_followers: slow,
        delay_ms: spec.delay.as_millis() as u64,
        writes_per_sec: result.ops_per_sec,
        p50_ms: result.p50_ms,
        p99_ms: result.p99_ms,
        errors: result.errors,
        leader_kept,
    })
}

/// The rows as a markdown table.
pub fn markdown(rows: &[SlowDiskRow]) -> String {
    let mut out = String::from(
        "| system | slow followers | fsync delay ms | writes/s | p50 ms | p99 ms | errors | leader kept |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} |\n",
            r.system,
            r.slow_followers,
            if r.slow_followers == 0 { 0 } else { r.delay_ms },
            r.writes_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            if r.leader_kept { "yes" } else { "no" }
        ));
    }
    out
}
