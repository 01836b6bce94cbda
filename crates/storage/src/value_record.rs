//! How `sm_data` stores a key's value: its revisions first, then the value bytes.
//!
//! ```text
//! 0   1  record version 0x03 (data directory format 3)
//! 1   8  create_revision, u64 LE
//! 9   8  mod_revision, u64 LE
//! 17  8  version, u64 LE
//! 25  8  lease id, u64 LE (0: none)
//! 33  n  the value
//! ```
//!
//! A fixed layout rather than bincode: every read and every apply decodes one, and the value is
//! then a slice of the stored bytes.

use raftkv_types::{KeyMeta, Versioned};

use crate::error::{Result, StorageError};

const RECORD_V3: u8 = 3;
const HEADER_BYTES: usize = 33;

/// The stored form of `record`.
pub(crate) fn encode_value(record: &Versioned) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + record.value.len());
    out.push(RECORD_V3);
    out.extend_from_slice(&record.meta.create_revision.to_le_bytes());
    out.extend_from_slice(&record.meta.mod_revision.to_le_bytes());
    out.extend_from_slice(&record.meta.version.to_le_bytes());
    out.extend_from_slice(&record.meta.lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&record.value);
    out
}

/// Reads a value stored by [`encode_value`].
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Versioned> {
    if bytes.len() < HEADER_BYTES || bytes[0] != RECORD_V3 {
        return Err(StorageError::corrupt(
            "stored value",
            format!("{} bytes, record version {:?}: not a format 3 value", bytes.len(), bytes.first()),
        ));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let lease = u64_at(25);
    Ok(Versioned {
        meta: KeyMeta {
            create_revision: u64_at(1),
            mod_revision: u64_at(9),
            version: u64_at(17),
            lease: (lease != 0).then_some(lease),
        },
        value: bytes[HEADER_BYTES..].to_vec(),
    })
}

/// A value of a format 2 data directory or snapshot (no revisions recorded) as format 3 stores
/// it: created and last written at `revision`, the state's revision then, version 1.
pub(crate) fn upgraded_value(value: &[u8], revision: u64) -> Vec<u8> {
    let meta = KeyMeta { create_revision: revision, mod_revision: revision, version: 1, lease: None };
    encode_value(&Versioned::new(value.to_vec(), meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_bytes() {
        let meta = KeyMeta { create_revision: 3, mod_revision: 9, version: 4, lease: Some(77) };
        let record = Versioned::new(b"hello".to_vec(), meta);
        assert_eq!(decode_value(&encode_value(&record)).unwrap(), record);
        let empty = Versioned::new(Vec::new(), KeyMeta { lease: None, ..meta });
        assert_eq!(decode_value(&encode_value(&empty)).unwrap(), empty);
        assert!(decode_value(b"raw value").is_err());
        assert!(decode_value(&[]).is_err());
        let upgraded = decode_value(&upgraded_value(b"v", 12)).unwrap();
        assert_eq!((upgraded.meta.create_revision, upgraded.meta.mod_revision, upgraded.meta.version), (12, 12, 1));
    }
}
