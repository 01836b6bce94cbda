//! `raftkv watch` and `raftkv txn`.

use super::Endpoints;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use raftkv_client::{Client, TxnRequest, TxnResult, WatchEvent, WatchOptions};
use raftkv_network::watch_routes::event_body;

use super::output::outln;

/// What `raftkv watch` follows and prints.
pub(crate) struct WatchArgs {
    pub(crate) target: String,
    pub(crate) exact_key: bool,
    pub(crate) from: Option<u64>,
    pub(crate) prev_kv: bool,
    pub(crate) no_put: bool,
    pub(crate) no_delete: bool,
    pub(crate) json: bool,
    pub(crate) count: Option<usize>,
}

/// `raftkv watch`: prints changes as they come, until interrupted (or `--count` changes).
pub(crate) async fn watch(endpoints: &Endpoints, args: WatchArgs) -> anyhow::Result<()> {
    let client = endpoints.client()?;
    let mut options = if args.exact_key { WatchOptions::key(&args.target) } else { WatchOptions::prefix(&args.target) };
    options.start_revision = args.from;
    options.prev_kv = args.prev_kv;
    options.no_put = args.no_put;
    options.no_delete = args.no_delete;
    let mut stream = client.watch(options).await?;
    let mut changes = 0;
    while let Some(event) = stream.next().await {
        let event = event?;
        let is_change = matches!(event, WatchEvent::Put { .. } | WatchEvent::Delete { .. });
        if args.json {
            outln!("{}", serde_json::to_string(&event_body(event.clone()))?);
        } else {
            match &event {
                WatchEvent::Created { revision } => eprintln!("watching from revision {}", revision + 1),
                WatchEvent::Put { revision, key, value, .. } => {
                    outln!("PUT {key} revision={revision} {}", String::from_utf8_lossy(&value.value))
                }
                WatchEvent::Delete { revision, key, .. } => outln!("DELETE {key} revision={revision}"),
                _ => {}
            }
        }
        if let WatchEvent::Compacted { compact_revision } = event {
            anyhow::bail!(
                "the watch history no longer reaches back that far (oldest revision kept: {compact_revision}); \
                 read the current state and watch from after its revision"
            );
        }
        if is_change {
            changes += 1;
            if args.count.is_some_and(|n| changes >= n) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `raftkv txn`: runs the transaction in `file` (`-`: standard input); exits non-zero when its
/// comparisons did not hold (the failure branch ran).
pub(crate) async fn txn(client: &Client, file: &Path, json: bool) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf).context("read standard input")?;
        buf
    } else {
        std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?
    };
    let request: TxnRequest =
        serde_json::from_str(&text).context("the transaction is not valid JSON of the /v1/txn body")?;
    let response = client.txn(&request).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        outln!("{} revision={}", if response.succeeded { "SUCCEEDED" } else { "FAILED" }, response.revision);
        for result in &response.results {
            match result {
                TxnResult::Put {} => outln!("put"),
                TxnResult::Delete { deleted } => outln!("delete deleted={deleted}"),
                TxnResult::Get(get) => match &get.kv {
                    Some(kv) => outln!("get {} mod_revision={} {}", get.key, kv.mod_revision, kv.value),
                    None => outln!("get {} (absent)", get.key),
                },
            }
        }
    }
    if !response.succeeded {
        anyhow::bail!("the comparisons did not hold: the failure branch ran");
    }
    Ok(())
}

/// `raftkv lease grant`: prints the new lease's id.
pub(crate) async fn lease_grant(endpoints: &Endpoints, ttl: std::time::Duration) -> anyhow::Result<()> {
    let lease = endpoints.client()?.grant_lease(ttl.as_millis() as u64).await?;
    outln!("{} ttl_ms={}", lease.id, lease.ttl_ms);
    Ok(())
}

/// `raftkv lease keepalive`: renews once, or with `every` until interrupted.
pub(crate) async fn lease_keep_alive(
    endpoints: &Endpoints,
    id: u64,
    every: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let client = endpoints.client()?;
    loop {
        let lease = client.keep_alive_lease(id).await?;
        outln!("KEPT {} ttl_ms={}", lease.id, lease.ttl_ms);
        let Some(every) = every else { return Ok(()) };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// `raftkv lease revoke`.
pub(crate) async fn lease_revoke(endpoints: &Endpoints, id: u64) -> anyhow::Result<()> {
    let done = endpoints.client()?.revoke_lease(id).await?;
    outln!("REVOKED {} deleted={} revision={}", done.id, done.deleted, done.revision);
    Ok(())
}

/// `raftkv lease list` and `raftkv lease show`.
pub(crate) async fn lease_list(endpoints: &Endpoints, id: Option<u64>, json: bool) -> anyhow::Result<()> {
    let client = endpoints.client()?;
    let leases = match id {
        Some(id) => vec![client.lease(id).await?],
        None => client.leases().await?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&leases)?);
        return Ok(());
    }
    outln!("{:<18} {:>10} {:>12} KEYS", "ID", "TTL_MS", "REMAINING_MS");
    for lease in &leases {
        outln!("{:<18} {:>10} {:>12} {}", lease.id, lease.ttl_ms, lease.remaining_ms, lease.keys.join(","));
    }
    Ok(())
}
