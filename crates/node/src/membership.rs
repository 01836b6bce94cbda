//! Membership changes and leader transfer on the leader: the admin API's logic.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Instant as _, RaftMetrics, ServerState};
use raftkv_network::{ApiError, MembershipChange};
use raftkv_types::api::{LeaderTransferResponse, MemberInfo, MemberRole, MembersResponse};
use raftkv_types::{ClusterChange, NodeId, PeerNode, TypeConfig};

use crate::kv_handle::KvHandle;

/// A member at most this many entries behind the leader counts as caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 1000;

/// How long a change waits for the previous one to commit before refusing as concurrent.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a new member (of `replace`) may take to catch up before the swap is given up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Members, roles and whether a change is under way, from `m`; learners in `standbys` are
/// standbys.
pub fn members_of(m: &RaftMetrics<TypeConfig>, standbys: &BTreeSet<NodeId>) -> MembersResponse {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberInfo {
            id: *id,
            addr: node.addr.clone(),
            zone: node.zone.clone(),
            role: role_of(*id, &voters, standbys, m),
        })
        .collect();
    MembersResponse { leader: m.current_leader, members, change_in_progress: change_in_progress(m) }
}

/// Whether a configuration change is under way: a joint configuration, or one not committed yet.
pub(crate) fn change_in_progress(m: &RaftMetrics<TypeConfig>) -> bool {
    m.membership_config.membership().get_joint_config().len() > 1
        || m.membership_config.log_id() != m.committed_membership_config.log_id()
}

/// `leader`, `voter`, `standby` (a learner in `standbys`) or `learner`: derived from the
/// membership and the replicated standby flags only.
pub fn role_of(
    id: NodeId,
    voters: &BTreeSet<NodeId>,
    standbys: &BTreeSet<NodeId>,
    m: &RaftMetrics<TypeConfig>,
) -> MemberRole {
    if m.current_leader == Some(id) && voters.contains(&id) {
        MemberRole::Leader
    } else if voters.contains(&id) {
        MemberRole::Voter
    } else if standbys.contains(&id) {
        MemberRole::Standby
    } else {
        MemberRole::Learner
    }
}

/// What the leader knows of one member's replication.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    /// Last index known on the member's disk.
    pub matched: u64,
    /// Time since it last acknowledged anything.
    pub last_ack: Option<Duration>,
    /// Whether it acknowledged recently enough to count as reachable.
    pub reachable: bool,
}

impl KvHandle {
    /// The members as this node knows them.
    pub(crate) fn members_view(&self) -> MembersResponse {
        members_of(&self.raft.metrics().borrow_watched(), &self.state_machine.standbys())
    }

    /// On the leader: member `id`'s replication; `None` elsewhere or for an unknown id.
    pub(crate) fn replication_of(&self, id: NodeId, m: &RaftMetrics<TypeConfig>) -> Option<Replication> {
        let last_log_index = m.last_log_index.unwrap_or(0);
        if id == self.id {
            return (m.state == ServerState::Leader).then_some(Replication {
                matched: last_log_index,
                last_ack: Some(Duration::ZERO),
                reachable: true,
            });
        }
        let matched = m.replication.as_ref()?.get(&id)?.as_ref().map_or(0, |l| l.index);
        let last_ack = m.heartbeat.as_ref().and_then(|h| h.get(&id).cloned().flatten()).map(|at| at.elapsed());
        let reachable = last_ack.is_some_and(|a| a <= self.reachable_within);
        Some(Replication { matched, last_ack, reachable })
    }

    /// Whether `id` could take part in a quorum right now: reachable and caught up.
    pub(crate) fn healthy(&self, id: NodeId, m: &RaftMetrics<TypeConfig>) -> bool {
        let last = m.last_log_index.unwrap_or(0);
        self.replication_of(id, m).is_some_and(|r| r.reachable && last.saturating_sub(r.matched) <= CAUGHT_UP_ENTRIES)
    }

