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
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::{Event, EventType, Process, write_history};
use crate::lost_writes::{FINAL_READ_PROCESS, LostWrite, lost_writes};
use crate::nemesis::{Fault, Nemesis, run_schedule};
use crate::report::write_html;
use crate::testnet::TestNet;
use crate::workload::{ClientSpec, KeySpace, Recorder, final_read, run_client};
use crate::workload_kind::Workload;
use crate::workload_run::{WorkloadClient, check_workload, final_reads, prepare, spawn_clients};

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
    /// Number of standbys that join the voters; with any, the autopilot is enabled and every
    /// second kill is permanent (up to one per standby).
    pub standbys: usize,
    /// The autopilot's dead period, with standbys.
    pub autopilot_dead_after: Duration,
    /// Run the cluster over TLS: members' mutual TLS, and client certificates required of the
    /// harness's clients.
    pub tls: bool,
    /// Start the nodes with `--unsafe-no-fsync`: a positive control, which power-loss faults must
    /// catch losing acknowledged writes.
    pub unsafe_no_fsync: bool,
    /// Nodes whose clocks run at another rate (`id -> rate`), under libfaketime.
    pub clock_rates: BTreeMap<usize, f64>,
    /// Hand the leadership to this node before the workload starts.
    pub initial_leader: Option<usize>,
    /// Extra clients that only read, each pinned to one voter (round robin), never moving on.
    pub readers: usize,
    /// Each client request's timeout.
    pub client_timeout: Duration,
    /// How long a client retries a write of unknown outcome through its session (same sequence
    /// number, any node) before it records the write as `info`.
    pub retry_deadline: Duration,
    /// What the clients do, and how the history is checked.
    pub workload: Workload,
    /// A positive control for the counter workload: clients without sessions that send a write
    /// of unknown outcome again as a new one (see [`WorkloadClient::blind_retries`]).
    pub unsafe_blind_retries: bool,
}

