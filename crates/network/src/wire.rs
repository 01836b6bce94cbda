//! Encoding of peer RPC bodies: bincode, the same on both ends of one release.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{NetworkError, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes an RPC message.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| NetworkError::Codec { what: "rpc message", reason: e.to_string() })
}

/// Decodes an RPC message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| NetworkError::Codec { what, reason: e.to_string() })?;
    if used != bytes.len() {
        return Err(NetworkError::Codec { what, reason: format!("{} trailing bytes", bytes.len() - used) });
    }
    Ok(value)
}
