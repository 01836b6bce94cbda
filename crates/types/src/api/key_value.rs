//! A key, its value and its revisions as JSON: what scans, `?meta` reads, transaction gets and
//! watch events return.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::key_meta::{KeyMeta, Versioned};

/// A key with its value and revisions.
///
/// `value` is the value as UTF-8 (invalid sequences replaced); when the value is not valid
/// UTF-8, `value_base64` holds its exact bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value as UTF-8.
    pub value: String,
    /// The value's bytes, base64 (standard alphabet, padded), when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The revision that created the key.
    #[serde(default)]
    pub create_revision: u64,
    /// The revision of its last write.
    #[serde(default)]
    pub mod_revision: u64,
    /// Writes since it was created.
    #[serde(default)]
    pub version: u64,
    /// The lease it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

impl KeyValue {
    /// The JSON form of `key` holding `versioned`.
    pub fn new(key: String, versioned: Versioned) -> KeyValue {
        let meta = versioned.meta;
        let (value, value_base64) = text_and_base64(versioned.value);
        KeyValue {
            key,
            value,
            value_base64,
            create_revision: meta.create_revision,
            mod_revision: meta.mod_revision,
            version: meta.version,
            lease: meta.lease,
        }
    }

    /// The value's exact bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match &self.value_base64 {
            Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default(),
            None => self.value.clone().into_bytes(),
        }
    }

    /// The key's revisions.
    pub fn meta(&self) -> KeyMeta {
        KeyMeta {
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// `bytes` as UTF-8 text, and as base64 too when they are not valid UTF-8.
pub fn text_and_base64(bytes: Vec<u8>) -> (String, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(b64))
        }
    }
}
