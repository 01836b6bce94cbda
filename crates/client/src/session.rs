//! Exactly-once writes: the client's session, and the retries it makes safe.
//!
//! By default a [`Client`] registers a session with the cluster before its first write
//! (`POST /v1/sessions`) and stamps every key-value and lease write with the session id and the
//! next sequence number. When the outcome of a write is unknown (a timeout, a lost connection,
//! a stopping node, a leader change) it sends the same write again, with the same sequence
//! number, to whichever node answers, until the write's retry deadline: the cluster applies it
//! at most once and answers a retry with the first result, revision included. So the caller
//! sees `outcome_unknown` only when the deadline passes. Each write also tells the cluster the
//! lowest sequence number still waiting for an answer, so the cluster forgets the results the
//! client will never ask for again.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use raftkv_types::api::{SessionRequest, SessionResponse};

use crate::client::{Client, Payload, encode};
use crate::error::{ClientError, Result};

/// The headers of a session write (as `raftkv_network::dedup` names them).
const SESSION_HEADER: &str = "x-raftkv-session";
const SEQ_HEADER: &str = "x-raftkv-seq";
const ACK_BELOW_HEADER: &str = "x-raftkv-ack-below";
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// By default, how long a write whose outcome is unknown is retried.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// By default, how long the cluster keeps a session after its last write: 10 minutes.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(600);

/// How the client deduplicates its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Whether writes go through a session (by default, yes).
    pub enabled: bool,
    /// The session's time to live after each write.
    pub ttl: Duration,
    /// How long a write whose outcome is unknown is retried before `outcome_unknown` is given
    /// to the caller.
    pub retry_deadline: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { enabled: true, ttl: DEFAULT_SESSION_TTL, retry_deadline: DEFAULT_RETRY_DEADLINE }
    }
}

/// The client's session: its id once registered, the next sequence number, and the writes still
/// waiting for an answer.
#[derive(Debug, Default)]
pub(crate) struct ClientSession {
    state: Mutex<SessionState>,
    /// Held while registering, so that concurrent first writes register one session.
    registering: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct SessionState {
    id: Option<String>,
    next_seq: u64,
    /// Sequence numbers sent and not yet answered.
    outstanding: BTreeSet<u64>,
}

/// One write's place in the session, released when the write is answered (or given up).
struct Slot<'a> {
    session: &'a ClientSession,
    id: String,
    seq: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.session.state.lock().expect("session lock poisoned");
        if state.id.as_deref() == Some(self.id.as_str()) {
            state.outstanding.remove(&self.seq);
        }
    }
}

impl Slot<'_> {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let state = self.session.state.lock().expect("session lock poisoned");
        let ack_below = state.outstanding.first().copied().unwrap_or(self.seq).min(self.seq);
        vec![
            (SESSION_HEADER, self.id.clone()),
            (SEQ_HEADER, self.seq.to_string()),
            (ACK_BELOW_HEADER, ack_below.to_string()),
        ]
    }
}

impl ClientSession {
    /// Takes the next sequence number of session `id`, if that is still the session.
    fn take_seq(&self, id: &str) -> Option<Slot<'_>> {
        let mut state = self.state.lock().expect("session lock poisoned");
        if state.id.as_deref() != Some(id) {
            return None;
        }
        state.next_seq += 1;
        let seq = state.next_seq;
        state.outstanding.insert(seq);
        Some(Slot { session: self, id: id.to_string(), seq })
    }

    fn current(&self) -> Option<String> {
        self.state.lock().expect("session lock poisoned").id.clone()
    }

    /// Forgets session `id` (it expired), unless another one has replaced it already.
    fn forget(&self, id: &str) {
        let mut state = self.state.lock().expect("session lock poisoned");
        if state.id.as_deref() == Some(id) {
            *state = SessionState::default();
        }
    }
}

impl Client {
    /// This client with writes deduplicated as `options` say (see [`SessionOptions`]).
    pub fn with_session_options(mut self, options: SessionOptions) -> Client {
        self.session_options = options;
        self.session = std::sync::Arc::default();
        self
    }

    /// A clone of this client for one logical write that scripts and other programs can retry
    /// too: each of its writes carries `Idempotency-Key: key` instead of the session, and is
    /// retried like a session write while its outcome is unknown. The cluster applies a key once
    /// while it keeps it (24 hours by default) and answers a retry with the first answer, even
    /// one sent by another client; the same key on a different request fails with
    /// `idempotency_key_reused` (422).
    pub fn with_idempotency_key(&self, key: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.idempotency_key = Some(key.into().into());
        client
    }

    /// How this client deduplicates its writes.
    pub fn session_options(&self) -> SessionOptions {
        self.session_options
    }

