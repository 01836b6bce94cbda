//! The client side of peer RPC: openraft's network traits over HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::RaftNetworkFactory;
use openraft::error::{
    NetworkError as RaftNetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use raftkv_storage::SnapshotFile;
use raftkv_types::{NodeId, PeerNode, TypeConfig, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::io::ReaderStream;

use crate::append_pipe::{self, AppendPipe, Link};
use crate::cluster_guard::ClusterGuard;
use crate::error::{NetworkError, Result};
use crate::network_metrics::{NetworkMetrics, PeerLabels};
use crate::peer_router::{PATH_APPEND, PATH_PRE_VOTE, PATH_SNAPSHOT, PATH_TRANSFER_LEADER, PATH_VOTE, RemoteResult};
use crate::wire;

type RaftSnapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// Creates [`PeerClient`]s; those to one member share one pooled HTTP client, so connections to
/// a peer are kept alive and reused across RPCs. With peer TLS each member has its own client,
/// whose handshakes refuse a server that does not present that member's certificate.
#[derive(Clone)]
pub struct PeerNetwork {
    id: NodeId,
    http: reqwest::Client,
    members: Arc<Mutex<HashMap<NodeId, reqwest::Client>>>,
    guard: ClusterGuard,
    metrics: NetworkMetrics,
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
}

impl PeerNetwork {
    /// A factory for node `id`'s outgoing peer connections, which carry the identity `guard` gives
    /// and count their traffic in `metrics`.
    pub fn new(id: NodeId, guard: ClusterGuard, metrics: NetworkMetrics) -> Result<PeerNetwork> {
        let http = guard.transport().http_client(client_builder()).map_err(NetworkError::Client)?;
        Ok(PeerNetwork { id, http, members: Arc::default(), guard, metrics })
    }

    /// The HTTP client of RPCs to member `target`.
    fn http_of(&self, target: NodeId) -> reqwest::Client {
        if !self.guard.transport().is_tls() {
            return self.http.clone();
        }
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = members.get(&target) {
            return client.clone();
        }
        match self.guard.transport().http_client_of(client_builder(), target) {
            Ok(client) => members.entry(target).or_insert(client).clone(),
            Err(error) => {
                // Built as the shared client was, which did build: not expected to happen.
                tracing::error!(%error, target, "could not build the HTTP client of a member; using the shared one");
                self.http.clone()
            }
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            addr: node.addr.clone(),
            base: self.guard.transport().url(&node.addr),
            http: self.http_of(target),
            guard: self.guard.clone(),
            pipe: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// Sends Raft RPCs from this node to one peer. Replication (AppendEntries, heartbeats included)
/// is pipelined over one long-lived [`AppendPipe`]; every other RPC is one HTTP POST with a
/// bincode body, bounded by the timeout openraft passes in [`RPCOption`].
///
/// Errors keep openraft's distinction: a peer that cannot be connected to is
/// [`Unreachable`] (openraft backs off), a deadline is [`Timeout`], anything else that went wrong
/// on the way is a network error.
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    addr: String,
    base: String,
    http: reqwest::Client,
    guard: ClusterGuard,
    /// The append stream, kept from one replication session to the next.
    pipe: Option<AppendPipe>,
    metrics: NetworkMetrics,
}

impl PeerClient {
    async fn call<Req, Resp>(
        &self,
        path: &str,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = wire::encode(req).map_err(|e| RPCError::Network(RaftNetworkError::new(&e)))?;
        let sent = body.len();
        let timeout = option.hard_ttl();
        let answered = async {
            let response = self.http.post(format!("{}{path}", self.base)).headers(self.guard.headers());
            let response = response.timeout(timeout).body(body).send().await?;
            self.read_response(response).await
        };
        let bytes = match answered.await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.metrics.peer_rpc(self.target, sent, None);
                return Err(self.transport_error(action, timeout, e));
            }
        };
        self.metrics.peer_rpc(self.target, sent, Some(bytes.len()));
        let result: RemoteResult<Resp> =
            wire::decode("rpc response", &bytes).map_err(|e| RPCError::Network(RaftNetworkError::new(&e)))?;
        // The peer's Raft is stopping or stopped: as good as unreachable.
        result.map_err(|failure| RPCError::Unreachable(Unreachable::new(&failure)))
    }

    async fn read_response(&self, response: reqwest::Response) -> std::result::Result<Bytes, reqwest::Error> {
        let response = response.error_for_status()?;
        response.bytes().await
    }

    fn transport_error(&self, action: RPCTypes, timeout: Duration, err: reqwest::Error) -> RPCError<TypeConfig> {
        if err.is_timeout() {
            RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout })
        } else if err.is_connect() {
            RPCError::Unreachable(Unreachable::new(&err))
        } else {
            RPCError::Network(RaftNetworkError::new(&err))
        }
    }

    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: RaftSnapshot,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let timeout = option.hard_ttl().max(Duration::from_secs(60));
        let as_rpc = |e: RPCError<TypeConfig>| match e {
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::RemoteError(r) => StreamingError::Network(RaftNetworkError::new(&r)),
        };
        let vote = wire::encode(&vote).map_err(|e| StreamingError::Network(RaftNetworkError::new(&e)))?;
        let file = tokio::fs::File::open(snapshot.snapshot.path())
            .await
            .map_err(|e| StreamingError::Network(RaftNetworkError::new(&e)))?;
        // Body: vote length (u32 LE), vote, then the snapshot file as it is on disk, streamed.
        let mut prefix = (vote.len() as u32).to_le_bytes().to_vec();
        prefix.extend_from_slice(&vote);
        let head = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(prefix)) });
        let body = reqwest::Body::wrap_stream(head.chain(ReaderStream::with_capacity(file, 256 << 10)));
        let response = self
            .http
            .post(format!("{}{PATH_SNAPSHOT}", self.base))
            .headers(self.guard.headers())
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| as_rpc(self.transport_error(RPCTypes::InstallSnapshot, timeout, e)))?;
        let bytes = self
            .read_response(response)
            .await
            .map_err(|e| as_rpc(self.transport_error(RPCTypes::InstallSnapshot, timeout, e)))?;
        let result: RemoteResult<SnapshotResponse<TypeConfig>> = wire::decode("snapshot response", &bytes)
            .map_err(|e| StreamingError::Network(RaftNetworkError::new(&e)))?;
        result.map_err(|failure| StreamingError::Unreachable(Unreachable::new(&failure)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A heartbeat carries no entries: its answer needs no disk, so its time is the round trip.
        let heartbeat = rpc.entries.is_empty();
        let started = std::time::Instant::now();
        let answer = self.call(PATH_APPEND, RPCTypes::AppendEntries, &rpc, &option).await;
        if heartbeat && answer.is_ok() {
            let rtt = &self.metrics.peer_round_trip;
            rtt.get_or_create(&PeerLabels::of(self.target)).observe(started.elapsed().as_secs_f64());
        }
        answer
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let ttl = option.hard_ttl();
            let link = Link { from: self.id, to: self.target };
            if !self.pipe.as_ref().is_some_and(AppendPipe::reusable) {
                self.pipe = None;
                self.pipe = Some(AppendPipe::open(&self.addr, &self.guard, ttl, link).await?);
            }
            Ok(append_pipe::session(&mut self.pipe, input, link, ttl, &self.metrics))
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PATH_VOTE, RPCTypes::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PATH_PRE_VOTE, RPCTypes::Vote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let size = std::fs::metadata(snapshot.snapshot.path()).map_or(0, |m| m.len());
        let started = std::time::Instant::now();
        let result = tokio::select! {
            result = self.send_snapshot(vote, snapshot, &option) => result,
            closed = cancel => Err(StreamingError::Closed(closed)),
        };
        let labels = PeerLabels::of(self.target);
        if result.is_ok() {
            self.metrics.snapshot_send_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            self.metrics.snapshot_sent_bytes.get_or_create(&labels).inc_by(size);
            self.metrics.peer_sent_bytes.get_or_create(&labels).inc_by(size);
        } else {
            self.metrics.peer_sent_failures.get_or_create(&labels).inc();
        }
        result
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PATH_TRANSFER_LEADER, RPCTypes::TransferLeader, &req, &option).await
    }
}