    /// Refuses a voter set in which fewer members than a quorum are healthy, unless forced.
    /// `joining` is a member the change waits for to catch up, so it counts as healthy.
    fn check_quorum(
        &self,
        change: &str,
        voters: &BTreeSet<NodeId>,
        joining: Option<NodeId>,
        force: bool,
    ) -> Result<(), ApiError> {
        if voters.is_empty() {
            return Err(ApiError::conflict("last_voter", format!("{change} would remove the last voter; refused")));
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let healthy: BTreeSet<NodeId> =
            voters.iter().copied().filter(|id| Some(*id) == joining || self.healthy(*id, &m)).collect();
        let quorum = voters.len() / 2 + 1;
        if healthy.len() >= quorum || force {
            if healthy.len() < quorum {
                tracing::warn!(change, ?voters, ?healthy, "forced membership change without a healthy quorum");
            }
            return Ok(());
        }
        Err(ApiError::conflict(
            "unsafe_change",
            format!(
                "{change} would leave voters {} of which only {} are reachable and caught up; a quorum \
                 needs {quorum}, so the cluster could not commit anything. Bring members back first, or \
                 pass force=true to do it anyway",
                id_list(voters),
                if healthy.is_empty() { "none".to_string() } else { id_list(&healthy) }
            ),
        ))
    }

    /// Applies `change` on the leader and answers the members once it is committed.
    pub(crate) async fn change_members(&self, change: MembershipChange) -> Result<MembersResponse, ApiError> {
        if !self.leads() {
            return Err(self.redirect());
        }
        let Ok(_guard) = self.membership_lock.try_lock() else {
            return Err(in_progress("another membership change is being made on the leader"));
        };
        // The previous change (a second step, or a learner added without waiting) may still be
        // committing: give it a moment before calling this change concurrent.
        let settled = self
            .raft
            .wait(Some(SETTLE_TIMEOUT))
            .metrics(|m| !change_in_progress(m), "membership change committed")
            .await;
        let Ok(m) = settled else {
            return Err(in_progress("the previous membership change is not committed yet"));
        };
        let current = members_of(&m, &self.state_machine.standbys());
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let address_of = |id: NodeId| membership.get_node(&id).map(|n| n.addr.clone());

        match change {
            MembershipChange::AddLearner { id, addr, zone, standby } => {
                if voters.contains(&id) && standby {
                    return Err(standby_on_voter(id));
                }
                let newcomer = check_newcomer(&membership, id, &addr)?;
                if newcomer == Newcomer::New {
                    tracing::info!(id, %addr, ?zone, standby, "adding learner");
                    self.membership_write(self.raft.add_learner(id, PeerNode::in_zone(addr, zone), false)).await?;
                }
                if standby && !self.state_machine.standbys().contains(&id) {
                    self.change_cluster_state(ClusterChange::SetStandby { id, standby: true }).await?;
                } else if newcomer == Newcomer::AlreadyMember {
                    return Ok(current);
                }
            }
            MembershipChange::Promote { id, force } => {
                if address_of(id).is_none() {
                    return Err(ApiError::UnknownMember(id));
                }
                if voters.contains(&id) {
                    return Ok(current);
                }
                let mut next = voters.clone();
                next.insert(id);
                self.check_quorum(&format!("promoting node {id}"), &next, None, force)?;
                tracing::info!(id, "promoting learner to voter");
                let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                self.membership_write(self.raft.change_membership(change, false)).await?;
            }
            MembershipChange::Remove { id, force } => {
                if address_of(id).is_none() {
                    return Err(ApiError::UnknownMember(id));
                }
                if voters.contains(&id) {
                    let mut next = voters.clone();
                    next.remove(&id);
                    self.check_quorum(&format!("removing node {id}"), &next, None, force)?;
                    tracing::info!(id, "removing voter");
                    let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
                    self.membership_write(self.raft.change_membership(change, false)).await?;
                } else {
                    tracing::info!(id, "removing learner");
                    let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                    self.membership_write(self.raft.change_membership(change, false)).await?;
                }
            }
            MembershipChange::Replace { old, new, addr, force } => {
                if !voters.contains(&old) {
                    return Err(match address_of(old) {
                        None => ApiError::UnknownMember(old),
                        Some(_) => ApiError::conflict("not_a_voter", format!("node {old} is a learner, not a voter")),
                    });
                }
                if voters.contains(&new) {
                    return Err(ApiError::conflict("member_exists", format!("node {new} is already a voter")));
                }
                // A learner already added at this address (e.g. by `--join`) is taken as it is.
                check_newcomer(&membership, new, &addr)?;
                let mut next = voters.clone();
                next.remove(&old);
                next.insert(new);
                // The swap only happens once the replacement has caught up.
                self.check_quorum(&format!("replacing node {old} by node {new}"), &next, Some(new), force)?;
                if address_of(new).is_none() {
                    tracing::info!(old, new, %addr, "replacing voter: adding the new node as a learner");
                    self.membership_write(self.raft.add_learner(new, PeerNode::new(addr), false)).await?;
                }
                // Swap only once the new node has the log up to now and answers the leader, so
                // that the new voter set is as healthy as the old one.
                let target = self.raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
                let caught_up = self
                    .raft
                    .wait(Some(CATCH_UP_TIMEOUT))
                    .metrics(
                        |m| self.replication_of(new, m).is_some_and(|r| r.reachable && r.matched >= target),
                        "replacement caught up",
                    )
                    .await;
                if caught_up.is_err() {
                    return Err(ApiError::Unavailable(format!(
                        "node {new} is a learner but did not catch up within {CATCH_UP_TIMEOUT:?}; node {old} is \
                         still a voter (remove node {new}, or replace again once it runs)"
                    )));
                }
                tracing::info!(old, new, "replacing voter: swapping them");
                let change = ChangeMembers::ReplaceAllVoters(next);
                self.membership_write(self.raft.change_membership(change, false)).await?;
            }
        }
        // Answer with the change in place: wait (briefly) until the metrics show it committed.
        let _ = self
            .raft
            .wait(Some(SETTLE_TIMEOUT))
            .metrics(|m| !change_in_progress(m), "membership change committed")
            .await;
        Ok(self.members_view())
    }

    /// Runs a membership write, bounded by the write timeout, mapping openraft's refusals.
    async fn membership_write<F, T>(&self, write: F) -> Result<(), ApiError>
    where
        F: Future<Output = Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>>,
    {
        // A joint change commits two entries in sequence.
        let timeout = self.write_timeout * 2;
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => membership_result(result),
            Err(_) => Err(ApiError::OutcomeUnknown(format!(
                "membership change not committed within {timeout:?} (no quorum?); it may still take effect: \
                 check `raftkv member list`"
            ))),
        }
    }

