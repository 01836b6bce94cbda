//! [`ReadIndexBatcher`]: linearizable reads on a follower or learner, many sharing one read-index
//! round trip to the leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use raftkv_network::{MemberRpc, MemberRpcError};
use raftkv_types::PeerNode;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<u64, MemberRpcError>>;

/// Asks the leader for read indexes on behalf of concurrent readers.
///
/// Ordering contract: a reader is only ever given an index from a round that the leader started
/// after the reader asked. Readers that arrive while a round is in flight wait for the next one,
/// which starts as soon as the current one ends and serves all of them at once. With a read index
/// from such a round, a reader that waits until this node has applied that far sees every write
/// acknowledged before it asked.
#[derive(Clone)]
pub struct ReadIndexBatcher {
    rpc: MemberRpc,
    timeout: Duration,
    queue: Arc<Mutex<Queue>>,
    /// Rounds run, and readers served per round.
    rounds: Counter,
    reads_per_round: Histogram,
}

#[derive(Default)]
struct Queue {
    round_running: bool,
    waiting: Vec<Waiter>,
    leader: Option<PeerNode>,
}

impl ReadIndexBatcher {
    /// A batcher whose rounds time out after `timeout`, counted in `rounds` and
    /// `reads_per_round`.
    pub fn new(rpc: MemberRpc, timeout: Duration, rounds: Counter, reads_per_round: Histogram) -> ReadIndexBatcher {
        ReadIndexBatcher { rpc, timeout, queue: Arc::default(), rounds, reads_per_round }
    }

    /// A read index from `leader` obtained by a round that started after this call.
    pub async fn read_index(&self, leader: PeerNode) -> Result<u64, MemberRpcError> {
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(tx);
            queue.leader = Some(leader);
            !std::mem::replace(&mut queue.round_running, true)
        };
        if start_round {
            tokio::spawn(self.clone().run_rounds());
        }
        rx.await.unwrap_or_else(|_| Err(MemberRpcError::NoAnswer("read index round dropped".into())))
    }

    /// Runs rounds until nobody is waiting.
    async fn run_rounds(self) {
        loop {
            let (waiters, leader) = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.round_running = false;
                    return;
                }
                (std::mem::take(&mut queue.waiting), queue.leader.clone())
            };
            let Some(leader) = leader else { continue };
            self.rounds.inc();
            self.reads_per_round.observe(waiters.len() as f64);
            let answer = self.rpc.read_index(&leader, self.timeout).await;
            for waiter in waiters {
                let _ = waiter.send(answer.clone());
            }
        }
    }
}
