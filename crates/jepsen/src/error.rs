//! Errors of the Jepsen harness.

/// What went wrong running or checking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JepsenError {
    /// A history line could not be read.
    #[error("history line {line}: {reason}")]
    History {
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The history is not well formed (a completion without an invocation, ...).
    #[error("malformed history: {0}")]
    Malformed(String),
}

/// Result of harness operations.
pub type Result<T, E = JepsenError> = std::result::Result<T, E>;
