//! Keep-alive HTTP/1.1 connections to the nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per node; more than this many concurrent requests to one node open
/// connections that are closed after use.
const MAX_IDLE_PER_NODE: usize = 512;

/// Connections to the nodes, by `host:port`, each carrying one request at a time.
///
/// A request takes an idle connection (or opens one), and puts it back once the whole answer is
/// read. Each connection is driven by a task of its own, which notices while the connection is idle
/// that the node closed it (a restart): such a connection is never handed out again. A request
/// is retried on a new connection only when it was certainly not sent (the connection was found
/// closed before writing it); anything else is reported, because a write may have been applied.
///
/// This is a lighter path than a general-purpose HTTP client: no URL parsing, redirects, retry
/// layers or pool keys per request, which matters when a process sends tens of thousands of small
/// requests per second.
pub(crate) struct ConnectionPool {
    idle: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    connect_timeout: Duration,
    /// Every connection is TLS through this, when set (`https://` endpoints).
    tls: Option<tokio_rustls::TlsConnector>,
    /// The `Authorization` every request carries, when the client has credentials.
    authorization: Option<HeaderValue>,
}

/// A complete answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The `x-raftkv-leader` header, when the node named the leader.
    pub(crate) leader: Option<String>,
    pub(crate) body: Bytes,
}

/// An answer whose body is read as it arrives (a backup).
pub(crate) struct StreamingAnswer {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: hyper::body::Incoming,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made: the request was not sent.
    Connect(String),
    /// The request may have been sent, but no complete answer came back.
    NoAnswer(String),
    /// The request could not be built (a malformed endpoint).
    Invalid(String),
}

/// The header in which a forwarding node names the leader.
pub(crate) const LEADER_HEADER: &str = "x-raftkv-leader";

impl ConnectionPool {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<tokio_rustls::TlsConnector>) -> ConnectionPool {
        ConnectionPool { idle: Mutex::new(HashMap::new()), connect_timeout, tls, authorization: None }
    }

    /// A new pool like this one (no connections yet) whose requests carry `authorization`.
    pub(crate) fn with_authorization(&self, authorization: HeaderValue) -> ConnectionPool {
        ConnectionPool {
            authorization: Some(authorization),
            ..ConnectionPool::new(self.connect_timeout, self.tls.clone())
        }
    }

    /// Whether connections are TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends one request to the node at `authority` (`host:port`) and reads its whole answer.
    /// `path` is the origin-form target (`/v1/kv/a?consistency=stale`), already percent-encoded.
    pub(crate) async fn send(
        &self,
        authority: &str,
        method: Method,
        path: &str,
        json: bool,
        body: Bytes,
        extra: &[(&'static str, String)],
    ) -> Result<Answer, SendError> {
        let mut request = build_request(authority, method, path, json, body, extra, self.authorization.as_ref())?;
        loop {
            let (mut sender, reused) = match self.checkout(authority) {
                Some(sender) => (sender, true),
                None => (self.connect(authority).await?, false),
            };
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut err) => match err.take_message() {
                    // The connection closed before the request was written: nothing was sent,
                    // so a fresh connection may carry it.
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    // A new connection closed at once (the node is going away): nothing was sent.
                    Some(_) => {
                        let e = err.into_error();
                        return Err(SendError::Connect(format!("{authority} closed the connection: {e}")));
                    }
                    None => return Err(SendError::NoAnswer(err.into_error().to_string())),
                },
            };
            let status = response.status();
            let leader = response.headers().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::NoAnswer(format!("reading the answer: {e}")))?
                .to_bytes();
            self.checkin(authority, sender);
            return Ok(Answer { status, leader, body });
        }
    }

    /// Sends a GET for `path` to `authority` on a connection of its own (it may carry a long
    /// answer) and returns the answer's head, with the body still to be read.
    pub(crate) async fn get_streaming(&self, authority: &str, path: &str) -> Result<StreamingAnswer, SendError> {
        let request =
            build_request(authority, Method::GET, path, false, Bytes::new(), &[], self.authorization.as_ref())?;
        let mut sender = self.connect(authority).await?;
        let response = sender.send_request(request).await.map_err(|e| SendError::NoAnswer(e.to_string()))?;
        let (parts, body) = response.into_parts();
        Ok(StreamingAnswer { status: parts.status, headers: parts.headers, body })
    }

    fn checkout(&self, authority: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().expect("connection pool lock poisoned");
        let senders = idle.get_mut(authority)?;
        while let Some(sender) = senders.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, authority: &str, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().expect("connection pool lock poisoned");
        let senders = match idle.get_mut(authority) {
            Some(senders) => senders,
            None => idle.entry(authority.to_string()).or_default(),
        };
        if senders.len() < MAX_IDLE_PER_NODE {
            senders.push(sender);
        }
    }

    async fn connect(&self, authority: &str) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(format!("connect to {authority}: {e}"))),
            Err(_) => {
                return Err(SendError::Connect(format!(
                    "connect to {authority}: no answer within {:?}",
                    self.connect_timeout
                )));
            }
        };
        // Requests are small and each waits for its answer: send them at once.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else { return handshake(authority, stream).await };
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| SendError::Invalid(format!("{host:?} is not a TLS server name: {e}")))?;
        let stream = match tokio::time::timeout(self.connect_timeout, tls.connect(name, stream)).await {
            Ok(Ok(stream)) => stream,
            // A certificate the CA did not sign, or a server that does not speak TLS: nothing
            // was sent.
            Ok(Err(e)) => return Err(SendError::Connect(format!("TLS with {authority}: {e}"))),
            Err(_) => {
                return Err(SendError::Connect(format!(
                    "TLS with {authority}: no handshake within {:?}",
                    self.connect_timeout
                )));
            }
        };
        handshake(authority, stream).await
    }
}

/// Starts HTTP/1.1 on `stream`; a task drives the connection until the node closes it or the
/// last sender is dropped.
async fn handshake<S>(authority: &str, stream: S) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(format!("connect to {authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn build_request(
    authority: &str,
    method: Method,
    path: &str,
    json: bool,
    body: Bytes,
    extra: &[(&'static str, String)],
    authorization: Option<&HeaderValue>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let mut builder = Request::builder().method(method).uri(path);
    let host = HeaderValue::from_str(authority)
        .map_err(|_| SendError::Invalid(format!("{authority:?} is not a valid host:port")))?;
    builder = builder.header(HOST, host);
    if json {
        builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(authorization) = authorization {
        builder = builder.header(hyper::header::AUTHORIZATION, authorization.clone());
    }
    for (name, value) in extra {
        let value = HeaderValue::from_str(value)
            .map_err(|_| SendError::Invalid(format!("header {name}: {value:?} is not a valid value")))?;
        builder = builder.header(*name, value);
    }
    builder.body(Full::new(body)).map_err(|e| SendError::Invalid(format!("invalid request to {authority}{path}: {e}")))
}
