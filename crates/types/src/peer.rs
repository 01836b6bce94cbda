//! The address book entry of a cluster member.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How to reach one member: the `host:port` of its HTTP server, which serves both peer RPC and
/// the client API. Stored in the Raft membership, so every member knows every other's address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// `host:port` of the member's HTTP server.
    pub addr: String,
}

impl PeerNode {
    /// A member reachable at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }

    /// Base URL of the member, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}
