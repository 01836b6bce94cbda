//! The client subcommands: put, get, delete, cas, scan, status.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use raftkv_client::{Client, NodeStatus, Role};
use raftkv_types::api::Consistency;

fn client(endpoints: &[String]) -> anyhow::Result<Client> {
    Ok(Client::new(endpoints)?)
}

/// `raftkv put`.
pub async fn put(endpoints: &[String], key: &str, value: Option<String>, file: Option<PathBuf>) -> anyhow::Result<()> {
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
    let resp = client(endpoints)?.put(key, value).await?;
    println!("OK revision={}", resp.revision);
    Ok(())
}

/// `raftkv get`: the raw value on stdout; a missing key is an error.
pub async fn get(endpoints: &[String], key: &str, consistency: Consistency) -> anyhow::Result<()> {
    match client(endpoints)?.get(key, consistency).await? {
        Some(value) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            if std::io::IsTerminal::is_terminal(&out) {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        None => anyhow::bail!("key {key:?} not found"),
    }
}

/// `raftkv delete`.
pub async fn delete(endpoints: &[String], key: &str) -> anyhow::Result<()> {
    let resp = client(endpoints)?.delete(key).await?;
    println!("{} revision={}", if resp.deleted { "DELETED" } else { "ABSENT" }, resp.revision);
    Ok(())
}

/// `raftkv cas`: exits non-zero when the swap did not happen.
pub async fn cas(endpoints: &[String], key: &str, expected: Option<&str>, value: &str) -> anyhow::Result<()> {
    let resp = client(endpoints)?.cas(key, expected, value).await?;
    if resp.succeeded {
        println!("SWAPPED revision={}", resp.revision);
        Ok(())
    } else {
        anyhow::bail!("not swapped: current value is {}", resp.current.map_or("absent".into(), |c| format!("{c:?}")))
    }
}

/// `raftkv scan`.
pub async fn scan(endpoints: &[String], prefix: &str, limit: usize, consistency: Consistency) -> anyhow::Result<()> {
    let resp = client(endpoints)?.scan(prefix, limit, None, consistency).await?;
    for e in &resp.entries {
        println!("{}\t{}", e.key, e.value);
    }
    if let Some(next) = resp.next {
        eprintln!("(more keys after {next:?})");
    }
    Ok(())
}

/// `raftkv status`: asks every member for its own view and the leader for lag, and prints a table.
pub async fn status(endpoints: &[String], json: bool) -> anyhow::Result<()> {
    let client = client(endpoints)?;
    let first = client.status().await?;
    // The leader knows every member's matched index; ask it when it is known.
    let leader_status = match first.leader.and_then(|l| first.members.get(&l)) {
        Some(m) if first.leader != Some(first.id) => client.status_of(&format!("http://{}", m.addr)).await.ok(),
        _ => Some(first.clone()),
    }
    .filter(|s| s.role == Role::Leader);
    if json {
        println!("{}", serde_json::to_string_pretty(leader_status.as_ref().unwrap_or(&first))?);
        return Ok(());
    }
    let reference = leader_status.as_ref().unwrap_or(&first);
    println!(
        "{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}",
        "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "MATCHED", "LAG"
    );
    for (id, member) in &reference.members {
        let own: Option<NodeStatus> = client.status_of(&format!("http://{}", member.addr)).await.ok();
        let (role, term, commit, applied) = match &own {
            Some(s) => {
                (s.role.to_string(), s.term.to_string(), s.commit_index.to_string(), s.applied_index.to_string())
            }
            None => ("unreachable".into(), "-".into(), "-".into(), "-".into()),
        };
        let role = if member.voter { role } else { format!("{role}*") };
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}",
            id,
            member.addr,
            role,
            term,
            commit,
            applied,
            opt(member.matched_index),
            opt(member.lag)
        );
    }
    match reference.leader {
        Some(l) => println!("leader: node {l} (term {})", reference.term),
        None => println!("leader: none known (election in progress or no quorum)"),
    }
    Ok(())
}