    /// Hands leadership to voter `to` and waits until it leads.
    pub(crate) async fn transfer_leadership(&self, to: NodeId) -> Result<LeaderTransferResponse, ApiError> {
        if !self.leads() {
            return Err(self.redirect());
        }
        if to == self.id {
            return Ok(LeaderTransferResponse { leader: to });
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&to).is_none() {
            return Err(ApiError::UnknownMember(to));
        }
        if !membership.voter_ids().any(|id| id == to) {
            return Err(ApiError::conflict(
                "not_a_voter",
                format!("node {to} is a learner; only a voter can lead (promote it first)"),
            ));
        }
        if !self.replication_of(to, &m).is_some_and(|r| r.reachable) {
            return Err(ApiError::conflict(
                "target_unreachable",
                format!("node {to} has not acknowledged the leader recently; it cannot take over now"),
            ));
        }
        tracing::info!(to, "transferring leadership");
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| ApiError::Unavailable(format!("leader transfer failed: {e}")))?;
        let deadline = Instant::now() + self.write_timeout;
        let moved = self
            .raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(|m| m.current_leader == Some(to), "leadership transferred")
            .await;
        match moved {
            Ok(_) => Ok(LeaderTransferResponse { leader: to }),
            Err(_) => Err(ApiError::Unavailable(format!(
                "node {to} did not take over within {:?}; the leader is now {}",
                self.write_timeout,
                self.raft.metrics().borrow_watched().current_leader.map_or("unknown".to_string(), |l| l.to_string())
            ))),
        }
    }
}

/// Whether a node to add is new to the cluster or already there as asked.
#[derive(Debug, PartialEq, Eq)]
enum Newcomer {
    New,
    AlreadyMember,
}

/// Checks that node `id` at `addr` may be added: its id is not a member elsewhere, and no other
/// member has its address.
fn check_newcomer(
    membership: &openraft::Membership<NodeId, PeerNode>,
    id: NodeId,
    addr: &str,
) -> Result<Newcomer, ApiError> {
    if let Some(existing) = membership.get_node(&id) {
        if existing.addr == addr {
            return Ok(Newcomer::AlreadyMember);
        }
        return Err(ApiError::conflict(
            "member_exists",
            format!("node {id} is already a member, at {}; remove it first to move it", existing.addr),
        ));
    }
    match membership.nodes().find(|(_, n)| n.addr == addr) {
        Some((owner, _)) => {
            Err(ApiError::conflict("address_in_use", format!("{addr} is the address of member {owner}")))
        }
        None => Ok(Newcomer::New),
    }
}

/// The refusal of a standby flag for a voter.
pub(crate) fn standby_on_voter(id: NodeId) -> ApiError {
    ApiError::bad_request(
        "standby_on_voter",
        format!("node {id} is a voter; only a learner can be a standby (a replaced voter becomes one again)"),
    )
}

fn in_progress(why: &str) -> ApiError {
    ApiError::conflict(
        "change_in_progress",
        format!("a membership change is in progress: {why}; retry when it is done"),
    )
}

fn membership_result<T>(
    result: Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>,
) -> Result<(), ApiError> {
    match result {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ApiError::NotLeader { leader_id: f.leader_id, leader: f.leader_node })
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e)))) => {
            Err(in_progress(&e.to_string()))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(
            e,
        )))) => Err(ApiError::conflict("not_a_learner", e.to_string())),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ApiError::conflict("invalid_change", e.to_string()))
        }
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => Err(ApiError::OutcomeUnknown(format!(
            "leadership changed during the membership change; it may or may not take effect ({f})"
        ))),
        Err(RaftError::APIError(e)) => Err(ApiError::Internal(e.to_string())),
        Err(RaftError::Fatal(f)) => Err(ApiError::Unavailable(format!("node is stopping: {f}"))),
    }
}

fn id_list(ids: &BTreeSet<NodeId>) -> String {
    format!("{{{}}}", ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(","))
}
