//! Reads spread over the members ([`ReadPreference::Any`], [`ReadPreference::Nearest`]): the
//! members are discovered from the cluster, failed ones are skipped for a while, and a read that a
//! member could not serve is tried on the next (a read changes nothing, so that is always safe).

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;

use crate::client::{Client, check, transport_error};
use crate::connection_pool::SendError;
use crate::error::{ClientError, Result};

/// How often the member list (and, for `nearest`, the round trips) is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// How long a member that could not be connected to is skipped.
const SKIP_FAILED_FOR: Duration = Duration::from_secs(2);
/// Weight of a new round-trip sample in the moving average.
const RTT_WEIGHT: f64 = 0.2;

/// Where a [`Client`] sends reads (gets and scans). Writes always go to the leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadPreference {
    /// To the node the client talks to (the first endpoint that answers), which serves the read
    /// itself (a follower by read index) or forwards it to the leader. The default.
    #[default]
    Sticky,
    /// To the leader once known (else the node the client talks to, which forwards or serves).
    Leader,
    /// Spread over every member that can serve the read, learners included: linearizable reads
    /// by read index on followers and learners, stale reads (within `max_lag` if given) from
    /// their own state.
    Any,
    /// To the member with the lowest measured round trip; the others when it fails.
    Nearest,
}

impl FromStr for ReadPreference {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "sticky" => Ok(ReadPreference::Sticky),
            "leader" => Ok(ReadPreference::Leader),
            "any" => Ok(ReadPreference::Any),
            "nearest" => Ok(ReadPreference::Nearest),
            other => Err(format!("unknown read preference {other:?}; expected sticky, leader, any or nearest")),
        }
    }
}

impl std::fmt::Display for ReadPreference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadPreference::Sticky => "sticky",
            ReadPreference::Leader => "leader",
            ReadPreference::Any => "any",
            ReadPreference::Nearest => "nearest",
        })
    }
}

/// One member reads may go to.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port`.
    authority: String,
    /// Skipped until then, after a failure.
    skip_until: Option<Instant>,
    /// Moving average of the round trip of a status request, when measured (`nearest`).
    rtt: Option<Duration>,
    /// Reads it served.
    served: u64,
}

/// The members reads are spread over.
#[derive(Debug, Default)]
pub(crate) struct ReadTargets {
    state: Mutex<TargetsState>,
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct TargetsState {
    targets: Vec<Target>,
    refreshed: Option<Instant>,
    /// For `nearest`: the member chosen last, kept until another is clearly nearer.
    nearest: Option<String>,
}

/// For `nearest`: a member is left for another only when that one's round trip is below this
/// fraction of its own (minus [`NEAREST_MARGIN`]), so that near-equal members do not alternate.
const NEAREST_SWITCH: f64 = 0.7;
const NEAREST_MARGIN: Duration = Duration::from_micros(100);

impl ReadTargets {
    /// The members (`host:port`) in the order in which to try them for one read.
    fn order(&self, preference: ReadPreference) -> Vec<String> {
        let mut state = self.state.lock().expect("read targets lock");
        let n = state.targets.len();
        let now = Instant::now();
        let up = |t: &Target| t.skip_until.is_none_or(|until| until <= now);
        let mut order: Vec<usize> = match preference {
            ReadPreference::Nearest => {
                let mut by_rtt: Vec<usize> = (0..n).collect();
                by_rtt.sort_by_key(|i| state.targets[*i].rtt.unwrap_or(Duration::MAX));
                let kept = state.nearest.as_ref().and_then(|a| state.targets.iter().position(|t| t.authority == *a));
                if let (Some(kept), Some(&best)) = (kept, by_rtt.first()) {
                    let (k, b) = (&state.targets[kept], &state.targets[best]);
                    let clearly_nearer = match (k.rtt, b.rtt) {
                        (Some(k), Some(b)) => b + NEAREST_MARGIN < k.mul_f64(NEAREST_SWITCH),
                        _ => false,
                    };
                    if up(k) && !clearly_nearer {
                        by_rtt.retain(|i| *i != kept);
                        by_rtt.insert(0, kept);
                    }
                }
                state.nearest = by_rtt.first().map(|i| state.targets[*i].authority.clone());
                by_rtt
            }
            _ => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| (start + i) % n.max(1)).collect()
            }
        };
        // Members that failed lately go last, in case every other fails too.
        order.sort_by_key(|i| state.targets[*i].skip_until.is_some_and(|until| until > now));
        order.into_iter().map(|i| state.targets[i].authority.clone()).collect()
    }

    fn update(&self, authority: &str, f: impl FnOnce(&mut Target)) {
        let mut state = self.state.lock().expect("read targets lock");
        if let Some(t) = state.targets.iter_mut().find(|t| t.authority == authority) {
            f(t);
        }
    }

    /// Whether to look the leader up now (at most once per refresh period).
    pub(crate) fn claim_leader_lookup(&self) -> bool {
        let mut state = self.state.lock().expect("read targets lock");
        if state.refreshed.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return false;
        }
        state.refreshed = Some(Instant::now());
        true
    }

    fn needs_refresh(&self) -> bool {
        let state = self.state.lock().expect("read targets lock");
        state.refreshed.is_none_or(|at| at.elapsed() >= REFRESH_EVERY)
    }

    /// Replaces the members by `authorities`, keeping what is known of those that stay.
    fn replace(&self, authorities: Vec<String>) {
        let mut state = self.state.lock().expect("read targets lock");
        let old = std::mem::take(&mut state.targets);
        state.targets = authorities
            .into_iter()
            .map(|authority| {
                old.iter().find(|t| t.authority == authority).cloned().unwrap_or(Target {
                    authority,
                    skip_until: None,
                    rtt: None,
                    served: 0,
                })
            })
            .collect();
        state.refreshed = Some(Instant::now());
    }
}

