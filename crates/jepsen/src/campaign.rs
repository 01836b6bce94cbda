//! Campaigns: many runs, cycling through fault mixes and workloads, for long enough to trust.
//!
//! Each run is an ordinary [`run`](crate::run::run()) in a directory of its own under `out/runs/`.
//! A run that passes keeps only its `results.json` (its history is large and proves nothing
//! more); one that fails or is undecided keeps its history, report and node logs. The campaign
//! writes `summary.json` and `summary.md` after every run, so that an interrupted campaign still
//! says what it found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checker::Verdict;
use crate::nemesis::{Fault, parse_faults};
use crate::run::{RunOptions, run};
use crate::workload_kind::Workload;

/// One fault mix and workload of the cycle.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Its name in the summary.
    pub name: &'static str,
    /// `--nemesis`.
    pub nemesis: &'static str,
    /// Learners (reads go to them when any).
    pub learners: usize,
    /// Standbys (the autopilot replaces voters killed for good).
    pub standbys: usize,
    /// Linearizable backups taken every this many ms (0: none).
    pub backup_every_ms: u64,
    /// What the clients do.
    pub workload: Workload,
}

/// The cycle: every fault, alone and mixed, and every workload (reads on voters and on learners,
/// backups, standbys and the autopilot).
pub fn default_mixes() -> Vec<Mix> {
    let mix = |name, nemesis, learners, standbys, backup_every_ms| Mix {
        name,
        nemesis,
        learners,
        standbys,
        backup_every_ms,
        workload: Workload::Register,
    };
    let on = |name, nemesis, workload| Mix { name, nemesis, learners: 0, standbys: 0, backup_every_ms: 0, workload };
    vec![
        mix("process", "kill,pause", 0, 0, 0),
        mix("power-loss", "power-loss,power-loss-all", 0, 0, 0),
        mix("partition", "partition", 0, 0, 0),
        mix("slow-disk+kill", "slow-disk,kill", 0, 0, 0),
        mix("member", "member,kill", 0, 0, 0),
        mix("power-loss+partition", "power-loss,partition", 0, 0, 1000),
        mix("learner-reads", "kill,partition,power-loss", 1, 0, 0),
        mix("standbys", "kill,partition", 0, 2, 0),
        mix("everything", "kill,pause,partition,member,power-loss,slow-disk", 0, 0, 1000),
        on("counter", "kill,pause,partition", Workload::Counter),
        on("bank", "kill,pause,partition,power-loss", Workload::Bank),
        on("watch", "kill,pause,partition", Workload::Watch),
    ]
}

/// Settings of a campaign.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Settings shared by every run (its faults, learners, standbys, backups and output
    /// directory are the mix's).
    pub base: RunOptions,
    /// How long the campaign runs (a run that starts before the end finishes).
    pub duration: Duration,
    /// The mixes to cycle through.
    pub mixes: Vec<Mix>,
}

/// One run of a campaign, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignRun {
    /// Its number, from 1.
    pub number: usize,
    /// The mix.
    pub mix: String,
    /// Its directory.
    pub dir: PathBuf,
    /// `linearizable`, `not-linearizable`, `unknown` or `error`.
    pub verdict: String,
    /// Its summary line, or the error.
    pub summary: String,
    /// Client operations completed.
    pub operations: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// Acknowledged writes its final reads prove lost.
    pub lost_writes: usize,
    /// Seconds it took, check included.
    pub seconds: f64,
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CampaignSummary {
    /// Runs finished.
    pub runs: usize,
    /// Client operations, all runs.
    pub operations: usize,
    /// Faults injected, by kind, all runs.
    pub faults: BTreeMap<String, usize>,
    /// Runs by verdict.
    pub verdicts: BTreeMap<String, usize>,
    /// Seconds the campaign ran.
    pub seconds: f64,
    /// Every run, in order.
    pub all_runs: Vec<CampaignRun>,
}

impl CampaignSummary {
    /// The campaign's exit code: 0 if every run was linearizable, 1 if any was not, 2 if some
    /// were undecided, 3 if a run failed to run.
    pub fn exit_code(&self) -> u8 {
        let count = |v: &str| self.verdicts.get(v).copied().unwrap_or(0);
        if count("not-linearizable") > 0 {
            1
        } else if count("error") > 0 {
            3
        } else if count("unknown") > 0 {
            2
        } else {
            0
        }
    }

