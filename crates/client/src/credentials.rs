//! [`Credentials`]: what a client presents to nodes that check an auth file.

use std::fmt;

use base64::Engine;
use hyper::header::HeaderValue;

use crate::error::{ClientError, Result};

/// Credentials a [`Client`](crate::Client) sends with every request, as `Authorization`.
/// `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A bearer token (`raftkv auth new-token`).
    Token(String),
    /// A user and password, sent as HTTP Basic (over TLS, anything else shows them to the
    /// network).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl Credentials {
    /// The `Authorization` header value, marked sensitive so that it is never logged.
    pub fn authorization(&self) -> Result<HeaderValue> {
        let text = match self {
            Credentials::Token(token) => format!("Bearer {}", token.trim()),
            Credentials::Basic { user, password } => {
                if user.contains(':') {
                    return Err(ClientError::Config(format!("user name {user:?} must not contain ':'")));
                }
                let pair = format!("{user}:{password}");
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
        };
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| ClientError::Config("the token must be printable ASCII".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::Basic { user, .. } => f.debug_struct("Basic").field("user", user).finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_sensitive_authorization_headers() {
        let token = Credentials::Token(" rk_abc ".into()).authorization().unwrap();
        assert_eq!(token.to_str().unwrap(), "Bearer rk_abc");
        assert!(token.is_sensitive());
        let basic = Credentials::Basic { user: "app".into(), password: "pw".into() }.authorization().unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic YXBwOnB3");
        assert!(Credentials::Basic { user: "a:b".into(), password: String::new() }.authorization().is_err());
        assert!(Credentials::Token("bad\ntoken".into()).authorization().is_err());
        assert_eq!(format!("{:?}", Credentials::Token("secret".into())), "Token(..)");
        assert!(
            !format!("{:?}", Credentials::Basic { user: "u".into(), password: "secret".into() }).contains("secret")
        );
    }
}
