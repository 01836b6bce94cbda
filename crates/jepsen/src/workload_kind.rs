//! Which workload a run drives: what its clients do and how its history is checked.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use raftkv_client::{Client, SessionOptions};

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// Read, write and cas on rotating keys; every key checked for linearizability.
    #[default]
    Register,
    /// Increments of one counter (a key's version: each put adds one) through client sessions
    /// that retry writes of unknown outcome; every read must lie between the increments known to
    /// have completed and those invoked: none lost, none applied twice.
    Counter,
    /// Transfers between accounts in transactions; every read of all accounts (a transaction of
    /// gets, or a scan) must show the initial total, no account below zero.
    Bank,
    /// Puts on a few keys while watchers follow them, reconnecting to other nodes; each watcher's
    /// events must be exactly the committed changes of the revisions it covered, in order.
    Watch,
}

impl Workload {
    /// Its name, as `--workload` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Counter => "counter",
            Workload::Bank => "bank",
            Workload::Watch => "watch",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        match s {
            "register" => Ok(Workload::Register),
            "counter" => Ok(Workload::Counter),
            "bank" => Ok(Workload::Bank),
            "watch" => Ok(Workload::Watch),
            other => Err(format!("unknown workload {other:?}: register, counter, bank or watch")),
        }
    }
}

/// A client of `endpoints` (tried in order) whose writes go through a session and are retried,
/// with the same sequence number, while their outcome is unknown, for up to `retry_deadline`.
pub fn session_client(endpoints: Vec<String>, timeout: Duration, retry_deadline: Duration) -> Option<Client> {
    let client = crate::cluster_client::client(endpoints, timeout).ok()?;
    Some(client.with_session_options(SessionOptions { retry_deadline, ..SessionOptions::default() }))
}
