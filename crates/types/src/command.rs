//! Commands replicated through the Raft log and what applying them returns.

use std::fmt;

use serde::{Deserialize, Serialize};

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
}

impl Command {
    /// The key this command touches.
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => key,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Put { key, value } => write!(f, "put({key:?}, {} bytes)", value.len()),
            Command::Delete { key } => write!(f, "delete({key:?})"),
            Command::Cas { key, value, .. } => write!(f, "cas({key:?}, {} bytes)", value.len()),
        }
    }
}

/// What applying a [`Command`] did, as seen by the client that proposed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Log index at which the command was applied: the cluster-wide revision of the write. It
    /// grows with every applied entry, so a client can order writes by it.
    pub revision: u64,
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
}
