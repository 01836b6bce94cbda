//! `raftkv-jepsen`: check histories (and, with `run`, produce them).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftkv_jepsen::campaign::{CampaignOptions, campaign, default_mixes};
use raftkv_jepsen::checker::check;
use raftkv_jepsen::history::read_history;
use raftkv_jepsen::nemesis::parse_faults;
use raftkv_jepsen::run::{RunOptions, run};
use raftkv_jepsen::workload_kind::Workload;
use raftkv_jepsen::workload_run::check_workload;

/// Jepsen-style linearizability testing of raftkv.
#[derive(Debug, Parser)]
#[command(name = "raftkv-jepsen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a test: a real cluster under faults, then check the history. Writes history.jsonl,
    /// results.json and report.html to --out; exits like `check` (3 when the run itself failed).
    Run(RunArgs),
    /// Many runs for --duration, cycling through fault mixes (process, power-loss, partition,
    /// slow-disk, member, and mixes of them) and workloads (learner reads, standbys, backups,
    /// counter, bank, watch).
    /// Keeps the histories of failing runs, writes summary.json and summary.md to --out; exits 0
    /// if every run was linearizable, 1 if any was not, 2 if some were undecided, 3 on errors.
    Campaign(CampaignArgs),
    /// Check a JSONL history: exit 0 linearizable, 1 not linearizable, 2 unknown.
    Check {
        /// The history file.
        history: PathBuf,
        /// Time budget of the check, in seconds.
        #[arg(long, default_value_t = 60)]
        budget_secs: u64,
        /// Print the per-key report as JSON.
        #[arg(long)]
        json: bool,
        /// The workload that produced the history: register, counter, bank or watch.
        #[arg(long, default_value = "register")]
        workload: Workload,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Number of voters.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Learners (read replicas) that join the voters with --join.
    #[arg(long, default_value_t = 0)]
    learners: usize,
    /// Standbys that join the voters with --join --standby. With any, the autopilot is enabled and
    /// every second kill is permanent (once per standby): the autopilot must replace the dead voter.
    #[arg(long, default_value_t = 0)]
    standbys: usize,
    /// The autopilot's dead period in ms, with --standbys (at least three election timeouts).
    #[arg(long, default_value_t = 3000)]
    autopilot_dead_after_ms: u64,
    /// Where the clients' reads go: voters, or learners (needs --learners).
    #[arg(long, default_value = "voters", value_parser = ["voters", "learners"])]
    read_from: String,
    /// Seconds of workload.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Faults: a comma list of kill, pause, partition, partition-leader, member, power-loss,
    /// power-loss-all, slow-disk; or all (kill, pause, partition, member), disk (power-loss, slow-disk), or none.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seconds between faults, and the length of each.
    #[arg(long, default_value_t = 5.0)]
    nemesis_interval: f64,
    /// Take a linearizable backup every this many milliseconds and check it as a read of every
    /// key in use (0: none).
    #[arg(long, default_value_t = 0)]
    backup_every_ms: u64,
    /// Consistency of those backups: linearizable or stale.
    #[arg(long, default_value = "linearizable")]
    backup_consistency: raftkv_client::BackupConsistency,
    /// Consistency of the clients' reads: linearizable, lease or stale.
    #[arg(long, default_value = "linearizable")]
    read_consistency: raftkv_client::Consistency,
    /// Output directory.
    #[arg(long, default_value = "jepsen-results")]
    out: PathBuf,
    /// The raftkv binary (default: next to this one).
    #[arg(long)]
    raftkv_bin: Option<PathBuf>,
    /// Operations per key before it is retired.
    #[arg(long, default_value_t = 200)]
    ops_per_key: usize,
    /// Keys in use at a time.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Time budget of the check, in seconds.
    #[arg(long, default_value_t = 120)]
    check_budget_secs: u64,
    /// Start the nodes with --unsafe-no-fsync: a positive control that power-loss faults must
    /// catch losing acknowledged writes. Never for a real test.
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Run the cluster over TLS: a throwaway CA, members' mutual TLS (certificates naming
    /// member ids), and client certificates required of every client.
    #[arg(long)]
    tls: bool,
    /// Run node ID's clocks at RATE (0.2: a fifth of real speed; 3: three times) under
    /// libfaketime: ID=RATE, repeatable. For showing what lease reads assume about clocks.
    #[arg(long = "clock-rate", value_parser = parse_clock_rate)]
    clock_rates: Vec<(usize, f64)>,
    /// Hand the leadership to this node before the workload starts (e.g. the skewed one).
    #[arg(long)]
    initial_leader: Option<usize>,
    /// Extra clients that only read, each pinned to one voter, never moving on: they keep
    /// asking an isolated node.
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// Each client request's timeout in ms.
    #[arg(long, default_value_t = 5000)]
    client_timeout_ms: u64,
    /// How long, in ms, a client retries a write of unknown outcome through its session (same
    /// sequence number, any node) before it records the write as unknown.
    #[arg(long, default_value_t = 10000)]
    retry_deadline_ms: u64,
    /// What the clients do: register (read, write, cas; checked for linearizability), counter
    /// (increments through sessions: none lost or doubled), bank (transfers in transactions:
    /// totals conserved) or watch (every watch sees the committed order).
    #[arg(long, default_value = "register")]
    workload: Workload,
    /// With --workload counter: clients without sessions that send a write of unknown outcome
    /// again as a new write. A positive control the counter check must catch applying
    /// increments twice. Never for a real test.
    #[arg(long)]
    unsafe_blind_retries: bool,
}

