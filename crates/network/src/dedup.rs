//! Exactly-once writes over HTTP: the session headers and the `Idempotency-Key` header, turned
//! into the commands the state machine deduplicates, and its answers turned back into errors.
//!
//! A write sent with `x-raftkv-session`, `x-raftkv-seq` (and `x-raftkv-ack-below`) is applied once
//! per sequence number of the session; one sent with `Idempotency-Key` once per key while the key
//! lives (by default 24 hours). A retry gets the first answer, with its revision. See
//! `docs/api.md`, Exactly-once writes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use raftkv_types::session::{MAX_IDEMPOTENCY_KEY_BYTES, SessionOutcome};
use raftkv_types::{ClusterIdentity, Command, CommandResult, Outcome, SessionStamp};
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;

/// The session a write belongs to (see [`SessionId`]).
pub const SESSION_HEADER: &str = "x-raftkv-session";
/// The write's sequence number in its session, from 1.
pub const SEQ_HEADER: &str = "x-raftkv-seq";
/// Every sequence number below this one has been answered: its result may be forgotten.
pub const ACK_BELOW_HEADER: &str = "x-raftkv-ack-below";
/// An opaque key that makes a plain HTTP write idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The headers that [`Dedup`] reads; a forwarded request carries them to the leader.
pub const DEDUP_HEADERS: [&str; 4] = [SESSION_HEADER, SEQ_HEADER, ACK_BELOW_HEADER, IDEMPOTENCY_KEY_HEADER];

/// How long the answer to a request with an idempotency key is kept, by default.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A client session as clients name it: `{cluster id}-{epoch}-{index}`, where index is the log
/// index of the entry that registered it. The cluster id and epoch make a session of another
/// cluster, or of the time before a recovery (whose log may have lost the registration), fail
/// as expired instead of colliding with one registered at the same index since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId {
    /// The cluster's id.
    pub cluster_id: String,
    /// The cluster's epoch when the session was registered.
    pub epoch: u64,
    /// The session's id in the state machine.
    pub index: u64,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.cluster_id, self.epoch, self.index)
    }
}

impl FromStr for SessionId {
    type Err = String;

    fn from_str(s: &str) -> Result<SessionId, String> {
        let bad = || format!("a session id is CLUSTER-EPOCH-INDEX as POST /v1/sessions answers it, got {s:?}");
        let mut parts = s.splitn(3, '-');
        let (Some(cluster_id), Some(epoch), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if !ClusterIdentity::is_valid_id(cluster_id) {
            return Err(bad());
        }
        let epoch = epoch.parse().map_err(|_| bad())?;
        let index = index.parse().ok().filter(|i| *i > 0).ok_or_else(bad)?;
        Ok(SessionId { cluster_id: cluster_id.to_string(), epoch, index })
    }
}

/// What a write request asks for deduplication, read from its headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dedup {
    /// The session and sequence number.
    pub session: Option<(SessionId, SessionStamp)>,
    /// The idempotency key.
    pub key: Option<String>,
}

impl Dedup {
    /// Reads the dedup headers, refusing malformed ones with a 400 naming the header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Dedup, ApiError> {
        let text = |name: &'static str| -> Result<Option<&str>, ApiError> {
            headers
                .get(name)
                .map(|v| v.to_str().map_err(|_| ApiError::bad_request("invalid_header", format!("{name} is not text"))))
                .transpose()
        };
        let number = |name: &'static str| -> Result<Option<u64>, ApiError> {
            text(name)?
                .map(|raw| {
                    raw.trim().parse::<u64>().map_err(|_| {
                        ApiError::bad_request("invalid_header", format!("{name} must be a whole number, got {raw:?}"))
                    })
                })
                .transpose()
        };
        let session = match (text(SESSION_HEADER)?, number(SEQ_HEADER)?) {
            (None, None) => None,
            (Some(id), Some(seq)) => {
                let id: SessionId = id.trim().parse().map_err(|e| ApiError::bad_request("invalid_session", e))?;
                if seq == 0 {
                    return Err(ApiError::bad_request("invalid_header", format!("{SEQ_HEADER} starts at 1")));
                }
                let ack_below = number(ACK_BELOW_HEADER)?.unwrap_or(0);
                if ack_below > seq {
                    return Err(ApiError::bad_request(
                        "invalid_header",
                        format!(
                            "{ACK_BELOW_HEADER} ({ack_below}) cannot be above the write's own {SEQ_HEADER} ({seq})"
                        ),
                    ));
                }
                let stamp = SessionStamp { session: id.index, seq, ack_below };
                Some((id, stamp))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    format!("{SESSION_HEADER} and {SEQ_HEADER} go together"),
                ));
            }
        };
        let key = text(IDEMPOTENCY_KEY_HEADER)?.map(str::to_string);
        if let Some(key) = &key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
        {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {}", key.len()),
            ));
        }
        if session.is_some() && key.is_some() {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("a write belongs to a session or carries an {IDEMPOTENCY_KEY_HEADER}, not both"),
            ));
        }
        Ok(Dedup { session, key })
    }

    /// Whether the request asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.session.is_none() && self.key.is_none()
    }

    /// `command` wrapped as the request asks. `identity` is the cluster's: a session of another
    /// cluster or epoch is expired. `request` (method, path and query, body) is what an
    /// idempotency key is bound to; `key_ttl` how long its answer is kept.
    pub fn wrap(
        &self,
        command: Command,
        identity: Option<&ClusterIdentity>,
        request: (&str, &str, &[u8]),
        key_ttl: Duration,
    ) -> Result<Command, ApiError> {
        if let Some((id, stamp)) = &self.session {
            let current = identity.is_some_and(|i| i.cluster_id == id.cluster_id && i.epoch == id.epoch);
            if !current {
                return Err(ApiError::SessionExpired(format!(
                    "session {id} was not registered in this cluster at its current epoch{}; register a new one",
                    identity.map_or(String::new(), |i| format!(" ({}-{})", i.cluster_id, i.epoch))
                )));
            }
            return Ok(Command::InSession { stamp: *stamp, command: Box::new(command) });
        }
        if let Some(key) = &self.key {
            let (method, path, body) = request;
            let mut hash = Sha256::new();
            for part in [method.as_bytes(), path.as_bytes(), body] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
            return Ok(Command::Idempotent {
                key: key.clone(),
                fingerprint: hash.finalize().into(),
                ttl_ms: key_ttl.as_millis() as u64,
                command: Box::new(command),
            });
        }
        Ok(command)
    }

    /// The dedup headers of `parts`, to send along when forwarding.
    pub fn headers_of(parts: &Parts) -> Vec<(HeaderName, HeaderValue)> {
        DEDUP_HEADERS
            .iter()
            .filter_map(|name| parts.headers.get(*name).map(|v| (HeaderName::from_static(name), v.clone())))
            .collect()
    }
}

