//! The auth file (`--auth-file`, TOML): users with argon2id password hashes, bearer tokens kept
//! as SHA-256 hashes, roles with permissions optionally scoped to key prefixes, and what
//! anonymous requests may do. Secrets are never in the file in clear.
//!
//! ```toml
//! [[user]]
//! name = "app"
//! password_argon2 = "$argon2id$v=19$m=19456,t=2,p=1$..."   # raftkv auth hash-password
//! roles = ["app-rw"]
//!
//! [[token]]
//! name = "ci"
//! sha256 = "9f86d0..."                                      # raftkv auth new-token
//! roles = ["admin"]
//!
//! [[role]]
//! name = "app-rw"
//! permissions = ["kv:read", "kv:write"]
//! prefixes = ["app/"]
//!
//! [[role]]
//! name = "admin"
//! permissions = ["*"]
//!
//! [anonymous]
//! permissions = ["status"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Gets, scans, watches, the long poll, reading leases.
    KvRead,
    /// Puts, deletes, cas, transactions, leases, sessions.
    KvWrite,
    /// Membership changes.
    AdminMembers,
    /// Leader transfer, the autopilot, sync zones.
    AdminLeader,
    /// Backups.
    AdminBackup,
    /// Status, members, health and events.
    Status,
    /// `/metrics`.
    Metrics,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 7] = [
        Permission::KvRead,
        Permission::KvWrite,
        Permission::AdminMembers,
        Permission::AdminLeader,
        Permission::AdminBackup,
        Permission::Status,
        Permission::Metrics,
    ];

    /// Its name in the auth file.
    pub fn name(self) -> &'static str {
        match self {
            Permission::KvRead => "kv:read",
            Permission::KvWrite => "kv:write",
            Permission::AdminMembers => "admin:members",
            Permission::AdminLeader => "admin:leader",
            Permission::AdminBackup => "admin:backup",
            Permission::Status => "status",
            Permission::Metrics => "metrics",
        }
    }

    /// Whether a role's key prefixes limit it (the key-value permissions).
    pub fn is_scoped(self) -> bool {
        matches!(self, Permission::KvRead | Permission::KvWrite)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Permission, String> {
        Permission::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
            format!("unknown permission {s:?}: one of {}, or \"*\"", names.join(", "))
        })
    }
}

/// A role: permissions, and the key prefixes the key-value ones are limited to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// The key prefixes `kv:read` and `kv:write` apply to (`None`: every key).
    pub prefixes: Option<Vec<String>>,
}

/// A user who logs in with a password (HTTP Basic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The argon2id hash of the password, as a PHC string.
    pub password_argon2: String,
    /// Its roles.
    pub roles: Vec<String>,
}

/// A bearer token, known by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its name, for logs.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Its roles.
    pub roles: Vec<String>,
}

/// A parsed and checked auth file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Tokens.
    pub tokens: Vec<Token>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// What requests without credentials may do.
    pub anonymous: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    #[serde(default)]
    password_argon2: Option<String>,
    #[serde(default)]
    password: Option<toml::Value>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    sha256: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRole {
    #[serde(default)]
    name: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    prefixes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    user: Vec<FileUser>,
    #[serde(default)]
    token: Vec<FileToken>,
    #[serde(default)]
    role: Vec<FileRole>,
    #[serde(default)]
    anonymous: Option<FileRole>,
}

fn role_of(role: FileRole, what: &str) -> Result<Role, String> {
    let mut permissions = BTreeSet::new();
    for p in &role.permissions {
        if p == "*" {
            permissions.extend(Permission::ALL);
        } else {
            permissions.insert(p.parse().map_err(|e| format!("{what}: {e}"))?);
        }
    }
    if let Some(prefixes) = &role.prefixes
        && prefixes.iter().any(String::is_empty)
    {
        return Err(format!("{what}: an empty prefix would cover every key; leave prefixes out instead"));
    }
    Ok(Role { permissions, prefixes: role.prefixes })
}

