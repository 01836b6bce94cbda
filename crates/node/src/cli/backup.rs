//! `raftkv backup`: save, inspect, export, restore and scheduled backups.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use raftkv_storage::{FileSummary, SnapshotHeader, SnapshotReader, finish_backup_file, part_path};
use raftkv_types::NodeId;
use raftkv_types::api::BackupConsistency;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::Endpoints;

use super::output::outln;

/// File name suffix of scheduled backups.
const BACKUP_SUFFIX: &str = ".rkvbak";

/// `raftkv backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Take an online, consistent backup of the cluster into FILE.
    Save {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Where to write the backup (FILE.part until it is complete and verified).
        file: PathBuf,
        #[command(flatten)]
        options: SaveOptions,
    },
    /// Verify every checksum of a backup and print what it holds.
    Inspect {
        /// The backup file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a backup's data as JSON lines: {"key", "value" or "value_base64", "revision"}.
    Export {
        /// The backup file.
        file: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Prepare the data directory of one member of a NEW cluster from a backup (offline).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The member's data directory: must be empty or missing.
        #[arg(long)]
        data_dir: PathBuf,
        /// The member's id.
        #[arg(long)]
        id: NodeId,
        /// Every member of the new cluster as ID=HOST:PORT,...; the same on every member.
        #[arg(long)]
        initial_cluster: String,
        /// Start the new cluster's revisions this much above the backup's (for clients that
        /// cached revisions of the old cluster).
        #[arg(long, default_value_t = 0)]
        bump_revision: u64,
    },
    /// Take backups on a schedule into a directory, keeping the newest ones.
    Schedule {
        #[command(flatten)]
        endpoints: Endpoints,
        /// The directory to keep backups in.
        #[arg(long)]
        dir: PathBuf,
        /// Time between backups (e.g. 30s, 15m, 1h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        every: Duration,
        /// Backups kept; older ones are removed after each verified backup.
        #[arg(long, default_value_t = 24)]
        keep: usize,
        /// Take one backup (or skip it when nothing changed) and exit, for cron.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        options: SaveOptions,
    },
}

/// How a backup is taken.
#[derive(Debug, Args)]
pub struct SaveOptions {
    /// linearizable (every write acknowledged before the backup began) or stale (what the node
    /// asked has applied; any member, learners included, can serve it).
    #[arg(long, default_value = "linearizable")]
    consistency: BackupConsistency,
    /// Give up when no data arrives for this long (there is no limit on the whole backup).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

/// Runs a `raftkv backup` subcommand.
pub async fn run(action: BackupAction) -> anyhow::Result<()> {
    match action {
        BackupAction::Save { endpoints, file, options } => {
            let (header, summary) = save(&endpoints, &file, &options).await?;
            outln!("{}", saved_line(&file, &header, &summary));
            Ok(())
        }
        BackupAction::Inspect { file, json } => inspect(&file, json).await,
        BackupAction::Export { file, output } => export(&file, output).await,
        BackupAction::Restore { file, data_dir, id, initial_cluster, bump_revision } => {
            restore(&file, &data_dir, id, &initial_cluster, bump_revision).await
        }
        BackupAction::Schedule { endpoints, dir, every, keep, once, options } => {
            schedule(&endpoints, &dir, every, keep, once, &options).await
        }
    }
}

fn saved_line(file: &Path, header: &SnapshotHeader, summary: &FileSummary) -> String {
    format!(
        "saved {}: revision {}, {} keys, {} bytes, sha256 {} ({} backup from node {})",
        file.display(),
        header.revision,
        summary.records,
        summary.file_bytes,
        summary.sha256,
        header.consistency.map_or("?".to_string(), |c| c.to_string()),
        header.source_node.map_or("?".to_string(), |n| n.to_string()),
    )
}

/// Downloads a backup into `file` through `file.part`. With `skip_revision`, stops (returning
/// `None`) when the backup's revision is that one: nothing changed since the last backup.
async fn save_unless(
    endpoints: &Endpoints,
    file: &Path,
    options: &SaveOptions,
    skip_revision: Option<u64>,
) -> anyhow::Result<Option<(SnapshotHeader, FileSummary)>> {
    if file.is_dir() {
        bail!("{} is a directory; give the path of the backup file to write", file.display());
    }
    let client = endpoints.client()?;
    let mut download = client.backup(options.consistency, options.idle_timeout).await?;
    if skip_revision == Some(download.revision) {
        return Ok(None);
    }
    let part = part_path(file);
    let result = async {
        let out = tokio::fs::File::create(&part).await.with_context(|| format!("create {}", part.display()))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
        while let Some(chunk) = download.chunk().await? {
            out.write_all(&chunk).await.with_context(|| format!("write {}", part.display()))?;
        }
        out.flush().await.with_context(|| format!("write {}", part.display()))?;
        drop(out);
        let (part, file) = (part.clone(), file.to_path_buf());
        let verified = tokio::task::spawn_blocking(move || finish_backup_file(&part, &file)).await?;
        verified.context("the backup received is not valid")
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result.map(Some)
}

/// `raftkv backup save`.
pub async fn save(
    endpoints: &Endpoints,
    file: &Path,
    options: &SaveOptions,
) -> anyhow::Result<(SnapshotHeader, FileSummary)> {
    let saved = save_unless(endpoints, file, options, None).await?;
    Ok(saved.expect("a backup without a revision to skip is always saved"))
}

/// A backup's header and summary, as `inspect --json` prints them.
#[derive(Serialize)]
struct Inspection<'a> {
    file: &'a Path,
    header: &'a SnapshotHeader,
    records: u64,
    keys: u64,
    payload_bytes: u64,
    file_bytes: u64,
    sha256: &'a str,
    verified: bool,
}

async fn verify(file: &Path) -> anyhow::Result<(SnapshotHeader, FileSummary)> {
    let path = file.to_path_buf();
    let verified = tokio::task::spawn_blocking(move || SnapshotReader::verify(&path)).await?;
    verified.with_context(|| format!("{} is not a valid raftkv backup", file.display()))
}

/// The number of data keys in a verified backup: its records less the lease and session ones.
async fn count_keys(file: &Path) -> anyhow::Result<u64> {
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut reader = SnapshotReader::open(&file)?;
        let mut keys = 0;
        while let Some(record) = reader.next_state_record()? {
            keys += u64::from(matches!(record, raftkv_storage::StateRecord::Data { .. }));
        }
        Ok(keys)
    })
    .await?
}

