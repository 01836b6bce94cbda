//! Why a TLS configuration could not be loaded.

use std::path::PathBuf;

/// A TLS configuration that could not be built from its files. The message names the file and
/// what is wrong with it, for the log and the operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or key (a key that does not match the certificate, a CA
    /// that is not a certificate...).
    #[error("{what}: {reason}")]
    Rejected {
        /// What was being built.
        what: String,
        /// rustls's reason.
        reason: String,
    },
}
