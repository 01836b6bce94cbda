//! One node's probes and metrics as [`Client`] calls: `/livez`, `/readyz` (with `?sync`) and
//! `/metrics`. Each asks the node named, never another one: a probe is about that node.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::client::{Client, authority, endpoint_url, transport_error};
use crate::error::{ClientError, Result};

/// What a node answered to `/livez` or `/readyz?verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The probe passed (HTTP 200).
    pub passed: bool,
    /// One line per check, `[+] name ok` or `[-] name failed: why`, then the verdict.
    pub checks: String,
}

impl ProbeReport {
    /// The failed checks' lines.
    pub fn failures(&self) -> Vec<&str> {
        self.checks.lines().filter(|l| l.starts_with("[-]")).collect()
    }
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/livez`: the process, its storage and its Raft run. Never depends on a leader.
    Live,
    /// `/readyz`: also a member, in contact with a leader, caught up.
    Ready,
    /// `/readyz?sync`: first waits, up to the duration, until the node has applied what the
    /// leader had committed when asked.
    ReadySynced(Duration),
}

impl Client {
    /// Runs `probe` on the node at `endpoint`. A node that answers is a report, passed or not;
    /// one that does not is an error.
    pub async fn probe_of(&self, endpoint: &str, probe: Probe) -> Result<ProbeReport> {
        let endpoint = endpoint_url(endpoint, self.scheme());
        let path = match probe {
            Probe::Live => "/livez?verbose".to_string(),
            Probe::Ready => "/readyz?verbose".to_string(),
            Probe::ReadySynced(wait) => format!("/readyz?verbose&sync&timeout={}ms", wait.as_millis()),
        };
        // The wait happens on the node: give the request that much longer.
        let extra = match probe {
            Probe::ReadySynced(wait) => wait,
            _ => Duration::ZERO,
        };
        let host = authority(&endpoint)?;
        let sent = self.pool.send(&host, Method::GET, &path, false, Bytes::new(), &[]);
        let answer = match tokio::time::timeout(self.timeout + extra, sent).await {
            Ok(answer) => answer.map_err(|e| transport_error(&endpoint, e))?,
            Err(_) => {
                return Err(ClientError::NoAnswer {
                    endpoint,
                    reason: format!("no answer to the probe within {:?}", self.timeout + extra),
                });
            }
        };
        let checks = String::from_utf8_lossy(&answer.body).into_owned();
        match answer.status.as_u16() {
            200 => Ok(ProbeReport { passed: true, checks }),
            503 => Ok(ProbeReport { passed: false, checks }),
            status => Err(ClientError::Api { status, code: "http_error".into(), message: checks }),
        }
    }

    /// The metrics of the node at `endpoint`, in the Prometheus text format.
    pub async fn metrics_of(&self, endpoint: &str) -> Result<String> {
        let (_, body) = self.get_of(endpoint, "/metrics").await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
