//! Rust client of the raftkv HTTP API (see `docs/api.md`).
//!
//! # Layout
//! - [`Client`]: put, get, delete, cas, scan, status and membership against a list of nodes.
//! - Cluster operations on [`Client`] too: health, events, the autopilot, sync zones, standby
//!   flags and fenced writes (`cluster_ops`).
//! - Transactions ([`Client::txn`]), reads with revisions ([`Client::get_kv`]) and watches
//!   ([`Client::watch`], a [`WatchStream`] that resumes on another endpoint by itself).
//! - Leases ([`Client::grant_lease`]), and on them a lock ([`Client::lock`]) and a leader
//!   election ([`Client::campaign`]) whose holder has a fencing token ([`Lock`]).
//! - Exactly-once writes: writes go through a client session and are retried while their
//!   outcome is unknown ([`SessionOptions`], `session`).
//! - TLS ([`Client::with_tls`], [`ClientTlsFiles`]) and credentials for nodes with an auth file
//!   ([`Client::with_credentials`], [`Credentials`]).
//! - [`BackupDownload`]: a backup streamed piece by piece ([`Client::backup`]).
//! - [`ClientError`]: what failed, and whether a failed write may still have been applied.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), raftkv_client::ClientError> {
//! use raftkv_client::{Client, Consistency};
//! let client = Client::new(["http://127.0.0.1:7001", "http://127.0.0.1:7002"])?;
//! client.put("greeting", "hello").await?;
//! let value = client.get("greeting", Consistency::Linearizable).await?;
//! assert_eq!(value.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

mod backup_download;
mod client;
mod cluster_ops;
mod connection_pool;
mod credentials;
mod error;
mod leases;
mod lock;
mod probes;
mod read_spread;
mod session;
mod txn;
mod watch_stream;

pub use backup_download::BackupDownload;
pub use client::Client;
pub use credentials::Credentials;
pub use error::{ClientError, Result};
pub use lock::Lock;
pub use probes::{Probe, ProbeReport};
pub use raftkv_tls::ClientTlsFiles;
pub use raftkv_types::api::{
    BackupConsistency, CasResponse, Consistency, DeleteResponse, Durability, LeaderTransferResponse, MemberInfo,
    MemberRole, MemberStatus, MembersResponse, NodeStatus, PutResponse, Role, ScanEntry, ScanResponse,
};
pub use raftkv_types::api::{KeyValue, TxnRequest, TxnRequestOp, TxnResponse, TxnResult};
pub use raftkv_types::api::{LeaseInfo, LeaseResponse, LeaseRevokeResponse};
pub use raftkv_types::health::{
    AutopilotStatus, AutopilotUpdate, ClusterHealth, EventsResponse, MemberHealth, ReplicationStatus, ReplicationUpdate,
};
pub use raftkv_types::{AutopilotSettings, ClusterEvent, LeaderToken, ReplicationMode};
pub use raftkv_types::{KeyMeta, Versioned, WatchEvent, WatchOptions, WatchSelector};
pub use read_spread::ReadPreference;
pub use session::{DEFAULT_RETRY_DEADLINE, DEFAULT_SESSION_TTL, SessionOptions};
pub use watch_stream::WatchStream;
