//! Commands replicated through the Raft log and what applying them returns.
//!
//! A log entry's payload is a [`Proposal`]: a [`Command`] stamped by the leader that proposed it
//! with its clock, so that everything time-based in the state machine uses one deterministic time
//! (the largest stamp applied so far) instead of each replica's own clock.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cluster_state::ClusterChange;
use crate::fencing::LeaderToken;
use crate::lease::LeaseOutcome;
use crate::session::{SessionOutcome, SessionStamp};
use crate::txn::{Txn, TxnOutcome};

/// A mutation of the key-value state machine, proposed by the leader and applied, in log order,
/// by every member. Applying a command is deterministic: every replica computes the same result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key`; a no-op when it is absent.
    Delete {
        /// The key.
        key: String,
    },
    /// Set `key` to `value` if its current value is `expected` (`None`: the key is absent).
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold, or `None` if it must be absent.
        expected: Option<Vec<u8>>,
        /// The value to store on success.
        value: Vec<u8>,
    },
    /// Gives the cluster its identity: proposed by the first leader of a cluster whose state
    /// machine has none. The first one applied wins (epoch 1); later ones change nothing. From this
    /// entry on, revisions count data-changing commands (before it, a write's revision is its log
    /// index, as data directories of format 1 had it).
    FoundCluster {
        /// The new cluster id: 32 lowercase hex digits (128 random bits).
        cluster_id: String,
    },
    /// Changes the cluster's replicated operating state (standbys, autopilot, sync zones).
    Cluster(ClusterChange),
    /// `command`, applied only if the leadership `token` names is still the current one: the
    /// entry was proposed by that leader in that term. Otherwise it changes nothing and its
    /// outcome is [`Outcome::Fenced`], so a deposed leader's write can never take effect after
    /// its successor's first entry.
    Fenced {
        /// The leadership the write belongs to.
        token: LeaderToken,
        /// The write (a put, delete or cas).
        command: Box<Command>,
    },
    /// A multi-key transaction, applied at one revision (see [`Txn`]).
    Txn(Txn),
    /// Grants lease `id` (chosen by the proposer; refused if in use) living `ttl_ms` after each
    /// renewal.
    LeaseGrant {
        /// The lease id (not 0).
        id: u64,
        /// Time to live, ms.
        ttl_ms: u64,
    },
    /// Renews lease `id` for another time to live, from this entry's time.
    LeaseKeepAlive {
        /// The lease id.
        id: u64,
    },
    /// Ends lease `id` now: its keys are deleted at one revision.
    LeaseRevoke {
        /// The lease id.
        id: u64,
    },
    /// Ends lease `id` if it has expired by this entry's time (the leader proposes it once it
    /// sees the lease run out; a renewal applied in between keeps it alive).
    LeaseExpire {
        /// The lease id.
        id: u64,
    },
    /// Registers a client session living `ttl_ms` after each of its writes; its id is this
    /// entry's log index.
    RegisterSession {
        /// Time to live, ms.
        ttl_ms: u64,
    },
    /// `command`, a write of a client session: applied once per sequence number. A retry
    /// (same session and sequence number) is answered with the first one's [`CommandResult`],
    /// revision and log index included, and changes nothing; a write of an expired session is
    /// refused without applying.
    InSession {
        /// The session and sequence number.
        stamp: SessionStamp,
        /// The write.
        command: Box<Command>,
    },
    /// `command`, sent with an idempotency key: applied once per key while the key lives. A
    /// retry with the same key and fingerprint is answered with the first one's result; the same
    /// key with another fingerprint is refused.
    Idempotent {
        /// The key (at most [`crate::session::MAX_IDEMPOTENCY_KEY_BYTES`] bytes).
        key: String,
        /// A hash of the request the key was sent with.
        fingerprint: [u8; 32],
        /// How long the answer is kept, ms.
        ttl_ms: u64,
        /// The write.
        command: Box<Command>,
    },
    /// Forgets the sessions and idempotency keys that have expired by this entry's time
    /// (proposed by the leader from time to time).
    SweepSessions,
}