    /// The summary as markdown: totals, then one line per run.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} runs, {} operations in {:.0} min; verdicts: {}; faults: {}\n\n",
            self.runs,
            self.operations,
            self.seconds / 60.0,
            join(&self.verdicts),
            join(&self.faults)
        );
        out.push_str(
            "| run | mix | verdict | operations | faults | lost writes | s |\n|---:|---|---|---:|---|---:|---:|\n",
        );
        for r in &self.all_runs {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.0} |\n",
                r.number,
                r.mix,
                r.verdict,
                r.operations,
                join(&r.faults),
                r.lost_writes,
                r.seconds
            ));
        }
        out
    }
}

fn join(counts: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

/// Runs the campaign; returns its summary (also written to `out`).
pub async fn campaign(opts: CampaignOptions) -> anyhow::Result<CampaignSummary> {
    anyhow::ensure!(!opts.mixes.is_empty(), "a campaign needs at least one mix");
    let out = opts.base.out.clone();
    std::fs::create_dir_all(out.join("runs"))?;
    let started = Instant::now();
    let mut summary = CampaignSummary::default();
    let mut number = 0;
    while started.elapsed() < opts.duration {
        let mix = &opts.mixes[number % opts.mixes.len()];
        number += 1;
        let dir = out.join("runs").join(format!("{number:04}-{}", mix.name));
        let mut run_opts = opts.base.clone();
        run_opts.out = dir.clone();
        run_opts.faults = parse_faults(mix.nemesis)?;
        run_opts.learners = mix.learners;
        run_opts.read_from_learners = mix.learners > 0;
        run_opts.standbys = mix.standbys;
        if mix.standbys > 0 {
            run_opts.faults.retain(|f| *f != Fault::Member);
        }
        run_opts.backup_every = (mix.backup_every_ms > 0).then(|| Duration::from_millis(mix.backup_every_ms));
        run_opts.workload = mix.workload;
        let run_started = Instant::now();
        eprintln!("campaign: run {number} ({}) starts", mix.name);
        let record = match run(run_opts).await {
            Ok(results) => {
                let verdict = match results.check.verdict {
                    Verdict::Linearizable => "linearizable",
                    Verdict::NotLinearizable => "not-linearizable",
                    Verdict::Unknown => "unknown",
                };
                let mut faults = BTreeMap::new();
                for f in &results.faults {
                    *faults.entry(f.fault.clone()).or_default() += 1;
                }
                let operations = results.ops.values().flat_map(|by| by.values()).sum();
                CampaignRun {
                    number,
                    mix: mix.name.into(),
                    dir: dir.clone(),
                    verdict: verdict.into(),
                    summary: results.summary.clone(),
                    operations,
                    faults,
                    lost_writes: results.lost_writes.len(),
                    seconds: run_started.elapsed().as_secs_f64(),
                }
            }
            Err(e) => CampaignRun {
                number,
                mix: mix.name.into(),
                dir: dir.clone(),
                verdict: "error".into(),
                summary: format!("{e:#}"),
                operations: 0,
                faults: BTreeMap::new(),
                lost_writes: 0,
                seconds: run_started.elapsed().as_secs_f64(),
            },
        };
        eprintln!("campaign: run {number} ({}): {}", mix.name, record.summary);
        if record.verdict == "linearizable" {
            prune_passing_run(&dir);
        }
        summary.runs += 1;
        summary.operations += record.operations;
        for (fault, n) in &record.faults {
            *summary.faults.entry(fault.clone()).or_default() += n;
        }
        *summary.verdicts.entry(record.verdict.clone()).or_default() += 1;
        summary.all_runs.push(record);
        summary.seconds = started.elapsed().as_secs_f64();
        write_summary(&out, &summary)?;
    }
    Ok(summary)
}

/// Keeps only `results.json` of a run that passed.
fn prune_passing_run(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name() != "results.json" {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_summary(out: &Path, summary: &CampaignSummary) -> anyhow::Result<()> {
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(summary)?)?;
    std::fs::write(out.join("summary.md"), summary.markdown())?;
    Ok(())
}
