//! One test run: start the cluster, run the workload under the nemesis, heal, read everything
//! back, check the history and write the results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_client::{BackupConsistency, Consistency};
use serde::Serialize;

use crate::backup_reads::run_backup_reads;
use crate::checker::{CheckReport, check};
use crate::cluster::Cluster;
use crate::history::{Event, EventType, Process, write_history};
use crate::nemesis::{Fault, Nemesis, run_schedule};
use crate::report::write_html;
use crate::testnet::TestNet;
use crate::workload::{ClientSpec, KeySpace, Recorder, final_read, run_client};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `raftkv` binary.
    pub bin: PathBuf,
    /// Number of voters.
    pub nodes: usize,
    /// Number of learners (read replicas) that join the voters.
    pub learners: usize,
    /// Send the clients' reads to the learners instead of the voters.
    pub read_from_learners: bool,
    /// How long the workload runs.
    pub time_limit: Duration,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Faults to inject.
    pub faults: Vec<Fault>,
    /// Time between faults, and length of each.
    pub nemesis_interval: Duration,
    /// Consistency of the clients' reads.
    pub read_consistency: Consistency,
    /// Where history.jsonl, results.json and report.html go.
    pub out: PathBuf,
    /// Operations per key before it is retired.
    pub ops_per_key: usize,
    /// Keys in use at a time.
    pub active_keys: usize,
    /// Time budget of the check.
    pub check_budget: Duration,
    /// Take a backup this often during the run and check it as a read of every key in use
    /// (`None`: no backups). Backups go where the reads go (`read_from_learners`).
    pub backup_every: Option<Duration>,
    /// Consistency of those backups.
    pub backup_consistency: BackupConsistency,
}

/// Counts of completions by operation and outcome.
pub type OpCounts = BTreeMap<String, BTreeMap<String, usize>>;

/// A fault window, from its start event to its stop event.
#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    /// The fault (`kill`, `pause`, `partition`).
    pub fault: String,
    /// What it did.
    pub value: String,
    /// Start, ns since the run began.
    pub start: u64,
    /// End, ns since the run began (the end of the run if never stopped).
    pub end: u64,
}

/// What `results.json` holds.
#[derive(Debug, Serialize)]
pub struct RunResults {
    /// The verdict and per-key results.
    pub check: CheckReport,
    /// One-line verdict.
    pub summary: String,
    /// Completions by operation and outcome.
    pub ops: OpCounts,
    /// Fault windows.
    pub faults: Vec<FaultWindow>,
    /// `namespaces` or `loopback`.
    pub network: String,
    /// Settings used.
    pub settings: BTreeMap<String, String>,
    /// Backups taken and checked as reads.
    pub backups: usize,
}

/// Counts completions by `f` and outcome.
pub fn count_ops(events: &[Event]) -> OpCounts {
    let mut counts = OpCounts::new();
    for e in events.iter().filter(|e| e.is_client() && e.kind != EventType::Invoke) {
        let kind = match e.kind {
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            _ => "info",
        };
        *counts.entry(e.f.clone()).or_default().entry(kind.into()).or_default() += 1;
    }
    counts
}

/// Pairs nemesis start and stop events into windows.
pub fn fault_windows(events: &[Event], end: u64) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for e in events.iter().filter(|e| !e.is_client()) {
        if let Some(fault) = e.f.strip_prefix("start-") {
            let value = e.value.as_str().unwrap_or_default().to_string();
            windows.push(FaultWindow { fault: fault.into(), value, start: e.time, end });
        } else if let Some(fault) = e.f.strip_prefix("stop-")
            && let Some(w) = windows.iter_mut().rev().find(|w| w.fault == fault && w.end == end)
        {
            w.end = e.time;
        }
    }
    windows
}

