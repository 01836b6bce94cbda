//! The address book entry of a cluster member.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How to reach one member: the `host:port` of its HTTP server, which serves both peer RPC and
/// the client API, and the zone it runs in. Stored in the Raft membership, so every member knows
/// every other's address and zone.
///
/// Encoded with bincode in log entries and snapshots: every field is always written (no
/// `skip_serializing_if`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// `host:port` of the member's HTTP server.
    pub addr: String,
    /// The zone (site, availability zone, data centre) the member runs in, if one was given:
    /// a DR replica's zone, say.
    #[serde(default)]
    pub zone: Option<String>,
}

impl PeerNode {
    /// A member reachable at `addr` (`host:port`), in no particular zone.
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into(), zone: None }
    }

    /// A member reachable at `addr`, in `zone`.
    pub fn in_zone(addr: impl Into<String>, zone: Option<String>) -> Self {
        Self { addr: addr.into(), zone }
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
