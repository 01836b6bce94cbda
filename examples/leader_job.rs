//! Run three of these (one per terminal):
//!
//! ```text
//! cargo run --example leader_job -- 1 127.0.0.1:7201 /tmp/job-1 1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203
//! cargo run --example leader_job -- 2 127.0.0.1:7202 /tmp/job-2 1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203
//! cargo run --example leader_job -- 3 127.0.0.1:7203 /tmp/job-3 1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203
//! ```
//!
//! A service with active/passive redundancy of its own: every instance embeds a raftkv node, and
//! a periodic job (here: recording a heartbeat under `job/last-run`) runs on exactly one of them,
//! the leader. Kill the leading instance and the job moves to the next leader within an election.
//!
//! The pattern:
//! - watch [`Node::role_changes`]; start the job when this node becomes leader, stop it when it
//!   is not any more;
//! - write with the leadership's token ([`Node::put_if_leader`]): a deposed leader that has not
//!   noticed yet (paused, cut off) cannot overwrite its successor's work, because the state
//!   machine refuses a write whose token is no longer current (`fenced`).
//!
//! Optional fifth argument: the job's period in ms (default 500).

use std::time::Duration;

use raftkv::{ClientError, Leadership, Node, NodeConfig, NodeError, parse_members};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [id, listen, data_dir, members, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: leader_job ID HOST:PORT DATA_DIR 1=HOST:PORT,2=... [PERIOD_MS]");
    };
    let id: u64 = id.parse()?;
    let period = Duration::from_millis(rest.first().map_or(Ok(500), |p| p.parse())?);
    let config = NodeConfig::new(id, listen.clone(), data_dir).with_initial_cluster(parse_members(members)?);
    let node = std::sync::Arc::new(Node::start(config).await?);
    println!("instance {id} serving at {}", node.url());

    let mut roles = node.role_changes();
    // The job runs for one leadership: a new term (even on the same instance) is a new job.
    let mut job: Option<(raftkv::LeaderToken, JoinHandle<()>)> = None;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        let leadership: Leadership = roles.borrow_and_update().clone();
        if let Some((token, handle)) = &job
            && leadership.token != Some(*token)
        {
            println!("instance {id} no longer leads in term {}: stopping the job", token.term);
            handle.abort();
            job = None;
        }
        if let (Some(token), None) = (leadership.token, &job) {
            println!("instance {id} leads (term {}): starting the job", token.term);
            job = Some((token, tokio::spawn(run_job(node.clone(), token, period))));
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { break },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if let Some((_, handle)) = job {
        handle.abort();
    }
    match std::sync::Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await?,
        Err(_) => anyhow::bail!("the job still holds the node"),
    }
    Ok(())
}

/// The leader-only job: every `period`, records that it ran, fenced by `token`. Stops for good
/// when the write is fenced (another leader has been elected).
async fn run_job(node: std::sync::Arc<Node>, token: raftkv::LeaderToken, period: Duration) {
    let mut run = 0u64;
    loop {
        run += 1;
        let record = format!("instance {} term {} run {run}", node.id(), token.term);
        match node.put_if_leader(token, "job/last-run", record.clone()).await {
            Ok(put) => println!("{record} (revision {})", put.revision),
            Err(e) if is_fenced(&e) => {
                println!("fenced: leadership of term {} is over; the job stops here ({e})", token.term);
                return;
            }
            Err(e) => println!("job run {run} failed, trying again next period: {e}"),
        }
        tokio::time::sleep(period).await;
    }
}

fn is_fenced(e: &NodeError) -> bool {
    match e {
        NodeError::Api(api) => api.code() == "fenced",
        NodeError::Forward { source: ClientError::Api { code, .. }, .. } => code == "fenced",
        _ => false,
    }
}
