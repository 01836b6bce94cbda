//! Run with: `cargo run --example embedded`
//!
//! A Rust service embedding a raftkv node: start it, write, read at each consistency level, and
//! shut it down. One node is a cluster of one; add members with `initial_cluster`.

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv::{Consistency, Node, NodeConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let addr = "127.0.0.1:7101".to_string();
    let config = NodeConfig::new(1, addr.clone(), data_dir.path()).with_initial_cluster(BTreeMap::from([(1, addr)]));

    let node = Node::start(config).await?;
    node.wait_for_leader(Duration::from_secs(10)).await?;
    println!("node {} serving at {}", node.id(), node.url());

    let put = node.put("greeting", "hello").await?;
    println!("put greeting -> revision {}", put.revision);

    for level in [Consistency::Linearizable, Consistency::Lease, Consistency::Stale] {
        let value = node.get("greeting", level).await?;
        println!("get greeting ({level}) -> {:?}", value.map(|v| String::from_utf8_lossy(&v).into_owned()));
    }

    let cas = node.cas("greeting", Some("hello"), "bonjour").await?;
    println!("cas hello -> bonjour: succeeded={}", cas.succeeded);

    node.shutdown().await?;
    println!("stopped");
    Ok(())
}