/// Parses `--clock-rate ID=RATE`.
fn parse_clock_rate(s: &str) -> Result<(usize, f64), String> {
    let (id, rate) = s.split_once('=').ok_or_else(|| format!("expected ID=RATE, got {s:?}"))?;
    let id: usize = id.trim().parse().map_err(|_| format!("{id:?} is not a node id"))?;
    let rate: f64 = rate.trim().parse().map_err(|_| format!("{rate:?} is not a rate"))?;
    if id == 0 || !(rate > 0.0 && rate <= 100.0) {
        return Err(format!("--clock-rate needs a node id from 1 and a rate in (0, 100], got {s:?}"));
    }
    Ok((id, rate))
}

#[derive(Debug, clap::Args)]
struct CampaignArgs {
    /// How long to keep starting runs ("1h", "20m").
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seconds of workload per run.
    #[arg(long, default_value_t = 60)]
    run_secs: u64,
    /// Seconds between faults, and the length of each.
    #[arg(long, default_value_t = 4.0)]
    nemesis_interval: f64,
    /// Number of voters.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Output directory.
    #[arg(long, default_value = "jepsen-campaign")]
    out: PathBuf,
    /// The raftkv binary (default: next to this one).
    #[arg(long)]
    raftkv_bin: Option<PathBuf>,
}

