//! HTTP transport of raftkv: peer RPC for openraft and the client API, both served by one axum
//! server per node, and the peer client that implements openraft's network traits.
//!
//! # Layout
//! - [`peer_client`]: [`PeerNetwork`] and [`PeerClient`], openraft's `RaftNetworkFactory` and
//!   `RaftNetworkV2` over HTTP with bincode bodies; replication is pipelined over one upgraded
//!   connection per peer ([`append_pipe`]; its frames in `stream_frame`, checksummed, with
//!   progress signs that tell a slow peer from a dead one; the peer's end in `append_server`).
//! - [`peer_router`](mod@peer_router): the `/raft/v1/*` routes that deliver those RPCs to the local Raft.
//! - [`cluster_guard`]: [`ClusterGuard`], the cluster id and epoch every peer RPC carries and
//!   checks.
//! - [`client_router`](mod@client_router): the `/v1/*` client API; [`kv_service`] is what it needs from the node.
//! - [`txn_routes`]: `POST /v1/txn`, checked and turned into one command; [`watch_routes`]:
//!   `GET /v1/watch` as Server-Sent Events or NDJSON, and the long poll of a read.
//! - [`cluster_router`](mod@cluster_router): the `/v1/cluster/*` operations routes (health,
//!   events, autopilot, sync zones, planned restarts, standby flags); `api_request` holds what
//!   every `/v1/` handler shares (forwarding to the leader, parsing).
//! - [`admin_router`](mod@admin_router): the `/v1/admin/*` routes (backups).
//! - [`leader_proxy`]: forwarding client requests from a follower to the leader.
//! - [`member_rpc`]: the application's own member-to-member calls (read index for follower
//!   reads, await-applied for `durability=all`); [`leader_contact`] tracks how fresh a
//!   non-leader is from the leader's messages.
//! - [`api_error`]: [`ApiError`], the JSON error answers.
//! - [`storage_gate`]: [`StorageGate`], whether the disk has room (writes, appends and snapshots
//!   are refused while it has not).
//!
//! # Example
//! ```no_run
//! # async fn demo(raft: raftkv_network::KvRaft, sm: raftkv_storage::KvStateMachine) {
//! let router = raftkv_network::peer_router(
//!     raft,
//!     raftkv_network::ClusterGuard::new(sm),
//!     raftkv_network::LeaderContact::new(),
//!     raftkv_network::StorageGate::new(64 << 20),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7001").await.unwrap();
//! axum::serve(listener, router).await.unwrap();
//! # }
//! ```

pub mod admin_router;
pub mod api_error;
mod api_request;
pub mod append_pipe;
mod append_server;
pub mod auth_config;
pub mod auth_gate;
pub mod authenticator;
pub mod client_router;
pub mod cluster_guard;
pub mod cluster_router;
pub mod dedup;
mod error;
pub mod kv_service;
pub mod leader_contact;
pub mod leader_proxy;
pub mod lease_routes;
pub mod member_rpc;
pub mod network_metrics;
pub mod ops_router;
pub mod peer_client;
pub mod peer_router;
pub mod peer_secret;
pub mod peer_transport;
mod probe_routes;
pub mod session_routes;
pub mod storage_gate;
mod stream_frame;
pub mod txn_routes;
pub mod watch_routes;
pub mod wire;

pub use api_error::ApiError;
pub use auth_gate::AuthGate;
pub use client_router::client_router;
pub use cluster_guard::ClusterGuard;
pub use error::{NetworkError, Result};
pub use kv_service::{ApiLimits, BackupStream, ClusterRequest, KvService, MembershipChange, ProbeCheck};
pub use leader_contact::LeaderContact;
pub use leader_proxy::LeaderProxy;
pub use member_rpc::{MemberRpc, MemberRpcError};
pub use network_metrics::NetworkMetrics;
pub use ops_router::{ops_only_router, ops_router};
pub use peer_client::{PeerClient, PeerNetwork};
pub use peer_router::{KvRaft, ReadIndexRefusal, peer_router};
pub use peer_secret::PeerSecret;
pub use peer_transport::PeerTransport;
pub use storage_gate::StorageGate;