fn sample(t: &mut Target, rtt: Duration) {
    t.rtt = Some(match t.rtt {
        None => rtt,
        Some(avg) => avg.mul_f64(1.0 - RTT_WEIGHT) + rtt.mul_f64(RTT_WEIGHT),
    });
}

/// Errors of a read that the member did nothing about and another member may serve.
fn another_may_serve(e: &ClientError) -> bool {
    match e {
        ClientError::Api { code, .. } => {
            matches!(code.as_str(), "node_stopping" | "not_a_member" | "too_stale" | "unavailable" | "no_leader")
        }
        ClientError::Unreachable { .. } | ClientError::NoAnswer { .. } => true,
        _ => false,
    }
}

impl Client {
    /// With `any` or `nearest`: how many reads each member (`host:port`) served so far, and
    /// the measured round trip to it.
    pub fn read_distribution(&self) -> Vec<(String, u64, Option<Duration>)> {
        let state = self.read_targets.state.lock().expect("read targets lock");
        state.targets.iter().map(|t| (t.authority.clone(), t.served, t.rtt)).collect()
    }

    /// Refreshes the members reads are spread over: every member's address, from the cluster's
    /// member list (the configured endpoints until that answers), and for `nearest` a round trip
    /// to each.
    async fn refresh_read_targets(&self) {
        let targets = &self.read_targets;
        match self.members().await {
            Ok(members) if !members.members.is_empty() => {
                targets.replace(members.members.into_iter().map(|m| m.addr).collect());
            }
            _ => targets.replace(self.authorities.to_vec()),
        }
        if self.read_preference == ReadPreference::Nearest {
            for authority in targets.order(ReadPreference::Any) {
                let started = Instant::now();
                if let Ok(Ok(_)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    self.pool.send(&authority, Method::GET, "/v1/status", false, Bytes::new(), &[]),
                )
                .await
                {
                    targets.update(&authority, |t| sample(t, started.elapsed()));
                }
            }
        }
    }

    /// A read (`GET path`) spread over the members: the body of the first member that serves it.
    pub(crate) async fn spread_read(&self, path: &str) -> Result<Bytes> {
        if self.read_targets.needs_refresh() {
            self.refresh_read_targets().await;
        }
        let mut last: Option<ClientError> = None;
        for authority in self.read_targets.order(self.read_preference) {
            let answer = match self.request(&authority, Method::GET, path, false, Bytes::new(), &[]).await {
                Ok(answer) => answer,
                Err(e) => {
                    if matches!(e, SendError::Connect(_)) {
                        self.read_targets.update(&authority, |t| t.skip_until = Some(Instant::now() + SKIP_FAILED_FOR));
                    }
                    last = Some(transport_error(&authority, e));
                    continue;
                }
            };
            // The round trip is measured by the refresh's status probes only: a read's own time
            // includes the serving node's work (a read-index round on a follower).
            self.read_targets.update(&authority, |t| t.skip_until = None);
            match check(answer) {
                Ok(body) => {
                    self.read_targets.update(&authority, |t| t.served += 1);
                    return Ok(body);
                }
                Err(e) if another_may_serve(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        // The member list may be out of date: look again next time.
        self.read_targets.state.lock().expect("read targets lock").refreshed = None;
        Err(last.unwrap_or_else(|| ClientError::Config("no member to read from".into())))
    }
}