async fn inspect(file: &Path, json: bool) -> anyhow::Result<()> {
    let (header, summary) = verify(file).await?;
    let keys = count_keys(file).await?;
    if json {
        let inspection = Inspection {
            file,
            header: &header,
            records: summary.records,
            keys,
            payload_bytes: summary.payload_bytes,
            file_bytes: summary.file_bytes,
            sha256: &summary.sha256,
            verified: true,
        };
        outln!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(());
    }
    let members: Vec<String> =
        header.membership.membership().nodes().map(|(id, node)| format!("{id}={}", node.addr)).collect();
    let kind = match header.consistency {
        Some(c) => format!("{:?} ({c})", header.kind).to_lowercase(),
        None => format!("{:?}", header.kind).to_lowercase(),
    };
    outln!("file:         {}", file.display());
    outln!("kind:         {kind}");
    match &header.identity {
        Some(identity) => outln!("cluster:      {} (epoch {})", identity.cluster_id, identity.epoch),
        None => outln!("cluster:      (not founded yet)"),
    }
    outln!("revision:     {}", header.revision);
    outln!("last applied: {}", header.last_log_id.map_or("none".to_string(), |l| l.to_string()));
    outln!("members:      {}", members.join(","));
    outln!("created at:   {} on node {}", header.created_at, header.source_node.map_or("?".into(), |n| n.to_string()));
    outln!("written by:   raftkv {}", header.raftkv_version);
    outln!("keys:         {keys}");
    outln!("records:      {} (keys, leases and client sessions)", summary.records);
    outln!("size:         {} bytes", summary.file_bytes);
    outln!("sha256:       {}", summary.sha256);
    outln!("status:       OK (every chunk checksum, the trailer and the SHA-256 match)");
    Ok(())
}

#[derive(Serialize)]
struct ExportLine<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    revision: u64,
}

async fn export(file: &Path, output: Option<PathBuf>) -> anyhow::Result<()> {
    // A full pass first: nothing is written from a file that turns out to be damaged.
    verify(file).await?;
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut reader = SnapshotReader::open(&file)?;
        let revision = reader.header().revision;
        let sink: Box<dyn Write> = match &output {
            Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut out = std::io::BufWriter::new(sink);
        while let Some(record) = reader.next_state_record()? {
            let raftkv_storage::StateRecord::Data { key, value } = record else { continue };
            let value = value.value;
            let key = String::from_utf8_lossy(&key);
            let text = std::str::from_utf8(&value).ok();
            let line = ExportLine {
                key: &key,
                value: text,
                value_base64: text.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&value)),
                revision,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    })
    .await?
}

