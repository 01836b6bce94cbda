//! The bodies of the cluster-operations API: `GET /v1/cluster/health`, `GET|PUT
//! /v1/cluster/autopilot`, `POST /v1/cluster/autopilot/pause`, `GET|PUT /v1/cluster/replication`,
//! `GET /v1/cluster/events`, `POST /v1/cluster/leaving` and `POST
//! /v1/cluster/members/{id}/standby` (the contract is `docs/api.md`).

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::api::MemberRole;
use crate::cluster_state::{AutopilotSettings, ClusterEvent, ReplicationMode};

/// Response to `GET /v1/cluster/health`, from the leader (HTTP 200 when `healthy`, 429 when
/// not, with the same body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// Every voter is reachable and caught up.
    pub healthy: bool,
    /// How many more voters the cluster can lose and still commit: healthy voters minus the
    /// quorum (0 when exactly a quorum is healthy).
    pub failure_tolerance: u64,
    /// The leader answering.
    pub leader: NodeId,
    /// Voters in the configuration.
    pub voters: u64,
    /// Voters needed to commit.
    pub quorum: u64,
    /// Voters reachable and caught up.
    pub healthy_voters: u64,
    /// Standbys reachable, caught up and stable long enough to be promoted.
    pub ready_standbys: u64,
    /// Why the cluster is not healthy, or what limits its redundancy, in words.
    pub problems: Vec<String>,
    /// Every member.
    pub members: Vec<MemberHealth>,
    /// The autopilot's settings and state.
    pub autopilot: AutopilotStatus,
    /// Synchronous replication to zones.
    pub replication: ReplicationStatus,
}

/// One member in [`ClusterHealth`], as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHealth {
    /// The member's id.
    pub id: NodeId,
    /// Its `host:port`.
    pub addr: String,
    /// Its zone, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `leader`, `voter`, `standby` or `learner`.
    pub role: MemberRole,
    /// It acknowledged the leader within the last two election timeouts.
    pub reachable: bool,
    /// Milliseconds since it last acknowledged the leader (`null`: not since this leader was
    /// elected).
    pub last_contact_ms: Option<u64>,
    /// The last log index known to be on its disk.
    pub matched_index: u64,
    /// How many entries it is behind the leader.
    pub lag_entries: u64,
    /// How old the oldest entry it lacks is, in ms.
    pub lag_ms: u64,
    /// Reachable and at most the autopilot's `max_trailing_entries` behind.
    pub healthy: bool,
    /// For how long it has been healthy without a break, in ms (`null` when it is not).
    pub stable_for_ms: Option<u64>,
    /// For a voter: out of contact for at least the autopilot's `dead_after_ms`.
    pub dead: bool,
    /// When the member announced a planned restart: when it expects to be back (ms since the Unix
    /// epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaving_until_ms: Option<u64>,
}

/// The autopilot in [`ClusterHealth`] and in `GET /v1/cluster/autopilot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotStatus {
    /// The replicated settings.
    #[serde(flatten)]
    pub settings: AutopilotSettings,
    /// Paused until then (ms since the Unix epoch), if paused.
    pub paused_until_ms: Option<u64>,
    /// The last action it took (a replacement), if any is still in the event log.
    pub last_action: Option<ClusterEvent>,
}

/// Body of `PUT /v1/cluster/autopilot`: the settings to change; the others keep their values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotUpdate {
    /// Turn the autopilot on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// See [`AutopilotSettings::dead_after_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_after_ms: Option<u64>,
    /// See [`AutopilotSettings::min_stable_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_stable_ms: Option<u64>,
    /// See [`AutopilotSettings::cooldown_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
    /// See [`AutopilotSettings::max_trailing_entries`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trailing_entries: Option<u64>,
}

impl AutopilotUpdate {
    /// `settings` with this update's fields replaced.
    pub fn applied_to(&self, settings: AutopilotSettings) -> AutopilotSettings {
        AutopilotSettings {
            enabled: self.enabled.unwrap_or(settings.enabled),
            dead_after_ms: self.dead_after_ms.unwrap_or(settings.dead_after_ms),
            min_stable_ms: self.min_stable_ms.unwrap_or(settings.min_stable_ms),
            cooldown_ms: self.cooldown_ms.unwrap_or(settings.cooldown_ms),
            max_trailing_entries: self.max_trailing_entries.unwrap_or(settings.max_trailing_entries),
        }
    }
}

/// Body of `POST /v1/cluster/autopilot/pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotPause {
    /// How long to pause for, in ms; 0 resumes.
    pub for_ms: u64,
}

/// Synchronous replication in [`ClusterHealth`], `/v1/status` and `GET /v1/cluster/replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The zones every write waits for (empty: off).
    pub zones: Vec<String>,
    /// How long a write waits for a zone before the cluster goes asynchronous, in ms.
    pub wait_timeout_ms: u64,
    /// `sync` or `async` (`null` when no zones are set).
    pub mode: Option<ReplicationMode>,
}

/// Body of `PUT /v1/cluster/replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationUpdate {
    /// The zones every write waits for; empty turns synchronous replication off. Each must be
    /// the zone of at least one member.
    pub zones: Vec<String>,
    /// How long a write waits for a zone before the cluster goes asynchronous, in ms (default
    /// 5 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout_ms: Option<u64>,
}

/// Response to `GET /v1/cluster/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResponse {
    /// Oldest first: the replicated events, with the leader's recent decisions not to act.
    pub events: Vec<ClusterEvent>,
}

/// Body of `POST /v1/cluster/leaving`: a member announces a planned restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeavingNotice {
    /// The member stopping.
    pub id: NodeId,
    /// How long it expects to be away, in ms; 0: it is back.
    pub for_ms: u64,
}

/// Body of `POST /v1/cluster/members/{id}/standby`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyFlag {
    /// Whether the learner is a standby.
    pub standby: bool,
}
