//! `raftkv recover`: offline disaster recovery of stopped nodes' data directories.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Subcommand;
use raftkv_storage::recovery::{self, DataDirReport};
use raftkv_types::NodeId;

use super::output::outln;

/// `raftkv recover` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecoverAction {
    /// Show what each stopped node's data directory holds, and which is the best survivor.
    Inspect {
        /// A data directory (repeat for each survivor).
        #[arg(long = "data-dir", required = true)]
        data_dirs: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a stopped node's data directory: every checksum of every file, every record, the
    /// log's continuity, every snapshot. Changes nothing; exits 1 when something is wrong.
    Check {
        /// The data directory (the node must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a stopped survivor the only member of its cluster, at a new epoch (quorum lost for
    /// good, or the primary site lost and this is the DR replica).
    ForceNewCluster {
        /// The survivor's data directory (the node must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// Confirms that writes acknowledged by the lost members but missing here are lost, and
        /// that entries this node has but never saw committed now count as committed.
        #[arg(long)]
        accept_data_loss: bool,
        /// The node's id, when the directory does not record it.
        #[arg(long)]
        id: Option<NodeId>,
    },
}

/// Runs a `raftkv recover` subcommand.
pub async fn run(action: RecoverAction) -> anyhow::Result<()> {
    match action {
        RecoverAction::Inspect { data_dirs, json } => inspect(data_dirs, json).await,
        RecoverAction::Check { data_dir, json } => check(data_dir, json).await,
        RecoverAction::ForceNewCluster { data_dir, accept_data_loss, id } => {
            force_new_cluster(data_dir, accept_data_loss, id).await
        }
    }
}

async fn check(data_dir: PathBuf, json: bool) -> anyhow::Result<()> {
    let dir = data_dir.clone();
    let report = tokio::task::spawn_blocking(move || raftkv_storage::check(&dir))
        .await?
        .with_context(|| format!("cannot check {}", data_dir.display()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!("{}: {}", report.data_dir.display(), if report.ok { "OK" } else { "DAMAGED" });
        for (cf, n) in &report.records {
            outln!("  {cf:<10} {n} records read, checksums verified");
        }
        match report.log_range {
            Some((first, last)) => outln!("  log:       {} entries, {first} to {last}", report.log_entries),
            None => outln!("  log:       empty"),
        }
        outln!("  applied:   index {}", report.applied_index);
        outln!("  snapshots: {} verified", report.snapshots.len());
        for problem in &report.problems {
            outln!("  PROBLEM: {problem}");
        }
    }
    if !report.ok {
        bail!(
            "{} is damaged ({} problem(s)); do not start a node on it: wipe it and let the node rejoin \
             (docs/disaster-recovery.md, runbook 1)",
            report.data_dir.display(),
            report.problems.len()
        );
    }
    Ok(())
}

async fn inspect(data_dirs: Vec<PathBuf>, json: bool) -> anyhow::Result<()> {
    let reports = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<DataDirReport>> {
        data_dirs
            .iter()
            .map(|dir| recovery::inspect(dir).with_context(|| format!("cannot inspect {}", dir.display())))
            .collect()
    })
    .await??;
    // The latest log wins; among equals, the first named.
    let best =
        reports.iter().enumerate().max_by(|(i, a), (j, b)| a.rank().cmp(&b.rank()).then(j.cmp(i))).map(|(i, _)| i);
    if json {
        #[derive(serde::Serialize)]
        struct Inspection<'a> {
            directories: &'a [DataDirReport],
            best: Option<&'a PathBuf>,
        }
        let best = best.map(|i| &reports[i].data_dir);
        outln!("{}", serde_json::to_string_pretty(&Inspection { directories: &reports, best })?);
        return Ok(());
    }
    for (i, r) in reports.iter().enumerate() {
        let mark = if Some(i) == best && reports.len() > 1 { "  <- best survivor (latest log)" } else { "" };
        outln!("{}{mark}", r.data_dir.display());
        outln!("  node:          {}", r.node_id.map_or("unknown".into(), |n| n.to_string()));
        match &r.identity {
            Some(identity) => outln!("  cluster:       {} epoch {}", identity.cluster_id, identity.epoch),
            None => outln!("  cluster:       (not founded)"),
        }
        outln!("  vote:          {}", r.vote.as_ref().map_or("none".into(), |v| v.to_string()));
        outln!("  last log id:   {}", r.last_log_id.map_or("none".into(), |l| l.to_string()));
        outln!("  committed:     {}", r.committed.map_or("unknown".into(), |l| l.to_string()));
        outln!(
            "  last applied:  {} ({} entries after it)",
            r.last_applied.map_or("none".into(), |l| l.to_string()),
            r.unapplied_entries
        );
        outln!("  revision:      {}", r.revision);
        outln!("  data as of:    {}", time_and_age(r.clock_ms));
        outln!("  voters:        {:?}", r.voters);
        outln!("  learners:      {:?}", r.learners);
        if let Some(mode) = r.replication_mode {
            outln!("  replication:   {mode} to zones {:?} (as last applied here)", r.sync_zones);
        }
        if let Some(rec) = &r.recovered {
            outln!(
                "  recovered:     at {} from node {} (epoch {} -> {})",
                rec.at,
                rec.node_id,
                rec.old_epoch,
                rec.new_epoch
            );
        }
    }
    Ok(())
}

