//! [`Client`]: the raftkv HTTP API as Rust calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use raftkv_tls::ClientTlsFiles;
use raftkv_types::NodeId;
use raftkv_types::api::{
    CasRequest, CasResponse, Consistency, DeleteResponse, Durability, ErrorBody, LeaderTransferRequest,
    LeaderTransferResponse, MembersResponse, NewMember, NodeStatus, PutResponse, ScanResponse,
};
use serde::de::DeserializeOwned;

use crate::connection_pool::{Answer, ConnectionPool, SendError};
use crate::credentials::Credentials;
use crate::error::{ClientError, Result};
use crate::read_spread::{ReadPreference, ReadTargets};
use crate::session::{ClientSession, SessionOptions};

/// Characters left as they are in a query value: RFC 3986's unreserved set.
pub(crate) const QUERY_VALUE: &AsciiSet = KEY_SEGMENT;

/// Characters left as they are in a key's URL path segment: RFC 3986's unreserved set.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A client of a raftkv cluster, given the base URLs of some of its nodes.
///
/// Any node serves any request (followers forward to the leader). The client sticks to one
/// endpoint and moves to the next only when it cannot connect or the node answers that it is
/// shutting down (`node_stopping`) or not a member of the cluster (`not_a_member`), which is
/// always safe: such a request did nothing. It never retries a request that may have had an
/// effect, except a key-value or lease write made through its session (the default, see
/// [`SessionOptions`]): the cluster applies that one once however often it is sent.
///
/// Writes and membership changes go to the leader directly once the client knows it: a node that
/// forwards a request names the leader in its answer (`x-raftkv-leader`), and when that is one of
/// the client's endpoints, later writes go there, saving the forwarding hop. Reads stay on the
/// sticky endpoint, which serves them itself (followers read by read index).
///
/// Cloning is cheap; clones share connections.
#[derive(Clone)]
pub struct Client {
    pub(crate) endpoints: Arc<Vec<String>>,
    /// `host:port` of each endpoint, in the same order.
    pub(crate) authorities: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    /// Index of the endpoint last named as leader; `NO_LEADER` when unknown.
    leader: Arc<AtomicUsize>,
    pub(crate) pool: Arc<ConnectionPool>,
    pub(crate) timeout: Duration,
    /// Where gets and scans go.
    pub(crate) read_preference: ReadPreference,
    /// The members reads are spread over, for `any` and `nearest`.
    pub(crate) read_targets: Arc<ReadTargets>,
    /// How writes are deduplicated, and the session that does it.
    pub(crate) session_options: SessionOptions,
    pub(crate) session: Arc<ClientSession>,
    /// The `Idempotency-Key` every write carries instead of the session, if set.
    pub(crate) idempotency_key: Option<Arc<str>>,
}

/// `Client::leader` when no leader is known.
const NO_LEADER: usize = usize::MAX;

