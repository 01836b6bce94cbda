//! The cluster-operations API on the leader: health, events, autopilot settings, sync zones,
//! planned absences and standby flags.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use openraft::RaftMetrics;
use openraft::async_runtime::watch::WatchReceiver;
use raftkv_network::{ApiError, ClusterRequest, client_router::valid_zone};
use raftkv_types::api::MemberRole;
use raftkv_types::health::{AutopilotStatus, ClusterHealth, EventsResponse, MemberHealth, ReplicationStatus};
use raftkv_types::{ClusterChange, ClusterState, Command, NodeId, SyncReplication, TypeConfig};

use crate::kv_handle::KvHandle;
use crate::membership::{role_of, standby_on_voter};

/// The longest pause, planned absence or timeout the API accepts: 7 days.
const MAX_PERIOD_MS: u64 = 7 * 24 * 3600 * 1000;
/// The shortest `sync_wait_timeout` accepted.
const MIN_SYNC_WAIT_MS: u64 = 100;

/// The wall clock, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One member as the leader observes it in an autopilot round or a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub id: NodeId,
    pub addr: String,
    pub zone: Option<String>,
    pub role: MemberRole,
    pub voter: bool,
    /// A learner flagged as a standby.
    pub standby: bool,
    pub reachable: bool,
    /// Time since it last acknowledged this leader (`None`: not since it was elected).
    pub last_contact: Option<Duration>,
    pub matched: u64,
    pub lag_entries: u64,
    pub lag_ms: u64,
    /// Reachable and at most `max_trailing_entries` behind.
    pub healthy: bool,
    pub stable_for: Option<Duration>,
    /// A voter out of contact for at least `dead_after`.
    pub dead: bool,
    pub leaving_until_ms: Option<u64>,
}

impl Observed {
    /// Whether it is a standby the autopilot may promote now: healthy for at least `min_stable`.
    pub(crate) fn ready_standby(&self, min_stable: Duration) -> bool {
        self.standby && self.healthy && self.stable_for.is_some_and(|s| s >= min_stable)
    }
}

impl KvHandle {
    /// Every member as this (leader) node sees it now; also updates for how long each has been
    /// healthy.
    pub(crate) fn observe(&self, m: &RaftMetrics<TypeConfig>, cluster: &ClusterState, now: Instant) -> Vec<Observed> {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let led_for = self.autopilot.led_for(now).unwrap_or_default();
        let dead_after = Duration::from_millis(cluster.autopilot.dead_after_ms);
        membership
            .nodes()
            .map(|(id, node)| {
                let replication = self.replication_of(*id, m);
                let matched = replication.map_or(0, |r| r.matched);
                let reachable = replication.is_some_and(|r| r.reachable);
                let last_contact = replication.and_then(|r| r.last_ack);
                let lag_entries = last.saturating_sub(matched);
                let healthy = reachable && lag_entries <= cluster.autopilot.max_trailing_entries;
                let voter = voters.contains(id);
                // Never heard from since this leader was elected: out of contact at least since then.
                let out_of_contact = last_contact.unwrap_or(led_for);
                Observed {
                    id: *id,
                    addr: node.addr.clone(),
                    zone: node.zone.clone(),
                    role: role_of(*id, &voters, &cluster.standbys, m),
                    voter,
                    standby: !voter && cluster.standbys.contains(id),
                    reachable,
                    last_contact,
                    matched,
                    lag_entries,
                    lag_ms: self.clock.lag(matched, now).as_millis() as u64,
                    healthy,
                    stable_for: self.autopilot.stable_for(*id, healthy, now),
                    dead: voter && *id != self.id && !reachable && out_of_contact >= dead_after,
                    leaving_until_ms: cluster.leaving.get(id).copied(),
                }
            })
            .collect()
    }

