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
