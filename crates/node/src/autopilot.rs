//! The autopilot: on the leader, replaces a dead voter by a healthy standby, one joint-consensus
//! change at a time, and never shrinks the voter set.
//!
//! Every node runs the loop; only the leader acts. Its settings live in the replicated
//! [`raftkv_types::ClusterState`], so every future leader has the same ones. What it observed
//! (how long each member has been healthy, when it last acted) is kept in memory and starts over
//! on a new leader, which therefore waits a whole dead period before acting: a leader that has not
//! watched that long cannot tell a dead voter from one it has not heard from yet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{ChangeMembers, ServerState};
use raftkv_types::{AutopilotSettings, ClusterChange, NodeId, ReplicationMode};

use crate::cluster_ops::{Observed, now_ms};
use crate::kv_handle::KvHandle;
use crate::membership::change_in_progress;

/// How often the loop looks at the cluster, at most.
const MAX_TICK: Duration = Duration::from_secs(1);

/// A sync zone member at most this many entries behind counts as caught up again, so that writes
/// can wait for it without stalling.
const SYNC_CAUGHT_UP_ENTRIES: u64 = 16;

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing to do.
    Nothing,
    /// Voter `dead` should be replaced but will not be, for the reason given.
    Skip {
        /// The reason, as a code (`skipped:<code>` in the event log).
        code: &'static str,
        /// The dead voter.
        dead: NodeId,
        /// The reason, in words.
        message: String,
    },
    /// Replace voter `dead` by standby `standby`: the voters become `voters`.
    Replace {
        /// The dead voter.
        dead: NodeId,
        /// The standby to promote.
        standby: NodeId,
        /// The new voter set.
        voters: BTreeSet<NodeId>,
        /// What was seen, for the event log.
        reason: String,
    },
}

/// What the autopilot knows at the start of a round.
#[derive(Debug)]
pub(crate) struct Situation<'a> {
    /// The replicated settings.
    pub settings: AutopilotSettings,
    /// Paused (by `autopilot pause`) until this wall-clock time, ms since the Unix epoch.
    pub paused_until_ms: u64,
    /// The wall clock now, ms since the Unix epoch.
    pub now_ms: u64,
    /// How long this node has led.
    pub led_for: Duration,
    /// A membership change is not committed yet.
    pub change_in_progress: bool,
    /// Time since the last action of this leadership.
    pub since_last_action: Option<Duration>,
    /// Every member, as observed.
    pub members: &'a [Observed],
}