impl AuthConfig {
    /// Parses and checks an auth file: every role a user or token names exists, every
    /// permission is known, hashes are well-formed, and no password is in clear.
    pub fn parse(text: &str) -> Result<AuthConfig, String> {
        let file: AuthFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = AuthConfig::default();
        for role in file.role {
            let name = role.name.clone();
            if name.is_empty() {
                return Err("a [[role]] needs a name".into());
            }
            let parsed = role_of(role, &format!("role {name:?}"))?;
            if config.roles.insert(name.clone(), parsed).is_some() {
                return Err(format!("role {name:?} is defined twice"));
            }
        }
        let known = |roles: &[String], who: &str| -> Result<(), String> {
            match roles.iter().find(|r| !config.roles.contains_key(*r)) {
                Some(missing) => Err(format!("{who} names role {missing:?}, which no [[role]] defines")),
                None => Ok(()),
            }
        };
        let mut users = BTreeMap::new();
        for user in file.user {
            let who = format!("user {:?}", user.name);
            if user.password.is_some() {
                return Err(format!(
                    "{who}: passwords are never stored in clear; put the output of `raftkv auth hash-password` in password_argon2"
                ));
            }
            let hash = user.password_argon2.ok_or_else(|| format!("{who} has no password_argon2"))?;
            argon2::PasswordHash::new(&hash)
                .map_err(|e| format!("{who}: password_argon2 is not an argon2 PHC string ({e})"))?;
            known(&user.roles, &who)?;
            if users.insert(user.name.clone(), User { password_argon2: hash, roles: user.roles }).is_some() {
                return Err(format!("{who} is defined twice"));
            }
        }
        let mut tokens = Vec::new();
        for token in file.token {
            let who = format!("token {:?}", token.name);
            let sha256 = hex32(&token.sha256).ok_or_else(|| {
                format!("{who}: sha256 must be 64 hexadecimal digits (`raftkv auth new-token` prints it)")
            })?;
            known(&token.roles, &who)?;
            tokens.push(Token { name: token.name, sha256, roles: token.roles });
        }
        config.users = users;
        config.tokens = tokens;
        config.anonymous = match file.anonymous {
            Some(role) => role_of(role, "[anonymous]")?,
            None => Role::default(),
        };
        Ok(config)
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2xM6vUzDyG8Ao3gqmyfxTqgbA+ajUEbYSyY5K5lOaO8";

    #[test]
    fn a_file_parses_and_its_mistakes_are_named() {
        let file = format!(
            r#"
            [[user]]
            name = "app"
            password_argon2 = "{HASH}"
            roles = ["rw"]

            [[token]]
            name = "ci"
            sha256 = "{}"
            roles = ["admin"]

            [[role]]
            name = "rw"
            permissions = ["kv:read", "kv:write"]
            prefixes = ["app/"]

            [[role]]
            name = "admin"
            permissions = ["*"]

            [anonymous]
            permissions = ["status"]
            "#,
            "ab".repeat(32)
        );
        let config = AuthConfig::parse(&file).unwrap();
        assert_eq!(config.roles["admin"].permissions.len(), Permission::ALL.len());
        assert_eq!(config.roles["rw"].prefixes.as_deref(), Some(&["app/".to_string()][..]));
        assert_eq!(config.tokens[0].sha256, [0xab; 32]);
        assert!(config.anonymous.permissions.contains(&Permission::Status));

        let bad = |text: &str, says: &str| {
            let err = AuthConfig::parse(text).unwrap_err();
            assert!(err.contains(says), "{err:?} should say {says:?}");
        };
        bad("[[user]]\nname = \"a\"\npassword = \"hunter2\"", "never stored in clear");
        bad("[[user]]\nname = \"a\"\npassword_argon2 = \"plain\"", "PHC");
        bad(&format!("[[user]]\nname = \"a\"\npassword_argon2 = \"{HASH}\"\nroles = [\"x\"]"), "role \"x\"");
        bad("[[token]]\nname = \"t\"\nsha256 = \"abc\"", "64 hexadecimal");
        bad("[[role]]\nname = \"r\"\npermissions = [\"kv:everything\"]", "unknown permission");
        bad("[[role]]\nname = \"r\"\npermissions = [\"kv:read\"]\nprefixes = [\"\"]", "empty prefix");
        bad("[[rule]]\nname = \"r\"", "unknown field");
    }
}
