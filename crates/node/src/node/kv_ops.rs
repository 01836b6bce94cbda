//! [`Node`]'s key-value operations: the HTTP API's reads and writes as typed calls, run here or
//! on the leader (forwarded to it).

use std::time::Duration;

use raftkv_network::{ApiError, KvService};
use raftkv_storage::ScanPage;
use raftkv_types::api::{CasResponse, Consistency, DeleteResponse, Durability, PutResponse};
use raftkv_types::{Command, Outcome, Versioned};

use crate::error::Result;
use crate::node::Node;

impl Node {
    /// Writes `value` under `key`; returns once a majority has it on disk and this node (or the
    /// leader it forwarded to) has applied it.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put_with(key, value, Durability::Majority).await
    }

    /// Writes `value` under `key` with `durability`. With [`Durability::All`], returns once every
    /// member, learners included, has applied it; if one does not confirm within the write
    /// timeout, fails with `not_confirmed_on_all` (the write is committed on a majority).
    pub async fn put_with(&self, key: &str, value: impl Into<Vec<u8>>, durability: Durability) -> Result<PutResponse> {
        let value = value.into();
        let command = Command::Put { key: key.to_string(), value: value.clone() };
        self.with_leader(
            || async { Ok(PutResponse { revision: self.handle.write(command.clone(), durability).await?.revision }) },
            |client| {
                let value = value.clone();
                async move { client.put_with(key, value, durability).await }
            },
        )
        .await
    }

    /// Reads `key` at `consistency`; `None` when absent.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>> {
        self.with_leader(
            || async { Ok(self.handle.read(key.to_string(), consistency, None).await?.map(|v| v.value)) },
            |client| async move { client.get(key, consistency).await },
        )
        .await
    }

    /// Reads `key` from this node's own state if it is at most `max_lag` behind the leader
    /// (a bounded-staleness read); fails with `too_stale` otherwise. Never contacts the leader.
    pub async fn get_bounded(&self, key: &str, max_lag: Duration) -> Result<Option<Vec<u8>>> {
        Ok(self.handle.read(key.to_string(), Consistency::Stale, Some(max_lag)).await?.map(|v| v.value))
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<DeleteResponse> {
        let command = Command::Delete { key: key.to_string() };
        self.with_leader(
            || async {
                let r = self.handle.write(command.clone(), Durability::Majority).await?;
                Ok(DeleteResponse {
                    revision: r.revision,
                    deleted: matches!(r.outcome, Outcome::Delete { deleted: true }),
                })
            },
            |client| async move { client.delete(key).await },
        )
        .await
    }

    /// Sets `key` to `value` if it holds `expected` (`None`: if absent).
    pub async fn cas(&self, key: &str, expected: Option<&str>, value: &str) -> Result<CasResponse> {
        let command = Command::Cas {
            key: key.to_string(),
            expected: expected.map(|e| e.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
        };
        self.with_leader(
            || async {
                let r = self.handle.write(command.clone(), Durability::Majority).await?;
                let Outcome::Cas { succeeded, current } = r.outcome else {
                    return Err(ApiError::Internal("cas applied without a cas outcome".into()));
                };
                let current = current.map(|c| String::from_utf8_lossy(&c).into_owned());
                Ok(CasResponse { succeeded, current, revision: r.revision })
            },
            |client| async move { client.cas(key, expected, value).await },
        )
        .await
    }

    /// Lists up to `limit` keys under `prefix` after `start_after`, read from this node at
    /// `consistency` (a follower answers `stale` itself and forwards the others).
    pub async fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ScanPage> {
        self.with_leader(
            || self.handle.scan(prefix.to_string(), start_after.map(str::to_string), limit, consistency),
            |client| async move {
                let resp = client.scan(prefix, limit, start_after, consistency).await?;
                let entries =
                    resp.entries.into_iter().map(|e| (e.key.clone(), Versioned::new(e.bytes(), e.meta()))).collect();
                Ok(ScanPage { entries, more: resp.more })
            },
        )
        .await
    }
}
