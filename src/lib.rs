//! raftkv: a replicated, durable key-value store on Raft, for Rust services to embed or to run as
//! a cluster.
//!
//! This crate gathers the public face of the workspace:
//! - [`Node`] and [`NodeConfig`] run a member in-process (see `examples/embedded.rs`);
//! - [`Client`] talks to a cluster over HTTP;
//! - the `raftkv` binary (crate `raftkv-node`) runs nodes and example clusters.
//!
//! Start with `docs/architecture.md` for how the pieces fit.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = raftkv::Client::new(["http://127.0.0.1:7001"])?;
//! client.put("greeting", "hello").await?;
//! # Ok(()) }
//! ```

pub use raftkv_client::{
    Client, ClientError, ClientTlsFiles, Credentials, Probe, ProbeReport, SessionOptions, WatchStream,
};
/// The Prometheus client `Node`'s metrics are built with, for [`Node::register_metrics`]: use this
/// one (or the same version) for the registry a node's metrics join.
pub use raftkv_node::prometheus_client;
pub use raftkv_node::{
    AutopilotSettings, AutopilotStatus, AutopilotUpdate, BackupConsistency, CasResponse, ClusterEvent, ClusterHealth,
    ClusterIdentity, Consistency, DeleteResponse, Durability, HistoryRetention, KeyMeta, KeyValue, LeaderToken,
    LeaderTransferResponse, Leadership, LeadershipReceiver, MemberHealth, MemberInfo, MemberRole, MembersResponse,
    Node, NodeConfig, NodeError, NodeStatus, ProbeCheck, PutResponse, RaftTuning, ReplicationMode, ReplicationStatus,
    Role, ScanPage, TxnRequest, TxnRequestOp, TxnResponse, TxnResult, Versioned, WatchEvent, WatchOptions,
    WatchSelector, parse_members,
};
pub use raftkv_types::health::ReplicationUpdate;
