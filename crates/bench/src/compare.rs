//! The side-by-side comparison: the same rows against raftkv and etcd, alternating systems over
//! several trials, medians reported.

use std::time::Duration;

use raftkv_client::Consistency;
use serde::Serialize;

use crate::load::{LoadResult, LoadSpec, Workload, preload, run};
use crate::procstat::{cpu_seconds, machine_busy, peak_rss_mib};
use crate::target::{Placement, System};

/// Settings of a comparison.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    /// The rows, in order: workload and clients.
    pub rows: Vec<(Workload, usize)>,
    /// raftkv endpoints.
    pub raftkv: Vec<String>,
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// raftkv server PIDs, for CPU and memory.
    pub raftkv_pids: Vec<u32>,
    /// etcd server PIDs.
    pub etcd_pids: Vec<u32>,
    /// Trials per row and system.
    pub trials: usize,
    /// Measured seconds per trial.
    pub duration: Duration,
    /// Warm-up per trial.
    pub warmup: Duration,
    /// Value size.
    pub value_size: usize,
    /// Key space.
    pub keys: usize,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `write` or `read-linearizable`.
    pub workload: String,
    /// Clients.
    pub clients: usize,
    /// Median raftkv throughput.
    pub raftkv_ops_per_sec: f64,
    /// Median etcd throughput.
    pub etcd_ops_per_sec: f64,
    /// raftkv / etcd throughput.
    pub ratio: f64,
    /// Median raftkv p50 latency.
    pub raftkv_p50_ms: f64,
    /// Median etcd p50 latency.
    pub etcd_p50_ms: f64,
    /// Median raftkv p99 latency.
    pub raftkv_p99_ms: f64,
    /// Median etcd p99 latency.
    pub etcd_p99_ms: f64,
    /// Median server CPU time per operation (all raftkv nodes), µs.
    pub raftkv_cpu_us_per_op: f64,
    /// Median server CPU time per operation (all etcd members), µs.
    pub etcd_cpu_us_per_op: f64,
    /// Every trial.
    pub trials: Vec<Trial>,
}

/// One measured trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The system.
    pub system: System,
    /// The load figures.
    pub result: LoadResult,
    /// Server CPU seconds used during the measured run (warm-up included).
    pub server_cpu_s: f64,
    /// Machine CPU busy fraction just before the run.
    pub busy_before: f64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Rows in order.
    pub rows: Vec<Row>,
    /// Peak RSS per raftkv node after the write rows, MiB.
    pub raftkv_peak_rss_mib: Vec<f64>,
    /// Peak RSS per etcd member after the write rows, MiB.
    pub etcd_peak_rss_mib: Vec<f64>,
    /// Durability statement.
    pub durability: String,
    /// Warnings (busy machine, errors).
    pub warnings: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Where the clients of a row go: writes straight to the leader on both systems (each at its
/// best: no forwarding hop), reads spread over the members (any member can serve them).
fn placement(workload: Workload) -> Placement {
    if workload == Workload::Read { Placement::Spread } else { Placement::Leader }
}

/// A row given as `WORKLOAD:CLIENTS`: `write:64`, `read:64` (linearizable reads).
pub fn parse_row(row: &str) -> anyhow::Result<(Workload, usize)> {
    let (workload, clients) =
        row.split_once(':').ok_or_else(|| anyhow::anyhow!("row {row:?} is not WORKLOAD:CLIENTS (e.g. write:64)"))?;
    let workload = match workload {
        "write" => Workload::Write,
        "read" => Workload::Read,
        other => anyhow::bail!("row {row:?}: workload {other:?} is not write or read"),
    };
    let clients: usize = clients
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| anyhow::anyhow!("row {row:?}: clients must be a positive number"))?;
    Ok((workload, clients))
}

