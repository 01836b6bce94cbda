//! Watching the data directory's free space: below the reserve, the node refuses writes (as
//! leader, `507 insufficient_storage`) and log appends (as follower), keeps serving reads, and a
//! leader hands its leadership to a voter whose disk has room. Once space is freed it takes
//! writes and appends again by itself.

use std::path::PathBuf;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use raftkv_types::NodeId;

use crate::kv_handle::KvHandle;

/// How often the free space is measured.
const INTERVAL: Duration = Duration::from_millis(500);
/// How long a leader on a full disk waits between attempts to hand its leadership over.
const TRANSFER_RETRY: Duration = Duration::from_secs(5);

impl KvHandle {
    /// Measures the free space on `data_dir` until the node stops, updating the storage gate.
    pub(crate) async fn watch_disk(self, data_dir: PathBuf) {
        let mut last_transfer: Option<tokio::time::Instant> = None;
        let mut failing = false;
        // The first measurement at once, so that status and metrics have one from the start.
        let mut every = tokio::time::interval(INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if self.raft.metrics().borrow_watched().running_state.is_err() {
                return;
            }
            let dir = data_dir.clone();
            let measured = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&dir)).await;
            let stat = match measured {
                Ok(Ok(stat)) => stat,
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(%e, dir = %data_dir.display(), "cannot measure the data directory's free space");
                    }
                    failing = true;
                    continue;
                }
                Err(_) => return,
            };
            failing = false;
            let block = stat.fragment_size() as u64;
            let free = stat.blocks_available() as u64 * block;
            let total = stat.blocks() as u64 * block;
            match self.storage.update(free, total) {
                Some(true) => tracing::error!(
                    free_mib = free >> 20,
                    reserve_mib = self.storage.status().map_or(0, |s| s.reserve_bytes >> 20),
                    "data directory nearly full: refusing writes and log appends until space is freed; reads are still served"
                ),
                Some(false) => {
                    tracing::warn!(
                        free_mib = free >> 20,
                        "data directory has room again: taking writes and log appends"
                    );
                    last_transfer = None;
                }
                None => {}
            }
            if self.storage.is_low()
                && self.raft.is_leader()
                && last_transfer.is_none_or(|t| t.elapsed() >= TRANSFER_RETRY)
            {
                last_transfer = Some(tokio::time::Instant::now());
                self.hand_over_for_space().await;
            }
        }
    }

    /// Hands the leadership to the reachable voter with the most free space above its reserve, if
    /// any: a leader that cannot append must not hold up the cluster.
    async fn hand_over_for_space(&self) {
        let voters: Vec<(NodeId, raftkv_types::PeerNode)> = {
            let m = self.raft.metrics().borrow_watched().clone();
            let membership = m.membership_config.membership();
            membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
                .collect()
        };
        let mut best: Option<(u64, NodeId)> = None;
        for (id, node) in voters {
            if let Ok(Some(s)) = self.rpc.storage(&node, Duration::from_secs(1)).await
                && !s.low
                && best.is_none_or(|(free, _)| s.free_bytes > free)
            {
                best = Some((s.free_bytes, id));
            }
        }
        let Some((_, to)) = best else {
            tracing::warn!("no voter has room on its disk: staying leader, writes refused");
            return;
        };
        tracing::warn!(to, "data directory nearly full: handing the leadership to node {to}");
        if let Err(e) = self.transfer_leadership(to).await {
            tracing::warn!(%e, to, "could not hand the leadership over");
        }
    }
}
