//! Transactions and reads with revisions on [`Client`].

use hyper::Method;
use raftkv_types::api::{Consistency, KeyValue, TxnRequest, TxnResponse};

use crate::client::{Client, Payload, decode, encode, key_path};
use crate::error::{ClientError, Result};

impl Client {
    /// Runs a transaction (`POST /v1/txn`): the success operations if every comparison holds,
    /// the failure ones otherwise, at one revision. The answer says which branch ran and what
    /// its gets read. Build one with [`TxnRequest::new`], `when`, `then` and `otherwise`.
    pub async fn txn(&self, request: &TxnRequest) -> Result<TxnResponse> {
        let body = encode(request)?;
        self.json(self.write(Method::POST, "/v1/txn", Payload::json(body)).await?)
    }

    /// Reads `key` with its revisions (`GET /v1/kv/{key}?meta`); `None` when it is absent.
    pub async fn get_kv(&self, key: &str, consistency: Consistency) -> Result<Option<KeyValue>> {
        let path = format!("{}?meta&consistency={consistency}", key_path(key, ""));
        match self.read(&path).await {
            Ok(body) => Ok(Some(decode("the cluster", &body)?)),
            Err(ClientError::Api { code, .. }) if code == "key_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }
}
