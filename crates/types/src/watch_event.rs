//! Watches: what a watcher asks for and the events it receives, in revision order.

use std::time::Duration;

use crate::key_meta::Versioned;

/// Which keys a watch follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSelector {
    /// One key.
    Key(String),
    /// Every key starting with the prefix (`""`: every key).
    Prefix(String),
}

impl WatchSelector {
    /// Whether the watch follows `key`.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            WatchSelector::Key(k) => k == key,
            WatchSelector::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// What a watch follows and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// The keys.
    pub selector: WatchSelector,
    /// The first revision to deliver (inclusive). `None`: from a linearizable point, so that
    /// every write acknowledged before the watch opened is before its start.
    pub start_revision: Option<u64>,
    /// Deliver each change's previous value and revisions too.
    pub prev_kv: bool,
    /// Leave out puts.
    pub no_put: bool,
    /// Leave out deletes.
    pub no_delete: bool,
    /// Send a progress event after this long without one (`None`: never).
    pub progress_every: Option<Duration>,
    /// End the watch with [`WatchEvent::NoLeader`] when the serving node loses contact with the
    /// leader (default), so that the watcher moves to another node.
    pub require_leader: bool,
}

impl WatchOptions {
    /// Every change of keys under `prefix` from now on, progress every 10 s, ending if the node
    /// loses its leader.
    pub fn prefix(prefix: &str) -> WatchOptions {
        WatchOptions {
            selector: WatchSelector::Prefix(prefix.to_string()),
            start_revision: None,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_every: Some(Duration::from_secs(10)),
            require_leader: true,
        }
    }

    /// Every change of `key` from now on (the defaults of [`WatchOptions::prefix`]).
    pub fn key(key: &str) -> WatchOptions {
        WatchOptions { selector: WatchSelector::Key(key.to_string()), ..WatchOptions::prefix("") }
    }

    /// The same, starting at `revision` (inclusive).
    pub fn from_revision(mut self, revision: u64) -> WatchOptions {
        self.start_revision = Some(revision);
        self
    }
}

/// One event of a watch. Events come in revision order, each change once; the changes of one
/// revision (a transaction) come together, in the order the command made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The watch started: every matching change after `revision` follows.
    Created {
        /// The revision the watch starts after.
        revision: u64,
    },
    /// `key` was written at `revision`.
    Put {
        /// The revision of the write.
        revision: u64,
        /// The key.
        key: String,
        /// Its new value and revisions.
        value: Versioned,
        /// The previous value, if asked for and the key existed.
        prev: Option<Versioned>,
    },
    /// `key` was removed at `revision`.
    Delete {
        /// The revision of the delete.
        revision: u64,
        /// The key.
        key: String,
        /// The value it had, if asked for.
        prev: Option<Versioned>,
    },
    /// Every matching change up to `revision` has been delivered.
    Progress {
        /// The revision.
        revision: u64,
    },
    /// The history the watch needs is gone (trimmed, or replaced by a snapshot); the watch ends.
    /// Read the current state and watch again from after its revision.
    Compacted {
        /// The oldest revision still available.
        compact_revision: u64,
    },
    /// The serving node has lost contact with the leader; the watch ends. Resume on another node
    /// from the last revision delivered plus one.
    NoLeader {
        /// Every matching change up to here was delivered.
        revision: u64,
    },
    /// The watch ends for another reason (the node is shutting down, a storage failure).
    Ended {
        /// Why.
        reason: String,
    },
}

impl WatchEvent {
    /// The revision the event belongs to or speaks for (0 for `Ended`).
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Created { revision }
            | WatchEvent::Put { revision, .. }
            | WatchEvent::Delete { revision, .. }
            | WatchEvent::Progress { revision }
            | WatchEvent::NoLeader { revision } => *revision,
            WatchEvent::Compacted { compact_revision } => *compact_revision,
            WatchEvent::Ended { .. } => 0,
        }
    }

    /// Whether the watch ends with this event.
    pub fn is_final(&self) -> bool {
        matches!(self, WatchEvent::Compacted { .. } | WatchEvent::NoLeader { .. } | WatchEvent::Ended { .. })
    }
}
