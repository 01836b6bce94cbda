//! The JSON bodies of `/v1/leases`.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/leases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrantRequest {
    /// Time to live after each renewal, ms (1 000 to 604 800 000, a week).
    pub ttl_ms: u64,
    /// The id to give the lease (1 to 2^53 - 1); by default the node picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// Answer to a grant or a keep-alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// The lease id.
    pub id: u64,
    /// Its time to live, ms: it ends this long after this answer unless kept alive again.
    pub ttl_ms: u64,
}

/// Answer to `DELETE /v1/leases/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// The lease id.
    pub id: u64,
    /// The revision after its keys were deleted.
    pub revision: u64,
    /// Keys deleted.
    pub deleted: u64,
}

/// One lease, as `GET /v1/leases` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: u64,
    /// Its time to live after each renewal, ms.
    pub ttl_ms: u64,
    /// About how long until it ends unless kept alive, ms (by the serving node's clock; a new
    /// leader gives every lease at least a full time to live).
    pub remaining_ms: u64,
    /// The keys attached to it.
    pub keys: Vec<String>,
}

/// Answer to `GET /v1/leases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesResponse {
    /// Every lease, by id.
    pub leases: Vec<LeaseInfo>,
}
