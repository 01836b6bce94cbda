//! Leader-only work for services that embed a node: who leads, changes of it, and the fencing
//! token that a leader's writes carry.

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use raftkv_types::api::Role;
use raftkv_types::{LeaderToken, NodeId, TypeConfig};
use tokio::sync::watch;

use crate::kv_handle::KvHandle;

/// This node's role and the leader it knows of, published on every change by
/// [`crate::Node::role_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// While this node leads: its leadership, to fence its writes with
    /// ([`crate::Node::put_if_leader`]). `None` on any other node.
    pub token: Option<LeaderToken>,
}

impl Leadership {
    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.token.is_some()
    }
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership { role: Role::Shutdown, leader: None, term: 0, token: None }
    }
}

/// The role of a node in `state`.
pub(crate) fn role_of_state(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

impl KvHandle {
    /// This node's leadership token, when `m` shows it leading.
    pub(crate) fn leader_token(&self, m: &RaftMetrics<TypeConfig>) -> Option<LeaderToken> {
        if m.state != ServerState::Leader {
            return None;
        }
        let published = self.leadership.borrow().token;
        match published {
            Some(token) if token.term == m.current_term => Some(token),
            // Not published yet (the watcher runs a moment later): the same token.
            _ => {
                Some(LeaderToken { term: m.current_term, leader: self.id, since_index: m.last_log_index.unwrap_or(0) })
            }
        }
    }

    /// Publishes every change of role, leader or term until the node stops. It watches openraft's
    /// server metrics, which change only with those (and the membership), not with every append.
    pub(crate) async fn watch_leadership(self) {
        let mut server = self.raft.server_metrics();
        loop {
            let next = {
                let m = server.borrow_watched();
                let term = m.vote.leader_id.term;
                let current = self.leadership.borrow().clone();
                let token = match (m.state == ServerState::Leader, current.token) {
                    (false, _) => None,
                    // The same leadership keeps its token (and its first index).
                    (true, Some(token)) if token.term == term => Some(token),
                    (true, _) => {
                        let since_index = self.raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
                        Some(LeaderToken { term, leader: self.id, since_index })
                    }
                };
                Leadership { role: role_of_state(m.state), leader: m.current_leader, term, token }
            };
            self.leadership.send_if_modified(|current| {
                if *current == next {
                    return false;
                }
                tracing::info!(role = %next.role, leader = ?next.leader, term = next.term, "leadership changed");
                *current = next;
                true
            });
            if server.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A receiver of leadership changes.
pub type LeadershipReceiver = watch::Receiver<Leadership>;
