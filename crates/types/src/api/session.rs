//! Bodies of `POST /v1/sessions`.

use serde::{Deserialize, Serialize};

/// `POST /v1/sessions`: registers a client session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// How long the session lives after its last write, ms (1 s to 7 days; by default 10
    /// minutes).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// The registered session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// Its id, to send as `x-raftkv-session` with each write.
    pub session_id: String,
    /// How long it lives after its last write, ms.
    pub ttl_ms: u64,
    /// The revision when it was registered.
    pub revision: u64,
}
