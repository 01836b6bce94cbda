//! [`Authenticator`]: who a request is, from its `Authorization` header, checked against the
//! auth file ([`AuthConfig`]), and what it may do ([`Principal`]).
//!
//! Bearer tokens are compared by SHA-256 in constant time against every token of the file.
//! Basic passwords are verified with argon2id, which costs milliseconds by design; a verified
//! user and password is remembered (by a SHA-256 of both, never in clear) for a few minutes so
//! that a busy client does not pay that on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth_config::{AuthConfig, Permission, Role};

/// How long a verified password is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Most verified passwords remembered at once; past it the memory starts again.
const MAX_VERIFIED: usize = 4096;

/// Who made a request, and the roles that say what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user or token name; `None` for anonymous requests.
    pub name: Option<String>,
    roles: Vec<Role>,
}

impl Principal {
    /// A member of the cluster (it presented the peer secret): every permission.
    pub fn member() -> Principal {
        let all = Role { permissions: Permission::ALL.into_iter().collect(), prefixes: None };
        Principal { name: Some("member".into()), roles: vec![all] }
    }

    /// Who this is, for messages: `"app"` or `anonymous requests`.
    pub fn describe(&self) -> String {
        self.name.as_ref().map_or_else(|| "anonymous requests".to_string(), |n| format!("{n:?}"))
    }

    /// Whether some role grants `permission` (for any key, when the permission is scoped).
    pub fn allows(&self, permission: Permission) -> bool {
        self.roles.iter().any(|r| r.permissions.contains(&permission))
    }

    /// Whether some role grants `permission` on `key`.
    pub fn allows_key(&self, permission: Permission, key: &str) -> bool {
        self.roles.iter().any(|r| {
            r.permissions.contains(&permission)
                && (!permission.is_scoped()
                    || r.prefixes.as_ref().is_none_or(|ps| ps.iter().any(|p| key.starts_with(p.as_str()))))
        })
    }

    /// Whether some role grants `permission` on every key under `prefix` (a scan or a watch):
    /// the same test as for a key, since every key under `prefix` starts with a role's prefix
    /// exactly when `prefix` itself does.
    pub fn allows_prefix(&self, permission: Permission, prefix: &str) -> bool {
        self.allows_key(permission, prefix)
    }
}

/// Why credentials were refused (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailure(pub String);

/// Checks credentials against an auth file.
pub struct Authenticator {
    config: AuthConfig,
    /// SHA-256 of `user:password` verified, and until when.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Authenticator {
    /// An authenticator for `config`.
    pub fn new(config: AuthConfig) -> Authenticator {
        Authenticator { config, verified: Mutex::new(HashMap::new()) }
    }

    /// The configuration it checks against.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The principal of a request with this `Authorization` header (`None`: anonymous).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthFailure> {
        let Some(header) = authorization else {
            return Ok(Principal { name: None, roles: vec![self.config.anonymous.clone()] });
        };
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(value.trim())
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(value.trim())
        } else {
            Err(AuthFailure(format!("unsupported authorization scheme {scheme:?}: use Bearer or Basic")))
        }
    }

    fn principal(&self, name: &str, roles: &[String]) -> Principal {
        let roles = roles.iter().filter_map(|r| self.config.roles.get(r).cloned()).collect();
        Principal { name: Some(name.to_string()), roles }
    }

    fn bearer(&self, token: &str) -> Result<Principal, AuthFailure> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every token is compared, whichever matches, so timing says nothing about which.
        let mut found = None;
        for t in &self.config.tokens {
            if bool::from(t.sha256.ct_eq(&presented)) {
                found = Some(t);
            }
        }
        match found {
            Some(t) => Ok(self.principal(&t.name, &t.roles)),
            None => Err(AuthFailure("the bearer token is not known".into())),
        }
    }

    fn basic(&self, encoded: &str) -> Result<Principal, AuthFailure> {
        let bad = || AuthFailure("Basic credentials must be base64 of user:password".into());
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        let wrong = || AuthFailure(format!("wrong user or password for {user:?}"));
        let Some(entry) = self.config.users.get(user) else { return Err(wrong()) };
        let key: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
        let now = Instant::now();
        let remembered = self.verified.lock().expect("verified lock").get(&key).is_some_and(|until| *until > now);
        if !remembered {
            let hash = PasswordHash::new(&entry.password_argon2).map_err(|_| wrong())?;
            argon2::Argon2::default().verify_password(password.as_bytes(), &hash).map_err(|_| wrong())?;
            let mut verified = self.verified.lock().expect("verified lock");
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
            verified.insert(key, now + VERIFIED_FOR);
        }
        Ok(self.principal(user, &entry.roles))
    }
}

/// The argon2id hash (PHC string) of `password`, with a random salt: what `password_argon2`
/// holds.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new random bearer token (`rk_` and 43 URL-safe base64 characters, 256 bits) and the SHA-256
/// (hex) that the auth file keeps of it.
pub fn new_token() -> (String, String) {
    let token = format!("rk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let sha256: String = Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    (token, sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> (Authenticator, String) {
        let (token, sha256) = new_token();
        let hash = hash_password("correct horse").unwrap();
        let file = format!(
            r#"
            [[user]]
            name = "app"
            password_argon2 = "{hash}"
            roles = ["rw"]

            [[token]]
            name = "ci"
            sha256 = "{sha256}"
            roles = ["reader"]

            [[role]]
            name = "rw"
            permissions = ["kv:read", "kv:write"]
            prefixes = ["app/"]

            [[role]]
            name = "reader"
            permissions = ["kv:read", "status"]

            [anonymous]
            permissions = ["status"]
            "#
        );
        (Authenticator::new(AuthConfig::parse(&file).unwrap()), token)
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn credentials_give_their_roles_and_wrong_ones_are_refused() {
        let (auth, token) = authenticator();
        let anonymous = auth.authenticate(None).unwrap();
        assert!(anonymous.allows(Permission::Status) && !anonymous.allows(Permission::KvRead));

        let ci = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(ci.name.as_deref(), Some("ci"));
        assert!(ci.allows_key(Permission::KvRead, "anything") && !ci.allows(Permission::KvWrite));
        assert!(auth.authenticate(Some("Bearer rk_wrong")).is_err());

        let app = auth.authenticate(Some(&basic("app", "correct horse"))).unwrap();
        assert!(app.allows_key(Permission::KvWrite, "app/x"));
        assert!(!app.allows_key(Permission::KvWrite, "other/x"), "outside its prefix");
        assert!(app.allows_prefix(Permission::KvRead, "app/sub/"));
        assert!(!app.allows_prefix(Permission::KvRead, ""), "a scan of everything reaches beyond app/");
        // Remembered: the same credentials again, and still refused with another password.
        assert!(auth.authenticate(Some(&basic("app", "correct horse"))).is_ok());
        assert!(auth.authenticate(Some(&basic("app", "wrong"))).is_err());
        assert!(auth.authenticate(Some(&basic("nobody", "x"))).is_err());
        assert!(auth.authenticate(Some("Basic !!!")).is_err());
        assert!(auth.authenticate(Some("Digest x")).unwrap_err().0.contains("Bearer or Basic"));
    }

    #[test]
    fn tokens_and_hashes_are_new_each_time() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("rk_") && a.len() == 46 && ha.len() == 64);
        let h1 = hash_password("x").unwrap();
        assert_ne!(h1, hash_password("x").unwrap(), "salted");
        assert!(h1.starts_with("$argon2id$"));
    }
}
