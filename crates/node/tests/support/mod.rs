//! What the in-process cluster tests share: free ports and a three-node cluster.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use raftkv_node::{Node, NodeConfig};

/// A loopback address with a port free now.
pub fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// Three in-process nodes founding a cluster (each configured by `tune`), once it has a leader,
/// with their data directories (removed when dropped).
pub async fn three_nodes(tune: impl Fn(&mut NodeConfig)) -> (Vec<tempfile::TempDir>, Vec<Node>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let mut config =
            NodeConfig::new(*id, addr.clone(), dirs[*id as usize - 1].path()).with_initial_cluster(members.clone());
        config.restart_grace = Duration::ZERO;
        tune(&mut config);
        nodes.push(Node::start(config).await.unwrap());
    }
    nodes[0].wait_for_leader(Duration::from_secs(20)).await.unwrap();
    (dirs, nodes)
}
