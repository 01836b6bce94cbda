//! Leases: keys that vanish when their owner stops renewing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A lease as the state machine keeps it. Time is the state-machine clock (the proposal stamps
/// of the leaders), so every replica agrees on when it was granted and renewed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// How long the lease lives after each renewal, ms.
    pub ttl_ms: u64,
    /// The state-machine clock when it was granted or last kept alive, ms since the Unix epoch.
    pub renewed_at_ms: u64,
    /// The keys attached to it.
    pub keys: BTreeSet<String>,
}

impl LeaseRecord {
    /// When the lease ends unless kept alive, by the state-machine clock.
    pub fn expires_at_ms(&self) -> u64 {
        self.renewed_at_ms.saturating_add(self.ttl_ms)
    }
}

/// What a lease command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    /// A lease was granted.
    Granted {
        /// Its id.
        id: u64,
        /// Its time to live, ms.
        ttl_ms: u64,
    },
    /// A lease was renewed for another `ttl_ms`.
    KeptAlive {
        /// Its id.
        id: u64,
        /// Its time to live, ms.
        ttl_ms: u64,
    },
    /// A lease ended (revoked or expired) and its keys were deleted.
    Ended {
        /// Its id.
        id: u64,
        /// Keys deleted.
        deleted: u64,
    },
    /// No lease has this id (never granted, or already ended). Nothing was done.
    NotFound {
        /// The id asked for.
        id: u64,
    },
    /// A grant named an id already in use. Nothing was done.
    Exists {
        /// The id.
        id: u64,
    },
    /// An expiry arrived for a lease that was renewed since it was proposed. Nothing was done.
    StillAlive {
        /// The id.
        id: u64,
    },
}
