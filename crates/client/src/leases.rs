//! Leases on [`Client`].

use hyper::Method;
use raftkv_types::api::{
    LeaseGrantRequest, LeaseInfo, LeaseResponse, LeaseRevokeResponse, LeasesResponse, PutResponse,
};

use crate::client::{Client, Payload, decode, encode, key_path};
use crate::error::Result;

impl Client {
    /// Grants a lease living `ttl_ms` (1 s to a week) after each renewal (`POST /v1/leases`).
    pub async fn grant_lease(&self, ttl_ms: u64) -> Result<LeaseResponse> {
        let body = encode(&LeaseGrantRequest { ttl_ms, id: None })?;
        self.json(self.write(Method::POST, "/v1/leases", Payload::json(body)).await?)
    }

    /// Renews lease `id` for another time to live; `lease_not_found` once it has ended.
    pub async fn keep_alive_lease(&self, id: u64) -> Result<LeaseResponse> {
        self.json(self.write(Method::POST, &format!("/v1/leases/{id}/keepalive"), Payload::Empty).await?)
    }

    /// Ends lease `id` now: its keys are deleted at one revision.
    pub async fn revoke_lease(&self, id: u64) -> Result<LeaseRevokeResponse> {
        self.json(self.write(Method::DELETE, &format!("/v1/leases/{id}"), Payload::Empty).await?)
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<Vec<LeaseInfo>> {
        let body = self.read("/v1/leases").await?;
        Ok(decode::<LeasesResponse>("the cluster", &body)?.leases)
    }

    /// Lease `id`: its time to live, about how long it has left, its keys.
    pub async fn lease(&self, id: u64) -> Result<LeaseInfo> {
        decode("the cluster", &self.read(&format!("/v1/leases/{id}")).await?)
    }

    /// Writes `value` under `key` attached to lease `lease` (`PUT /v1/kv/{key}?lease=ID`).
    pub async fn put_with_lease(&self, key: &str, value: impl Into<Vec<u8>>, lease: u64) -> Result<PutResponse> {
        let path = format!("{}?lease={lease}", key_path(key, ""));
        self.json(self.write(Method::PUT, &path, Payload::raw(value)).await?)
    }
}
