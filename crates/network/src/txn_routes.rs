//! `POST /v1/txn`: multi-key transactions. The body is checked here (keys, operands, limits) and
//! turned into one [`Command::Txn`], applied by the leader at one revision.

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use raftkv_types::api::{KeyValue, TxnCompare, TxnGet, TxnRequest, TxnRequestOp, TxnResponse, TxnResult};
use raftkv_types::{Command, Compare, CompareOp, CompareTarget, Outcome, Txn, TxnOp, TxnOpResult, TxnOutcome};

use crate::api_error::ApiError;
use crate::api_request::{ApiState, Origin, parsed, read_body};
use crate::authenticator::Principal;
use crate::client_router::{WriteParams, fenced, validate_key, write_params_of};
use crate::kv_service::KvService;

/// Comparisons and operations a transaction may hold in all (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// `POST /v1/txn[?durability=all][&leader_token=T]`.
pub(crate) async fn txn<S: KvService>(
    State(s): State<ApiState<S>>,
    query: Result<Query<WriteParams>, QueryRejection>,
    origin: Origin,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Response {
    let limit = s.service.limits().max_value_bytes;
    let max_bytes = max_txn_bytes(limit);
    // JSON escaping can at most sextuple the bytes.
    let body = parsed!(read_body(body, 6 * max_bytes + 64 * 1024).await);
    let (durability, token) = parsed!(write_params_of(query));
    let request: TxnRequest = parsed!(
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("txn body: {e}")))
    );
    parsed!(crate::auth_gate::check_txn(principal.as_ref().map(|p| &p.0), &request));
    let txn = parsed!(txn_of(request, limit));
    let (req, dedup) = origin.write_with_body(body.clone());
    let write = parsed!(s.dedup_write(&req, dedup, fenced(Command::Txn(txn.clone()), token)));
    s.serve(req, || async {
        let result = s.write(&write, durability).await?;
        Ok(Json(txn_answer(&txn, result)?).into_response())
    })
    .await
}

/// The most bytes of keys and values a transaction may carry: twice the value limit.
pub fn max_txn_bytes(max_value_bytes: usize) -> usize {
    2 * max_value_bytes
}

/// The answer to `txn` applied as `result`: `lease_not_found` when a put named a lease that does
/// not exist (nothing was written).
pub fn txn_answer(txn: &Txn, result: raftkv_types::CommandResult) -> Result<TxnResponse, ApiError> {
    match result.outcome {
        Outcome::Txn(outcome) => Ok(txn_response(txn, outcome, result.revision)),
        Outcome::Lease(raftkv_types::LeaseOutcome::NotFound { id }) => Err(ApiError::LeaseNotFound(id)),
        other => Err(ApiError::Internal(format!("transaction applied with outcome {other:?}"))),
    }
}

/// The answer to `txn` whose outcome was `outcome`, at `revision`.
pub fn txn_response(txn: &Txn, outcome: TxnOutcome, revision: u64) -> TxnResponse {
    let branch = if outcome.succeeded { &txn.success } else { &txn.failure };
    let results = branch
        .iter()
        .zip(outcome.results)
        .map(|(op, result)| match result {
            TxnOpResult::Put => TxnResult::Put {},
            TxnOpResult::Delete { deleted } => TxnResult::Delete { deleted },
            TxnOpResult::Get { found } => TxnResult::Get(TxnGet {
                key: op.key().to_string(),
                kv: found.map(|v| KeyValue::new(op.key().to_string(), v)),
            }),
        })
        .collect();
    TxnResponse { succeeded: outcome.succeeded, revision, results }
}

