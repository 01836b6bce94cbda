//! The cluster's operating state, replicated through the log: which learners are standbys, the
//! autopilot's settings, synchronous replication to zones, planned absences, and the log of what
//! was done to the cluster.
//!
//! Every member applies the same [`ClusterChange`]s in log order, so every member (and so every
//! future leader) has the same [`ClusterState`]. Roles and settings are never kept anywhere else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// How many events [`ClusterState::events`] keeps; older ones are dropped.
pub const MAX_EVENTS: usize = 200;

/// The cluster's replicated operating state.
///
/// Stored as JSON in the state machine's metadata and in snapshot and backup headers; every field
/// has a default, so a state written by an older release reads as "nothing set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterState {
    /// Learners eligible for automatic promotion by the autopilot. A member listed here that is a
    /// voter is simply a voter; it is a standby again once it is a learner again.
    pub standbys: BTreeSet<NodeId>,
    /// The autopilot's settings.
    pub autopilot: AutopilotSettings,
    /// While the state-machine clock is below this (ms since the Unix epoch), the autopilot takes
    /// no action. 0: not paused.
    pub autopilot_paused_until_ms: u64,
    /// Members that announced a planned absence (a restart), with the time they expect to be back
    /// by (ms since the Unix epoch): the autopilot does not replace them before it.
    pub leaving: BTreeMap<NodeId, u64>,
    /// Synchronous replication to zones.
    pub sync: SyncReplication,
    /// Whether writes currently wait for the sync zones. Meaningful only when `sync.zones` is not
    /// empty.
    pub replication_mode: ReplicationMode,
    /// What was done to the cluster, oldest first (at most [`MAX_EVENTS`]).
    pub events: VecDeque<ClusterEvent>,
}

impl ClusterState {
    /// Whether writes wait for the sync zones now: zones are set and the mode is synchronous.
    pub fn waits_for_zones(&self) -> bool {
        self.sync_mode() == Some(ReplicationMode::Sync)
    }

    /// The replication mode to the sync zones; `None` when no zones are set (the mode then means
    /// nothing).
    pub fn sync_mode(&self) -> Option<ReplicationMode> {
        (!self.sync.zones.is_empty()).then_some(self.replication_mode)
    }

    /// Applies `change`, made by the entry at `log_index` when the state-machine clock read
    /// `now_ms`, and records it as an event. Deterministic: every replica reaches the same state.
    pub fn apply(&mut self, change: ClusterChange, log_index: u64, now_ms: u64) {
        let (kind, message) = match change {
            ClusterChange::SetStandby { id, standby } => {
                if standby {
                    self.standbys.insert(id);
                    ("standby_added", format!("node {id} is a standby"))
                } else {
                    self.standbys.remove(&id);
                    ("standby_removed", format!("node {id} is no longer a standby"))
                }
            }
            ClusterChange::SetAutopilot(settings) => {
                let message = format!("autopilot settings: {settings}");
                self.autopilot = settings;
                ("autopilot_settings", message)
            }
            ClusterChange::PauseAutopilot { until_ms } => {
                self.autopilot_paused_until_ms = until_ms;
                if until_ms == 0 {
                    ("autopilot_resumed", "autopilot resumed".to_string())
                } else {
                    let secs = until_ms.saturating_sub(now_ms) / 1000;
                    ("autopilot_paused", format!("autopilot paused for {secs} s"))
                }
            }
            ClusterChange::Leaving { id, until_ms } => {
                if until_ms == 0 {
                    self.leaving.remove(&id);
                    ("member_returned", format!("node {id} is back"))
                } else {
                    self.leaving.insert(id, until_ms);
                    let secs = until_ms.saturating_sub(now_ms) / 1000;
                    ("member_leaving", format!("node {id} is stopping for a restart; expected back within {secs} s"))
                }
            }
            ClusterChange::SetSyncReplication(sync) => {
                let message = if sync.zones.is_empty() {
                    "synchronous replication to zones turned off".to_string()
                } else {
                    format!(
                        "writes wait for zones {:?} (asynchronous after {} ms without one)",
                        sync.zones, sync.wait_timeout_ms
                    )
                };
                self.sync = sync;
                // A new setting starts synchronous: writes wait for the zones until one times out.
                self.replication_mode = ReplicationMode::Sync;
                ("sync_zones", message)
            }
            ClusterChange::SetReplicationMode { mode, reason } => {
                self.replication_mode = mode;
                (mode.event_kind(), format!("replication to zones {:?} is now {mode}: {reason}", self.sync.zones))
            }
            ClusterChange::Replaced { dead, standby, reason } => {
                // The replaced voter stays a learner; flagged as a standby, it is eligible again
                // once it is back and healthy.
                self.standbys.insert(dead);
                self.leaving.remove(&dead);
                ("voter_replaced", format!("voter {dead} replaced by standby {standby}: {reason}"))
            }
        };
        self.record(ClusterEvent { at_ms: now_ms, log_index, kind: kind.to_string(), message });
    }