/// `result`, or the error a refused session or idempotent write answers.
pub fn dedup_answer(result: CommandResult, session: Option<&SessionId>) -> Result<CommandResult, ApiError> {
    let name = |index: u64| session.map_or_else(|| index.to_string(), |s| s.to_string());
    match result.outcome {
        Outcome::Session(SessionOutcome::Expired { session }) => Err(ApiError::SessionExpired(format!(
            "session {} has expired (or was never registered); register a new one",
            name(session)
        ))),
        Outcome::Session(SessionOutcome::AlreadyAcknowledged { session, seq }) => Err(ApiError::conflict(
            "already_acknowledged",
            format!(
                "write {seq} of session {} was answered and acknowledged before; its result is gone",
                name(session)
            ),
        )),
        Outcome::Session(SessionOutcome::TooManyOutstanding { session }) => {
            Err(ApiError::TooManyOutstanding(name(session)))
        }
        Outcome::Session(SessionOutcome::KeyReused { key }) => Err(ApiError::IdempotencyKeyReused(key)),
        Outcome::Session(SessionOutcome::Nested) => {
            Err(ApiError::bad_request("invalid_header", "a deduplicated write cannot wrap another"))
        }
        _ => Ok(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_bad_ones_are_refused() {
        let id: SessionId = "0123456789abcdef0123456789abcdef-2-17".parse().unwrap();
        assert_eq!((id.epoch, id.index), (2, 17));
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef-2-17");
        for bad in ["", "17", "xyz-1-2", "0123456789abcdef0123456789abcdef-1-0", "0123456789abcdef0123456789abcdef-1"] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_checked() {
        let mut headers = HeaderMap::new();
        assert!(Dedup::from_headers(&headers).unwrap().is_empty());
        headers.insert(SEQ_HEADER, HeaderValue::from_static("3"));
        assert!(Dedup::from_headers(&headers).is_err(), "seq without a session");
        headers.insert(SESSION_HEADER, HeaderValue::from_static("0123456789abcdef0123456789abcdef-1-5"));
        headers.insert(ACK_BELOW_HEADER, HeaderValue::from_static("2"));
        let dedup = Dedup::from_headers(&headers).unwrap();
        assert_eq!(dedup.session.unwrap().1, SessionStamp { session: 5, seq: 3, ack_below: 2 });
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static("k"));
        assert!(Dedup::from_headers(&headers).is_err(), "both");
    }

    #[test]
    fn an_idempotency_key_is_bound_to_its_request() {
        let dedup = Dedup { session: None, key: Some("k".into()) };
        let put = || Command::Put { key: "a".into(), value: b"1".to_vec() };
        let wrap = |body: &[u8]| dedup.wrap(put(), None, ("PUT", "/v1/kv/a", body), DEFAULT_IDEMPOTENCY_TTL).unwrap();
        let fingerprint = |c: Command| match c {
            Command::Idempotent { fingerprint, .. } => fingerprint,
            other => panic!("{other:?}"),
        };
        assert_eq!(fingerprint(wrap(b"1")), fingerprint(wrap(b"1")));
        assert_ne!(fingerprint(wrap(b"1")), fingerprint(wrap(b"2")));
    }
}
