//! Errors of mounting and controlling the filesystem.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum FaultFsError {
    /// Mounting needs root (or a FUSE setup that lets this user mount).
    #[error("mounting {mountpoint} failed: {source} (FUSE mounts need root and /dev/fuse)")]
    Mount {
        /// Where it was to be mounted.
        mountpoint: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The backing directory could not be prepared or updated.
    #[error("backing directory: {0}")]
    Backing(std::io::Error),
    /// A filesystem thread panicked while holding the state.
    #[error("the filesystem state is poisoned by a panic")]
    Poisoned,
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, FaultFsError>;
