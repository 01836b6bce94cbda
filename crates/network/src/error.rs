//! Errors of the network crate.

/// A failure of the HTTP transport itself (as opposed to an error answer from a peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The HTTP client could not be built.
    #[error("build http client: {0}")]
    Client(#[source] reqwest::Error),
    /// A body could not be encoded or decoded.
    #[error("{what} is malformed: {reason}")]
    Codec {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The server could not bind or serve.
    #[error("serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of network operations.
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
