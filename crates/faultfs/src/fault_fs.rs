//! A mounted fault-injecting filesystem.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::{BackgroundSession, Config, MountOption};

use crate::control::{FaultControl, Shared};
use crate::disk_state::DiskState;
use crate::error::{FaultFsError, Result};
use crate::fuse_ops::LazyFs;

/// Worker threads per mount: a sync being answered late does not hold one (see
/// [`FaultControl::set_fsync_delay`]), but a real fsync of the backing file does.
const THREADS: usize = 4;

/// A filesystem mounted at a directory, passing through to a backing directory, that keeps
/// unsynced data in memory until it is fsynced.
///
/// - File data reaches the backing directory when the file is fsynced (`fsync` or `fdatasync`).
/// - A file's name (creation, rename, hard link, removal) reaches it when its directory is
///   fsynced. Directories themselves are created, removed and renamed at once.
/// - [`FaultControl::power_cut`] drops everything else, as a power cut drops a page cache.
///
/// Unmounts when dropped.
pub struct FaultFs {
    session: Option<BackgroundSession>,
    control: FaultControl,
    mountpoint: PathBuf,
}

impl FaultFs {
    /// Mounts at `mountpoint` (an existing, empty directory) a filesystem whose durable contents
    /// live in `backing/data` (created if needed; what is there already is the filesystem's
    /// contents). Needs root.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<FaultFs> {
        let state = DiskState::open(backing).map_err(FaultFsError::Backing)?;
        let control = FaultControl { state: Arc::new(Mutex::new(state)), shared: Arc::new(Shared::default()) };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("raftkv-faultfs".into()),
            MountOption::Subtype("raftkv-faultfs".into()),
            MountOption::DefaultPermissions,
        ];
        // The nodes under test may run as other users than the one mounting.
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(THREADS);
        let session = fuser::spawn_mount(LazyFs::new(&control), mountpoint, &config)
            .map_err(|source| FaultFsError::Mount { mountpoint: mountpoint.to_path_buf(), source })?;
        Ok(FaultFs { session: Some(session), control, mountpoint: mountpoint.to_path_buf() })
    }

    /// The handle that injects faults into this mount.
    pub fn control(&self) -> FaultControl {
        self.control.clone()
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts, reporting a failure (a process still using it, for instance).
    pub fn unmount(mut self) -> Result<()> {
        match self.session.take() {
            Some(session) => session
                .umount_and_join()
                .map_err(|source| FaultFsError::Mount { mountpoint: self.mountpoint.clone(), source }),
            None => Ok(()),
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}
