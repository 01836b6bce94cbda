//! What the client API needs from a node.

use std::future::Future;
use std::time::{Duration, Instant};

use raftkv_storage::ScanPage;
use raftkv_types::api::{Consistency, NodeStatus};
use raftkv_types::{Command, CommandResult, NodeId};

use crate::api_error::ApiError;

/// Limits the client API enforces before a request reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest value accepted, in bytes. By default, 1 MiB.
    pub max_value_bytes: usize,
    /// How long a request forwarded to the leader may take. By default, 10 s.
    pub forward_timeout: Duration,
    /// How long to keep looking for a reachable leader when the one known cannot be connected
    /// to (it just died; an election follows). By default, 3 s.
    pub leader_wait: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_value_bytes: 1 << 20,
            forward_timeout: Duration::from_secs(10),
            leader_wait: Duration::from_secs(3),
        }
    }
}

/// The operations behind the client HTTP API, implemented by the node.
///
/// A method returns [`ApiError::NotLeader`] when only the leader can serve it; the HTTP layer
/// then forwards the request to the leader itself.
pub trait KvService: Clone + Send + Sync + 'static {
    /// The limits to enforce.
    fn limits(&self) -> ApiLimits;

    /// Proposes `command` and waits until it is committed and applied on this (leader) node.
    fn write(&self, command: Command) -> impl Future<Output = Result<CommandResult, ApiError>> + Send;

    /// Reads `key` at `consistency`.
    fn read(
        &self,
        key: String,
        consistency: Consistency,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, ApiError>> + Send;

    /// Lists up to `limit` keys under `prefix` after `start_after`, at `consistency`.
    fn scan(
        &self,
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        consistency: Consistency,
    ) -> impl Future<Output = Result<ScanPage, ApiError>> + Send;

    /// This node's view of the cluster.
    fn status(&self) -> impl Future<Output = Result<NodeStatus, ApiError>> + Send;

    /// Waits until a leader other than `not` is known, or until `deadline`; returns whether one
    /// is. Called when the leader a request was forwarded to cannot be reached, or may have
    /// been replaced while it holds the request.
    fn await_new_leader(&self, not: Option<NodeId>, deadline: Instant) -> impl Future<Output = bool> + Send;
}