impl Client {
    /// A client of the nodes at `endpoints` (`http://host:port`, or `host:port`), with a 15 s
    /// request timeout.
    pub fn new<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::with_timeout(endpoints, Duration::from_secs(15))
    }

    /// Like [`Client::new`], with a request timeout of `timeout`.
    pub fn with_timeout<I, S>(endpoints: I, timeout: Duration) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::build(endpoints, timeout, None)
    }

    /// A client of the nodes at `endpoints` (`https://host:port`, or `host:port`) over TLS:
    /// every node's certificate must come from `tls.ca`, and `tls.cert` with `tls.key`, if
    /// given, is presented to nodes that ask for a client certificate. Request timeout
    /// `timeout`.
    pub fn with_tls<I, S>(endpoints: I, timeout: Duration, tls: &ClientTlsFiles) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let config = tls.load().map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        Client::build(endpoints, timeout, Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
    }

    /// Like [`Client::with_tls`], with a rustls configuration made elsewhere (a member's own,
    /// say, which follows reloads of its files).
    pub fn with_tls_config<I, S>(
        endpoints: I,
        timeout: Duration,
        config: Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::build(endpoints, timeout, Some(tokio_rustls::TlsConnector::from(config)))
    }

    fn build<I, S>(endpoints: I, timeout: Duration, tls: Option<tokio_rustls::TlsConnector>) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .filter(|e| !e.as_ref().trim().trim_end_matches('/').is_empty())
            .map(|e| endpoint_url(e.as_ref(), scheme))
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".into()));
        }
        let authorities = endpoints.iter().map(|e| authority(e)).collect::<Result<Vec<_>>>()?;
        if let Some(other) = endpoints.iter().find(|e| !e.starts_with(&format!("{scheme}://"))) {
            return Err(ClientError::Config(if tls.is_some() {
                format!("endpoint {other} is plain http, and this client speaks TLS: use https://")
            } else {
                format!(
                    "endpoint {other} is https: give the CA that signed the cluster's certificates \
                     (Client::with_tls, --cacert)"
                )
            }));
        }
        Ok(Client {
            endpoints: Arc::new(endpoints),
            authorities: Arc::new(authorities),
            current: Arc::new(AtomicUsize::new(0)),
            leader: Arc::new(AtomicUsize::new(NO_LEADER)),
            pool: Arc::new(ConnectionPool::new(Duration::from_secs(2), tls)),
            timeout,
            read_preference: ReadPreference::default(),
            read_targets: Arc::default(),
            session_options: SessionOptions::default(),
            session: Arc::default(),
            idempotency_key: None,
        })
    }

    /// This client with reads (gets and scans) sent by `preference`: to the node it talks to
    /// (the default), to the leader, spread over every member (`any`), or to the nearest member.
    /// Writes always go to the leader.
    pub fn with_read_preference(mut self, preference: ReadPreference) -> Client {
        self.read_preference = preference;
        self.read_targets = Arc::default();
        self
    }

    /// This client presenting `credentials` with every request, to nodes that check an auth file
    /// (`--auth-file`). Connections are not shared with the client it was made from.
    pub fn with_credentials(mut self, credentials: &Credentials) -> Result<Client> {
        self.pool = Arc::new(self.pool.with_authorization(credentials.authorization()?));
        Ok(self)
    }

    /// This client presenting the bearer `token` (see [`Client::with_credentials`]).
    pub fn with_token(self, token: &str) -> Result<Client> {
        self.with_credentials(&Credentials::Token(token.to_string()))
    }

    /// Where this client sends reads.
    pub fn read_preference(&self) -> ReadPreference {
        self.read_preference
    }

    /// The endpoints this client knows.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// `https` when this client speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.pool.is_tls() { "https" } else { "http" }
    }

    /// Writes `value` under `key`, acknowledged once a majority has it.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put_with(key, value, Durability::Majority).await
    }

    /// Writes `value` under `key` with `durability`: with [`Durability::All`], acknowledged only
    /// once every member has applied it (error `not_confirmed_on_all` otherwise: the write is
    /// committed, but some member did not confirm it in time).
    pub async fn put_with(&self, key: &str, value: impl Into<Vec<u8>>, durability: Durability) -> Result<PutResponse> {
        let path = match durability {
            Durability::Majority => key_path(key, ""),
            Durability::All => format!("{}?durability=all", key_path(key, "")),
        };
        self.json(self.write(Method::PUT, &path, Payload::raw(value)).await?)
    }

    /// Reads `key` at `consistency`; `None` when it is absent.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>> {
        let path = format!("{}?consistency={consistency}", key_path(key, ""));
        match self.read(&path).await {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(ClientError::Api { code, .. }) if code == "key_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` from the node this client talks to if that node is at most `max_lag` behind
    /// the leader (a bounded-staleness read); error `too_stale` otherwise.
    pub async fn get_bounded(&self, key: &str, max_lag: Duration) -> Result<Option<Vec<u8>>> {
        let path = format!("{}?consistency=stale&max_lag_ms={}", key_path(key, ""), max_lag.as_millis());
        match self.read(&path).await {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(ClientError::Api { code, .. }) if code == "key_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<DeleteResponse> {
        self.json(self.write(Method::DELETE, &key_path(key, ""), Payload::Empty).await?)
    }

    /// Sets `key` to `value` if it holds `expected` (`None`: if it is absent).
    pub async fn cas(&self, key: &str, expected: Option<&str>, value: &str) -> Result<CasResponse> {
        let req = CasRequest { expected: expected.map(str::to_string), value: value.to_string() };
        let body = serde_json::to_vec(&req).map_err(|e| ClientError::Config(format!("encode cas body: {e}")))?;
        self.json(self.write(Method::POST, &key_path(key, "/cas"), Payload::json(body)).await?)
    }

    /// Lists up to `limit` keys under `prefix` after `start_after`.
    pub async fn scan(
        &self,
        prefix: &str,
        limit: usize,
        start_after: Option<&str>,
        consistency: Consistency,
    ) -> Result<ScanResponse> {
        let enc = |s: &str| utf8_percent_encode(s, KEY_SEGMENT).to_string();
        let mut path = format!("/v1/kv?prefix={}&limit={limit}&consistency={consistency}", enc(prefix));
        if let Some(after) = start_after {
            path.push_str(&format!("&start_after={}", enc(after)));
        }
        let body = self.read(&path).await?;
        decode("the cluster", &body)
    }

    /// A read (`GET path`) sent by the read preference; the body of the answer.
    pub(crate) async fn read(&self, path: &str) -> Result<Bytes> {
        match self.read_preference {
            ReadPreference::Sticky => return self.send(Method::GET, path, Payload::Empty).await.map(|(_, body)| body),
            ReadPreference::Any | ReadPreference::Nearest => return self.spread_read(path).await,
            ReadPreference::Leader => {}
        }
        // Learn the leader (at most every few seconds) when no write has named it yet.
        if self.leader.load(Ordering::Relaxed) == NO_LEADER
            && self.read_targets.claim_leader_lookup()
            && let Ok(members) = self.members().await
            && let Some(leader) = members.leader.and_then(|id| members.members.into_iter().find(|m| m.id == id))
        {
            self.note_leader(&leader.addr);
        }
        self.send_to(Method::GET, path, &Payload::Empty, true, &[]).await.map(|(_, body)| body)
    }

    /// The status of the node this client currently talks to.
    pub async fn status(&self) -> Result<NodeStatus> {
        self.json(self.send(Method::GET, "/v1/status", Payload::Empty).await?)
    }

    /// The status of the node at `endpoint`, without moving to another node.
    pub async fn status_of(&self, endpoint: &str) -> Result<NodeStatus> {
        let (endpoint, body) = self.get_of(endpoint, "/v1/status").await?;
        decode(&endpoint, &body)
    }

    /// `GET path` on the node at `endpoint` only (never another one): its URL and the answer's
    /// body, or the error it answered.
    pub(crate) async fn get_of(&self, endpoint: &str, path: &str) -> Result<(String, Bytes)> {
        let endpoint = endpoint_url(endpoint, self.scheme());
        let answer = self
            .request(&authority(&endpoint)?, Method::GET, path, false, Bytes::new(), &[])
            .await
            .map_err(|e| transport_error(&endpoint, e))?;
        Ok((endpoint, check(answer)?))
    }

    /// The members, as the node this client talks to knows them.
    pub async fn members(&self) -> Result<MembersResponse> {
        self.json(self.send(Method::GET, "/v1/cluster/members", Payload::Empty).await?)
    }

    /// Adds node `id` at `addr` (`host:port`) as a learner; it then catches up asynchronously.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<MembersResponse> {
        self.add_learner_in_zone(id, addr, None).await
    }

    /// Adds node `id` at `addr` as a learner in `zone` (a DR site, say), shown in status.
    pub async fn add_learner_in_zone(&self, id: NodeId, addr: &str, zone: Option<&str>) -> Result<MembersResponse> {
        self.add_member(&NewMember { id, addr: addr.to_string(), zone: zone.map(str::to_string), standby: false }).await
    }

    /// Adds `member` as a learner (a standby with `member.standby`); it then catches up
    /// asynchronously.
    pub async fn add_member(&self, member: &NewMember) -> Result<MembersResponse> {
        self.json(self.send(Method::POST, "/v1/cluster/members", Payload::json(encode(member)?)).await?)
    }

    /// Makes learner `id` a voter. `force` skips the check that a quorum stays reachable.
    pub async fn promote(&self, id: NodeId, force: bool) -> Result<MembersResponse> {
        let path = format!("/v1/cluster/members/{id}/promote?force={force}");
        self.json(self.send(Method::POST, &path, Payload::Empty).await?)
    }

    /// Removes member `id`. `force` skips the check that a quorum stays reachable.
    pub async fn remove_member(&self, id: NodeId, force: bool) -> Result<MembersResponse> {
        let path = format!("/v1/cluster/members/{id}?force={force}");
        self.json(self.send(Method::DELETE, &path, Payload::Empty).await?)
    }

    /// Replaces voter `old` by the new node `id` at `addr`: it joins as a learner, catches up, and
    /// the two are swapped in one joint-consensus change.
    pub async fn replace_member(&self, old: NodeId, id: NodeId, addr: &str, force: bool) -> Result<MembersResponse> {
        let body = encode(&NewMember { id, addr: addr.to_string(), zone: None, standby: false })?;
        let path = format!("/v1/cluster/members/{old}/replace?force={force}");
        self.json(self.send(Method::POST, &path, Payload::json(body)).await?)
    }

    /// Hands leadership to voter `to`; returns once it leads.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<LeaderTransferResponse> {
        let body = encode(&LeaderTransferRequest { to })?;
        self.json(self.send(Method::POST, "/v1/cluster/leader", Payload::json(body)).await?)
    }

    /// Sends the request to the known leader (writes) or the sticky endpoint, moving on to the
    /// next endpoint only when nothing was done; returns the endpoint that answered and the body
    /// of its successful answer.
    pub(crate) async fn send(&self, method: Method, path: &str, payload: Payload) -> Result<(usize, Bytes)> {
        let leader_first = method != Method::GET;
        self.send_to(method, path, &payload, leader_first, &[]).await
    }

    /// [`Client::send`], trying the known leader first when `leader_first`, with `extra`
    /// headers.
    pub(crate) async fn send_to(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
        leader_first: bool,
        extra: &[(&'static str, String)],
    ) -> Result<(usize, Bytes)> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let leader = self.leader.load(Ordering::Relaxed);
        // Writes (and reads to the leader) try the known leader first; everything else, and
        // writes after it, the rotation.
        let first = (leader_first && leader < n).then_some(leader);
        let order = first.into_iter().chain((0..n).map(|i| (start + i) % n).filter(|idx| Some(*idx) != first));
        let (json, body) = match payload {
            Payload::Empty => (false, Bytes::new()),
            Payload::Raw(bytes) => (false, bytes.clone()),
            Payload::Json(bytes) => (true, bytes.clone()),
        };
        let mut last = String::new();
        for idx in order {
            let endpoint = &self.endpoints[idx];
            let answer =
                match self.request(&self.authorities[idx], method.clone(), path, json, body.clone(), extra).await {
                    Ok(answer) => answer,
                    Err(SendError::Connect(e)) => {
                        self.forget_leader(idx);
                        last = e;
                        continue;
                    }
                    Err(e) => {
                        // Sent, but no answer: the request cannot be sent again (it may have been
                        // applied), but the next one must not go to a leader that may be cut off
                        // (it would hang the same way until the partition heals); the rotation's
                        // node forwards it to the current leader and names it.
                        self.forget_leader(idx);
                        return Err(transport_error(endpoint, e));
                    }
                };
            if let Some(named) = &answer.leader {
                self.note_leader(named);
            }
            match check(answer) {
                // The node is shutting down, or not (or no longer) a member, and did nothing:
                // the next one will serve.
                Err(ClientError::Api { code, message, .. }) if code == "node_stopping" || code == "not_a_member" => {
                    self.forget_leader(idx);
                    last = message
                }
                checked => {
                    // A leader that could not commit or confirm in time may no longer lead.
                    if let Err(ClientError::Api { code, .. }) = &checked
                        && matches!(code.as_str(), "outcome_unknown" | "unavailable" | "no_leader")
                    {
                        self.forget_leader(idx);
                    }
                    if Some(idx) != first {
                        self.current.store(idx, Ordering::Relaxed);
                    }
                    return Ok((idx, checked?));
                }
            }
        }
        Err(ClientError::Unreachable { tried: self.endpoints.join(","), last })
    }

    /// One request to the node at `authority`, within the client's request timeout.
    pub(crate) async fn request(
        &self,
        authority: &str,
        method: Method,
        path: &str,
        json: bool,
        body: Bytes,
        extra: &[(&'static str, String)],
    ) -> std::result::Result<Answer, SendError> {
        match tokio::time::timeout(self.timeout, self.pool.send(authority, method, path, json, body, extra)).await {
            Ok(sent) => sent,
            Err(_) => Err(SendError::NoAnswer(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Decodes the JSON body of a successful answer from endpoint `idx`.
    pub(crate) fn json<T: DeserializeOwned>(&self, (idx, body): (usize, Bytes)) -> Result<T> {
        decode(&self.endpoints[idx], &body)
    }
}

impl Client {
    /// Stops sending writes to endpoint `idx` first, if it was the known leader: it is gone,
    /// stopping, or no longer a member, and a request kept on it could meet a closing connection.
    fn forget_leader(&self, idx: usize) {
        let _ = self.leader.compare_exchange(idx, NO_LEADER, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Remembers the leader a forwarding node named (its base URL), if it is one of the
    /// endpoints.
    /// Remembers the endpoint at `url` (`http://host:port`, `https://...` or `host:port`, as
    /// nodes name the leader) as the leader's, if it is one of this client's.
    fn note_leader(&self, url: &str) {
        let url = url.trim_end_matches('/');
        let address = url.split_once("://").map_or(url, |(_, rest)| rest);
        if let Some(idx) = self.authorities.iter().position(|a| a == address) {
            self.leader.store(idx, Ordering::Relaxed);
        }
    }
}

/// A request body.
pub(crate) enum Payload {
    Empty,
    Raw(Bytes),
    Json(Bytes),
}

impl Payload {
    pub(crate) fn raw(value: impl Into<Vec<u8>>) -> Payload {
        Payload::Raw(Bytes::from(value.into()))
    }

    pub(crate) fn json(body: Vec<u8>) -> Payload {
        Payload::Json(Bytes::from(body))
    }
}

pub(crate) fn encode<T: serde::Serialize>(body: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| ClientError::Config(format!("encode request body: {e}")))
}

pub(crate) fn key_path(key: &str, suffix: &str) -> String {
    format!("/v1/kv/{}{suffix}", utf8_percent_encode(key, KEY_SEGMENT))
}

/// `endpoint` as a base URL: trimmed, without a trailing `/`, `{scheme}://` added when no
/// scheme is given.
pub(crate) fn endpoint_url(endpoint: &str, scheme: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") { e.to_string() } else { format!("{scheme}://{e}") }
}

/// The `host:port` of an `http://host[:port]` or `https://host[:port]` endpoint (port 80 or 443
/// when none is given).
pub(crate) fn authority(endpoint: &str) -> Result<String> {
    let bad = || ClientError::Config(format!("endpoint {endpoint:?} is not http://host:port or https://host:port"));
    let (rest, default_port) = match (endpoint.strip_prefix("http://"), endpoint.strip_prefix("https://")) {
        (Some(rest), _) => (rest, 80),
        (_, Some(rest)) => (rest, 443),
        _ => {
            return Err(ClientError::Config(format!(
                "endpoint {endpoint:?}: only http://host:port and https://host:port endpoints are supported"
            )));
        }
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    let authority: hyper::http::uri::Authority = rest.parse().map_err(|_| bad())?;
    if authority.host().is_empty() {
        return Err(bad());
    }
    Ok(format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(default_port)))
}

pub(crate) fn transport_error(endpoint: &str, e: SendError) -> ClientError {
    match e {
        SendError::Connect(last) => ClientError::Unreachable { tried: endpoint.to_string(), last },
        SendError::NoAnswer(reason) => ClientError::NoAnswer { endpoint: endpoint.to_string(), reason },
        SendError::Invalid(reason) => ClientError::Config(reason),
    }
}

/// The body of a successful answer, or the error the node answered.
pub(crate) fn check(answer: Answer) -> Result<Bytes> {
    let status = answer.status;
    if status.is_success() {
        return Ok(answer.body);
    }
    match serde_json::from_slice::<ErrorBody>(&answer.body) {
        Ok(body) => {
            Err(ClientError::Api { status: status.as_u16(), code: body.error.code, message: body.error.message })
        }
        Err(_) => Err(ClientError::Api {
            status: status.as_u16(),
            code: if status == StatusCode::GATEWAY_TIMEOUT { "outcome_unknown" } else { "http_error" }.into(),
            message: String::from_utf8_lossy(&answer.body).into_owned(),
        }),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| ClientError::BadAnswer { endpoint: endpoint.to_string(), reason: e.to_string() })
}
