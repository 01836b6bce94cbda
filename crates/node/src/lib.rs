//! A raftkv node: configuration, the [`Node`] that wires storage, network and openraft together,
//! and the `raftkv` binary.
//!
//! # Layout
//! - [`config`]: [`NodeConfig`] and [`RaftTuning`].
//! - [`node`]: [`Node`]: start, typed reads and writes for embedding, shutdown.
//! - [`kv_handle`]: [`KvHandle`], the request logic behind both the HTTP API and [`Node`]:
//!   writes at each durability (proposed by `write_path`), reads at each consistency (follower
//!   reads through [`read_index`]).
//! - [`membership`]: membership changes and leader transfer, with their safety checks.
//! - `autopilot`: on the leader, replaces a dead voter by a healthy standby (what it observed
//!   between rounds: `autopilot_memory`); `cluster_ops` is
//!   the cluster-operations API behind it (health, events, settings, sync zones), and
//!   `sync_replication` makes writes wait for sync zones.
//! - [`leadership`]: [`Leadership`], the role changes and fencing tokens for services that run
//!   work on the leader only.
//! - [`status`]: `/v1/status` from openraft's metrics; [`append_clock`] gives replication lag in
//!   milliseconds.
//! - [`proposal_clock`]: the time stamped on each proposal (the state machine's clock); backups are
//!   streamed out by `backup_stream`.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), raftkv_node::NodeError> {
//! use std::time::Duration;
//! use raftkv_node::{Consistency, Node, NodeConfig, parse_members};
//!
//! let config = NodeConfig::new(1, "127.0.0.1:7001", "/tmp/raftkv-1")
//!     .with_initial_cluster(parse_members("1=127.0.0.1:7001")?);
//! let node = Node::start(config).await?;
//! node.wait_for_leader(Duration::from_secs(5)).await?;
//! node.put("greeting", "hello").await?;
//! assert_eq!(node.get("greeting", Consistency::Linearizable).await?, Some(b"hello".to_vec()));
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod append_clock;
mod autopilot;
mod autopilot_memory;
mod backup_stream;
mod cluster_ops;
mod cluster_tasks;
pub mod config;
mod disk_monitor;
mod error;
pub mod kv_handle;
pub mod leadership;
mod lease_keeper;
pub mod membership;
pub mod node;
mod node_metrics;
pub mod probes;
mod process_collector;
pub mod proposal_clock;
pub mod read_index;
mod scrape_collector;
pub mod status;
mod sync_replication;
mod watch_stream;
mod write_path;

pub use config::{NodeConfig, RaftTuning, parse_members};
pub use error::{NodeError, Result};
pub use kv_handle::KvHandle;
pub use leadership::{Leadership, LeadershipReceiver};
pub use node::Node;
pub use prometheus_client;
pub use raftkv_network::ProbeCheck;
pub use raftkv_storage::{FileSummary, HistoryRetention, ScanPage, SnapshotHeader};
pub use raftkv_types::api::{
    BackupConsistency, CasResponse, Consistency, DeleteResponse, Durability, KeyValue, LeaderTransferResponse,
    MemberInfo, MemberRole, MembersResponse, NodeStatus, PutResponse, Role, TxnRequest, TxnRequestOp, TxnResponse,
    TxnResult,
};
pub use raftkv_types::health::{AutopilotStatus, AutopilotUpdate, ClusterHealth, MemberHealth, ReplicationStatus};
pub use raftkv_types::{
    AutopilotSettings, ClusterEvent, ClusterIdentity, KeyMeta, LeaderToken, ReplicationMode, Versioned, WatchEvent,
    WatchOptions, WatchSelector,
};