async fn restore(file: &Path, data_dir: &Path, id: NodeId, initial_cluster: &str, bump: u64) -> anyhow::Result<()> {
    let members: BTreeMap<NodeId, String> =
        raftkv_node::parse_members(initial_cluster).context("--initial-cluster")?.into_iter().collect();
    let (file, data_dir_buf) = (file.to_path_buf(), data_dir.to_path_buf());
    let members_for_restore = members.clone();
    let restored = tokio::task::spawn_blocking(move || {
        raftkv_storage::restore(&file, &data_dir_buf, id, &members_for_restore, bump)
    })
    .await?
    .context("restore refused")?;
    let addr = &members[&id];
    outln!(
        "restored {} records at revision {} into {} as node {id} of new cluster {} (epoch 1); the backup was at revision {}",
        restored.file.records,
        restored.revision,
        data_dir.display(),
        restored.identity.cluster_id,
        restored.backup.revision,
    );
    outln!("start it with: raftkv serve --id {id} --listen {addr} --data-dir {}", data_dir.display());
    Ok(())
}

/// One scheduled backup's file name: `raftkv-r<revision>-<YYYYMMDDTHHMMSSZ>.rkvbak`.
fn scheduled_name(revision: u64, at: SystemTime) -> String {
    let stamp: String =
        humantime::format_rfc3339_seconds(at).to_string().chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("raftkv-r{revision:020}-{stamp}{BACKUP_SUFFIX}")
}

/// The revision in a scheduled backup's file name.
fn scheduled_revision(name: &str) -> Option<u64> {
    name.strip_prefix("raftkv-r")?.split('-').next()?.parse().ok()
}

/// Scheduled backups in `dir`, oldest first (names sort by revision, then time).
fn scheduled_backups(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(BACKUP_SUFFIX) && scheduled_revision(n).is_some())
        })
        .collect();
    found.sort();
    Ok(found)
}

async fn schedule(
    endpoints: &Endpoints,
    dir: &Path,
    every: Duration,
    keep: usize,
    once: bool,
    options: &SaveOptions,
) -> anyhow::Result<()> {
    if keep == 0 {
        bail!("--keep must be at least 1");
    }
    if every.is_zero() {
        bail!("--every must be longer than 0s");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    // What a run killed halfway left behind: never under a final name, only as .part.
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(".part") || n.starts_with(".raftkv-backup-")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    loop {
        let existing = scheduled_backups(dir)?;
        let last = existing.last().and_then(|p| p.file_name()?.to_str().and_then(scheduled_revision));
        let started = SystemTime::now();
        // The name needs the revision, which the answer's head tells: download to a temporary
        // name, then rename to the final one.
        let staging = dir.join(format!(".raftkv-backup-{}", std::process::id()));
        match save_unless(endpoints, &staging, options, last).await {
            Ok(None) => outln!("unchanged since the last backup (revision {}); skipped", last.unwrap_or(0)),
            Ok(Some((header, summary))) => {
                let path = dir.join(scheduled_name(header.revision, started));
                std::fs::rename(&staging, &path).with_context(|| format!("rename to {}", path.display()))?;
                raftkv_storage::sync_dir(dir)?;
                outln!("{}", saved_line(&path, &header, &summary));
                let all = scheduled_backups(dir)?;
                for old in &all[..all.len().saturating_sub(keep)] {
                    std::fs::remove_file(old).with_context(|| format!("remove {}", old.display()))?;
                    outln!("removed {}", old.display());
                }
            }
            Err(err) if once => return Err(err),
            // A failed run deletes nothing; the next one tries again.
            Err(err) => eprintln!("backup failed: {:#}", err),
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(every.saturating_sub(started.elapsed().unwrap_or_default())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_names_sort_by_revision_and_parse_back() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = scheduled_name(9, at);
        let b = scheduled_name(10, at);
        assert!(a < b, "{a} {b}");
        assert_eq!(scheduled_revision(&b), Some(10));
        assert!(a.ends_with("T080000Z.rkvbak"), "{a}");
    }
}
