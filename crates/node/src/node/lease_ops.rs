//! [`Node`]'s lease calls.

use raftkv_network::KvService;
use raftkv_network::lease_routes::{grant_command, lease_response, revoke_response};
use raftkv_types::api::{Durability, LeaseGrantRequest, LeaseInfo, LeaseResponse, LeaseRevokeResponse, PutResponse};
use raftkv_types::{Command, LeaseOutcome, Outcome, Txn, TxnOp};

use crate::error::{NodeError, Result};
use crate::node::Node;

impl Node {
    /// Grants a lease living `ttl_ms` (1 s to a week) after each renewal; the node picks its id.
    /// Keys attached to it ([`Node::put_with_lease`]) are deleted, at one revision, when it is
    /// revoked or runs out.
    pub async fn grant_lease(&self, ttl_ms: u64) -> Result<LeaseResponse> {
        let command = grant_command(&LeaseGrantRequest { ttl_ms, id: None }).map_err(NodeError::Api)?;
        self.with_leader(
            || async { lease_response(self.handle.write(command.clone(), Durability::Majority).await?) },
            |client| async move { client.grant_lease(ttl_ms).await },
        )
        .await
    }

    /// Renews lease `id` for another time to live (`lease_not_found` once it has ended).
    pub async fn keep_alive_lease(&self, id: u64) -> Result<LeaseResponse> {
        self.with_leader(
            || async { lease_response(self.handle.write(Command::LeaseKeepAlive { id }, Durability::Majority).await?) },
            |client| async move { client.keep_alive_lease(id).await },
        )
        .await
    }

    /// Ends lease `id` now, deleting its keys at one revision.
    pub async fn revoke_lease(&self, id: u64) -> Result<LeaseRevokeResponse> {
        self.with_leader(
            || async { revoke_response(self.handle.write(Command::LeaseRevoke { id }, Durability::Majority).await?) },
            |client| async move { client.revoke_lease(id).await },
        )
        .await
    }

    /// Every lease, read at a linearizable point.
    pub async fn leases(&self) -> Result<Vec<LeaseInfo>> {
        Ok(self.handle.leases().await?)
    }

    /// Writes `value` under `key`, attached to lease `lease` (`lease_not_found`, and nothing
    /// written, if it does not exist).
    pub async fn put_with_lease(&self, key: &str, value: impl Into<Vec<u8>>, lease: u64) -> Result<PutResponse> {
        let value = value.into();
        let command = Command::Txn(Txn {
            success: vec![TxnOp::Put { key: key.to_string(), value: value.clone(), lease: Some(lease) }],
            ..Txn::default()
        });
        self.with_leader(
            || async {
                let result = self.handle.write(command.clone(), Durability::Majority).await?;
                match result.outcome {
                    Outcome::Lease(LeaseOutcome::NotFound { id }) => Err(raftkv_network::ApiError::LeaseNotFound(id)),
                    _ => Ok(PutResponse { revision: result.revision }),
                }
            },
            |client| {
                let value = value.clone();
                async move { client.put_with_lease(key, value, lease).await }
            },
        )
        .await
    }
}
