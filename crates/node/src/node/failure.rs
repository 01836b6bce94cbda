//! A node whose Raft stopped by itself: a storage failure (a disk full despite the reserve, an
//! I/O error, corruption found while reading the log) is fatal to openraft, which stops rather
//! than run on a store it cannot trust.

use openraft::async_runtime::watch::WatchReceiver;

use crate::node::Node;

impl Node {
    /// Resolves, with the reason, once this node's Raft has stopped by itself (never after a
    /// [`Node::shutdown`] alone). The node serves nothing useful from then on: `raftkv serve`
    /// exits with an error, so that its supervisor restarts it once the cause is fixed (a
    /// restart recovers from the durable log; nothing acknowledged is lost).
    pub async fn failed(&self) -> String {
        let mut metrics = self.handle.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_watched().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the raft core stopped".to_string();
            }
        }
    }
}
