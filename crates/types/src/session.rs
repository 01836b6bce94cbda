//! Exactly-once writes: client sessions and idempotency keys, as the state machine keeps them.
//!
//! A client session (Raft dissertation, section 6.3) is registered through the log; each write
//! of the session carries its sequence number, and the state machine keeps the result of every
//! write the client has not yet acknowledged, so that a retry of the same sequence number is
//! answered with the original result instead of being applied again. An idempotency key does the
//! same for one plain HTTP request. Both are kept in the same batch as the apply, in snapshots
//! and backups, and expire by the state-machine clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::CommandResult;

/// Most results a session keeps for writes its client has not acknowledged: a write beyond
/// them is refused ([`SessionOutcome::TooManyOutstanding`]) until the client acknowledges some.
pub const MAX_OUTSTANDING: usize = 1024;

/// The shortest time to live of a session or idempotency key, ms.
pub const MIN_DEDUP_TTL_MS: u64 = 1_000;

/// The longest time to live of a session or idempotency key, ms (7 days).
pub const MAX_DEDUP_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// What a write of a session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStamp {
    /// The session: the log index of the entry that registered it.
    pub session: u64,
    /// The write's sequence number in the session (from 1, each new write the next one).
    pub seq: u64,
    /// Every write of the session below this sequence number has been answered to the client,
    /// which will never retry it: its result may be forgotten.
    pub ack_below: u64,
}

/// A client session as the state machine keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// How long the session lives after its last write, ms.
    pub ttl_ms: u64,
    /// The state-machine clock at its registration or last write, ms since the Unix epoch.
    pub last_active_ms: u64,
    /// The highest `ack_below` the client sent: sequence numbers below it are answered.
    pub acked_below: u64,
    /// The results of the writes at or above `acked_below`, by sequence number.
    pub responses: BTreeMap<u64, CommandResult>,
}

impl SessionRecord {
    /// When the session ends unless used again, by the state-machine clock.
    pub fn expires_at_ms(&self) -> u64 {
        self.last_active_ms.saturating_add(self.ttl_ms)
    }
}

/// The answer to a request sent with an idempotency key, as the state machine keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// A hash of the request (method, path and query, body): the key may only be reused for the
    /// same request.
    pub fingerprint: [u8; 32],
    /// When the key expires, by the state-machine clock, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// What the request's write returned.
    pub result: CommandResult,
}

/// What a session or idempotency command did, when it did not simply run its write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOutcome {
    /// A session was registered; its id is the entry's log index.
    Registered {
        /// The session id.
        id: u64,
        /// Its time to live after each write, ms.
        ttl_ms: u64,
    },
    /// The session does not exist (expired, or never registered here). Nothing was written.
    Expired {
        /// The session id.
        session: u64,
    },
    /// The write's sequence number is below what the client acknowledged: it was answered
    /// before and its result has been forgotten. Nothing was written.
    AlreadyAcknowledged {
        /// The session id.
        session: u64,
        /// The sequence number.
        seq: u64,
    },
    /// The session keeps [`MAX_OUTSTANDING`] unacknowledged results already. Nothing was
    /// written.
    TooManyOutstanding {
        /// The session id.
        session: u64,
    },
    /// The idempotency key was used before for a different request. Nothing was written.
    KeyReused {
        /// The key.
        key: String,
    },
    /// A session or idempotent write wrapped another one. Nothing was written.
    Nested,
    /// Expired sessions and idempotency keys were forgotten.
    Swept {
        /// Sessions forgotten.
        sessions: u64,
        /// Idempotency keys forgotten.
        idempotency_keys: u64,
    },
}