/// Decides what to do. Acts only when all of these hold: enabled; not paused; this node has led
/// for a whole dead period; no membership change is under way; the cooldown has passed; a voter
/// is dead and did not announce a restart it is still within; a standby has been healthy for
/// `min_stable`; and the new voter set, as the old one, has a healthy quorum.
pub(crate) fn decide(s: &Situation<'_>) -> Decision {
    let settings = &s.settings;
    if !settings.enabled {
        return Decision::Nothing;
    }
    let voters: Vec<&Observed> = s.members.iter().filter(|m| m.voter).collect();
    let Some(dead) = voters
        .iter()
        .filter(|v| v.dead && v.leaving_until_ms.is_none_or(|until| until <= s.now_ms))
        .max_by_key(|v| (v.last_contact, std::cmp::Reverse(v.id)))
    else {
        return Decision::Nothing;
    };
    if s.paused_until_ms > s.now_ms {
        let secs = (s.paused_until_ms - s.now_ms).div_ceil(1000);
        return Decision::Skip {
            code: "paused",
            dead: dead.id,
            message: format!("voter {} is dead, but the autopilot is paused for {secs} s more", dead.id),
        };
    }
    let dead_after = Duration::from_millis(settings.dead_after_ms);
    if s.led_for < dead_after {
        return Decision::Skip {
            code: "new_leader",
            dead: dead.id,
            message: format!(
                "voter {} looks dead, but this leader has led for {} ms only; it waits a whole dead period ({} ms) first",
                dead.id,
                s.led_for.as_millis(),
                settings.dead_after_ms
            ),
        };
    }
    if s.change_in_progress {
        return Decision::Skip {
            code: "change_in_progress",
            dead: dead.id,
            message: format!("voter {} is dead; waiting for the membership change under way", dead.id),
        };
    }
    if let Some(since) = s.since_last_action
        && since < Duration::from_millis(settings.cooldown_ms)
    {
        return Decision::Skip {
            code: "cooldown",
            dead: dead.id,
            message: format!(
                "voter {} is dead; the last action was {} ms ago (cooldown {} ms)",
                dead.id,
                since.as_millis(),
                settings.cooldown_ms
            ),
        };
    }
    let min_stable = Duration::from_millis(settings.min_stable_ms);
    let ready: Vec<&Observed> = s.members.iter().filter(|m| m.ready_standby(min_stable)).collect();
    let quorum = voters.len() / 2 + 1;
    let healthy_voters = voters.iter().filter(|v| v.healthy).count();
    if ready.is_empty() {
        let tolerance = healthy_voters.saturating_sub(quorum);
        return Decision::Skip {
            code: "no_standby",
            dead: dead.id,
            message: format!(
                "voter {} is dead and no standby is healthy and stable for {} ms; the cluster can lose {tolerance} more voter(s)",
                dead.id, settings.min_stable_ms
            ),
        };
    }
    // Prefer the dead voter's zone, then the zone with the fewest voters left, then the most
    // caught-up standby.
    let voters_in = |zone: &Option<String>| voters.iter().filter(|v| v.id != dead.id && v.zone == *zone).count();
    let standby = ready
        .iter()
        .min_by_key(|c| (c.zone != dead.zone, voters_in(&c.zone), c.lag_entries, c.id))
        .expect("ready is not empty");
    let next: BTreeSet<NodeId> =
        voters.iter().map(|v| v.id).filter(|id| *id != dead.id).chain(std::iter::once(standby.id)).collect();
    let healthy_next = s.members.iter().filter(|m| next.contains(&m.id) && m.healthy).count();
    if healthy_voters < quorum || healthy_next < next.len() / 2 + 1 {
        return Decision::Skip {
            code: "no_quorum",
            dead: dead.id,
            message: format!(
                "voter {} is dead, but replacing it by {} would not have a healthy quorum ({healthy_voters} of {} voters healthy now, {healthy_next} of {} after)",
                dead.id,
                standby.id,
                voters.len(),
                next.len()
            ),
        };
    }
    let contact = dead
        .last_contact
        .map_or("never since this leader was elected".to_string(), |c| format!("{} ms ago", c.as_millis()));
    Decision::Replace {
        dead: dead.id,
        standby: standby.id,
        voters: next,
        reason: format!(
            "voter {} out of contact for at least {} ms (last contact {contact}); standby {} healthy for {} ms{}",
            dead.id,
            settings.dead_after_ms,
            standby.id,
            standby.stable_for.unwrap_or_default().as_millis(),
            match (&dead.zone, &standby.zone) {
                (Some(a), Some(b)) if a == b => format!(", same zone {a}"),
                _ => String::new(),
            }
        ),
    }
}

impl KvHandle {
    /// Runs the autopilot until the task is aborted.
    pub(crate) async fn run_autopilot(self) {
        loop {
            let settings = self.state_machine.cluster_state().autopilot;
            let tick = Duration::from_millis(settings.dead_after_ms / 10).clamp(Duration::from_millis(200), MAX_TICK);
            tokio::time::sleep(tick).await;
            if let Err(e) = self.autopilot_round().await {
                tracing::warn!(%e, "autopilot round failed");
            }
        }
    }

