//! Errors of the storage crate.

use std::io;

/// A failure of the RocksDB-backed Raft log or state machine.
///
/// Every variant is an I/O-class failure: the node cannot trust its storage any more, and openraft
/// stops it when one reaches a trait method. Command-level failures (a cas whose expected value does
/// not match) are not errors: they are outcomes, the same on every replica.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// RocksDB reported an error.
    #[error("rocksdb {op} failed: {source}")]
    Rocks {
        /// What was being done.
        op: &'static str,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// A file-system operation failed.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done on.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A stored record could not be decoded.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why it is unreadable.
        reason: String,
    },
    /// A snapshot or backup file ends before it should.
    #[error("truncated file: {reason}")]
    Truncated {
        /// Where it ends and what was being read.
        reason: String,
    },
    /// The data directory was written in a format this release does not read.
    #[error(
        "data directory {path} has format version {found}, but this raftkv reads versions 1 to {supported}: {advice}"
    )]
    UnsupportedFormat {
        /// The data directory.
        path: String,
        /// The version it records.
        found: u32,
        /// The newest version this release reads.
        supported: u32,
        /// What to do about it.
        advice: &'static str,
    },
    /// A state-changing operation on a data directory was refused (restore into a non-empty
    /// directory, recovery of a directory with no membership, ...).
    #[error("{0}")]
    Refused(String),
    /// A background task that owns part of the store stopped.
    #[error("storage background task stopped: {0}")]
    Stopped(&'static str),
}

/// Result of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StorageError {
        move |source| StorageError::Rocks { op, source }
    }

    pub(crate) fn io(op: &'static str, path: impl AsRef<std::path::Path>) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.as_ref().display().to_string();
        move |source| StorageError::Io { op, path, source }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> StorageError {
        StorageError::Corrupt { what, reason: reason.to_string() }
    }

    /// Names `path` in an I/O error that was raised without one.
    pub(crate) fn at_path(self, op: &'static str, path: &std::path::Path) -> StorageError {
        match self {
            StorageError::Io { path: p, source, .. } if p.is_empty() => {
                StorageError::Io { op, path: path.display().to_string(), source }
            }
            other => other,
        }
    }

    /// Whether the error is a damaged or truncated file (as opposed to an I/O failure).
    pub fn is_damaged_file(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. } | StorageError::Truncated { .. })
    }
}

/// openraft's storage traits speak `io::Error`; this is the one place where ours becomes one.
impl From<StorageError> for io::Error {
    fn from(err: StorageError) -> io::Error {
        match err {
            StorageError::Io { source, .. } if source.kind() != io::ErrorKind::Other => {
                io::Error::new(source.kind(), source)
            }
            other => io::Error::other(other),
        }
    }
}
