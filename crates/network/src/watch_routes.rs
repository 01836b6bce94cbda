//! `GET /v1/watch` (a stream of changes, as Server-Sent Events or NDJSON) and the long poll of
//! `GET /v1/kv/{key}?wait_revision=N`.
//!
//! A watch is served by the node that receives it, never forwarded: any member can serve one
//! from its own history, and events come in revision order whichever it is. A client that loses
//! its stream resumes on any node from the revision after the last it completed (SSE: the
//! `Last-Event-ID` header, which the server sets only on the last event of a revision, so a
//! revision is never split across a resume).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use raftkv_types::api::{KeyValue, WatchEventBody, WatchEventKind};
use raftkv_types::{WatchEvent, WatchOptions, WatchSelector};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::api_request::{ApiState, parsed, query_of};
use crate::client_router::validate_key;
use crate::kv_service::KvService;

/// Progress interval when the request names none.
pub const DEFAULT_PROGRESS: Duration = Duration::from_secs(10);
/// Longest wait of a long poll, and the default.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(600);
/// The wait of a long poll that names none.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchParams {
    key: Option<String>,
    prefix: Option<String>,
    start_revision: Option<String>,
    prev_kv: Option<String>,
    filter: Option<String>,
    progress: Option<String>,
    require_leader: Option<String>,
}

/// `GET /v1/watch?prefix=P|key=K[&start_revision=N][&prev_kv][&filter=noput,nodelete]
/// [&progress=10s][&require_leader=false]`.
pub(crate) async fn watch<S: KvService>(
    State(s): State<ApiState<S>>,
    query: Result<Query<WatchParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = parsed!(query_of(query));
    let mut options = parsed!(options_of(params));
    if options.start_revision.is_none()
        && let Some(last) = headers.get("last-event-id")
    {
        let last = parsed!(last.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a revision (a whole number)")
        }));
        options.start_revision = Some(last + 1);
    }
    let events = parsed!(s.service.watch(options).await);
    let sse =
        headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    if sse { sse_response(events) } else { ndjson_response(events) }
}

fn options_of(params: WatchParams) -> Result<WatchOptions, ApiError> {
    let selector = match (params.key, params.prefix) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("invalid_query", "give key or prefix, not both"));
        }
        (Some(key), None) => {
            validate_key(&key)?;
            WatchSelector::Key(key)
        }
        (None, prefix) => WatchSelector::Prefix(prefix.unwrap_or_default()),
    };
    let start_revision = params
        .start_revision
        .map(|raw| {
            raw.parse::<u64>().map_err(|_| {
                ApiError::bad_request("invalid_revision", format!("start_revision must be a whole number, got {raw:?}"))
            })
        })
        .transpose()?;
    let (mut no_put, mut no_delete) = (false, false);
    for filter in params.filter.iter().flat_map(|f| f.split(',')).filter(|f| !f.is_empty()) {
        match filter {
            "noput" => no_put = true,
            "nodelete" => no_delete = true,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_filter",
                    format!("unknown filter {other:?}; expected noput or nodelete"),
                ));
            }
        }
    }
    let progress_every = match params.progress.as_deref() {
        None => Some(DEFAULT_PROGRESS),
        Some("0") => None,
        Some(raw) => Some(duration_of("progress", raw, Duration::from_secs(3600))?),
    };
    Ok(WatchOptions {
        selector,
        start_revision,
        prev_kv: flag_of("prev_kv", params.prev_kv.as_deref(), false)?,
        no_put,
        no_delete,
        progress_every,
        require_leader: flag_of("require_leader", params.require_leader.as_deref(), true)?,
    })
}

/// A duration parameter such as `10s` or `500ms`, at most `max`.
pub(crate) fn duration_of(name: &str, raw: &str, max: Duration) -> Result<Duration, ApiError> {
    match humantime::parse_duration(raw) {
        Ok(d) if d <= max && !d.is_zero() => Ok(d),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_duration",
            format!("{name} must be more than 0 and at most {}, got {raw:?}", humantime::format_duration(max)),
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_duration",
            format!("{name} {raw:?} is not a duration such as 10s or 500ms: {e}"),
        )),
    }
}

/// A boolean parameter: absent is `default`; present bare or `true` is true; `false` is false.
pub(crate) fn flag_of(name: &str, raw: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match raw {
        None => Ok(default),
        Some("") | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => {
            Err(ApiError::bad_request("invalid_query", format!("{name} must be true or false, got {other:?}")))
        }
    }
}