/// Runs the test and writes its files; returns the results.
pub async fn run(opts: RunOptions) -> anyhow::Result<RunResults> {
    let needs_net = opts.faults.iter().any(|f| f.needs_network());
    let net = if TestNet::available() {
        let tag = (std::process::id() % 200) as u8;
        Some(TestNet::create(tag, opts.nodes + opts.learners).context("build the test network")?)
    } else {
        if std::env::var_os("CI").is_some() {
            bail!("not running as root: the harness needs root for network namespaces, and CI requires them");
        }
        if needs_net {
            bail!("partition faults need root (network namespaces and nftables); run as root or drop them");
        }
        eprintln!("note: not root, so nodes run on loopback and only process faults (kill, pause) are available");
        None
    };
    let network = if net.is_some() { "namespaces" } else { "loopback" }.to_string();
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let data = tempfile::Builder::new().prefix("raftkv-jepsen-").tempdir()?;

    if opts.read_from_learners && opts.learners == 0 {
        bail!("reading from learners needs --learners 1 or more");
    }
    let mut cluster = Cluster::start(opts.bin.clone(), opts.nodes, opts.learners, data.path(), net)?;
    if cluster.wait_for_leader(Duration::from_secs(30)).await.is_none() {
        bail!("no leader within 30 s; see the node logs in {}", data.path().display());
    }
    if opts.learners > 0 && !cluster.wait_for_learners(Duration::from_secs(60)).await {
        bail!("the learners did not join and catch up within 60 s; see the node logs in {}", data.path().display());
    }

    let rec = Arc::new(Recorder::new());
    let keys = Arc::new(KeySpace::new(opts.active_keys, opts.ops_per_key));
    let values = Arc::new(AtomicU64::new(1));
    let until = Instant::now() + opts.time_limit;
    let endpoints = cluster.voter_endpoints();
    let learners = cluster.learner_endpoints();
    let mut clients = Vec::new();
    for slot in 0..opts.concurrency {
        let endpoint = endpoints[slot % endpoints.len()].clone();
        let read_endpoint =
            if opts.read_from_learners { learners[slot % learners.len()].clone() } else { endpoint.clone() };
        let spec = ClientSpec {
            slot: slot as u64,
            slots: opts.concurrency as u64,
            endpoint,
            read_endpoint,
            consistency: opts.read_consistency,
            until,
            timeout: Duration::from_secs(5),
        };
        let (keys, values, rec) = (keys.clone(), values.clone(), rec.clone());
        clients.push(tokio::spawn(async move { run_client(spec, &keys, &values, &rec).await }));
    }

    let backups = Arc::new(AtomicUsize::new(0));
    if let Some(every) = opts.backup_every {
        let targets = if opts.read_from_learners { learners.clone() } else { endpoints.clone() };
        let (keys, rec, backups, consistency) = (keys.clone(), rec.clone(), backups.clone(), opts.backup_consistency);
        clients.push(tokio::spawn(async move {
            run_backup_reads(targets, consistency, &keys, every, until, &rec, &backups).await
        }));
    }

    let mut nemesis = Nemesis::new(opts.faults.clone(), std::process::id() as u64);
    let schedule = run_schedule(&mut nemesis, &mut cluster, &rec, opts.nemesis_interval, until).await;
    for c in clients {
        c.await.context("client task")?;
    }
    nemesis.stop(&mut cluster, &rec).await?;
    schedule?;

    // Heal, settle, then read every key back.
    if let Some(net) = &cluster.net {
        net.heal()?;
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut process = 1_000_000;
    for key in keys.used() {
        for _ in 0..10 {
            process += 1;
            if final_read(&endpoints, &key, process, &rec).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let events = rec.events();
    let end = rec.now();
    drop(cluster);
    for i in 1..=opts.nodes + opts.learners {
        let _ = std::fs::copy(data.path().join(format!("n{i}.log")), opts.out.join(format!("n{i}.log")));
    }

    let check = check(&events, opts.check_budget)?;
    let results = RunResults {
        summary: check.summary(),
        ops: count_ops(&events),
        faults: fault_windows(&events, end),
        network,
        backups: backups.load(Ordering::Relaxed),
        settings: BTreeMap::from([
            ("nodes".into(), opts.nodes.to_string()),
            ("learners".into(), opts.learners.to_string()),
            ("reads_from".into(), if opts.read_from_learners { "learners" } else { "voters" }.to_string()),
            ("time_limit_s".into(), opts.time_limit.as_secs().to_string()),
            ("concurrency".into(), opts.concurrency.to_string()),
            ("nemesis".into(), format!("{:?}", opts.faults)),
            ("nemesis_interval_s".into(), opts.nemesis_interval.as_secs_f64().to_string()),
            ("read_consistency".into(), opts.read_consistency.to_string()),
            ("ops_per_key".into(), opts.ops_per_key.to_string()),
        ]),
        check,
    };
    write_history(std::io::BufWriter::new(std::fs::File::create(opts.out.join("history.jsonl"))?), &events)?;
    std::fs::write(opts.out.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    write_html(&opts.out.join("report.html"), &events, &results)?;
    Ok(results)
}

/// The process lanes of the timeline: each client slot is one lane.
pub fn lane(process: &Process, slots: u64) -> Option<u64> {
    match process {
        Process::Client(p) if *p < 1_000_000 => Some(p % slots.max(1)),
        Process::Client(_) => Some(slots),
        Process::Named(_) => None,
    }
}