    /// The id of the client's session, once its first write has registered it.
    pub fn session_id(&self) -> Option<String> {
        self.session.current()
    }

    /// Registers a new session (`POST /v1/sessions`) living `ttl` after each write, and
    /// returns its id. A plain request: registering twice only leaves an unused session, which
    /// expires.
    pub async fn register_session(&self, ttl: Duration) -> Result<SessionResponse> {
        let body = encode(&SessionRequest { ttl_ms: Some(ttl.as_millis() as u64) })?;
        self.json(self.send(Method::POST, "/v1/sessions", Payload::json(body)).await?)
    }

    /// The session's id, registering one if there is none.
    async fn session_for_write(&self) -> Result<String> {
        if let Some(id) = self.session.current() {
            return Ok(id);
        }
        let _registering = self.session.registering.lock().await;
        if let Some(id) = self.session.current() {
            return Ok(id);
        }
        let registered = self.register_session(self.session_options.ttl).await?;
        let mut state = self.session.state.lock().expect("session lock poisoned");
        *state = SessionState { id: Some(registered.session_id.clone()), ..SessionState::default() };
        Ok(registered.session_id)
    }

    /// Sends a key-value or lease write: with the client's idempotency key or through the
    /// session when sessions are on, retrying while its outcome is unknown, up to the retry
    /// deadline.
    pub(crate) async fn write(&self, method: Method, path: &str, payload: Payload) -> Result<(usize, Bytes)> {
        if let Some(key) = &self.idempotency_key {
            let headers = [(IDEMPOTENCY_KEY_HEADER, key.to_string())];
            let mut retry = Retry::new(self.session_options.retry_deadline);
            loop {
                match self.send_to(method.clone(), path, &payload, true, &headers).await {
                    Ok(answer) => return Ok(answer),
                    Err(error) => retry.after(error).await?,
                }
            }
        }
        if !self.session_options.enabled {
            return self.send(method, path, payload).await;
        }
        let mut retry = Retry::new(self.session_options.retry_deadline);
        let mut slot = self.next_slot().await?;
        loop {
            let headers = slot.headers();
            let error = match self.send_to(method.clone(), path, &payload, true, &headers).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if error.code() != Some("session_expired") {
                retry.after(error).await?;
                continue;
            }
            self.session.forget(&slot.id);
            if retry.maybe_applied {
                return Err(ClientError::Api {
                    status: 504,
                    code: "outcome_unknown".into(),
                    message: format!(
                        "the session expired while a write whose outcome was unknown was retried; \
                         it may or may not have been applied ({error})"
                    ),
                });
            }
            // Refused without applying: a new session carries the write.
            drop(slot);
            slot = self.next_slot().await?;
        }
    }

    /// The next sequence number of the session, registering one if there is none.
    async fn next_slot(&self) -> Result<Slot<'_>> {
        loop {
            let id = self.session_for_write().await?;
            if let Some(slot) = self.session.take_seq(&id) {
                return Ok(slot);
            }
        }
    }
}

/// The retries of one deduplicated write: until the deadline, with a backoff from 50 ms to 1 s.
struct Retry {
    deadline: Instant,
    backoff: Duration,
    /// Whether an attempt may have applied the write: from then on only the same session and
    /// sequence number (or idempotency key) may carry it, and giving up is `outcome_unknown`.
    maybe_applied: bool,
}

impl Retry {
    fn new(deadline: Duration) -> Retry {
        Retry { deadline: Instant::now() + deadline, backoff: Duration::from_millis(50), maybe_applied: false }
    }

    /// After a failed attempt: waits and returns `Ok` when the write may be sent again, or the
    /// error for the caller.
    async fn after(&mut self, error: ClientError) -> Result<()> {
        self.maybe_applied |= error.may_have_applied();
        if !retryable(&error) || Instant::now() + self.backoff >= self.deadline {
            if self.maybe_applied && !error.may_have_applied() {
                // The last attempt did not apply it, an earlier one may have.
                return Err(ClientError::Api {
                    status: 504,
                    code: "outcome_unknown".into(),
                    message: format!(
                        "a write whose outcome was unknown was retried until its deadline; \
                         it may or may not have been applied (last attempt: {error})"
                    ),
                });
            }
            return Err(error);
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// Whether a session write that failed with `error` may be sent again: its outcome is unknown,
/// or it was refused for a reason that passes (no leader, no endpoint reachable).
fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Api { code, .. } => {
            matches!(code.as_str(), "outcome_unknown" | "unavailable" | "no_leader" | "node_stopping" | "not_a_member")
        }
        ClientError::NoAnswer { .. } | ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => true,
        ClientError::Config(_) => false,
    }
}
