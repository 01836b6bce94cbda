//! Whether this node's disk has room: the node's disk monitor sets it, and writes (on the leader),
//! log appends and snapshot installs (from the leader) are refused while it says no.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use raftkv_types::api::StorageStatus;

use crate::api_error::ApiError;

/// Shared between the disk monitor that measures and the paths that refuse.
///
/// Low when fewer than `reserve` bytes are free; no longer low once a quarter of the reserve more
/// is free again, so that a disk hovering at the limit does not flap.
#[derive(Clone, Debug, Default)]
pub struct StorageGate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    low: AtomicBool,
    free: AtomicU64,
    total: AtomicU64,
    reserve: AtomicU64,
    measured: AtomicBool,
}

impl StorageGate {
    /// A gate that refuses while fewer than `reserve` bytes are free (0: never).
    pub fn new(reserve: u64) -> StorageGate {
        let gate = StorageGate::default();
        gate.inner.reserve.store(reserve, Ordering::Relaxed);
        gate
    }

    /// Records a measurement; returns the new state when it changed (`Some(true)`: now low).
    pub fn update(&self, free: u64, total: u64) -> Option<bool> {
        let reserve = self.inner.reserve.load(Ordering::Relaxed);
        self.inner.free.store(free, Ordering::Relaxed);
        self.inner.total.store(total, Ordering::Relaxed);
        self.inner.measured.store(true, Ordering::Relaxed);
        let was = self.inner.low.load(Ordering::Relaxed);
        let now = if was { free < reserve + reserve / 4 } else { free < reserve };
        self.inner.low.store(now, Ordering::Relaxed);
        (now != was).then_some(now)
    }

    /// Whether the disk is below its reserve.
    pub fn is_low(&self) -> bool {
        self.inner.low.load(Ordering::Relaxed)
    }

    /// The last measurement (`None` before the first).
    pub fn status(&self) -> Option<StorageStatus> {
        self.inner.measured.load(Ordering::Relaxed).then(|| StorageStatus {
            free_bytes: self.inner.free.load(Ordering::Relaxed),
            total_bytes: self.inner.total.load(Ordering::Relaxed),
            reserve_bytes: self.inner.reserve.load(Ordering::Relaxed),
            low: self.is_low(),
        })
    }

    /// The client API's answer to a write while low: `507 insufficient_storage`.
    pub fn refusal(&self) -> ApiError {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        ApiError::InsufficientStorage(format!(
            "this node's data directory has {:.1} MiB free, below its reserve of {:.1} MiB: writes are refused until space is freed (reads are still served)",
            mib(self.inner.free.load(Ordering::Relaxed)),
            mib(self.inner.reserve.load(Ordering::Relaxed))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_reserve_and_back_with_some_room() {
        let gate = StorageGate::new(100);
        assert_eq!(gate.status(), None);
        assert_eq!(gate.update(500, 1000), None);
        assert_eq!(gate.update(99, 1000), Some(true));
        assert!(gate.is_low());
        assert_eq!(gate.update(110, 1000), None, "not yet a quarter above the reserve");
        assert_eq!(gate.update(125, 1000), Some(false));
        assert_eq!(gate.refusal().code(), "insufficient_storage");
        assert_eq!(gate.status().map(|s| (s.free_bytes, s.low)), Some((125, false)));
    }

    #[test]
    fn a_zero_reserve_never_refuses() {
        let gate = StorageGate::new(0);
        assert_eq!(gate.update(0, 1000), None);
        assert!(!gate.is_low());
    }
}
