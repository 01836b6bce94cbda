//! The revisions every key carries, as etcd's `mvccpb.KeyValue` has them.

use serde::{Deserialize, Serialize};

/// Where a key's current value came from: written in the same batch as the value, returned by
/// reads and scans, compared by transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyMeta {
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: u64,
    /// The revision of the write that set its current value.
    pub mod_revision: u64,
    /// Writes since the key was created: 1 after the creating write.
    pub version: u64,
    /// The lease the key is attached to, if any: the key is deleted when the lease ends.
    // Never skipped when absent: the watch history stores this type in bincode, which has no
    // field names to tell a skipped field by.
    pub lease: Option<u64>,
}

/// A key's value with its revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// Its revisions.
    pub meta: KeyMeta,
}

impl Versioned {
    /// `value` with `meta`.
    pub fn new(value: Vec<u8>, meta: KeyMeta) -> Versioned {
        Versioned { value, meta }
    }
}
