//! `raftkv auth`: the values that go into an auth file (`--auth-file`), made so that no secret
//! is ever written to it in clear.

use std::io::BufRead;

use clap::Subcommand;
use raftkv_network::authenticator::{hash_password, new_token};

use super::output::outln;

/// `raftkv auth` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthAction {
    /// Read a password from standard input (its first line) and print its argon2id hash, the
    /// `password_argon2` of a [[user]]. In a shell: `read -rs PW; echo "$PW" | raftkv auth
    /// hash-password`.
    HashPassword,
    /// Print a new random bearer token, to give to its client (`Authorization: Bearer ...`,
    /// `--token`, `RAFTKV_TOKEN`), and the [[token]] entry that the auth file keeps of it (its
    /// SHA-256, never the token).
    NewToken {
        /// The token's name in the file and in logs.
        #[arg(long, default_value = "client")]
        name: String,
    },
}

/// Runs `raftkv auth ACTION`.
pub(crate) fn run(action: AuthAction) -> anyhow::Result<()> {
    match action {
        AuthAction::HashPassword => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                anyhow::bail!("no password on standard input");
            }
            outln!("{}", hash_password(password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?);
        }
        AuthAction::NewToken { name } => {
            if name.is_empty() || name.contains(['"', '\n', '\\']) {
                anyhow::bail!("--name must be a plain name, got {name:?}");
            }
            let (token, sha256) = new_token();
            outln!("token: {token}");
            outln!("# for the auth file (add its roles):");
            outln!("[[token]]");
            outln!("name = \"{name}\"");
            outln!("sha256 = \"{sha256}\"");
            outln!("roles = []");
        }
    }
    Ok(())
}
