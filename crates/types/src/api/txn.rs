//! The JSON bodies of `POST /v1/txn`.
//!
//! ```json
//! {"compare": [{"key": "a", "target": "version", "op": "=", "value": 0}],
//!  "success": [{"put": {"key": "a", "value": "1"}}, {"get": {"key": "b"}}],
//!  "failure": [{"get": {"key": "a"}}]}
//! ```

use serde::{Deserialize, Serialize};

use crate::api::key_value::KeyValue;

/// A transaction as the API takes it; the node checks it and turns it into a [`crate::Txn`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// The conditions, all of which must hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<TxnCompare>,
    /// Operations run when every condition holds.
    #[serde(default)]
    pub success: Vec<TxnRequestOp>,
    /// Operations run otherwise.
    #[serde(default)]
    pub failure: Vec<TxnRequestOp>,
}

/// One condition: `key`'s `target` `op` `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnCompare {
    /// The key.
    pub key: String,
    /// `value`, `version`, `create_revision`, `mod_revision` or `exists`.
    pub target: String,
    /// `=`, `!=`, `<` or `>` (`exists` takes `=` and `!=`).
    pub op: String,
    /// A string for `value`, a whole number for the revisions and `version`, a boolean for
    /// `exists`.
    #[serde(default)]
    pub value: serde_json::Value,
    /// For `value`: the bytes to compare with, base64, instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// One operation, written `{"put": {...}}`, `{"delete": {...}}`, `{"delete_prefix": {...}}` or
/// `{"get": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnRequestOp {
    /// Set a key.
    Put(TxnPut),
    /// Remove a key.
    Delete(TxnKey),
    /// Remove every key under a prefix.
    DeletePrefix(TxnPrefix),
    /// Read a key.
    Get(TxnKey),
}

/// The body of a `put` operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnPut {
    /// The key.
    pub key: String,
    /// The value, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value's bytes, base64, instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// A lease to attach the key to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

/// The body of a `delete` or `get` operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnKey {
    /// The key.
    pub key: String,
}

/// The body of a `delete_prefix` operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnPrefix {
    /// The prefix (not empty).
    pub prefix: String,
}

impl TxnRequest {
    /// A transaction with no conditions and no operations, to build on.
    pub fn new() -> TxnRequest {
        TxnRequest::default()
    }

    /// Adds the condition `key`'s `target` `op` `value`.
    pub fn when(mut self, key: &str, target: &str, op: &str, value: impl Into<serde_json::Value>) -> TxnRequest {
        self.compare.push(TxnCompare {
            key: key.into(),
            target: target.into(),
            op: op.into(),
            value: value.into(),
            value_base64: None,
        });
        self
    }

    /// Adds `op` to the success branch.
    pub fn then(mut self, op: TxnRequestOp) -> TxnRequest {
        self.success.push(op);
        self
    }

    /// Adds `op` to the failure branch.
    pub fn otherwise(mut self, op: TxnRequestOp) -> TxnRequest {
        self.failure.push(op);
        self
    }
}

impl TxnRequestOp {
    /// `put key = value` (text).
    pub fn put(key: &str, value: &str) -> TxnRequestOp {
        TxnRequestOp::Put(TxnPut { key: key.into(), value: Some(value.into()), ..TxnPut::default() })
    }

    /// `put key = value` attached to `lease`.
    pub fn put_with_lease(key: &str, value: &str, lease: u64) -> TxnRequestOp {
        TxnRequestOp::Put(TxnPut { key: key.into(), value: Some(value.into()), value_base64: None, lease: Some(lease) })
    }

    /// `delete key`.
    pub fn delete(key: &str) -> TxnRequestOp {
        TxnRequestOp::Delete(TxnKey { key: key.into() })
    }

    /// `delete every key under prefix`.
    pub fn delete_prefix(prefix: &str) -> TxnRequestOp {
        TxnRequestOp::DeletePrefix(TxnPrefix { prefix: prefix.into() })
    }

    /// `get key`.
    pub fn get(key: &str) -> TxnRequestOp {
        TxnRequestOp::Get(TxnKey { key: key.into() })
    }
}

/// Response to `POST /v1/txn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every condition held (so `success` ran, else `failure`).
    pub succeeded: bool,
    /// The cluster revision after the transaction: raised by one if it changed anything.
    pub revision: u64,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<TxnResult>,
}

/// What one operation did: `{"put": {}}`, `{"delete": {"deleted": N}}` or `{"get": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnResult {
    /// A put.
    Put {},
    /// A delete or delete-prefix: keys removed.
    Delete {
        /// How many.
        deleted: u64,
    },
    /// A get.
    Get(TxnGet),
}

/// What a `get` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnGet {
    /// The key.
    pub key: String,
    /// The value and revisions; absent when the key does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KeyValue>,
}
