//! The client subcommands: put, get, delete, cas, scan, status, member, leader.

use super::Endpoints;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raftkv_client::{Client, NodeStatus, Role, SessionOptions};
use raftkv_types::NodeId;
use raftkv_types::api::{Consistency, Durability, MembersResponse};

use super::WriteDedup;
use super::output::outln;

fn client(endpoints: &Endpoints) -> anyhow::Result<Client> {
    endpoints.client()
}

/// How long a command's own session lives after its write: long enough for the write's
/// retries, short so that the cluster forgets it soon after the command ends.
const COMMAND_SESSION_TTL: Duration = Duration::from_secs(60);

/// How long a command retries a write whose outcome is unknown.
const COMMAND_RETRY_DEADLINE: Duration = Duration::from_secs(30);

/// The client of a write command: through the command's own short session, or with the
/// idempotency key given.
pub(crate) fn writer(endpoints: &Endpoints, dedup: &WriteDedup) -> anyhow::Result<Client> {
    let options = SessionOptions { enabled: true, ttl: COMMAND_SESSION_TTL, retry_deadline: COMMAND_RETRY_DEADLINE };
    let client = client(endpoints)?.with_session_options(options);
    Ok(match &dedup.idempotency_key {
        Some(key) => client.with_idempotency_key(key.clone()),
        None => client,
    })
}

/// `raftkv put`.
pub async fn put(
    client: &Client,
    key: &str,
    value: Option<String>,
    file: Option<PathBuf>,
    durability: Durability,
    lease: Option<u64>,
) -> anyhow::Result<()> {
    let value = match (value, file) {
        (Some(v), _) => v.into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("read standard input")?;
            buf
        }
        (None, Some(path)) => std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
        (None, None) => anyhow::bail!("give a value or --file"),
    };
    let resp = match lease {
        Some(lease) => client.put_with_lease(key, value, lease).await?,
        None => client.put_with(key, value, durability).await?,
    };
    outln!("OK revision={}", resp.revision);
    Ok(())
}

/// `raftkv get`: the raw value on stdout; a missing key is an error.
pub async fn get(
    endpoints: &Endpoints,
    key: &str,
    consistency: Consistency,
    max_lag_ms: Option<u64>,
    read_preference: raftkv_client::ReadPreference,
    raw: bool,
) -> anyhow::Result<()> {
    let client = client(endpoints)?.with_read_preference(read_preference);
    let value = match max_lag_ms {
        None => client.get(key, consistency).await?,
        Some(_) if consistency != Consistency::Stale => {
            anyhow::bail!("--max-lag-ms bounds stale reads: use it with --consistency stale")
        }
        Some(ms) => client.get_bounded(key, std::time::Duration::from_millis(ms)).await?,
    };
    match value {
        Some(value) => {
            // On a terminal a newline ends the value, so that the prompt or the next value does
            // not run into it; a pipe or a file gets the stored bytes exactly.
            super::output::write_bytes(&value)?;
            if !raw && super::output::is_terminal() {
                super::output::write_bytes(b"\n")?;
            }
            Ok(())
        }
        None => anyhow::bail!("key {key:?} not found"),
    }
}

/// `raftkv get --meta`: the key, value and revisions as JSON; a missing key is an error.
pub async fn get_meta(
    endpoints: &Endpoints,
    key: &str,
    consistency: Consistency,
    read_preference: raftkv_client::ReadPreference,
) -> anyhow::Result<()> {
    let client = client(endpoints)?.with_read_preference(read_preference);
    match client.get_kv(key, consistency).await? {
        Some(kv) => {
            outln!("{}", serde_json::to_string(&kv)?);
            Ok(())
        }
        None => anyhow::bail!("key {key:?} not found"),
    }
}

/// `raftkv delete`.
pub async fn delete(client: &Client, key: &str) -> anyhow::Result<()> {
    let resp = client.delete(key).await?;
    outln!("{} revision={}", if resp.deleted { "DELETED" } else { "ABSENT" }, resp.revision);
    Ok(())
}