/// Checks `request` and builds the transaction: every key valid, every operand of its target's
/// type, at most [`MAX_TXN_OPS`] comparisons and operations (400 beyond), values within
/// `max_value_bytes` and everything within [`max_txn_bytes`] (413 beyond), and no key written
/// twice in one branch (a watcher sees each key change at most once per revision).
pub fn txn_of(request: TxnRequest, max_value_bytes: usize) -> Result<Txn, ApiError> {
    let count = request.compare.len() + request.success.len() + request.failure.len();
    if count > MAX_TXN_OPS {
        return Err(ApiError::bad_request(
            "too_many_operations",
            format!("the transaction has {count} comparisons and operations; the limit is {MAX_TXN_OPS}"),
        ));
    }
    let compare = request.compare.into_iter().map(compare_of).collect::<Result<Vec<_>, _>>()?;
    let success = branch_of("success", request.success, max_value_bytes)?;
    let failure = branch_of("failure", request.failure, max_value_bytes)?;
    let txn = Txn { compare, success, failure };
    let max_bytes = max_txn_bytes(max_value_bytes);
    if txn.size() > max_bytes {
        return Err(ApiError::TooLarge {
            code: "txn_too_large",
            message: format!(
                "the transaction carries {} bytes of keys and values; the limit is {max_bytes}",
                txn.size()
            ),
        });
    }
    Ok(txn)
}

fn compare_of(c: TxnCompare) -> Result<Compare, ApiError> {
    validate_key(&c.key)?;
    let op: CompareOp = c.op.parse().map_err(|e: String| ApiError::bad_request("invalid_compare", e))?;
    let number = |what: &str| {
        c.value.as_u64().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_compare",
                format!("comparing {what} of {:?} needs a whole number as value, got {}", c.key, c.value),
            )
        })
    };
    let target = match c.target.as_str() {
        "value" => CompareTarget::Value(match (&c.value, &c.value_base64) {
            (serde_json::Value::String(s), None) => s.clone().into_bytes(),
            (serde_json::Value::Null, Some(b64)) => base64_of("value_base64", b64)?,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_compare",
                    format!("comparing the value of {:?} needs a string value (or value_base64)", c.key),
                ));
            }
        }),
        "version" => CompareTarget::Version(number("the version")?),
        "create_revision" => CompareTarget::CreateRevision(number("the create revision")?),
        "mod_revision" => CompareTarget::ModRevision(number("the mod revision")?),
        "exists" => {
            let Some(exists) = c.value.as_bool() else {
                return Err(ApiError::bad_request(
                    "invalid_compare",
                    format!("comparing whether {:?} exists needs true or false as value", c.key),
                ));
            };
            if !matches!(op, CompareOp::Equal | CompareOp::NotEqual) {
                return Err(ApiError::bad_request("invalid_compare", "exists compares with = or != only"));
            }
            CompareTarget::Exists(exists)
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_compare",
                format!("unknown target {other:?}; expected value, version, create_revision, mod_revision or exists"),
            ));
        }
    };
    Ok(Compare { key: c.key, target, op })
}

fn branch_of(name: &str, ops: Vec<TxnRequestOp>, max_value_bytes: usize) -> Result<Vec<TxnOp>, ApiError> {
    let mut written: HashSet<String> = HashSet::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let op = match op {
            TxnRequestOp::Put(put) => {
                validate_key(&put.key)?;
                let value = match (put.value, put.value_base64) {
                    (Some(text), None) => text.into_bytes(),
                    (None, Some(b64)) => base64_of("value_base64", &b64)?,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_operation",
                            format!("put of {:?} needs exactly one of value and value_base64", put.key),
                        ));
                    }
                };
                if value.len() > max_value_bytes {
                    return Err(ApiError::ValueTooLarge { size: value.len(), limit: max_value_bytes });
                }
                TxnOp::Put { key: put.key, value, lease: put.lease }
            }
            TxnRequestOp::Delete(k) => {
                validate_key(&k.key)?;
                TxnOp::Delete { key: k.key }
            }
            TxnRequestOp::Get(k) => {
                validate_key(&k.key)?;
                TxnOp::Get { key: k.key }
            }
            TxnRequestOp::DeletePrefix(p) => {
                if p.prefix.is_empty() {
                    return Err(ApiError::bad_request(
                        "invalid_operation",
                        "delete_prefix needs a prefix that is not empty",
                    ));
                }
                validate_key(&p.prefix)?;
                TxnOp::DeletePrefix { prefix: p.prefix }
            }
        };
        let conflict = match &op {
            TxnOp::Get { .. } => false,
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => {
                written.contains(key) || prefixes.iter().any(|p| key.starts_with(p.as_str()))
            }
            TxnOp::DeletePrefix { prefix } => {
                written.iter().any(|w| w.starts_with(prefix.as_str()))
                    || prefixes.iter().any(|p| p.starts_with(prefix.as_str()) || prefix.starts_with(p.as_str()))
            }
        };
        if conflict {
            return Err(ApiError::bad_request(
                "duplicate_key",
                format!(
                    "{:?} is written more than once in the {name} branch; a transaction changes each key at most once",
                    op.key()
                ),
            ));
        }
        match &op {
            TxnOp::Get { .. } => {}
            TxnOp::DeletePrefix { prefix } => prefixes.push(prefix.clone()),
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => {
                written.insert(key.clone());
            }
        }
        out.push(op);
    }
    Ok(out)
}

