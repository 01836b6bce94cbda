//! Driving the counter, bank and watch workloads (see [`Workload`]): their clients, their reads
//! after the run, and their checks. The register workload is [`crate::workload`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::bank_workload::{check_bank, open_accounts, read_all, run_bank_client};
use crate::checker::CheckReport;
use crate::counter_workload::{check_counter, read_counter, run_counter_client};
use crate::history::{Event, Process};
use crate::lost_writes::FINAL_READ_PROCESS;
use crate::watch_workload::{check_watch, reference_watch, run_watcher, run_writer};
use crate::workload::Recorder;
use crate::workload_kind::{Workload, session_client};

/// Pause after an error, so that a client of a dead node does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Settings of one client of these workloads.
#[derive(Debug, Clone)]
pub struct WorkloadClient {
    /// The client slot (0-based); its first process number.
    pub slot: u64,
    /// Number of slots: a slot's next process number after an `info` is `process + slots`.
    pub slots: u64,
    /// Every node, its own first: writes and reads move on to the next when one fails.
    pub endpoints: Vec<String>,
    /// When to stop.
    pub until: Instant,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long a write of unknown outcome is retried through its session before the client
    /// records it as unknown.
    pub retry_deadline: Duration,
    /// A positive control (counter workload): no session, and a write of unknown outcome sent
    /// again as a new write until the retry deadline, as a client without exactly-once
    /// support would. The checker must catch the increments this applies twice.
    pub blind_retries: bool,
}

impl WorkloadClient {
    /// Waits a little after an error.
    pub async fn backoff(&self) {
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
}

/// Prepares the cluster for `workload` (the bank's accounts) before any client starts.
pub async fn prepare(workload: Workload, endpoints: &[String]) -> anyhow::Result<()> {
    if workload == Workload::Bank {
        let client = session_client(endpoints.to_vec(), Duration::from_secs(5), Duration::from_secs(30))
            .ok_or_else(|| anyhow::anyhow!("no endpoint"))?;
        open_accounts(&client).await?;
    }
    Ok(())
}

/// Starts `concurrency` clients of `workload` (for watch: half writers, half watchers, at
/// least one of each) as `template` says, each with its endpoints rotated to start at its own
/// node.
pub fn spawn_clients(
    workload: Workload,
    template: &WorkloadClient,
    concurrency: usize,
    rec: &Arc<Recorder>,
) -> Vec<JoinHandle<()>> {
    let concurrency = if workload == Workload::Watch { concurrency.max(2) } else { concurrency };
    let endpoints = &template.endpoints;
    (0..concurrency)
        .map(|slot| {
            let n = endpoints.len();
            let spec = WorkloadClient {
                slot: slot as u64,
                slots: concurrency as u64,
                endpoints: (0..n).map(|i| endpoints[(slot + i) % n].clone()).collect(),
                ..template.clone()
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                match workload {
                    Workload::Counter => run_counter_client(spec, &rec).await,
                    Workload::Bank => run_bank_client(spec, &rec).await,
                    Workload::Watch if slot % 2 == 0 => run_writer(spec, &rec).await,
                    Workload::Watch => run_watcher(spec, &rec).await,
                    Workload::Register => unreachable!("the register workload has its own clients"),
                }
            })
        })
        .collect()
}

/// After the run, healed: the reads the check ends with (the counter, every account, the
/// reference watch), retried for a while.
pub async fn final_reads(workload: Workload, endpoints: &[String], rec: &Recorder) {
    let Some(client) = session_client(endpoints.to_vec(), Duration::from_secs(5), Duration::from_secs(10)) else {
        return;
    };
    for attempt in 1..=10u64 {
        let p = Process::Client(FINAL_READ_PROCESS + attempt);
        let done = match workload {
            Workload::Counter => read_counter(&client, p, rec).await,
            Workload::Bank => read_all(&client, p, rec, false).await,
            Workload::Watch => reference_watch(endpoints, FINAL_READ_PROCESS + attempt, rec).await,
            Workload::Register => true,
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks a history of `workload` (not the register workload, which [`crate::checker::check`]
/// checks).
pub fn check_workload(workload: Workload, events: &[Event]) -> CheckReport {
    match workload {
        Workload::Counter => check_counter(events),
        Workload::Bank => check_bank(events),
        Workload::Watch => check_watch(events),
        Workload::Register => unreachable!("the register workload is checked for linearizability"),
    }
}