/// An autopilot or cluster event, as the run saw it on the leader's event log.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterMark {
    /// When the run saw it, ns since the run began.
    pub time: u64,
    /// Its kind (`voter_replaced`, `skipped:no_standby`, ...).
    pub kind: String,
    /// What happened.
    pub message: String,
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
    /// The cluster's events during the run (autopilot actions and decisions), in order.
    pub cluster_events: Vec<ClusterMark>,
    /// Acknowledged writes the final reads prove lost.
    pub lost_writes: Vec<LostWrite>,
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
    let fault_disks = opts.faults.iter().any(|f| f.needs_disks());
    let net = if TestNet::available() {
        let tag = (std::process::id() % 200) as u8;
        Some(TestNet::create(tag, opts.nodes + opts.learners + opts.standbys).context("build the test network")?)
    } else {
        if std::env::var_os("CI").is_some() {
            bail!("not running as root: the harness needs root for network namespaces, and CI requires them");
        }
        if needs_net {
            bail!("partition faults need root (network namespaces and nftables); run as root or drop them");
        }
        if fault_disks {
            bail!("power-loss and slow-disk faults need root (FUSE mounts); run as root or drop them");
        }
        eprintln!("note: not root, so nodes run on loopback and only process faults (kill, pause) are available");
        None
    };
    let network = if net.is_some() { "namespaces" } else { "loopback" }.to_string();
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let data = tempfile::Builder::new().prefix("raftkv-jepsen-").tempdir()?;

    if opts.workload != Workload::Register
        && (opts.backup_every.is_some() || opts.read_from_learners || opts.readers > 0)
    {
        bail!("backups, learner reads and pinned readers are part of the register workload only");
    }
    if opts.unsafe_blind_retries && opts.workload != Workload::Counter {
        bail!("blind retries are a positive control of the counter workload");
    }
    if opts.read_from_learners && opts.learners == 0 {
        bail!("reading from learners needs --learners 1 or more");
    }
    let spec = ClusterSpec {
        voters: opts.nodes,
        learners: opts.learners,
        standbys: opts.standbys,
        fault_disks,
        unsafe_no_fsync: opts.unsafe_no_fsync,
        clock_rates: opts.clock_rates.clone(),
        tls: opts.tls,
    };
    let mut cluster = Cluster::start(opts.bin.clone(), &spec, data.path(), net)?;
    if cluster.wait_for_leader(Duration::from_secs(30)).await.is_none() {
        bail!("no leader within 30 s; see the node logs in {}", data.path().display());
    }
    if opts.learners + opts.standbys > 0 && !cluster.wait_for_learners(Duration::from_secs(60)).await {
        bail!("the learners did not join and catch up within 60 s; see the node logs in {}", data.path().display());
    }
    if let Some(want) = opts.initial_leader {
        hand_leadership_to(&cluster, want).await?;
    }
    if opts.standbys > 0 {
        let admin = crate::cluster_client::client(cluster.endpoints(), Duration::from_secs(10))?;
        let update = raftkv_client::AutopilotUpdate {
            enabled: Some(true),
            dead_after_ms: Some(opts.autopilot_dead_after.as_millis() as u64),
            min_stable_ms: Some(1_000),
            cooldown_ms: Some(2_000),
            max_trailing_entries: None,
        };
        admin.set_autopilot(&update).await.context("enable the autopilot")?;
    }

    let rec = Arc::new(Recorder::new());
    let keys = Arc::new(KeySpace::new(opts.active_keys, opts.ops_per_key));
    let values = Arc::new(AtomicU64::new(1));
    let until = Instant::now() + opts.time_limit;
    let endpoints = cluster.voter_endpoints();
    let learners = cluster.learner_endpoints();
    let mut clients = Vec::new();
    let slots = (opts.concurrency + opts.readers) as u64;
    if opts.workload != Workload::Register {
        prepare(opts.workload, &endpoints).await.context("prepare the workload")?;
        let template = WorkloadClient {
            slot: 0,
            slots: 1,
            endpoints: cluster.endpoints(),
            until,
            timeout: opts.client_timeout,
            retry_deadline: opts.retry_deadline,
            blind_retries: opts.unsafe_blind_retries,
        };
        clients = spawn_clients(opts.workload, &template, opts.concurrency, &rec);
    }
    let register_slots = if opts.workload == Workload::Register { opts.concurrency + opts.readers } else { 0 };
    for slot in 0..register_slots {
        let reads_only = slot >= opts.concurrency;
        let endpoint = endpoints[slot % endpoints.len()].clone();
        let read_endpoint =
            if opts.read_from_learners { learners[slot % learners.len()].clone() } else { endpoint.clone() };
        // Every node but its own, rotated per slot: a client whose node died for good moves on.
        let all = cluster.endpoints();
        let fallbacks =
            (1..all.len()).map(|i| all[(slot + i) % all.len()].clone()).filter(|e| *e != endpoint).collect();
        let spec = ClientSpec {
            slot: slot as u64,
            slots,
            endpoint,
            fallbacks,
            read_endpoint,
            consistency: opts.read_consistency,
            until,
            timeout: opts.client_timeout,
            retry_deadline: opts.retry_deadline,
            reads_only,
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

    let marks = Arc::new(std::sync::Mutex::new(Vec::new()));
    if opts.standbys > 0 {
        let (endpoints, rec, marks) = (cluster.endpoints(), rec.clone(), marks.clone());
        clients.push(tokio::spawn(async move { watch_cluster_events(endpoints, until, &rec, &marks).await }));
    }

    let mut nemesis = Nemesis::new(opts.faults.clone(), std::process::id() as u64).with_permanent_kills(opts.standbys);
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
    let mut process = FINAL_READ_PROCESS;
    if opts.workload != Workload::Register {
        final_reads(opts.workload, &endpoints, &rec).await;
    }
    let register_keys = if opts.workload == Workload::Register { keys.used() } else { Vec::new() };
    for key in register_keys {
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
    for i in 1..=opts.nodes + opts.learners + opts.standbys {
        let _ = std::fs::copy(data.path().join(format!("n{i}.log")), opts.out.join(format!("n{i}.log")));
    }

    let (check, lost) = if opts.workload == Workload::Register {
        (check(&events, opts.check_budget)?, lost_writes(&events)?)
    } else {
        (check_workload(opts.workload, &events), Vec::new())
    };
    let mut summary = check.summary();
    if !lost.is_empty() {
        summary.push_str(&format!("; {} acknowledged writes lost", lost.len()));
    }
    let results = RunResults {
        summary,
        lost_writes: lost,
        ops: count_ops(&events),
        faults: fault_windows(&events, end),
        network,
        backups: backups.load(Ordering::Relaxed),
        cluster_events: marks.lock().expect("marks lock").clone(),
        settings: BTreeMap::from([
            ("workload".into(), opts.workload.to_string()),
            ("retry_deadline_ms".into(), opts.retry_deadline.as_millis().to_string()),
            ("unsafe_blind_retries".into(), opts.unsafe_blind_retries.to_string()),
            ("nodes".into(), opts.nodes.to_string()),
            ("learners".into(), opts.learners.to_string()),
            ("standbys".into(), opts.standbys.to_string()),
            ("reads_from".into(), if opts.read_from_learners { "learners" } else { "voters" }.to_string()),
            ("time_limit_s".into(), opts.time_limit.as_secs().to_string()),
            ("concurrency".into(), opts.concurrency.to_string()),
            ("readers".into(), opts.readers.to_string()),
            ("nemesis".into(), format!("{:?}", opts.faults)),
            ("nemesis_interval_s".into(), opts.nemesis_interval.as_secs_f64().to_string()),
            ("read_consistency".into(), opts.read_consistency.to_string()),
            ("ops_per_key".into(), opts.ops_per_key.to_string()),
            ("fault_disks".into(), fault_disks.to_string()),
            ("unsafe_no_fsync".into(), opts.unsafe_no_fsync.to_string()),
            ("tls".into(), opts.tls.to_string()),
            ("clock_rates".into(), format!("{:?}", opts.clock_rates)),
        ]),
        check,
    };
    write_history(std::io::BufWriter::new(std::fs::File::create(opts.out.join("history.jsonl"))?), &events)?;
    std::fs::write(opts.out.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    write_html(&opts.out.join("report.html"), &events, &results)?;
    Ok(results)
}

/// Moves the leadership to node `want` and waits until it leads (retrying while an election or a
/// catching-up member stands in the way).
async fn hand_leadership_to(cluster: &Cluster, want: usize) -> anyhow::Result<()> {
    let admin = crate::cluster_client::client(cluster.voter_endpoints(), Duration::from_secs(10))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cluster.leader().await == Some(want) {
            return Ok(());
        }
        let _ = admin.transfer_leader(want as u64).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("node {want} did not take the leadership within 30 s")
}

/// Polls the leader's event log until `until` and records each new event on the timeline (as
/// an `autopilot` event of the history, which the checker skips) and in `marks`.
async fn watch_cluster_events(
    endpoints: Vec<String>,
    until: Instant,
    rec: &Recorder,
    marks: &std::sync::Mutex<Vec<ClusterMark>>,
) {
    let Ok(client) = crate::cluster_client::client(endpoints, Duration::from_secs(2)) else { return };
    let mut seen = std::collections::HashSet::new();
    while Instant::now() < until {
        if let Ok(events) = client.events().await {
            for e in events.events {
                if seen.insert((e.at_ms, e.log_index, e.kind.clone(), e.message.clone())) {
                    rec.record(
                        EventType::Info,
                        Process::Named("autopilot".into()),
                        &e.kind,
                        None,
                        serde_json::Value::String(e.message.clone()),
                        None,
                    );
                    marks.lock().expect("marks lock").push(ClusterMark {
                        time: rec.now(),
                        kind: e.kind,
                        message: e.message,
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The process lanes of the timeline: each client slot is one lane.
pub fn lane(process: &Process, slots: u64) -> Option<u64> {
    match process {
        Process::Client(p) if *p < FINAL_READ_PROCESS => Some(p % slots.max(1)),
        Process::Client(_) => Some(slots),
        Process::Named(_) => None,
    }
}