/// A log entry's payload: a command and when the leader proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's wall clock when it proposed the command, in milliseconds since the Unix epoch,
    /// never lower than an earlier proposal of the same leader. 0 for entries written before
    /// proposals were stamped (data directory format 1).
    pub proposed_at_ms: u64,
    /// The command.
    pub command: Command,
}

impl Proposal {
    /// `command`, stamped with `proposed_at_ms`.
    pub fn new(proposed_at_ms: u64, command: Command) -> Proposal {
        Proposal { proposed_at_ms, command }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.command, self.proposed_at_ms)
    }
}

impl Command {
    /// The key this command touches, if it is a key-value command.
    pub fn key(&self) -> Option<&str> {
        match self {
            Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => Some(key),
            Command::Fenced { command, .. }
            | Command::InSession { command, .. }
            | Command::Idempotent { command, .. } => command.key(),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put { key, value } => write!(f, "put({key:?}, {} bytes)", value.len()),
            Command::Delete { key } => write!(f, "delete({key:?})"),
            Command::Cas { key, value, .. } => write!(f, "cas({key:?}, {} bytes)", value.len()),
            Command::FoundCluster { cluster_id } => write!(f, "found-cluster({cluster_id})"),
            Command::Cluster(change) => write!(f, "cluster({change})"),
            Command::Fenced { token, command } => write!(f, "fenced({token}, {command})"),
            Command::Txn(txn) => write!(f, "{txn}"),
            Command::LeaseGrant { id, ttl_ms } => write!(f, "lease-grant({id}, {ttl_ms} ms)"),
            Command::LeaseKeepAlive { id } => write!(f, "lease-keepalive({id})"),
            Command::LeaseRevoke { id } => write!(f, "lease-revoke({id})"),
            Command::LeaseExpire { id } => write!(f, "lease-expire({id})"),
            Command::RegisterSession { ttl_ms } => write!(f, "register-session({ttl_ms} ms)"),
            Command::InSession { stamp, command } => {
                write!(f, "session({}#{}, {command})", stamp.session, stamp.seq)
            }
            Command::Idempotent { key, command, .. } => write!(f, "idempotent({key:?}, {command})"),
            Command::SweepSessions => write!(f, "sweep-sessions"),
        }
    }
}

/// What applying a [`Command`] did, as seen by the client that proposed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The cluster-wide revision after the command: raised by exactly one by each command that
    /// changed data, unchanged by one that did not (a failed cas, a delete of an absent key). It
    /// never goes backwards, across snapshots, restores and recoveries included.
    pub revision: u64,
    /// Log index of the entry that carried the command.
    pub log_index: u64,
    /// The command-specific outcome.
    pub outcome: Outcome,
}

/// The command-specific part of a [`CommandResult`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The entry carried no command (a blank or membership entry).
    #[default]
    None,
    /// A put was applied.
    Put,
    /// A delete was applied; `deleted` tells whether the key existed.
    Delete {
        /// Whether the key existed before the delete.
        deleted: bool,
    },
    /// A compare-and-swap was evaluated.
    Cas {
        /// Whether the swap happened.
        succeeded: bool,
        /// The value before the command (on failure, the value that did not match).
        current: Option<Vec<u8>>,
    },
    /// A [`Command::Fenced`] write was refused: its leadership token is no longer current.
    Fenced {
        /// The term of the leader that proposed the entry.
        current_term: u64,
    },
    /// A transaction was evaluated.
    Txn(TxnOutcome),
    /// A lease command was applied, or a write named a lease that does not exist (then nothing
    /// was written).
    Lease(LeaseOutcome),
    /// A session or idempotency command refused its write, registered a session or swept
    /// expired ones.
    Session(SessionOutcome),
}