    /// One round: observe, keep sync replication and planned absences up to date, then decide.
    async fn autopilot_round(&self) -> Result<(), raftkv_network::ApiError> {
        let now = Instant::now();
        let m = self.raft.metrics().borrow_watched().clone();
        let term = (m.state == ServerState::Leader).then_some(m.current_term);
        let Some(led_for) = self.autopilot.leading(term, now) else { return Ok(()) };
        let cluster = self.state_machine.cluster_state();
        let members = self.observe(&m, &cluster, now);

        // Housekeeping that needs no autopilot: a member back from a planned restart, and sync
        // zones that have caught up again.
        let back = members
            .iter()
            .filter(|o| o.leaving_until_ms.is_some())
            .find(|o| self.autopilot.returned(o.id, o.reachable, o.healthy));
        if let Some(back) = back {
            self.change_cluster_state(ClusterChange::Leaving { id: back.id, until_ms: 0 }).await?;
        }
        if cluster.sync_mode() == Some(ReplicationMode::Async) {
            let last = m.last_log_index.unwrap_or(0);
            let caught_up = cluster.sync.zones.iter().all(|zone| {
                members.iter().any(|o| {
                    o.zone.as_deref() == Some(zone) && o.reachable && o.matched + SYNC_CAUGHT_UP_ENTRIES >= last
                })
            });
            if caught_up {
                tracing::info!(zones = ?cluster.sync.zones, "sync zones caught up: back to synchronous replication");
                let reason = "every sync zone has a member caught up".to_string();
                self.change_cluster_state(ClusterChange::SetReplicationMode { mode: ReplicationMode::Sync, reason })
                    .await?;
            }
        }

        let situation = Situation {
            settings: cluster.autopilot,
            paused_until_ms: cluster.autopilot_paused_until_ms,
            now_ms: now_ms(),
            led_for,
            change_in_progress: change_in_progress(&m),
            since_last_action: self.autopilot.since_last_action(now),
            members: &members,
        };
        match decide(&situation) {
            Decision::Nothing => Ok(()),
            Decision::Skip { code, dead, message } => {
                self.autopilot.decided(code, dead, message);
                Ok(())
            }
            Decision::Replace { dead, standby, voters, reason } => {
                self.replace_dead_voter(dead, standby, voters, reason).await
            }
        }
    }

