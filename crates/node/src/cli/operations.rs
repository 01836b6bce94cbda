//! The cluster-operations subcommands: autopilot, health, events, replication, member standby.

use std::time::{Duration, SystemTime};

use clap::Subcommand;
use raftkv_client::{
    AutopilotStatus, AutopilotUpdate, Client, ClusterEvent, Probe, ReplicationStatus, ReplicationUpdate,
};
use raftkv_types::NodeId;

use super::Endpoints;
use super::client_cmds::print_members;

use super::output::outln;

#[derive(Debug, Subcommand)]
pub(crate) enum AutopilotAction {
    /// Show the settings and whether the autopilot is paused.
    Get {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change settings (replicated: every future leader has them); the others keep their values.
    Set {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Turn the autopilot on or off.
        #[arg(long)]
        enabled: Option<bool>,
        /// How long a voter must be out of contact to count as dead (e.g. 60s); at least three
        /// election timeouts.
        #[arg(long, value_parser = humantime::parse_duration)]
        dead_after: Option<Duration>,
        /// How long a standby must have been reachable and caught up before it may be promoted.
        #[arg(long, value_parser = humantime::parse_duration)]
        min_stable: Option<Duration>,
        /// The least time between two actions.
        #[arg(long, value_parser = humantime::parse_duration)]
        cooldown: Option<Duration>,
        /// How many entries behind the leader a standby may be and still count as caught up.
        #[arg(long)]
        max_trailing_entries: Option<u64>,
    },
    /// Take no action for a while (maintenance); `--for 0s` resumes.
    Pause {
        #[command(flatten)]
        endpoints: Endpoints,
        /// How long, e.g. 30m.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        period: Duration,
    },
    /// End a pause.
    Resume {
        #[command(flatten)]
        endpoints: Endpoints,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReplicationAction {
    /// Show the sync zones and the current mode.
    Get {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make every write wait for a member of each zone (`--zones ""` turns it off).
    Set {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Comma-separated zones, e.g. dr.
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        /// How long a write waits for a zone before the cluster goes asynchronous, e.g. 5s.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait_timeout: Option<Duration>,
    },
}

fn client(endpoints: &Endpoints) -> anyhow::Result<Client> {
    endpoints.client()
}

/// `raftkv autopilot ...`.
pub(crate) async fn autopilot(action: AutopilotAction) -> anyhow::Result<()> {
    let (status, json) = match action {
        AutopilotAction::Get { endpoints, json } => (client(&endpoints)?.autopilot().await?, json),
        AutopilotAction::Set { endpoints, enabled, dead_after, min_stable, cooldown, max_trailing_entries } => {
            let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
            let update = AutopilotUpdate {
                enabled,
                dead_after_ms: ms(dead_after),
                min_stable_ms: ms(min_stable),
                cooldown_ms: ms(cooldown),
                max_trailing_entries,
            };
            if update == AutopilotUpdate::default() {
                anyhow::bail!(
                    "nothing to set: give --enabled, --dead-after, --min-stable, --cooldown or --max-trailing-entries"
                );
            }
            (client(&endpoints)?.set_autopilot(&update).await?, false)
        }
        AutopilotAction::Pause { endpoints, period } => (client(&endpoints)?.pause_autopilot(period).await?, false),
        AutopilotAction::Resume { endpoints } => (client(&endpoints)?.pause_autopilot(Duration::ZERO).await?, false),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_autopilot(&status)?;
    }
    Ok(())
}

fn print_autopilot(status: &AutopilotStatus) -> Result<(), super::output::OutputError> {
    let s = &status.settings;
    outln!("enabled: {}", s.enabled);
    outln!("dead after: {}", ms(s.dead_after_ms));
    outln!("min stable: {}", ms(s.min_stable_ms));
    outln!("cooldown: {}", ms(s.cooldown_ms));
    outln!("max trailing entries: {}", s.max_trailing_entries);
    match status.paused_until_ms {
        Some(until) => outln!("paused until: {}", at(until)),
        None => outln!("paused: no"),
    }
    if let Some(action) = &status.last_action {
        outln!("last action: {} {}", at(action.at_ms), action.message);
    }
    Ok(())
}

/// `raftkv probe live|ready`: asks the node's `/livez` or `/readyz` (with `?verbose`, and `?sync`
/// with `sync`), prints the answer, fails when the probe does.
pub(crate) async fn probe(kind: &str, addr: &str, verbose: bool, sync: Option<Duration>) -> anyhow::Result<()> {
    let probe = match (kind, sync) {
        ("live", None) => Probe::Live,
        ("live", Some(_)) => anyhow::bail!("--sync waits until the node has caught up: use it with `probe ready`"),
        (_, None) => Probe::Ready,
        (_, Some(wait)) => Probe::ReadySynced(wait),
    };
    let client = Client::with_timeout([format!("http://{addr}")], Duration::from_secs(5))?;
    let report = client.probe_of(addr, probe).await.map_err(|e| anyhow::anyhow!("{addr} does not answer: {e}"))?;
    let ok = report.passed;
    if verbose || !ok {
        super::output::write_bytes(report.checks.as_bytes())?;
    } else {
        outln!("ok");
    }
    if !ok {
        anyhow::bail!("node {addr} is not {kind}");
    }
    Ok(())
}

/// `raftkv health`: exits 1 when the cluster is not healthy.
pub(crate) async fn health(endpoints: &Endpoints, json: bool) -> anyhow::Result<()> {
    let health = endpoints.client()?.health().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&health)?);
    } else {
        outln!(
            "{}: leader {}, {} of {} voters healthy (quorum {}), can lose {} more voter(s); {} standby(s) ready",
            if health.healthy { "healthy" } else { "NOT HEALTHY" },
            health.leader,
            health.healthy_voters,
            health.voters,
            health.quorum,
            health.failure_tolerance,
            health.ready_standbys
        );
        outln!(
            "{:<4} {:<22} {:<8} {:<8} {:<9} {:<8} {:>8} {:>10}",
            "ID",
            "ADDRESS",
            "ZONE",
            "ROLE",
            "REACHABLE",
            "HEALTHY",
            "LAG",
            "CONTACT"
        );
        for m in &health.members {
            let contact = m.last_contact_ms.map_or("-".to_string(), |c| format!("{c}ms"));
            let healthy = if m.dead {
                "dead"
            } else if m.healthy {
                "yes"
            } else {
                "no"
            };
            outln!(
                "{:<4} {:<22} {:<8} {:<8} {:<9} {:<8} {:>8} {:>10}",
                m.id,
                m.addr,
                m.zone.as_deref().unwrap_or("-"),
                m.role.to_string(),
                m.reachable,
                healthy,
                m.lag_entries,
                contact
            );
        }
        print_replication(&health.replication)?;
        outln!("autopilot: {}", if health.autopilot.settings.enabled { "enabled" } else { "disabled" });
        for problem in &health.problems {
            outln!("problem: {problem}");
        }
    }
    if !health.healthy {
        anyhow::bail!("the cluster is not healthy: {}", health.problems.join("; "));
    }
    Ok(())
}

/// `raftkv events`.
pub(crate) async fn events(endpoints: &Endpoints, json: bool) -> anyhow::Result<()> {
    let events = endpoints.client()?.events().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    for ClusterEvent { at_ms, log_index, kind, message } in &events.events {
        let index = if *log_index == 0 { "-".to_string() } else { log_index.to_string() };
        outln!("{} {:>8} {:<24} {message}", at(*at_ms), index, kind);
    }
    Ok(())
}

/// `raftkv replication ...`.
pub(crate) async fn replication(action: ReplicationAction) -> anyhow::Result<()> {
    let (status, json) = match action {
        ReplicationAction::Get { endpoints, json } => (client(&endpoints)?.replication().await?, json),
        ReplicationAction::Set { endpoints, zones, wait_timeout } => {
            let zones = zones.into_iter().filter(|z| !z.trim().is_empty()).collect();
            let update = ReplicationUpdate { zones, wait_timeout_ms: wait_timeout.map(|d| d.as_millis() as u64) };
            (client(&endpoints)?.set_replication(&update).await?, false)
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_replication(&status)?;
    }
    Ok(())
}

fn print_replication(status: &ReplicationStatus) -> Result<(), super::output::OutputError> {
    match status.mode {
        None => outln!("sync zones: none (writes wait for a majority of voters only)"),
        Some(mode) => outln!(
            "sync zones: {} (mode {mode}; asynchronous after {} without a zone)",
            status.zones.join(","),
            ms(status.wait_timeout_ms)
        ),
    }
    Ok(())
}

/// `raftkv member standby`.
pub(crate) async fn member_standby(endpoints: &Endpoints, id: NodeId, standby: bool) -> anyhow::Result<()> {
    let members = endpoints.client()?.set_standby(id, standby).await?;
    print_members(&members)?;
    Ok(())
}

fn ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn at(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
