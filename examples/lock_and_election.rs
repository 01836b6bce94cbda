//! Run with: `cargo run --example lock_and_election`
//!
//! A lock and a leader election on leases, against a three-node cluster started in-process: the
//! holder's fencing token guards its writes, so a holder that lost the lock (its lease ran out
//! while it was paused) cannot write any more, however late its write arrives.

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv::{Client, Node, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("127.0.0.1:{}", 7110 + id))).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let config =
            NodeConfig::new(*id, addr.clone(), dirs[*id as usize - 1].path()).with_initial_cluster(members.clone());
        nodes.push(Node::start(config).await?);
    }
    nodes[0].wait_for_leader(Duration::from_secs(10)).await?;
    let client = Client::new(nodes.iter().map(|n| n.url()))?;

    // A lock: the first holder writes under its fencing token, then stops renewing (as a paused
    // or dead process would); one time to live later the second contender holds it.
    let first = client.lock("locks/report", Duration::from_secs(2)).await?;
    println!("first holds the lock, fencing token {}", first.fencing_token());
    first.put_fenced("report/owner", "first").await?;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.lock("locks/report", Duration::from_secs(2)).await }
    });
    let stale = first.fencing_token();
    let first_key = first.key().to_string();
    drop(first);
    let second = waiting.await??;
    println!("second holds the lock, fencing token {} (> {stale})", second.fencing_token());
    second.put_fenced("report/owner", "second").await?;
    // The first holder's late write is refused: its key is gone.
    let late = raftkv::TxnRequest::new()
        .when(&first_key, "create_revision", "=", stale)
        .then(raftkv::TxnRequestOp::put("report/owner", "first, late"));
    println!("the first holder's late write succeeded: {}", client.txn(&late).await?.succeeded);
    second.unlock().await?;

    // An election: the winner's value is what observers see.
    let leader = client.campaign("election/scheduler", "worker-a", Duration::from_secs(2)).await?;
    let seen = client.election_leader("election/scheduler").await?.map(|kv| kv.value);
    println!("election leader: {seen:?}");
    leader.unlock().await?;
    println!("after resigning: {:?}", client.election_leader("election/scheduler").await?.map(|kv| kv.value));

    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
