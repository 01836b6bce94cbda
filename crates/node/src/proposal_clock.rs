//! [`ProposalClock`]: the time a leader stamps on each proposal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Stamps proposals with this node's wall clock in milliseconds, never lower than a stamp it gave
/// before (a clock stepped back does not make stamps go backwards).
///
/// The state machine keeps the largest stamp applied as its clock, so that every replica makes
/// time-based decisions at the same point of the log, whatever its own clock says.
#[derive(Debug, Default)]
pub struct ProposalClock {
    last: AtomicU64,
}

impl ProposalClock {
    /// The stamp for a proposal made now.
    pub fn stamp(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let before = self.last.fetch_max(now, Ordering::AcqRel);
        before.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_backwards() {
        let clock = ProposalClock::default();
        clock.last.store(u64::MAX - 1, Ordering::Relaxed);
        assert_eq!(clock.stamp(), u64::MAX - 1);
        let fresh = ProposalClock::default();
        let (a, b) = (fresh.stamp(), fresh.stamp());
        assert!(a > 1_600_000_000_000 && b >= a);
    }
}