async fn force_new_cluster(data_dir: PathBuf, accept_data_loss: bool, id: Option<NodeId>) -> anyhow::Result<()> {
    if !accept_data_loss {
        bail!(
            "force-new-cluster can lose acknowledged writes (those the lost members had and this node lacks); \
             run `raftkv recover inspect` on every survivor first, pick the best, then add --accept-data-loss"
        );
    }
    let dir = data_dir.clone();
    let summary = tokio::task::spawn_blocking(move || recovery::force_new_cluster(&dir, id))
        .await?
        .with_context(|| format!("cannot recover {}", data_dir.display()))?;
    let record = &summary.record;
    let (id, addr) = &summary.member;
    outln!(
        "recovered {}: node {id} is now the only member of cluster {} at epoch {} (was {})",
        data_dir.display(),
        summary.identity.cluster_id,
        record.new_epoch,
        record.old_epoch
    );
    outln!("  removed members:      {:?}", record.removed_members);
    outln!(
        "  implicitly committed: {} entries this node had but never saw committed now count as committed",
        record.implicitly_committed
    );
    outln!("  revision:             {} (was {} before applying them)", record.revision_after, record.revision_before);
    outln!("  recovery point:       the newest write kept was proposed {}", time_and_age(record.data_as_of_ms));
    match summary.replication_mode {
        Some(raftkv_types::ReplicationMode::Sync) => outln!(
            "  replication:          the last mode this node saw was SYNC to zones {:?}: if this node is in one of them, \
             it had every acknowledged write (recovery point zero), unless the old leader switched to async after \
             losing contact with this zone (check its events if it can still be reached)",
            summary.sync_zones
        ),
        Some(raftkv_types::ReplicationMode::Async) => outln!(
            "  replication:          the last mode this node saw was ASYNC to zones {:?}: writes acknowledged after \
             that switch may be missing here (recovery point above zero)",
            summary.sync_zones
        ),
        None => outln!(
            "  DATA LOSS: writes acknowledged by the old cluster after that point, which this node did not have, are gone."
        ),
    }
    outln!("next: raftkv serve --id {id} --listen {addr} --data-dir {}", data_dir.display());
    outln!(
        "      then start new or wiped nodes with --join http://{addr}; old members started with their old data are refused (stale_epoch): wipe them first"
    );
    Ok(())
}

/// `ms` (since the Unix epoch) as RFC 3339 with how long ago it is.
fn time_and_age(ms: u64) -> String {
    if ms == 0 {
        return "unknown (no stamped write applied)".into();
    }
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    format!("{} ({:.1} s ago)", humantime::format_rfc3339_millis(at), age.as_secs_f64())
}