/// `raftkv cas`: exits non-zero when the swap did not happen.
pub async fn cas(client: &Client, key: &str, expected: Option<&str>, value: &str) -> anyhow::Result<()> {
    let resp = client.cas(key, expected, value).await?;
    if resp.succeeded {
        outln!("SWAPPED revision={}", resp.revision);
        Ok(())
    } else {
        anyhow::bail!("not swapped: current value is {}", resp.current.map_or("absent".into(), |c| format!("{c:?}")))
    }
}

/// `raftkv scan`.
pub async fn scan(endpoints: &Endpoints, prefix: &str, limit: usize, consistency: Consistency) -> anyhow::Result<()> {
    let resp = client(endpoints)?.scan(prefix, limit, None, consistency).await?;
    for e in &resp.entries {
        outln!("{}\t{}", e.key, e.value);
    }
    if let Some(next) = resp.next {
        eprintln!("(more keys after {next:?})");
    }
    Ok(())
}

/// `raftkv status`: asks every member for its own view and the leader for lag, and prints a table.
pub async fn status(endpoints: &Endpoints, json: bool) -> anyhow::Result<()> {
    let text = render_status(&client(endpoints)?, json).await?;
    super::output::write_bytes(text.as_bytes())?;
    Ok(())
}

/// `raftkv status --watch`: redraws the status every `interval` until interrupted. A node that
/// does not answer is shown as an error line on the screen, and the next round tries again.
pub async fn status_watch(endpoints: &Endpoints, json: bool, interval: std::time::Duration) -> anyhow::Result<()> {
    let client = client(endpoints)?;
    let terminal = super::output::is_terminal();
    // Registered once, before the first round: a signal that arrives while a round is being drawn
    // is kept for the next wait, never lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let text = match render_status(&client, json).await {
            Ok(text) => text,
            Err(e) => format!("error: {e:#}\n"),
        };
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        // On a terminal: clear the screen and draw from the top; elsewhere one block per round.
        let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
        super::output::write_bytes(format!("{clear}every {interval:?}: {stamp}\n{text}\n").as_bytes())?;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
    }
}

/// The status table (or the leader's JSON status) as text.
async fn render_status(client: &Client, json: bool) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let first = client.status().await?;
    // The leader knows every member's matched index; ask it when it is known.
    let leader_status = match first.leader.and_then(|l| first.members.get(&l)) {
        Some(m) if first.leader != Some(first.id) => {
            client.status_of(&format!("{}://{}", client.scheme(), m.addr)).await.ok()
        }
        _ => Some(first.clone()),
    }
    .filter(|s| s.role == Role::Leader);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(leader_status.as_ref().unwrap_or(&first))?)?;
        return Ok(out);
    }
    let reference = leader_status.as_ref().unwrap_or(&first);
    match (&reference.cluster_id, reference.epoch) {
        (Some(cluster), Some(epoch)) => {
            writeln!(out, "cluster {cluster} epoch {epoch} revision {}", reference.revision)
        }
        _ => writeln!(out, "cluster (not founded yet) revision {}", reference.revision),
    }?;
    if let Some(mode) = reference.replication_mode {
        writeln!(out, "replication to sync zones: {mode}")?;
    }
    if let Some(rec) = &reference.recovered {
        writeln!(
            out,
            "recovered at {} from node {} (epoch {} -> {}; {} entries implicitly committed)",
            rec.at, rec.node_id, rec.old_epoch, rec.new_epoch, rec.implicitly_committed
        )?;
    }
    writeln!(
        out,
        "{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>12}",
        "ID",
        "ADDRESS",
        "ZONE",
        "ROLE",
        "TERM",
        "COMMIT",
        "APPLIED",
        "MATCHED",
        "BEHIND",
        "LAG_MS",
        "LAST_ACK",
        "DISK_FREE"
    )?;
    let mut full = Vec::new();
    for (id, member) in &reference.members {
        let own: Option<NodeStatus> = client.status_of(&format!("{}://{}", client.scheme(), member.addr)).await.ok();
        let (role, term, commit, applied) = match &own {
            Some(s) => {
                let role =
                    if member.reachable == Some(false) { format!("{}?", member.role) } else { member.role.to_string() };
                (role, s.term.to_string(), s.commit_index.to_string(), s.applied_index.to_string())
            }
            None => ("unreachable".into(), "-".into(), "-".into(), "-".into()),
        };
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let disk = match own.as_ref().and_then(|s| s.storage) {
            Some(s) if s.low => {
                full.push(*id);
                format!("{}MiB FULL", s.free_bytes >> 20)
            }
            Some(s) => format!("{}MiB", s.free_bytes >> 20),
            None => "-".into(),
        };
        writeln!(
            out,
            "{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>12}",
            id,
            member.addr,
            member.zone.as_deref().unwrap_or("-"),
            role,
            term,
            commit,
            applied,
            opt(member.matched_index),
            opt(member.lag),
            opt(member.lag_ms),
            member.last_ack_ms.map_or("-".to_string(), |ms| format!("{ms}ms")),
            disk,
        )?;
    }
    for id in full {
        writeln!(
            out,
            "node {id}: data directory below its free-space reserve: it refuses writes and log appends until space is freed"
        )?;
    }
    writeln!(
        out,
        "roles: leader, voter, standby (a learner the autopilot may promote), learner (read replica); '?' = not acknowledging the leader"
    )?;
    match reference.leader {
        Some(l) => writeln!(out, "leader: node {l} (term {})", reference.term),
        None => writeln!(out, "leader: none known (election in progress or no quorum)"),
    }?;
    Ok(out)
}

