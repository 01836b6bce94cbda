//! One change to one key, as the watch history records it.

use serde::{Deserialize, Serialize};

use crate::key_meta::Versioned;

/// A key written or deleted by the command applied at some revision. The changes of one revision
/// (a transaction, a lease's end) are kept and delivered together, in the order the command made
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// The value after the change; `None` for a delete.
    pub current: Option<Versioned>,
    /// The value before it; `None` if the key did not exist.
    pub previous: Option<Versioned>,
}

impl KeyChange {
    /// Whether the change deleted the key.
    pub fn is_delete(&self) -> bool {
        self.current.is_none()
    }
}

/// The changes one applied command made, at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionChanges {
    /// The revision the command was applied at.
    pub revision: u64,
    /// The state-machine clock when it was applied (ms since the Unix epoch).
    pub clock_ms: u64,
    /// The keys it changed, in the order it changed them.
    pub changes: Vec<KeyChange>,
}
