//! [`WatchStream`]: a watch that resumes by itself on another endpoint, and [`Client::watch`].

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt;
use percent_encoding::utf8_percent_encode;
use raftkv_types::api::{ErrorBody, WatchEventBody};
use raftkv_types::{WatchEvent, WatchOptions, WatchSelector};

use crate::client::{Client, QUERY_VALUE, check};
use crate::connection_pool::{Answer, SendError};
use crate::error::{ClientError, Result};

/// How long a watch keeps trying to reconnect before it reports the cluster unreachable.
const RESUME_FOR: Duration = Duration::from_secs(30);
/// Pause between two rounds over every endpoint.
const ROUND_PAUSE: Duration = Duration::from_millis(200);
/// Longest NDJSON line accepted (an event carries at most a key, a value and a previous value).
const MAX_LINE_BYTES: usize = 64 << 20;

impl Client {
    /// Watches keys: every matching change in revision order, none missing, none twice, across
    /// reconnects. When the serving node fails, stops, or loses its leader, the stream resumes on
    /// the next endpoint from the last revision it completed, dropping what it already delivered;
    /// only `compacted` (the history needed is gone) or 30 s without any reachable node end it.
    ///
    /// Without `options.start_revision` the watch starts from a linearizable point: every write
    /// acknowledged before the call is before its start.
    pub async fn watch(&self, options: WatchOptions) -> Result<WatchStream> {
        let mut stream = WatchStream {
            client: self.clone(),
            options,
            endpoint: 0,
            body: None,
            buffer: BytesMut::new(),
            complete_through: None,
            partial: None,
            created: false,
            finished: false,
        };
        if let Some((floor, message)) = stream.connect().await? {
            return Err(ClientError::Api {
                status: 410,
                code: "compacted".into(),
                message: format!("{message} (oldest: {floor})"),
            });
        }
        Ok(stream)
    }
}

/// A watch opened by [`Client::watch`]; read it with [`WatchStream::next`].
pub struct WatchStream {
    client: Client,
    options: WatchOptions,
    /// The endpoint the current (or last) stream came from.
    endpoint: usize,
    body: Option<hyper::body::Incoming>,
    buffer: BytesMut,
    /// Every matching change up to this revision has been delivered.
    complete_through: Option<u64>,
    /// The revision being delivered, with the keys of it delivered so far.
    partial: Option<(u64, HashSet<String>)>,
    created: bool,
    finished: bool,
}

impl WatchStream {
    /// The next event: [`WatchEvent::Created`] first, then changes and progress in revision
    /// order. `None` after [`WatchEvent::Compacted`]; an error when no node could be reached for
    /// 30 s or a node refused the watch (a bad request).
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if self.finished {
                return None;
            }
            if self.body.is_none() {
                match self.connect().await {
                    Ok(None) => {}
                    Ok(Some((floor, _))) => {
                        self.finished = true;
                        return Some(Ok(WatchEvent::Compacted { compact_revision: floor }));
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
            }
            let line = match self.next_line().await {
                Some(line) => line,
                None => {
                    // The stream broke or ended without a final event: resume elsewhere.
                    self.body = None;
                    self.endpoint += 1;
                    continue;
                }
            };
            let body: WatchEventBody = match serde_json::from_slice(&line) {
                Ok(body) => body,
                Err(e) => {
                    self.finished = true;
                    let endpoint = self.client.endpoints[self.endpoint % self.client.endpoints.len()].clone();
                    return Some(Err(ClientError::BadAnswer { endpoint, reason: format!("watch event: {e}") }));
                }
            };
            if let Some(event) = self.accept(body.into_event()) {
                return Some(Ok(event));
            }
        }
    }

    /// The revision every change up to which has been delivered.
    pub fn complete_through(&self) -> Option<u64> {
        self.complete_through
    }

    /// Updates the resume point for `event`; the event if it goes to the caller.
    fn accept(&mut self, event: WatchEvent) -> Option<WatchEvent> {
        match &event {
            WatchEvent::Created { revision } => {
                if self.created {
                    return None;
                }
                self.created = true;
                self.complete_through = Some(*revision);
                Some(event)
            }
            WatchEvent::Put { revision, key, .. } | WatchEvent::Delete { revision, key, .. } => {
                if self.complete_through.is_some_and(|c| c >= *revision) {
                    return None;
                }
                match &mut self.partial {
                    Some((r, seen)) if r == revision => {
                        if !seen.insert(key.clone()) {
                            return None;
                        }
                    }
                    partial => {
                        if let Some((done, _)) = partial.take() {
                            self.complete_through = Some(done);
                        }
                        *partial = Some((*revision, HashSet::from([key.clone()])));
                    }
                }
                Some(event)
            }
            WatchEvent::Progress { revision } => {
                self.mark_complete(*revision);
                Some(event)
            }
            WatchEvent::NoLeader { revision } => {
                self.mark_complete(*revision);
                self.body = None;
                self.endpoint += 1;
                None
            }
            WatchEvent::Ended { .. } => {
                self.body = None;
                self.endpoint += 1;
                None
            }
            WatchEvent::Compacted { .. } => {
                self.finished = true;
                Some(event)
            }
        }
    }