    /// Swaps `dead` for `standby` in one joint-consensus change, keeping `dead` as a learner, and
    /// records it.
    async fn replace_dead_voter(
        &self,
        dead: NodeId,
        standby: NodeId,
        voters: BTreeSet<NodeId>,
        reason: String,
    ) -> Result<(), raftkv_network::ApiError> {
        let Ok(_guard) = self.membership_lock.try_lock() else {
            self.autopilot.decided(
                "change_in_progress",
                dead,
                format!("voter {dead} is dead; an operator's membership change is under way"),
            );
            return Ok(());
        };
        tracing::warn!(dead, standby, %reason, "autopilot: replacing a dead voter by a standby");
        self.autopilot.acted(Instant::now());
        let swapped = tokio::time::timeout(
            self.write_timeout * 2,
            self.raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), true),
        )
        .await;
        match swapped {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.autopilot.decided(
                    "change_failed",
                    dead,
                    format!("replacing voter {dead} by {standby} failed: {e}"),
                );
                return Ok(());
            }
            Err(_) => {
                self.autopilot.decided(
                    "change_failed",
                    dead,
                    format!(
                        "replacing voter {dead} by {standby} was not committed within {:?}",
                        self.write_timeout * 2
                    ),
                );
                return Ok(());
            }
        }
        self.change_cluster_state(ClusterChange::Replaced { dead, standby, reason }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_types::api::MemberRole;

    fn member(id: NodeId, role: MemberRole, zone: Option<&str>) -> Observed {
        let voter = matches!(role, MemberRole::Leader | MemberRole::Voter);
        Observed {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
            zone: zone.map(str::to_string),
            role,
            voter,
            standby: role == MemberRole::Standby,
            reachable: true,
            last_contact: Some(Duration::from_millis(50)),
            matched: 100,
            lag_entries: 0,
            lag_ms: 0,
            healthy: true,
            stable_for: Some(Duration::from_secs(60)),
            dead: false,
            leaving_until_ms: None,
        }
    }

    fn dead(mut m: Observed) -> Observed {
        m.reachable = false;
        m.healthy = false;
        m.dead = true;
        m.stable_for = None;
        m.last_contact = Some(Duration::from_secs(90));
        m
    }

    fn situation(members: &[Observed]) -> Situation<'_> {
        Situation {
            settings: AutopilotSettings { enabled: true, ..AutopilotSettings::default() },
            paused_until_ms: 0,
            now_ms: 1_000_000,
            led_for: Duration::from_secs(600),
            change_in_progress: false,
            since_last_action: None,
            members,
        }
    }

    fn three_voters_and(extra: Vec<Observed>) -> Vec<Observed> {
        let mut members = vec![
            member(1, MemberRole::Leader, Some("a")),
            dead(member(2, MemberRole::Voter, Some("b"))),
            member(3, MemberRole::Voter, Some("c")),
        ];
        members.extend(extra);
        members
    }

    fn skipped(d: Decision) -> &'static str {
        match d {
            Decision::Skip { code, .. } => code,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn replaces_a_dead_voter_by_a_standby_of_its_zone_keeping_the_voter_count() {
        let members = three_voters_and(vec![
            member(4, MemberRole::Standby, Some("c")),
            member(5, MemberRole::Standby, Some("b")),
            member(6, MemberRole::Learner, Some("b")),
        ]);
        match decide(&situation(&members)) {
            Decision::Replace { dead, standby, voters, .. } => {
                assert_eq!((dead, standby), (2, 5));
                assert_eq!(voters, BTreeSet::from([1, 3, 5]));
            }
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    #[test]
    fn does_nothing_while_every_voter_lives_or_when_disabled() {
        let members = vec![
            member(1, MemberRole::Leader, None),
            member(2, MemberRole::Voter, None),
            member(3, MemberRole::Standby, None),
        ];
        assert_eq!(decide(&situation(&members)), Decision::Nothing);
        let members = three_voters_and(vec![member(4, MemberRole::Standby, None)]);
        let mut s = situation(&members);
        s.settings.enabled = false;
        assert_eq!(decide(&s), Decision::Nothing);
    }

    #[test]
    fn never_acts_without_a_healthy_stable_standby() {
        // A plain learner is never promoted; a standby must have been healthy for min_stable.
        let mut young = member(4, MemberRole::Standby, None);
        young.stable_for = Some(Duration::from_secs(1));
        let members = three_voters_and(vec![member(5, MemberRole::Learner, None), young]);
        assert_eq!(skipped(decide(&situation(&members))), "no_standby");
        let mut lagging = member(4, MemberRole::Standby, None);
        lagging.healthy = false;
        let members = three_voters_and(vec![lagging]);
        assert_eq!(skipped(decide(&situation(&members))), "no_standby");
    }

    #[test]
    fn waits_out_new_leaderships_pauses_cooldowns_changes_and_planned_restarts() {
        let members = three_voters_and(vec![member(4, MemberRole::Standby, None)]);
        let mut s = situation(&members);
        s.led_for = Duration::from_secs(59);
        assert_eq!(skipped(decide(&s)), "new_leader");
        let mut s = situation(&members);
        s.paused_until_ms = s.now_ms + 1;
        assert_eq!(skipped(decide(&s)), "paused");
        let mut s = situation(&members);
        s.since_last_action = Some(Duration::from_secs(29));
        assert_eq!(skipped(decide(&s)), "cooldown");
        let mut s = situation(&members);
        s.change_in_progress = true;
        assert_eq!(skipped(decide(&s)), "change_in_progress");

        let mut members = members.clone();
        members[1].leaving_until_ms = Some(1_000_001);
        assert_eq!(decide(&situation(&members)), Decision::Nothing);
        members[1].leaving_until_ms = Some(999_999);
        assert!(matches!(decide(&situation(&members)), Decision::Replace { dead: 2, standby: 4, .. }));
    }

    #[test]
    fn refuses_a_change_without_a_healthy_quorum() {
        // Two of three voters dead: the joint configuration could not commit.
        let members = vec![
            member(1, MemberRole::Leader, None),
            dead(member(2, MemberRole::Voter, None)),
            dead(member(3, MemberRole::Voter, None)),
            member(4, MemberRole::Standby, None),
        ];
        assert_eq!(skipped(decide(&situation(&members))), "no_quorum");
    }

    #[test]
    fn two_dead_voters_of_five_are_replaced_one_per_round_oldest_first() {
        let mut members = vec![
            member(1, MemberRole::Leader, None),
            dead(member(2, MemberRole::Voter, None)),
            dead(member(3, MemberRole::Voter, None)),
            member(4, MemberRole::Voter, None),
            member(5, MemberRole::Voter, None),
            member(6, MemberRole::Standby, None),
            member(7, MemberRole::Standby, None),
        ];
        members[2].last_contact = Some(Duration::from_secs(120));
        let Decision::Replace { dead, voters, .. } = decide(&situation(&members)) else { panic!("no replacement") };
        assert_eq!(dead, 3);
        assert_eq!(voters.len(), 5);
    }
}
