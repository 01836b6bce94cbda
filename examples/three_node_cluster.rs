//! Run with: `cargo run --example three_node_cluster`
//!
//! Three nodes in one process, each with its own data directory and HTTP port, forming one Raft
//! cluster: elect a leader, write through a follower, read everywhere, stop the leader and watch
//! the others elect a new one.

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv::{Consistency, Node, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("127.0.0.1:{}", 7110 + id))).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let config = NodeConfig::new(*id, addr.clone(), root.path().join(format!("node-{id}")))
            .with_initial_cluster(members.clone());
        nodes.push(Node::start(config).await?);
    }
    let leader = nodes[0].wait_for_leader(Duration::from_secs(10)).await?;
    println!("leader: node {leader}");

    let follower = nodes.iter().find(|n| n.id() != leader).expect("three nodes");
    follower.put("color", "green").await?;
    println!("wrote color=green through follower {}", follower.id());
    for node in &nodes {
        println!(
            "node {} reads {:?}",
            node.id(),
            node.get("color", Consistency::Linearizable).await?.map(|v| String::from_utf8_lossy(&v).into_owned())
        );
    }

    let index = nodes.iter().position(|n| n.id() == leader).expect("leader is a member");
    nodes.remove(index).shutdown().await?;
    println!("stopped the leader, node {leader}");
    let mut new_leader = leader;
    for _ in 0..100 {
        if let Some(l) = nodes[0].status().await?.leader.filter(|l| *l != leader) {
            new_leader = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("new leader: node {new_leader}");
    nodes[0].put("color", "blue").await?;
    println!(
        "after failover color = {:?}",
        nodes[1].get("color", Consistency::Linearizable).await?.map(|v| String::from_utf8_lossy(&v).into_owned())
    );

    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
