//! Errors of the client.

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code from the error body.
        code: String,
        /// Explanation from the error body.
        message: String,
    },
    /// No endpoint could be connected to: the request was not sent anywhere.
    #[error("no endpoint reachable (tried {tried}): {last}")]
    Unreachable {
        /// Endpoints tried.
        tried: String,
        /// The last connection error.
        last: String,
    },
    /// The request was sent but no answer came back (timeout, connection reset).
    #[error("request to {endpoint} got no answer: {reason}")]
    NoAnswer {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from {endpoint}: {reason}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The client was configured wrongly.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The error code of an API error (`key_not_found`, `outcome_unknown`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether a write that failed with this error may nevertheless have been applied. When false,
    /// the write certainly did not happen and may be retried as it is.
    pub fn may_have_applied(&self) -> bool {
        match self {
            // `not_confirmed_on_all`: committed on a majority, only not confirmed everywhere.
            ClientError::Api { code, .. } => code == "outcome_unknown" || code == "not_confirmed_on_all",
            ClientError::NoAnswer { .. } | ClientError::BadAnswer { .. } => true,
            ClientError::Unreachable { .. } | ClientError::Config(_) => false,
        }
    }
}

/// Result of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
