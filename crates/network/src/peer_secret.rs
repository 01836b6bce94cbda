//! [`PeerSecret`]: a secret shared by the members of a cluster, which peer RPC must present
//! when the cluster has one (`--peer-secret-file`), so that a client that can reach a node's
//! port cannot speak Raft to it. Members present it as `Authorization: Bearer <secret>`; with an
//! auth file, the same credential is the members' own (every permission) for the calls one
//! member makes to another's client API (joining, forwarding an embedded call).
//!
//! It is sent in clear on plain HTTP: it keeps clients out, not eavesdroppers. Peer TLS does both.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest secret accepted, in bytes.
pub const MIN_PEER_SECRET_BYTES: usize = 16;

/// The cluster's peer secret. `Debug` never shows it.
#[derive(Clone)]
pub struct PeerSecret {
    secret: Arc<str>,
    sha256: [u8; 32],
}

impl PeerSecret {
    /// A secret of at least [`MIN_PEER_SECRET_BYTES`] printable bytes.
    pub fn new(secret: &str) -> Result<PeerSecret, String> {
        let secret = secret.trim();
        if secret.len() < MIN_PEER_SECRET_BYTES {
            return Err(format!(
                "the peer secret is {} bytes; use at least {MIN_PEER_SECRET_BYTES} (e.g. the token of raftkv auth new-token)",
                secret.len()
            ));
        }
        if HeaderValue::from_str(&format!("Bearer {secret}")).is_err() || secret.contains(char::is_whitespace) {
            return Err("the peer secret must be printable ASCII without spaces".into());
        }
        Ok(PeerSecret { secret: secret.into(), sha256: Sha256::digest(secret.as_bytes()).into() })
    }

    /// The secret in the file `path` (its first line).
    pub fn from_file(path: &Path) -> Result<PeerSecret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read peer secret {}: {e}", path.display()))?;
        PeerSecret::new(text.lines().next().unwrap_or_default()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The secret itself, for a client that presents it as a bearer token.
    pub fn token(&self) -> &str {
        &self.secret
    }

    /// `Bearer <secret>`, marked sensitive so that it is never logged.
    pub fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.secret)).expect("checked in new");
        value.set_sensitive(true);
        value
    }

    /// Whether the bearer token `presented` is this secret, compared in constant time.
    pub fn is(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.sha256.ct_eq(&presented))
    }

    /// Whether `headers` carry this secret as their bearer token.
    pub fn presented_in(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer ").or_else(|| v.trim().strip_prefix("bearer ")))
            .is_some_and(|token| self.is(token.trim()))
    }
}

impl fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_spaced_secrets_are_refused_and_the_right_one_matches() {
        assert!(PeerSecret::new("short").unwrap_err().contains("at least 16"));
        assert!(PeerSecret::new("has a space in the middle").is_err());
        let secret = PeerSecret::new("rk_0123456789abcdef\n").unwrap();
        assert!(secret.is("rk_0123456789abcdef"));
        assert!(!secret.is("rk_0123456789abcdeF"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, secret.authorization());
        assert!(secret.presented_in(&headers));
        assert_eq!(format!("{secret:?}"), "PeerSecret(..)");
    }
}
