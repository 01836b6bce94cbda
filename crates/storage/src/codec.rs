//! Encoding of stored records: a format version byte, then bincode.
//!
//! The version byte lets a later release read data written by this one and migrate it; a record
//! with an unknown version is reported as corrupt instead of being misread.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StorageError};

/// Format version of every record this release writes.
pub const FORMAT_V1: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` as `[FORMAT_V1] ++ bincode(value)`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut buf = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut buf, config())
        .map_err(|e| StorageError::corrupt("record encoding", e))?;
    Ok(buf)
}

/// Decodes a record written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => {
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
        assert_eq!(bytes[0], FORMAT_V1);
        let back: (String, u64) = decode("test", &bytes).unwrap();
        assert_eq!(back, ("key".to_string(), 7));

        let mut future = bytes.clone();
        future[0] = 9;
        assert!(decode::<(String, u64)>("test", &future).is_err());
        assert!(decode::<(String, u64)>("test", &[]).is_err());
    }
}
