//! `GET /livez` and `GET /readyz`: the node's probe checks as plain text for load balancers and
//! Kubernetes (see [`KvService::probe`]).

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use std::time::Duration;

use crate::api_error::ApiError;
use crate::kv_service::KvService;
use crate::ops_router::OpsState;

/// How long `?sync` waits without `&timeout=` (rqlite's default).
const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `?sync&timeout=` accepted.
const MAX_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) async fn livez<S: KvService>(State(s): State<OpsState<S>>, uri: Uri) -> Response {
    probe_answer(s.api.service.probe(false).await, uri.query())
}

/// `GET /readyz`; with `?sync` (and `&timeout=5s`), first waits until this node has applied what
/// the leader had committed when the request arrived, and adds the outcome as the `sync` check.
pub(crate) async fn readyz<S: KvService>(State(s): State<OpsState<S>>, uri: Uri) -> Response {
    let pairs = url_pairs(uri.query().unwrap_or_default());
    let sync = pairs.iter().any(|(k, _)| k == "sync");
    let timeout = match pairs.iter().find(|(k, _)| k == "timeout") {
        None => DEFAULT_SYNC_TIMEOUT,
        Some((_, v)) => match humantime::parse_duration(v) {
            Ok(t) if t <= MAX_SYNC_TIMEOUT => t,
            Ok(_) => return bad_timeout(v, "longer than 10m"),
            Err(e) => return bad_timeout(v, &e.to_string()),
        },
    };
    let synced = if sync { Some(s.api.service.sync_applied(timeout).await) } else { None };
    let mut checks = s.api.service.probe(true).await;
    if let Some(failure) = synced {
        checks.push(crate::ProbeCheck { name: "sync", failure });
    }
    probe_answer(checks, uri.query())
}

fn bad_timeout(value: &str, why: &str) -> Response {
    ApiError::BadRequest {
        code: "invalid_timeout",
        message: format!("timeout {value:?} is not a duration such as 5s or 500ms: {why}"),
    }
    .into_response()
}

/// `200 ok` when every check not excluded (`?exclude=NAME`, repeatable or comma-separated)
/// passed, `503 failed` otherwise; with `?verbose`, one line per check: `[+] name ok` or
/// `[-] name failed: why`. Plain text, as load balancers and Kubernetes expect.
/// (`sync` and `timeout` are read by [`readyz`].)
fn probe_answer(checks: Vec<crate::ProbeCheck>, query: Option<&str>) -> Response {
    let mut verbose = false;
    let mut excluded: Vec<String> = Vec::new();
    for (key, value) in url_pairs(query.unwrap_or_default()) {
        match key.as_str() {
            "verbose" => verbose = true,
            "exclude" => excluded.extend(value.split(',').map(str::to_string)),
            _ => {}
        }
    }
    let mut body = String::new();
    let mut ok = true;
    for check in checks.iter().filter(|c| !excluded.iter().any(|e| e == c.name)) {
        match &check.failure {
            None => body.push_str(&format!("[+] {} ok\n", check.name)),
            Some(why) => {
                ok = false;
                body.push_str(&format!("[-] {} failed: {why}\n", check.name));
            }
        }
    }
    for name in &excluded {
        body.push_str(&format!("[ ] {name} excluded\n"));
    }
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let verdict = if ok { "ok\n" } else { "failed\n" };
    let text = if verbose { format!("{body}{verdict}") } else { verdict.to_string() };
    (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The `key=value` pairs of a query string (percent-decoded; a bare `key` has an empty value).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}