/// The JSON form of `event`.
pub fn event_body(event: WatchEvent) -> WatchEventBody {
    match event {
        WatchEvent::Created { revision } => WatchEventBody::at(WatchEventKind::Created, revision),
        WatchEvent::Progress { revision } => WatchEventBody::at(WatchEventKind::Progress, revision),
        WatchEvent::NoLeader { revision } => WatchEventBody {
            error: Some("the serving node lost contact with the leader; resume on another node".into()),
            ..WatchEventBody::at(WatchEventKind::NoLeader, revision)
        },
        WatchEvent::Compacted { compact_revision } => WatchEventBody {
            compact_revision: Some(compact_revision),
            error: Some(format!(
                "the watch history no longer holds the revisions this watch needs; the oldest kept is {compact_revision}"
            )),
            ..WatchEventBody::at(WatchEventKind::Compacted, compact_revision)
        },
        WatchEvent::Ended { reason } => {
            WatchEventBody { error: Some(reason), ..WatchEventBody::at(WatchEventKind::Error, 0) }
        }
        WatchEvent::Put { revision, key, value, prev } => WatchEventBody {
            key: Some(key.clone()),
            prev_kv: prev.map(|p| KeyValue::new(key.clone(), p)),
            kv: Some(KeyValue::new(key, value)),
            ..WatchEventBody::at(WatchEventKind::Put, revision)
        },
        WatchEvent::Delete { revision, key, prev } => WatchEventBody {
            prev_kv: prev.map(|p| KeyValue::new(key.clone(), p)),
            key: Some(key),
            ..WatchEventBody::at(WatchEventKind::Delete, revision)
        },
    }
}

/// Events paired with whether each is the last of its revision. The cursor hands out all the
/// events of a revision at once, so the next one of the same revision is always ready: a peek
/// that is not ready means the revision is complete.
fn with_revision_ends(events: BoxStream<'static, WatchEvent>) -> BoxStream<'static, (WatchEvent, bool)> {
    futures::stream::unfold(Box::pin(events.peekable()), |mut events| async move {
        let event = events.next().await?;
        let is_change = matches!(event, WatchEvent::Put { .. } | WatchEvent::Delete { .. });
        let continues = is_change
            && match events.as_mut().peek().now_or_never() {
                Some(Some(next @ (WatchEvent::Put { .. } | WatchEvent::Delete { .. }))) => {
                    next.revision() == event.revision()
                }
                _ => false,
            };
        Some(((event, !continues), events))
    })
    .boxed()
}

fn sse_response(events: BoxStream<'static, WatchEvent>) -> Response {
    let stream = with_revision_ends(events).map(|(event, ends_revision)| {
        let final_id = matches!(event, WatchEvent::Ended { .. } | WatchEvent::Compacted { .. });
        let body = event_body(event);
        let mut sse = Event::default().event(body.kind.as_str());
        if ends_revision && !final_id {
            sse = sse.id(body.revision.to_string());
        }
        Ok::<_, Infallible>(sse.json_data(&body).unwrap_or_else(|_| Event::default().comment("unencodable event")))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn ndjson_response(events: BoxStream<'static, WatchEvent>) -> Response {
    let stream = events.map(|event| {
        let mut line = serde_json::to_vec(&event_body(event)).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The long poll of a read: waits until `key` changes after `wait_revision` (a put or a delete
/// at a higher revision) or `wait` passes, whichever is first. Returns at once if the history no
/// longer reaches back to `wait_revision` (the caller reads again, as after any wake-up).
pub(crate) async fn wait_for_change<S: KvService>(
    service: &S,
    key: &str,
    wait_revision: u64,
    wait: Duration,
) -> Result<(), ApiError> {
    let options =
        WatchOptions { start_revision: Some(wait_revision + 1), progress_every: None, ..WatchOptions::key(key) };
    let mut events = match service.watch(options).await {
        Ok(events) => events,
        Err(ApiError::Compacted { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Consul's advice: a little jitter, so that many pollers do not all come back at once.
    let jitter = Duration::from_millis(rand::random::<u64>() % (wait.as_millis() as u64 / 16 + 1));
    let deadline = tokio::time::Instant::now() + wait + jitter;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => return Ok(()),
            Ok(Some(WatchEvent::Put { .. } | WatchEvent::Delete { .. })) => return Ok(()),
            Ok(Some(WatchEvent::NoLeader { .. })) => {
                return Err(ApiError::Unavailable(
                    "the serving node lost contact with the leader while waiting; retry on another node".into(),
                ));
            }
            Ok(Some(event)) if event.is_final() => return Ok(()),
            Ok(Some(_)) => {}
        }
    }
}
