//! Commands to a mounted filesystem: cut the power, slow its fsyncs down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::disk_state::DiskState;
use crate::error::{FaultFsError, Result};

/// What a power cut dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerCut {
    /// Files that had unsynced data or an unsynced size.
    pub files_with_unsynced_data: u64,
    /// Unsynced bytes dropped (counted in whole 4 KiB pages).
    pub unsynced_bytes: u64,
}

impl std::fmt::Display for PowerCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dropped {} KiB unsynced in {} files", self.unsynced_bytes / 1024, self.files_with_unsynced_data)
    }
}

/// How many syncs the filesystem served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// `fsync` and `fdatasync` calls on files.
    pub file_syncs: u64,
    /// `fsync` calls on directories.
    pub dir_syncs: u64,
    /// Power cuts.
    pub power_cuts: u64,
}

/// A handle on a mounted filesystem's faults. Cheap to clone; every clone controls the same mount.
#[derive(Clone)]
pub struct FaultControl {
    pub(crate) state: Arc<Mutex<DiskState>>,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Default)]
pub(crate) struct Shared {
    fsync_delay_us: AtomicU64,
    pub(crate) file_syncs: AtomicU64,
    pub(crate) dir_syncs: AtomicU64,
    power_cuts: AtomicU64,
}

impl FaultControl {
    /// Drops every write and every directory entry that was not fsynced, as a power cut would.
    ///
    /// Call it while no process uses the filesystem (after killing the processes that did): their
    /// open files are forgotten, and any further use of them fails with `EIO`. Nothing that was
    /// synced is lost.
    pub fn power_cut(&self) -> Result<PowerCut> {
        let mut state = self.state.lock().map_err(|_| FaultFsError::Poisoned)?;
        let cut = state.power_cut().map_err(FaultFsError::Backing)?;
        self.shared.power_cuts.fetch_add(1, Ordering::Relaxed);
        Ok(cut)
    }

    /// Makes every later `fsync`, `fdatasync` and directory fsync answer `delay` after its data
    /// reached the backing directory: a slow disk. Zero (the default) answers at once.
    pub fn set_fsync_delay(&self, delay: Duration) {
        self.shared.fsync_delay_us.store(delay.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The current fsync delay.
    pub fn fsync_delay(&self) -> Duration {
        Duration::from_micros(self.shared.fsync_delay_us.load(Ordering::Relaxed))
    }

    /// Syncs served and power cuts so far.
    pub fn stats(&self) -> SyncStats {
        SyncStats {
            file_syncs: self.shared.file_syncs.load(Ordering::Relaxed),
            dir_syncs: self.shared.dir_syncs.load(Ordering::Relaxed),
            power_cuts: self.shared.power_cuts.load(Ordering::Relaxed),
        }
    }
}