    fn mark_complete(&mut self, revision: u64) {
        if self.complete_through.is_none_or(|c| c < revision) {
            self.complete_through = Some(revision);
        }
        if self.partial.as_ref().is_some_and(|(r, _)| *r <= revision) {
            self.partial = None;
        }
    }

    /// The next NDJSON line of the current stream; `None` when it ended or broke.
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        let idle = self.options.progress_every.map(|p| 3 * p + Duration::from_secs(5));
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = &line[..end];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(line.to_vec());
            }
            if self.buffer.len() > MAX_LINE_BYTES {
                return None;
            }
            let body = self.body.as_mut()?;
            let frame = match idle {
                Some(idle) => tokio::time::timeout(idle, body.frame()).await.ok()?,
                None => body.frame().await,
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                _ => {
                    self.buffer.clear();
                    return None;
                }
            }
        }
    }

    /// Opens the stream on the first endpoint that serves it, from the resume point. `Some`
    /// (the oldest revision kept, and the node's message) when the history no longer reaches
    /// back to it.
    async fn connect(&mut self) -> Result<Option<(u64, String)>> {
        self.buffer.clear();
        let path = self.path();
        let n = self.client.endpoints.len();
        let deadline = tokio::time::Instant::now() + RESUME_FOR;
        let mut last = String::new();
        loop {
            for _ in 0..n {
                let idx = self.endpoint % n;
                let authority = &self.client.authorities[idx];
                let opened =
                    tokio::time::timeout(self.client.timeout, self.client.pool.get_streaming(authority, &path));
                let answer = match opened.await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(SendError::Invalid(reason))) => return Err(ClientError::Config(reason)),
                    Ok(Err(SendError::Connect(e) | SendError::NoAnswer(e))) => {
                        last = e;
                        self.endpoint += 1;
                        continue;
                    }
                    Err(_) => {
                        last = format!("no answer within {:?}", self.client.timeout);
                        self.endpoint += 1;
                        continue;
                    }
                };
                if answer.status.is_success() {
                    self.body = Some(answer.body);
                    return Ok(None);
                }
                let body = tokio::time::timeout(self.client.timeout, answer.body.collect()).await;
                let body = body.ok().and_then(|b| b.ok()).map(|b| b.to_bytes()).unwrap_or_default();
                if answer.status.as_u16() == 410
                    && let Ok(error) = serde_json::from_slice::<ErrorBody>(&body)
                    && let Some(floor) = error.error.compact_revision
                {
                    return Ok(Some((floor, error.error.message)));
                }
                match check(Answer { status: answer.status, leader: None, body }) {
                    Err(ClientError::Api { status, code, message }) => {
                        if status >= 500 || code == "not_a_member" {
                            last = message;
                            self.endpoint += 1;
                            continue;
                        }
                        return Err(ClientError::Api { status, code, message });
                    }
                    Err(e) => return Err(e),
                    Ok(_) => unreachable!("check passes only successes"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Unreachable { tried: self.client.endpoints.join(","), last });
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    /// The request path, from the resume point.
    fn path(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, QUERY_VALUE).to_string();
        let mut path = match &self.options.selector {
            WatchSelector::Key(key) => format!("/v1/watch?key={}", enc(key)),
            WatchSelector::Prefix(prefix) => format!("/v1/watch?prefix={}", enc(prefix)),
        };
        let start = self.complete_through.map(|c| c + 1).or(self.options.start_revision);
        if let Some(start) = start {
            path.push_str(&format!("&start_revision={start}"));
        }
        if self.options.prev_kv {
            path.push_str("&prev_kv=true");
        }
        let filters: Vec<&str> = [(self.options.no_put, "noput"), (self.options.no_delete, "nodelete")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if !filters.is_empty() {
            path.push_str(&format!("&filter={}", filters.join(",")));
        }
        match self.options.progress_every {
            Some(every) => path.push_str(&format!("&progress={}ms", every.as_millis().max(1))),
            None => path.push_str("&progress=0"),
        }
        if !self.options.require_leader {
            path.push_str("&require_leader=false");
        }
        path
    }
}
