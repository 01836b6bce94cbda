//! [`Node`]'s exactly-once writes: client sessions.

use std::time::Duration;

use raftkv_client::{Client, SessionOptions};
use raftkv_network::KvService;
use raftkv_network::session_routes::{register_command, session_response};
use raftkv_types::api::{Durability, SessionRequest, SessionResponse};

use crate::error::{NodeError, Result};
use crate::node::Node;

impl Node {
    /// A client of the cluster (this node first, then every other member it knows) whose writes
    /// are exactly-once: they go through a client session and are retried, with the same
    /// sequence number, on whichever member answers, while their outcome is unknown (a leader
    /// crash, a partition), within `options.retry_deadline`. A retried write is applied once
    /// and answered with its first result. The client has the whole client API (transactions,
    /// leases, locks); clones share the session.
    pub fn session_client(&self, options: SessionOptions) -> Result<Client> {
        let (_, membership) = self.handle.state_machine.applied();
        let own = self.url();
        let mut endpoints = vec![own.clone()];
        let urls = membership.membership().nodes().map(|(_, node)| self.handle.access.url(&node.addr));
        endpoints.extend(urls.filter(|url| *url != own));
        let client = self
            .handle
            .access
            .client(endpoints, self.handle.limits.forward_timeout)
            .map_err(|source| NodeError::Forward { leader: None, source })?;
        Ok(client.with_session_options(SessionOptions { enabled: true, ..options }))
    }

    /// Registers a client session living `ttl` after each of its writes (`POST /v1/sessions`),
    /// for callers that stamp writes themselves (`x-raftkv-session`, `x-raftkv-seq`).
    pub async fn register_session(&self, ttl: Duration) -> Result<SessionResponse> {
        let request = SessionRequest { ttl_ms: Some(ttl.as_millis() as u64) };
        let command = register_command(&request).map_err(NodeError::Api)?;
        self.with_leader(
            || async {
                let result = self.handle.write(command.clone(), Durability::Majority).await?;
                session_response(result, self.handle.cluster_identity())
            },
            |client| async move { client.register_session(ttl).await },
        )
        .await
    }
}
