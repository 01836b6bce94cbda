//! Encoding of stored records: a format version byte, then bincode.
//!
//! The version byte lets a later release read data written by this one and migrate it; a record
//! with an unknown version is reported as corrupt instead of being misread.
//!
//! Version 2 is written since log entries carry stamped [`Proposal`](raftkv_types::Proposal)s;
//! every other record encodes as it did in version 1, so both decode alike. A version 1 log entry
//! (an unstamped command) is read only by the upgrade of a format 1 data directory
//! ([`crate::data_format`]), which rewrites every one of them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StorageError};

/// Record version of format 1 data directories.
pub const FORMAT_V1: u8 = 1;
/// Record version of every record this release writes.
pub const FORMAT_V2: u8 = 2;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` as `[FORMAT_V2] ++ bincode(value)`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut buf = vec![FORMAT_V2];
    bincode::serde::encode_into_std_write(value, &mut buf, config())
        .map_err(|e| StorageError::corrupt("record encoding", e))?;
    Ok(buf)
}

/// Decodes a record written by [`encode`] (version 2) or by format 1 (version 1, for records whose
/// encoding did not change); `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    decode_versions(what, bytes, &[FORMAT_V1, FORMAT_V2])
}

/// Decodes a record that must have been written with one of `versions`.
pub fn decode_versions<T: DeserializeOwned>(what: &'static str, bytes: &[u8], versions: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((version, body)) if versions.contains(version) => {
            let (value, _) =
                bincode::serde::decode_from_slice(body, config()).map_err(|e| StorageError::corrupt(what, e))?;
            Ok(value)
        }
        Some((version, _)) => Err(StorageError::corrupt(what, format!("unknown format version {version}"))),
        None => Err(StorageError::corrupt(what, "empty record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let bytes = encode(&("key", 7u64)).unwrap();
        assert_eq!(bytes[0], FORMAT_V2);
        let back: (String, u64) = decode("test", &bytes).unwrap();
        assert_eq!(back, ("key".to_string(), 7));

        let mut future = bytes.clone();
        future[0] = 9;
        assert!(decode::<(String, u64)>("test", &future).is_err());
        assert!(decode::<(String, u64)>("test", &[]).is_err());
    }
}
