//! Backups as multi-key reads: a process that takes linearizable backups through
//! `GET /v1/admin/backup` while the workload and the faults run, and records, for every key in
//! use, a read that began when the backup was asked for and ended when it was complete, with the
//! value the backup holds. A backup that misses an acknowledged write, or holds one that was not
//! made yet, makes the history non-linearizable; the checker then finds it like any stale read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raftkv_client::{BackupConsistency, Client};
use raftkv_storage::SnapshotReader;
use serde_json::Value;

use crate::history::{EventType, Process};
use crate::workload::{KeySpace, Recorder, value_of};

/// Process numbers of backup reads start here (one per key per backup: a process has one
/// operation at a time).
const FIRST_PROCESS: u64 = 2_000_000;
/// How long a backup may go without data before it counts as failed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes a backup at `consistency` from `endpoints` every `every` until `until`, counting those
/// that completed in `completed`.
pub async fn run_backup_reads(
    endpoints: Vec<String>,
    consistency: BackupConsistency,
    keys: &KeySpace,
    every: Duration,
    until: Instant,
    rec: &Recorder,
    completed: &AtomicUsize,
) {
    let Ok(client) = crate::cluster_client::client(endpoints, IDLE_TIMEOUT) else { return };
    let mut process = FIRST_PROCESS;
    while Instant::now() + every < until {
        tokio::time::sleep(every).await;
        let reads: Vec<(String, Process)> = keys
            .active()
            .into_iter()
            .map(|key| {
                process += 1;
                (key, Process::Client(process))
            })
            .collect();
        for (key, p) in &reads {
            rec.record(EventType::Invoke, p.clone(), "read", Some(key), Value::Null, None);
        }
        match download(&client, consistency).await {
            Ok(state) => {
                for (key, p) in reads {
                    let value = value_of(state.get(&key).cloned());
                    rec.record(EventType::Ok, p, "read", Some(&key), value, None);
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            // A backup changes nothing: whatever happened, its reads failed.
            Err(e) => {
                for (key, p) in reads {
                    rec.record(EventType::Fail, p, "read", Some(&key), Value::Null, Some(format!("backup: {e}")));
                }
            }
        }
    }
}

/// Downloads a backup and reads every key and value out of it, checking every checksum on the way.
async fn download(client: &Client, consistency: BackupConsistency) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut backup = client.backup(consistency, IDLE_TIMEOUT).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = backup.chunk().await? {
        bytes.extend_from_slice(&chunk);
    }
    let mut reader = SnapshotReader::new(std::io::Cursor::new(bytes))?;
    let mut state = HashMap::new();
    while let Some(record) = reader.next_state_record()? {
        if let raftkv_storage::StateRecord::Data { key, value } = record {
            state.insert(String::from_utf8_lossy(&key).into_owned(), value.value);
        }
    }
    Ok(state)
}