/// Runs the rows of `spec` (the reads after the state is preloaded, once).
pub async fn compare(spec: CompareSpec) -> anyhow::Result<Comparison> {
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let mut rss = (Vec::new(), Vec::new());
    let mut preloaded = false;
    for (workload, clients) in spec.rows.clone() {
        if workload == Workload::Read && !preloaded {
            preloaded = true;
            rss = (peak_rss_mib(&spec.raftkv_pids), peak_rss_mib(&spec.etcd_pids));
            for system in [System::Raftkv, System::Etcd] {
                let endpoints = if system == System::Raftkv { &spec.raftkv } else { &spec.etcd };
                preload(system, endpoints, spec.keys, spec.value_size).await?;
            }
        }
        let mut trials = Vec::new();
        for t in 0..spec.trials {
            let order = if t % 2 == 0 { [System::Raftkv, System::Etcd] } else { [System::Etcd, System::Raftkv] };
            for system in order {
                let (endpoints, pids) = match system {
                    System::Raftkv => (&spec.raftkv, &spec.raftkv_pids),
                    System::Etcd => (&spec.etcd, &spec.etcd_pids),
                };
                let busy_before = machine_busy(Duration::from_millis(500)).await;
                if busy_before > 0.5 {
                    warnings.push(format!(
                        "machine {:.0}% busy before {system} {workload:?} x{clients} trial {t}",
                        busy_before * 100.0
                    ));
                }
                let cpu0 = cpu_seconds(pids);
                let result = run(LoadSpec {
                    system,
                    endpoints: endpoints.clone(),
                    placement: placement(workload),
                    read_preference: raftkv_client::ReadPreference::default(),
                    workload,
                    consistency: Consistency::Linearizable,
                    clients,
                    duration: spec.duration,
                    warmup: spec.warmup,
                    value_size: spec.value_size,
                    keys: spec.keys,
                    read_ratio: 0.9,
                    progress: true,
                })
                .await?;
                let server_cpu_s = cpu_seconds(pids) - cpu0;
                if result.errors > 0 {
                    warnings.push(format!(
                        "{system} {workload:?} x{clients}: {} errors (first: {})",
                        result.errors,
                        result.first_error.clone().unwrap_or_default()
                    ));
                }
                trials.push(Trial { system, result, server_cpu_s, busy_before });
            }
        }
        let of =
            |s: System, f: &dyn Fn(&Trial) -> f64| median(trials.iter().filter(|t| t.system == s).map(f).collect());
        let cpu_per_op = |t: &Trial| {
            let measured_share =
                t.result.spec.duration.as_secs_f64() / (t.result.spec.duration + t.result.spec.warmup).as_secs_f64();
            t.server_cpu_s * measured_share / (t.result.ops.max(1) as f64) * 1e6
        };
        let raftkv_ops = of(System::Raftkv, &|t| t.result.ops_per_sec);
        let etcd_ops = of(System::Etcd, &|t| t.result.ops_per_sec);
        rows.push(Row {
            workload: match workload {
                Workload::Read => "read-linearizable".into(),
                other => format!("{other:?}").to_lowercase(),
            },
            clients,
            raftkv_ops_per_sec: raftkv_ops,
            etcd_ops_per_sec: etcd_ops,
            ratio: if etcd_ops > 0.0 { raftkv_ops / etcd_ops } else { 0.0 },
            raftkv_p50_ms: of(System::Raftkv, &|t| t.result.p50_ms),
            etcd_p50_ms: of(System::Etcd, &|t| t.result.p50_ms),
            raftkv_p99_ms: of(System::Raftkv, &|t| t.result.p99_ms),
            etcd_p99_ms: of(System::Etcd, &|t| t.result.p99_ms),
            raftkv_cpu_us_per_op: of(System::Raftkv, &cpu_per_op),
            etcd_cpu_us_per_op: of(System::Etcd, &cpu_per_op),
            trials,
        });
    }
    Ok(Comparison {
        rows,
        raftkv_peak_rss_mib: rss.0,
        etcd_peak_rss_mib: rss.1,
        durability: "both systems acknowledge a write only once it is fsynced on a majority of members".into(),
        warnings,
    })
}

/// The comparison as a markdown table.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::from(
        "| workload | clients | raftkv ops/s | etcd ops/s | raftkv/etcd | raftkv p50 ms | etcd p50 ms | raftkv p99 ms | etcd p99 ms | raftkv CPU µs/op | etcd CPU µs/op |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &c.rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |\n",
            r.workload,
            r.clients,
            r.raftkv_ops_per_sec,
            r.etcd_ops_per_sec,
            r.ratio,
            r.raftkv_p50_ms,
            r.etcd_p50_ms,
            r.raftkv_p99_ms,
            r.etcd_p99_ms,
            r.raftkv_cpu_us_per_op,
            r.etcd_cpu_us_per_op
        ));
    }
    out.push_str(&format!(
        "\nPeak RSS after the write rows (MiB): raftkv {:?}, etcd {:?}.\nDurability: {}.\n",
        c.raftkv_peak_rss_mib.iter().map(|m| m.round()).collect::<Vec<_>>(),
        c.etcd_peak_rss_mib.iter().map(|m| m.round()).collect::<Vec<_>>(),
        c.durability
    ));
    for w in &c.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_ones_are_named() {
        assert_eq!(parse_row("write:64").unwrap(), (Workload::Write, 64));
        assert_eq!(parse_row("read:1").unwrap(), (Workload::Read, 1));
        assert!(parse_row("write").unwrap_err().to_string().contains("WORKLOAD:CLIENTS"));
        assert!(parse_row("scan:4").unwrap_err().to_string().contains("scan"));
        assert!(parse_row("write:0").is_err());
    }
}
