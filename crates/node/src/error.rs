//! Errors of the node crate.

use raftkv_types::NodeId;

/// Why a node could not start, or an embedded call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] raftkv_storage::StorageError),
    /// The transport could not be set up.
    #[error("network: {0}")]
    Network(#[from] raftkv_network::NetworkError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// openraft failed to start or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// A request failed; the same errors the HTTP API answers, with the same codes.
    #[error(transparent)]
    Api(#[from] raftkv_network::ApiError),
    /// A request forwarded to the leader failed.
    #[error("forwarded to the leader (node {leader:?}): {source}")]
    Forward {
        /// The leader it went to.
        leader: Option<NodeId>,
        /// What failed.
        #[source]
        source: raftkv_client::ClientError,
    },
}

impl NodeError {
    /// Whether a write that failed with this error may nevertheless have been applied.
    pub fn may_have_applied(&self) -> bool {
        match self {
            NodeError::Api(e) => matches!(e.code(), "outcome_unknown" | "not_confirmed_on_all"),
            NodeError::Forward { source, .. } => source.may_have_applied(),
            _ => false,
        }
    }
}

/// Result of node operations.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;
