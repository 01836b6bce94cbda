//! A filesystem for testing durability: power loss and slow disks.
//!
//! [`FaultFs`] mounts (with FUSE, as root) a directory that passes through to a backing
//! directory but keeps what was written in memory until it is fsynced, as an operating system's
//! page cache does. [`FaultControl::power_cut`] then drops everything not yet synced, which a
//! `SIGKILL` alone never does: the page cache survives the process. It is a small cousin of
//! Jepsen's lazyfs, built for raftkv's fault tests:
//!
//! - file data is durable once the file is fsynced (`fsync` or `fdatasync`);
//! - a file's name (its creation, a rename onto it, a hard link, its removal) is durable once its
//!   directory is fsynced, as POSIX requires and as ext4 and XFS do not promise otherwise;
//! - directories themselves are created, removed and renamed durably at once (the one place the
//!   model is kinder than a real disk);
//! - [`FaultControl::set_fsync_delay`] makes every sync answer late, as a slow or contended disk
//!   does.
//!
//! ```no_run
//! # fn main() -> raftkv_faultfs::Result<()> {
//! let fs = raftkv_faultfs::FaultFs::mount("/tmp/disk".as_ref(), "/mnt/node-1".as_ref())?;
//! // ... run a node on /mnt/node-1, SIGKILL it ...
//! let cut = fs.control().power_cut()?;
//! println!("{cut}");
//! # Ok(()) }
//! ```

mod control;
mod disk_state;
mod error;
mod fault_fs;
mod fuse_ops;
mod volatile_file;

pub use control::{FaultControl, PowerCut, SyncStats};
pub use error::{FaultFsError, Result};
pub use fault_fs::FaultFs;