fn campaign_command(args: CampaignArgs) -> ExitCode {
    let bin = match args
        .raftkv_bin
        .clone()
        .map(Ok)
        .unwrap_or_else(|| std::env::current_exe().map(|e| e.with_file_name("raftkv")))
    {
        Ok(bin) if bin.exists() => bin,
        Ok(bin) => {
            eprintln!("error: raftkv binary not found at {} (use --raftkv-bin)", bin.display());
            return ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    if !(args.nemesis_interval > 0.0 && args.run_secs > 0 && args.concurrency > 0 && (1..=9).contains(&args.nodes)) {
        eprintln!("error: --run-secs, --concurrency and --nemesis-interval must be positive, --nodes from 1 to 9");
        return ExitCode::from(3);
    }
    let base = RunOptions {
        bin,
        nodes: args.nodes,
        learners: 0,
        read_from_learners: false,
        time_limit: Duration::from_secs(args.run_secs),
        concurrency: args.concurrency,
        faults: Vec::new(),
        nemesis_interval: Duration::from_secs_f64(args.nemesis_interval),
        read_consistency: raftkv_client::Consistency::Linearizable,
        out: args.out.clone(),
        ops_per_key: 200,
        active_keys: 8,
        check_budget: Duration::from_secs(120),
        backup_every: None,
        backup_consistency: raftkv_client::BackupConsistency::Linearizable,
        standbys: 0,
        autopilot_dead_after: Duration::from_millis(3000),
        unsafe_no_fsync: false,
        tls: false,
        clock_rates: Default::default(),
        initial_leader: None,
        readers: 0,
        client_timeout: Duration::from_secs(5),
        retry_deadline: Duration::from_secs(10),
        workload: Workload::Register,
        unsafe_blind_retries: false,
    };
    let opts = CampaignOptions { base, duration: args.duration, mixes: default_mixes() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = campaign(opts) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; summary so far in {}", args.out.display())),
            _ = term.recv() => Err(anyhow::anyhow!("terminated; summary so far in {}", args.out.display())),
        }
    });
    match result {
        Ok(summary) => {
            println!("{}", summary.markdown());
            ExitCode::from(summary.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let setup = || -> anyhow::Result<RunOptions> {
        let bin = match args.raftkv_bin.clone() {
            Some(bin) => bin,
            None => std::env::current_exe()?.with_file_name("raftkv"),
        };
        anyhow::ensure!(bin.exists(), "raftkv binary not found at {} (use --raftkv-bin)", bin.display());
        anyhow::ensure!(args.nodes >= 1 && args.nodes <= 9, "--nodes must be from 1 to 9");
        anyhow::ensure!(args.learners <= 4, "--learners must be from 0 to 4");
        anyhow::ensure!(args.standbys <= 4, "--standbys must be from 0 to 4");
        anyhow::ensure!(
            args.standbys == 0 || !parse_faults(&args.nemesis)?.contains(&raftkv_jepsen::nemesis::Fault::Member),
            "--standbys and the member fault both change the voters: drop one"
        );
        anyhow::ensure!(
            args.read_from == "voters" || args.learners > 0,
            "--read-from learners needs --learners 1 or more"
        );
        anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
        let n = args.nodes + args.learners + args.standbys;
        anyhow::ensure!(
            args.clock_rates.iter().all(|(id, _)| *id <= n)
                && args.initial_leader.is_none_or(|id| id >= 1 && id <= args.nodes),
            "--clock-rate and --initial-leader must name nodes of the cluster (--initial-leader a voter)"
        );
        if !args.clock_rates.is_empty() {
            raftkv_jepsen::cluster::libfaketime()?;
        }
        anyhow::ensure!(args.nemesis_interval > 0.0, "--nemesis-interval must be positive");
        anyhow::ensure!(
            args.workload == Workload::Register
                || (args.backup_every_ms == 0 && args.read_from == "voters" && args.readers == 0),
            "--backup-every-ms, --read-from learners and --readers go with the register workload only"
        );
        Ok(RunOptions {
            bin,
            nodes: args.nodes,
            learners: args.learners,
            read_from_learners: args.read_from == "learners",
            time_limit: Duration::from_secs(args.time_limit),
            concurrency: args.concurrency,
            faults: parse_faults(&args.nemesis)?,
            nemesis_interval: Duration::from_secs_f64(args.nemesis_interval),
            read_consistency: args.read_consistency,
            out: args.out.clone(),
            ops_per_key: args.ops_per_key.max(1),
            active_keys: args.keys.max(1),
            check_budget: Duration::from_secs(args.check_budget_secs),
            backup_every: (args.backup_every_ms > 0).then(|| Duration::from_millis(args.backup_every_ms)),
            backup_consistency: args.backup_consistency,
            standbys: args.standbys,
            autopilot_dead_after: Duration::from_millis(args.autopilot_dead_after_ms),
            unsafe_no_fsync: args.unsafe_no_fsync,
            tls: args.tls,
            clock_rates: args.clock_rates.iter().copied().collect(),
            initial_leader: args.initial_leader,
            readers: args.readers,
            client_timeout: Duration::from_millis(args.client_timeout_ms.max(1)),
            retry_deadline: Duration::from_millis(args.retry_deadline_ms),
            workload: args.workload,
            unsafe_blind_retries: args.unsafe_blind_retries,
        })
    };
    let opts = match setup() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let out = opts.out.clone();
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run(opts) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; cluster and network torn down")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated; cluster and network torn down")),
        }
    });
    match result {
        Ok(results) => {
            for violation in results.check.violations() {
                for problem in &violation.problems {
                    eprintln!("{}: {problem}", violation.key);
                }
                if violation.failing.is_empty() {
                    continue;
                }
                eprintln!("key {:?}: these operations cannot be ordered:", violation.key);
                for op in &violation.failing {
                    eprintln!("  {}", serde_json::to_string(op).expect("operation serialises"));
                }
            }
            eprintln!("results in {}", out.display());
            println!("{}", results.summary);
            ExitCode::from(results.check.verdict.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Campaign(args) => campaign_command(args),
        Command::Check { history, budget_secs, json, workload } => {
            let events = match File::open(&history)
                .map_err(|e| format!("cannot open {}: {e}", history.display()))
                .and_then(|f| read_history(BufReader::new(f)).map_err(|e| e.to_string()))
            {
                Ok(events) => events,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            let checked = if workload == Workload::Register {
                check(&events, Duration::from_secs(budget_secs))
            } else {
                Ok(check_workload(workload, &events))
            };
            let report = match checked {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
            }
            for violation in report.violations() {
                for problem in &violation.problems {
                    eprintln!("{}: {problem}", violation.key);
                }
                if violation.failing.is_empty() {
                    continue;
                }
                eprintln!("key {:?}: these operations cannot be ordered:", violation.key);
                for op in &violation.failing {
                    eprintln!("  {}", serde_json::to_string(op).expect("operation serialises"));
                }
            }
            println!("{}", report.summary());
            ExitCode::from(report.verdict.exit_code())
        }
    }
}