    /// Returns once this node leads; on another node, the redirect to the leader, after waiting
    /// (within the leader wait) for one to be known while an election runs: nothing is done
    /// before, so waiting is safe, and the caller sees one answer rather than the election.
    async fn require_leader(&self) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.limits.leader_wait;
        loop {
            if self.leads() {
                return Ok(());
            }
            match self.redirect() {
                ApiError::NotLeader { leader: None, .. } if Instant::now() < deadline => {
                    self.await_leader(None, deadline).await;
                }
                redirect => return Err(redirect),
            }
        }
    }

    /// Proposes `change` to the cluster's operating state and waits until it is applied here.
    pub(crate) async fn change_cluster_state(&self, change: ClusterChange) -> Result<(), ApiError> {
        tracing::info!(%change, "changing the cluster state");
        self.commit(Command::Cluster(change)).await.map(|_| ())
    }

    /// `GET /v1/cluster/health` on the leader.
    pub(crate) async fn cluster_health(&self) -> Result<ClusterHealth, ApiError> {
        self.require_leader().await?;
        let now = Instant::now();
        let m = self.raft.metrics().borrow_watched().clone();
        let cluster = self.state_machine.cluster_state();
        let members = self.observe(&m, &cluster, now);
        let voters = members.iter().filter(|o| o.voter).count() as u64;
        let quorum = voters / 2 + 1;
        let healthy_voters = members.iter().filter(|o| o.voter && o.healthy).count() as u64;
        let min_stable = Duration::from_millis(cluster.autopilot.min_stable_ms);
        let ready_standbys = members.iter().filter(|o| o.ready_standby(min_stable)).count() as u64;
        let mut problems = Vec::new();
        for o in members.iter().filter(|o| o.voter && !o.healthy) {
            problems.push(match (o.reachable, o.dead) {
                (_, true) => {
                    format!("voter {} is dead (no contact for {} ms or more)", o.id, cluster.autopilot.dead_after_ms)
                }
                (false, false) => format!("voter {} is unreachable", o.id),
                (true, _) => format!("voter {} is {} entries behind", o.id, o.lag_entries),
            });
        }
        if healthy_voters < quorum {
            problems.push(format!("only {healthy_voters} of {voters} voters are healthy; a quorum needs {quorum}"));
        }
        if cluster.sync_mode() == Some(raftkv_types::ReplicationMode::Async) {
            problems.push(format!("replication to zones {:?} is asynchronous", cluster.sync.zones));
        }
        let health = ClusterHealth {
            healthy: problems.is_empty(),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader: self.id,
            voters,
            quorum,
            healthy_voters,
            ready_standbys,
            problems,
            members: members
                .into_iter()
                .map(|o| MemberHealth {
                    id: o.id,
                    addr: o.addr,
                    zone: o.zone,
                    role: o.role,
                    reachable: o.reachable,
                    last_contact_ms: o.last_contact.map(|c| c.as_millis() as u64),
                    matched_index: o.matched,
                    lag_entries: o.lag_entries,
                    lag_ms: o.lag_ms,
                    healthy: o.healthy,
                    stable_for_ms: o.stable_for.map(|s| s.as_millis() as u64),
                    dead: o.dead,
                    leaving_until_ms: o.leaving_until_ms,
                })
                .collect(),
            autopilot: autopilot_status(&cluster),
            replication: replication_status(&cluster),
        };
        Ok(health)
    }

    /// `GET /v1/cluster/events` on the leader: the replicated events and this leader's recent
    /// decisions not to act, oldest first.
    pub(crate) async fn cluster_events(&self) -> Result<EventsResponse, ApiError> {
        self.require_leader().await?;
        let mut events: Vec<_> = self.state_machine.cluster_state().events.iter().cloned().collect();
        events.extend(self.autopilot.decisions());
        events.sort_by_key(|e| e.at_ms);
        Ok(EventsResponse { events })
    }

    /// `GET /v1/cluster/autopilot` on the leader.
    pub(crate) async fn autopilot_view(&self) -> Result<AutopilotStatus, ApiError> {
        self.require_leader().await?;
        Ok(autopilot_status(&self.state_machine.cluster_state()))
    }

    /// `GET /v1/cluster/replication` on the leader.
    pub(crate) async fn replication_view(&self) -> Result<ReplicationStatus, ApiError> {
        self.require_leader().await?;
        Ok(replication_status(&self.state_machine.cluster_state()))
    }

    /// Validates `request` on the leader and proposes the change it asks for.
    pub(crate) async fn update_cluster(&self, request: ClusterRequest) -> Result<(), ApiError> {
        self.ensure_member()?;
        self.require_leader().await?;
        let cluster = self.state_machine.cluster_state();
        let membership = self.raft.metrics().borrow_watched().membership_config.membership().clone();
        let change = match request {
            ClusterRequest::Autopilot(update) => {
                let settings = update.applied_to(cluster.autopilot);
                let min_dead = 3 * self.election_timeout.as_millis() as u64;
                if settings.dead_after_ms < min_dead || settings.dead_after_ms > MAX_PERIOD_MS {
                    return Err(ApiError::bad_request(
                        "invalid_autopilot",
                        format!(
                            "dead_after_ms must be at least three election timeouts ({min_dead} ms) and at most {MAX_PERIOD_MS}, got {}",
                            settings.dead_after_ms
                        ),
                    ));
                }
                for (name, value) in [("min_stable_ms", settings.min_stable_ms), ("cooldown_ms", settings.cooldown_ms)]
                {
                    if value > MAX_PERIOD_MS {
                        return Err(ApiError::bad_request(
                            "invalid_autopilot",
                            format!("{name} must be at most {MAX_PERIOD_MS} (7 days), got {value}"),
                        ));
                    }
                }
                if settings.max_trailing_entries == 0 {
                    return Err(ApiError::bad_request("invalid_autopilot", "max_trailing_entries must be at least 1"));
                }
                ClusterChange::SetAutopilot(settings)
            }
            ClusterRequest::PauseAutopilot { for_ms } => {
                check_period("for_ms", for_ms)?;
                ClusterChange::PauseAutopilot { until_ms: if for_ms == 0 { 0 } else { now_ms() + for_ms } }
            }
            ClusterRequest::Replication(update) => {
                let wait_timeout_ms = update.wait_timeout_ms.unwrap_or(SyncReplication::default().wait_timeout_ms);
                if !(MIN_SYNC_WAIT_MS..=MAX_PERIOD_MS).contains(&wait_timeout_ms) {
                    return Err(ApiError::bad_request(
                        "invalid_replication",
                        format!(
                            "wait_timeout_ms must be from {MIN_SYNC_WAIT_MS} to {MAX_PERIOD_MS}, got {wait_timeout_ms}"
                        ),
                    ));
                }
                let mut zones: Vec<String> = Vec::new();
                for zone in update.zones {
                    if !valid_zone(&zone) {
                        return Err(ApiError::bad_request(
                            "invalid_zone",
                            format!("zone must be 1 to 64 letters, digits, '-', '_' or '.', got {zone:?}"),
                        ));
                    }
                    if !membership.nodes().any(|(_, n)| n.zone.as_deref() == Some(zone.as_str())) {
                        return Err(ApiError::bad_request(
                            "unknown_zone",
                            format!("no member is in zone {zone:?}; add one (--zone) before making writes wait for it"),
                        ));
                    }
                    if !zones.contains(&zone) {
                        zones.push(zone);
                    }
                }
                ClusterChange::SetSyncReplication(SyncReplication { zones, wait_timeout_ms })
            }
            ClusterRequest::Leaving(notice) => {
                if membership.get_node(&notice.id).is_none() {
                    return Err(ApiError::UnknownMember(notice.id));
                }
                check_period("for_ms", notice.for_ms)?;
                let until_ms = if notice.for_ms == 0 { 0 } else { now_ms() + notice.for_ms };
                ClusterChange::Leaving { id: notice.id, until_ms }
            }
            ClusterRequest::Standby { id, standby } => {
                if membership.get_node(&id).is_none() {
                    return Err(ApiError::UnknownMember(id));
                }
                if standby && membership.voter_ids().any(|v| v == id) {
                    return Err(standby_on_voter(id));
                }
                ClusterChange::SetStandby { id, standby }
            }
        };
        self.change_cluster_state(change).await
    }
}

fn check_period(name: &str, ms: u64) -> Result<(), ApiError> {
    if ms > MAX_PERIOD_MS {
        return Err(ApiError::bad_request(
            "invalid_period",
            format!("{name} must be at most {MAX_PERIOD_MS} ms (7 days), got {ms}"),
        ));
    }
    Ok(())
}

fn autopilot_status(cluster: &ClusterState) -> AutopilotStatus {
    AutopilotStatus {
        settings: cluster.autopilot,
        paused_until_ms: (cluster.autopilot_paused_until_ms > now_ms()).then_some(cluster.autopilot_paused_until_ms),
        last_action: cluster.events.iter().rev().find(|e| e.kind == "voter_replaced").cloned(),
    }
}

fn replication_status(cluster: &ClusterState) -> ReplicationStatus {
    ReplicationStatus {
        zones: cluster.sync.zones.clone(),
        wait_timeout_ms: cluster.sync.wait_timeout_ms,
        mode: cluster.sync_mode(),
    }
}