fn base64_of(field: &str, b64: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| ApiError::bad_request("invalid_base64", format!("{field} is not valid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Txn, ApiError> {
        txn_of(serde_json::from_str(json).unwrap(), 1024)
    }

    #[test]
    fn builds_comparisons_and_operations() {
        let txn = parse(
            r#"{"compare": [{"key": "a", "target": "version", "op": "=", "value": 0},
                            {"key": "b", "target": "value", "op": "!=", "value": "x"},
                            {"key": "c", "target": "exists", "op": "=", "value": true}],
                "success": [{"put": {"key": "a", "value": "1"}}, {"delete_prefix": {"prefix": "tmp/"}},
                            {"get": {"key": "a"}}],
                "failure": [{"get": {"key": "a"}}]}"#,
        )
        .unwrap();
        assert_eq!(txn.compare[0].target, CompareTarget::Version(0));
        assert_eq!(txn.compare[1].target, CompareTarget::Value(b"x".to_vec()));
        assert_eq!(txn.compare[2].target, CompareTarget::Exists(true));
        assert_eq!(txn.success.len(), 3);
        assert_eq!(txn.failure, vec![TxnOp::Get { key: "a".into() }]);
    }

    #[test]
    fn refuses_bad_input_with_a_code() {
        let code = |json: &str| parse(json).unwrap_err().code();
        assert_eq!(code(r#"{"compare": [{"key": "a", "target": "size", "op": "=", "value": 1}]}"#), "invalid_compare");
        assert_eq!(
            code(r#"{"compare": [{"key": "a", "target": "version", "op": "~", "value": 1}]}"#),
            "invalid_compare"
        );
        assert_eq!(
            code(r#"{"compare": [{"key": "a", "target": "version", "op": "=", "value": "1"}]}"#),
            "invalid_compare"
        );
        assert_eq!(
            code(r#"{"compare": [{"key": "a", "target": "exists", "op": "<", "value": true}]}"#),
            "invalid_compare"
        );
        assert_eq!(code(r#"{"success": [{"put": {"key": "", "value": "1"}}]}"#), "invalid_key");
        assert_eq!(code(r#"{"success": [{"put": {"key": "a"}}]}"#), "invalid_operation");
        assert_eq!(
            code(r#"{"success": [{"put": {"key": "a", "value": "1"}}, {"delete": {"key": "a"}}]}"#),
            "duplicate_key"
        );
        assert_eq!(
            code(r#"{"success": [{"put": {"key": "tmp/a", "value": "1"}}, {"delete_prefix": {"prefix": "tmp/"}}]}"#),
            "duplicate_key"
        );
        assert_eq!(code(r#"{"success": [{"delete_prefix": {"prefix": ""}}]}"#), "invalid_operation");
        let big = "x".repeat(2000);
        assert_eq!(
            code(&format!(r#"{{"success": [{{"put": {{"key": "a", "value": "{big}"}}}}]}}"#)),
            "value_too_large"
        );
        let many: Vec<String> = (0..129).map(|i| format!(r#"{{"get": {{"key": "k{i}"}}}}"#)).collect();
        assert_eq!(code(&format!(r#"{{"success": [{}]}}"#, many.join(","))), "too_many_operations");
        let halves: Vec<String> =
            (0..3).map(|i| format!(r#"{{"put": {{"key": "k{i}", "value": "{}"}}}}"#, "y".repeat(1000))).collect();
        assert_eq!(code(&format!(r#"{{"success": [{}]}}"#, halves.join(","))), "txn_too_large");
        // The same key may be written once in each branch.
        parse(
            r#"{"success": [{"put": {"key": "a", "value": "1"}}], "failure": [{"put": {"key": "a", "value": "2"}}]}"#,
        )
        .unwrap();
    }
}