    fn record(&mut self, event: ClusterEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// A change to the [`ClusterState`], proposed through the log as
/// [`crate::Command::Cluster`].
///
/// Encoded with bincode in log entries: fields are never skipped, and new variants go last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterChange {
    /// Flags learner `id` as a standby, or clears the flag.
    SetStandby {
        /// The member.
        id: NodeId,
        /// Whether it is a standby.
        standby: bool,
    },
    /// Replaces the autopilot's settings.
    SetAutopilot(AutopilotSettings),
    /// Pauses the autopilot until the state-machine clock reaches `until_ms`; 0 resumes it.
    PauseAutopilot {
        /// End of the pause, ms since the Unix epoch.
        until_ms: u64,
    },
    /// Member `id` is stopping for a planned restart and expects to be back by `until_ms`; 0: it
    /// is back.
    Leaving {
        /// The member.
        id: NodeId,
        /// When it expects to be back, ms since the Unix epoch.
        until_ms: u64,
    },
    /// Sets synchronous replication to zones (no zones: off).
    SetSyncReplication(SyncReplication),
    /// Switches between synchronous and asynchronous replication to the sync zones.
    SetReplicationMode {
        /// The new mode.
        mode: ReplicationMode,
        /// Why, for the event log.
        reason: String,
    },
    /// Records that the autopilot replaced dead voter `dead` by standby `standby` (the membership
    /// change itself is the entry before), and makes `dead` a standby.
    Replaced {
        /// The voter that was replaced; it is a learner now.
        dead: NodeId,
        /// The standby that took its place as a voter.
        standby: NodeId,
        /// What the autopilot saw.
        reason: String,
    },
}

impl fmt::Display for ClusterChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterChange::SetStandby { id, standby } => write!(f, "set-standby({id}, {standby})"),
            ClusterChange::SetAutopilot(s) => write!(f, "set-autopilot({s})"),
            ClusterChange::PauseAutopilot { until_ms } => write!(f, "pause-autopilot(until {until_ms})"),
            ClusterChange::Leaving { id, until_ms } => write!(f, "leaving({id}, until {until_ms})"),
            ClusterChange::SetSyncReplication(s) => write!(f, "set-sync-zones({:?})", s.zones),
            ClusterChange::SetReplicationMode { mode, .. } => write!(f, "replication-mode({mode})"),
            ClusterChange::Replaced { dead, standby, .. } => write!(f, "replaced({dead} by {standby})"),
        }
    }
}

/// The autopilot's settings (`GET|PUT /v1/cluster/autopilot`).
///
/// Encoded with bincode in log entries: fields are never skipped, and every field is always
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotSettings {
    /// Whether the autopilot replaces dead voters by standbys. Off by default.
    pub enabled: bool,
    /// How long a voter must have acknowledged nothing to count as dead, in ms. 60 000 by
    /// default; at least three election timeouts.
    pub dead_after_ms: u64,
    /// How long a standby must have been reachable and caught up before it may be promoted, in
    /// ms. 10 000 by default.
    pub min_stable_ms: u64,
    /// The least time between two actions, in ms. 30 000 by default.
    pub cooldown_ms: u64,
    /// How many entries behind the leader a standby may be and still count as caught up. 1 000
    /// by default.
    pub max_trailing_entries: u64,
}

impl Default for AutopilotSettings {
    fn default() -> Self {
        AutopilotSettings {
            enabled: false,
            dead_after_ms: 60_000,
            min_stable_ms: 10_000,
            cooldown_ms: 30_000,
            max_trailing_entries: 1_000,
        }
    }
}

impl fmt::Display for AutopilotSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enabled={} dead_after={}ms min_stable={}ms cooldown={}ms max_trailing_entries={}",
            self.enabled, self.dead_after_ms, self.min_stable_ms, self.cooldown_ms, self.max_trailing_entries
        )
    }
}

/// Synchronous replication to zones: every write also waits until at least one member of each
/// zone has it on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReplication {
    /// The zones every write waits for (none: off).
    pub zones: Vec<String>,
    /// How long a write waits for a zone before the cluster switches to asynchronous replication,
    /// in ms. 5 000 by default.
    pub wait_timeout_ms: u64,
}

impl Default for SyncReplication {
    fn default() -> Self {
        SyncReplication { zones: Vec::new(), wait_timeout_ms: 5_000 }
    }
}

/// Whether writes wait for the sync zones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Every write waits for a member of each sync zone: a promoted zone has every acknowledged
    /// write (recovery point zero).
    #[default]
    Sync,
    /// A sync zone did not confirm in time: writes are acknowledged on the majority alone until
    /// the zone has caught up.
    Async,
}

impl ReplicationMode {
    fn event_kind(self) -> &'static str {
        match self {
            ReplicationMode::Sync => "replication_sync",
            ReplicationMode::Async => "replication_async",
        }
    }
}

impl fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicationMode::Sync => "sync",
            ReplicationMode::Async => "async",
        })
    }
}

/// One entry of the cluster's event log: something done to the cluster, or (kept by the leader
/// only, not replicated) a decision of the autopilot not to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// When, ms since the Unix epoch (the state-machine clock for replicated events, the leader's
    /// clock for decisions).
    pub at_ms: u64,
    /// The log index of the entry that made the change (0 for a decision not to act).
    pub log_index: u64,
    /// What kind of event: `voter_replaced`, `standby_added`, `autopilot_paused`,
    /// `replication_async`, `skipped`, ...
    pub kind: String,
    /// What happened, in words.
    pub message: String,
}
