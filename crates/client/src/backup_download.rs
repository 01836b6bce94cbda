//! [`BackupDownload`]: a backup streamed from a node, and [`Client::backup`], which starts one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use raftkv_types::NodeId;
use raftkv_types::api::{BackupConsistency, backup_headers};

use crate::client::{Client, check, transport_error};
use crate::connection_pool::{Answer, SendError};
use crate::error::{ClientError, Result};

impl Client {
    /// Starts downloading a backup (`GET /v1/admin/backup`) from the first endpoint that can be
    /// connected to. With [`BackupConsistency::Linearizable`] the backup holds every write
    /// acknowledged before this call; with `Stale`, the serving node's own applied state.
    ///
    /// There is no overall time limit, only `idle_timeout` between two pieces of the body (a
    /// backup of a large state takes as long as it takes). Memory stays bounded: the body is
    /// handed out piece by piece by [`BackupDownload::chunk`].
    pub async fn backup(&self, consistency: BackupConsistency, idle_timeout: Duration) -> Result<BackupDownload> {
        let path = format!("/v1/admin/backup?consistency={consistency}");
        let mut last = String::new();
        for (idx, endpoint) in self.endpoints.iter().enumerate() {
            let connected =
                tokio::time::timeout(idle_timeout, self.pool.get_streaming(&self.authorities[idx], &path)).await;
            let answer = match connected {
                Err(_) => {
                    let reason = format!("no answer within {idle_timeout:?}");
                    return Err(ClientError::NoAnswer { endpoint: endpoint.clone(), reason });
                }
                Ok(Err(SendError::Connect(e))) => {
                    last = e;
                    continue;
                }
                Ok(Err(e)) => return Err(transport_error(endpoint, e)),
                Ok(Ok(answer)) => answer,
            };
            if !answer.status.is_success() {
                let body = tokio::time::timeout(idle_timeout, answer.body.collect()).await;
                let body = body.ok().and_then(|b| b.ok()).map(|b| b.to_bytes()).unwrap_or_default();
                match check(Answer { status: answer.status, leader: None, body }) {
                    Err(ClientError::Api { code, message, .. })
                        if code == "node_stopping" || code == "not_a_member" =>
                    {
                        last = message;
                        continue;
                    }
                    Err(e) => return Err(e),
                    Ok(_) => unreachable!("check passes only successes"),
                }
            }
            let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let revision = header(backup_headers::REVISION).and_then(|r| r.parse().ok()).ok_or_else(|| {
                ClientError::BadAnswer { endpoint: endpoint.clone(), reason: "backup answer without a revision".into() }
            })?;
            return Ok(BackupDownload {
                endpoint: endpoint.clone(),
                revision,
                node: header(backup_headers::NODE).and_then(|n| n.parse().ok()),
                body: answer.body,
                idle_timeout,
            });
        }
        Err(ClientError::Unreachable { tried: self.endpoints.join(","), last })
    }
}

/// A backup being downloaded (see [`Client::backup`]).
pub struct BackupDownload {
    /// The endpoint serving it.
    pub endpoint: String,
    /// The revision of the state in the backup.
    pub revision: u64,
    /// The id of the node serving it.
    pub node: Option<NodeId>,
    body: hyper::body::Incoming,
    idle_timeout: Duration,
}

impl BackupDownload {
    /// The next piece of the backup file, `None` at its end. Fails when nothing arrives within the
    /// idle timeout or the connection breaks: the backup is then incomplete, and the bytes so far
    /// must be thrown away.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.idle_timeout, self.body.frame()).await {
                Err(_) => {
                    let reason = format!("no data for {:?}; the backup is incomplete", self.idle_timeout);
                    return Err(ClientError::NoAnswer { endpoint: self.endpoint.clone(), reason });
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    let reason = format!("backup interrupted: {e}");
                    return Err(ClientError::NoAnswer { endpoint: self.endpoint.clone(), reason });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
    }
}
