//! [`Node`]'s membership changes and leader transfer, run on the leader (forwarded to it).

use raftkv_network::{KvService, MembershipChange};
use raftkv_types::NodeId;
use raftkv_types::api::{LeaderTransferResponse, MembersResponse, NewMember};

use crate::error::Result;
use crate::node::Node;

impl Node {
    /// Adds node `id` at `addr` as a learner (through the leader). It catches up asynchronously;
    /// its progress shows in [`Node::status`] on the leader.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<MembersResponse> {
        self.add_learner_in_zone(id, addr, None).await
    }

    /// Adds node `id` at `addr` as a learner in `zone` (a DR site, say); the zone is shown in
    /// status and member lists.
    pub async fn add_learner_in_zone(&self, id: NodeId, addr: &str, zone: Option<&str>) -> Result<MembersResponse> {
        let zone = zone.map(str::to_string);
        self.change_membership(MembershipChange::AddLearner { id, addr: addr.to_string(), zone, standby: false }).await
    }

    /// Adds node `id` at `addr` as a standby in `zone`: a learner the autopilot may promote to
    /// replace a dead voter. Refused (`standby_on_voter`) for a voter.
    pub async fn add_standby(&self, id: NodeId, addr: &str, zone: Option<&str>) -> Result<MembersResponse> {
        let zone = zone.map(str::to_string);
        self.change_membership(MembershipChange::AddLearner { id, addr: addr.to_string(), zone, standby: true }).await
    }

    /// Makes learner `id` a voter. Refused when the new voters would not include a reachable,
    /// caught-up quorum, unless `force`.
    pub async fn promote(&self, id: NodeId, force: bool) -> Result<MembersResponse> {
        self.change_membership(MembershipChange::Promote { id, force }).await
    }

    /// Removes member `id`. Refused when the remaining voters would not include a reachable,
    /// caught-up quorum, unless `force`; removing the last voter is always refused.
    pub async fn remove_member(&self, id: NodeId, force: bool) -> Result<MembersResponse> {
        self.change_membership(MembershipChange::Remove { id, force }).await
    }

    /// Replaces voter `old` by new node `id` at `addr`: adds it as a learner, waits until it has
    /// caught up, then swaps the two with joint consensus.
    pub async fn replace_member(&self, old: NodeId, id: NodeId, addr: &str, force: bool) -> Result<MembersResponse> {
        self.change_membership(MembershipChange::Replace { old, new: id, addr: addr.to_string(), force }).await
    }

    pub(crate) async fn change_membership(&self, change: MembershipChange) -> Result<MembersResponse> {
        self.with_leader(
            || self.handle.change_membership(change.clone()),
            |client| {
                let change = change.clone();
                async move {
                    match change {
                        MembershipChange::AddLearner { id, addr, zone, standby } => {
                            client.add_member(&NewMember { id, addr, zone, standby }).await
                        }
                        MembershipChange::Promote { id, force } => client.promote(id, force).await,
                        MembershipChange::Remove { id, force } => client.remove_member(id, force).await,
                        MembershipChange::Replace { old, new, addr, force } => {
                            client.replace_member(old, new, &addr, force).await
                        }
                    }
                }
            },
        )
        .await
    }

    /// Hands leadership to voter `to` (from whichever node leads) and waits until `to` leads.
    /// Writes in flight on the old leader finish or fail as during any leader change; nothing
    /// acknowledged is lost.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<LeaderTransferResponse> {
        self.with_leader(|| self.handle.transfer_leader(to), |client| async move { client.transfer_leader(to).await })
            .await
    }
}