/// Prints the members as a table.
pub(crate) fn print_members(members: &MembersResponse) -> Result<(), super::output::OutputError> {
    outln!("{:<4} {:<22} {:<8} {:<8}", "ID", "ADDRESS", "ZONE", "ROLE");
    for m in &members.members {
        outln!("{:<4} {:<22} {:<8} {:<8}", m.id, m.addr, m.zone.as_deref().unwrap_or("-"), m.role);
    }
    if members.change_in_progress {
        outln!("a membership change is in progress");
    }
    Ok(())
}

/// `raftkv member list`.
pub async fn member_list(endpoints: &Endpoints, json: bool) -> anyhow::Result<()> {
    let members = client(endpoints)?.members().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&members)?);
    } else {
        print_members(&members)?;
    }
    Ok(())
}

/// `raftkv member add-learner`.
pub async fn member_add_learner(
    endpoints: &Endpoints,
    id: NodeId,
    addr: &str,
    zone: Option<&str>,
    standby: bool,
) -> anyhow::Result<()> {
    let member = raftkv_types::api::NewMember { id, addr: addr.to_string(), zone: zone.map(str::to_string), standby };
    let members = client(endpoints)?.add_member(&member).await?;
    let what = if standby { "a standby" } else { "a learner" };
    outln!("node {id} is {what}; it catches up in the background (see `raftkv status`)");
    print_members(&members)?;
    Ok(())
}

/// `raftkv member promote`.
pub async fn member_promote(endpoints: &Endpoints, id: NodeId, force: bool) -> anyhow::Result<()> {
    let members = client(endpoints)?.promote(id, force).await?;
    outln!("node {id} is a voter");
    print_members(&members)?;
    Ok(())
}

/// `raftkv member remove`.
pub async fn member_remove(endpoints: &Endpoints, id: NodeId, force: bool) -> anyhow::Result<()> {
    let members = client(endpoints)?.remove_member(id, force).await?;
    outln!("node {id} removed");
    print_members(&members)?;
    Ok(())
}

/// `raftkv member replace`.
pub async fn member_replace(
    endpoints: &Endpoints,
    old: NodeId,
    id: NodeId,
    addr: &str,
    force: bool,
) -> anyhow::Result<()> {
    let members = client(endpoints)?.replace_member(old, id, addr, force).await?;
    outln!("node {old} replaced by node {id}");
    print_members(&members)?;
    Ok(())
}

/// `raftkv leader transfer`.
pub async fn leader_transfer(endpoints: &Endpoints, to: NodeId) -> anyhow::Result<()> {
    let resp = client(endpoints)?.transfer_leader(to).await?;
    outln!("node {} leads", resp.leader);
    Ok(())
}
