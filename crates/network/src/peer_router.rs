//! The server side of peer RPC: HTTP routes that hand Raft messages to the local openraft.

use std::io;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use openraft::error::{LinearizableReadError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest};
use openraft::vote::RaftLeaderId;
use openraft::{ReadPolicy, Snapshot};
use raftkv_storage::{KvStateMachine, SnapshotFile};
use raftkv_types::{NodeId, TypeConfig, Vote};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::api_error::ApiError;
use crate::append_pipe::{PATH_APPEND_STREAM, UPGRADE_PROTOCOL, UPGRADE_PROTOCOL_V1};
use crate::append_server::serve_append_stream;
use crate::cluster_guard::{ClusterGuard, PeerMember, check_identity, speaks_for};
use crate::leader_contact::LeaderContact;
use crate::storage_gate::StorageGate;
use crate::wire;

/// Path of the AppendEntries RPC.
pub const PATH_APPEND: &str = "/raft/v1/append";
/// Path of the RequestVote RPC.
pub const PATH_VOTE: &str = "/raft/v1/vote";
/// Path of the pre-vote RPC.
pub const PATH_PRE_VOTE: &str = "/raft/v1/pre-vote";
/// Path of the snapshot transfer: the body is streamed to a file, then installed.
pub const PATH_SNAPSHOT: &str = "/raft/v1/snapshot";
/// Path of the leader-transfer RPC.
pub const PATH_TRANSFER_LEADER: &str = "/raft/v1/transfer-leader";
/// Path of the read-index RPC: a follower or learner asks the leader for a linearizable read
/// index, then serves the read itself once it has applied that far.
pub const PATH_READ_INDEX: &str = "/raft/v1/read-index";
/// Path of the await-applied RPC: the leader asks a member to confirm it has applied an index.
pub const PATH_AWAIT_APPLIED: &str = "/raft/v1/await-applied";
/// Path of the storage RPC: a leader whose disk is nearly full asks which member has room.
pub const PATH_STORAGE: &str = "/raft/v1/storage";
/// A member tells the leader its data directory was lost (it restarted empty), so that the
/// leader replicates to it from the beginning rather than from where it had matched.
pub const PATH_DATA_LOST: &str = "/raft/v1/data-lost";

/// Longest a member holds an await-applied request.
const MAX_AWAIT_APPLIED: Duration = Duration::from_secs(60);

/// Largest non-snapshot peer request accepted; openraft's batches stay far below it.
pub const MAX_PEER_REQUEST_BYTES: usize = 64 << 20;
const MAX_VOTE_BYTES: usize = 4096;

/// The Raft instance peer RPCs are delivered to.
pub type KvRaft = openraft::Raft<TypeConfig, KvStateMachine>;

/// Why a peer could not process an RPC: its Raft stopped. The caller treats it as unreachable.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("peer raft failed: {message}")]
pub struct RemoteFailure {
    /// What the peer reported.
    pub message: String,
}

/// What a peer RPC answers: the openraft response, or why there is none.
pub type RemoteResult<T> = Result<T, RemoteFailure>;

/// Why the leader gave no read index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadIndexRefusal {
    /// The node asked is not the leader (any more).
    #[error("node is not the leader")]
    NotLeader {
        /// The leader it knows of.
        leader_id: Option<NodeId>,
    },
    /// The leader could not confirm its leadership with a quorum.
    #[error("leader could not confirm its leadership: {0}")]
    NoQuorum(String),
    /// The leader's Raft is stopping.
    #[error("leader is stopping: {0}")]
    Stopping(String),
}

/// Body of the await-applied RPC.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AwaitApplied {
    /// The log index to wait for.
    pub index: u64,
    /// How long to wait, in milliseconds (capped at 60 s).
    pub timeout_ms: u64,
}

#[derive(Clone)]
struct PeerState {
    raft: KvRaft,
    state_machine: KvStateMachine,
    contact: LeaderContact,
    storage: StorageGate,
}

/// Routes for peer RPC under `/raft/v1/`. Bodies are bincode; a body that does not decode gets a
/// 400 with a JSON error and changes nothing. Accepted AppendEntries are recorded in `contact`.
/// Every route first checks the sender's cluster identity and, when the cluster has one, its peer
/// secret ([`ClusterGuard`], whose state machine the routes serve). While `storage`
/// says the disk is nearly full, appends that carry entries and snapshots are refused (the leader
/// retries them; the rest of the cluster commits without this node).
pub fn peer_router(raft: KvRaft, guard: ClusterGuard, contact: LeaderContact, storage: StorageGate) -> Router {
    let state_machine = guard.state_machine().clone();
    let state = PeerState { raft, state_machine, contact, storage };
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_APPEND_STREAM, post(append_stream))
        .route(PATH_VOTE, post(vote))
        .route(PATH_PRE_VOTE, post(pre_vote))
        .route(PATH_TRANSFER_LEADER, post(transfer_leader))
        .route(PATH_READ_INDEX, post(read_index))
        .route(PATH_AWAIT_APPLIED, post(await_applied))
        .route(PATH_STORAGE, post(storage_status))
        .route(PATH_DATA_LOST, post(data_lost))
        .layer(DefaultBodyLimit::max(MAX_PEER_REQUEST_BYTES))
        // Snapshots are streamed to disk, never buffered: no body limit.
        .route(PATH_SNAPSHOT, post(snapshot).layer(DefaultBodyLimit::disable()))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, check_identity))
}

fn reply<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Response {
    let result: RemoteResult<T> = result.map_err(|e| RemoteFailure { message: e.to_string() });
    match wire::encode(&result) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, ApiError> {
    wire::decode(what, body).map_err(|e| ApiError::bad_request("invalid_rpc", e.to_string()))
}

async fn append(
    State(s): State<PeerState>,
    member: Option<Extension<PeerMember>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let rpc: AppendEntriesRequest<TypeConfig> = decode("append entries request", &body)?;
    speaks_for(member.as_deref(), *rpc.vote.leader_id().node_id(), "append")?;
    if !rpc.entries.is_empty() && s.storage.is_low() {
        return Err(s.storage.refusal());
    }
    let committed = rpc.leader_commit.as_ref().map_or(0, |l| l.index);
    let result = s.raft.append_entries(rpc).await;
    // Only a message from the leader this node follows says anything about freshness.
    if let Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)) = &result {
        s.contact.record(received, committed);
    }
    Ok(reply(result))
}

/// Switches the connection to the append stream protocol (see [`crate::append_pipe`]) and serves
/// it on a task of its own. Anything but a proper upgrade request gets a 400 with a JSON error.
async fn append_stream(State(s): State<PeerState>, mut request: Request) -> Response {
    let member = request.extensions().get::<PeerMember>().map(|m| m.0);
    let wants = request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    let (protocol, v2) = match wants {
        Some(UPGRADE_PROTOCOL) => (UPGRADE_PROTOCOL, true),
        Some(UPGRADE_PROTOCOL_V1) => (UPGRADE_PROTOCOL_V1, false),
        _ => {
            let message = format!("expected a connection upgrade to {UPGRADE_PROTOCOL} or {UPGRADE_PROTOCOL_V1}");
            return ApiError::bad_request("invalid_upgrade", message).into_response();
        }
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return ApiError::bad_request("invalid_upgrade", "this connection cannot be upgraded").into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_append_stream(s.raft, s.contact, s.storage, TokioIo::new(upgraded), v2, member).await,
            Err(e) => tracing::debug!("append stream upgrade failed: {e}"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(protocol));
    response
}

/// Answers this node's disk space (`None` before the first measurement).
async fn storage_status(State(s): State<PeerState>) -> Response {
    reply::<_, RemoteFailure>(Ok(s.storage.status()))
}

/// On the leader: replicates to the member named in the body from the beginning of the log, as
/// openraft's procedure for a member whose data was removed asks (`allow_next_revert`); without
/// it, the leader would take the member's empty log for a reverted one. Elsewhere: refused.
async fn data_lost(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let id: NodeId = decode("data lost notice", &body)?;
    if !s.raft.is_leader() {
        return Ok(reply::<(), _>(Err("this node is not the leader")));
    }
    let answer = match s.raft.trigger().allow_next_revert(&id, true).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(fatal) => Err(fatal.to_string()),
    };
    tracing::warn!(member = id, ?answer, "a member lost its data: replicating to it from the beginning");
    Ok(reply(answer))
}

/// Confirms leadership with a quorum (ReadIndex) and answers the index the caller must have
/// applied before reading. Concurrent requests share openraft's confirmation rounds.
async fn read_index(State(s): State<PeerState>) -> Response {
    let answer: Result<u64, ReadIndexRefusal> = match s.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(linearizer) => Ok(linearizer.read_log_id().index()),
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
            Err(ReadIndexRefusal::NotLeader { leader_id: f.leader_id })
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
            Err(ReadIndexRefusal::NoQuorum(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => Err(ReadIndexRefusal::Stopping(f.to_string())),
    };
    match wire::encode(&answer) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// Waits until this node has applied the given index or the timeout passes, and answers the
/// index it has applied (lower than asked on timeout).
async fn await_applied(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let req: AwaitApplied = decode("await applied request", &body)?;
    let timeout = Duration::from_millis(req.timeout_ms).min(MAX_AWAIT_APPLIED);
    let _ = s.raft.wait(Some(timeout)).applied_index_at_least(Some(req.index), "await applied").await;
    let applied = s.state_machine.applied_index();
    match wire::encode(&applied) {
        Ok(bytes) => Ok((StatusCode::OK, bytes).into_response()),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

async fn vote(
    State(s): State<PeerState>,
    member: Option<Extension<PeerMember>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rpc: VoteRequest<TypeConfig> = decode("vote request", &body)?;
    speaks_for(member.as_deref(), *rpc.vote.leader_id().node_id(), "vote request")?;
    Ok(reply(s.raft.vote(rpc).await))
}

async fn pre_vote(
    State(s): State<PeerState>,
    member: Option<Extension<PeerMember>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rpc: VoteRequest<TypeConfig> = decode("pre-vote request", &body)?;
    speaks_for(member.as_deref(), *rpc.vote.leader_id().node_id(), "pre-vote request")?;
    Ok(reply(s.raft.pre_vote(rpc).await))
}

async fn transfer_leader(
    State(s): State<PeerState>,
    member: Option<Extension<PeerMember>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rpc: TransferLeaderRequest<TypeConfig> = decode("transfer leader request", &body)?;
    speaks_for(member.as_deref(), *rpc.from_leader().leader_id().node_id(), "leader transfer")?;
    Ok(reply(s.raft.handle_transfer_leader(rpc).await))
}

/// Receives a snapshot: the vote, then the file, written to disk as it arrives, fsynced, verified
/// end to end, and only then handed to openraft for installation.
async fn snapshot(
    State(s): State<PeerState>,
    member: Option<Extension<PeerMember>>,
    body: Body,
) -> Result<Response, ApiError> {
    if s.storage.is_low() {
        return Err(s.storage.refusal());
    }
    let path = s.state_machine.incoming_snapshot_path();
    let received = receive_snapshot(body, &path).await;
    let (vote, file) = match received {
        Ok(ok) => ok,
        Err(err) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(err);
        }
    };
    if let Err(refusal) = speaks_for(member.as_deref(), *vote.leader_id().node_id(), "snapshot") {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(refusal);
    }
    let verify_file = file.clone();
    let meta = tokio::task::spawn_blocking(move || verify_file.verify())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let meta = match meta {
        Ok((header, _)) => header.snapshot_meta(),
        Err(err) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::bad_request("invalid_snapshot", err.to_string()));
        }
    };
    tracing::info!(last_log_id = ?meta.last_log_id, "received snapshot; installing");
    let result = s.raft.install_full_snapshot(vote, Snapshot { meta, snapshot: file }).await;
    // Installed snapshots are moved away; anything left here was refused or failed.
    let _ = tokio::fs::remove_file(&path).await;
    Ok(reply(result))
}

async fn receive_snapshot(body: Body, path: &std::path::Path) -> Result<(Vote, SnapshotFile), ApiError> {
    let io_err = |e: io::Error| ApiError::Internal(format!("write incoming snapshot: {e}"));
    let mut stream = body.into_data_stream();
    let mut head = Vec::new();
    let mut file = tokio::fs::File::create(path).await.map_err(io_err)?;
    let mut vote: Option<Vote> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_snapshot", format!("snapshot body: {e}")))?;
        if vote.is_some() {
            file.write_all(&chunk).await.map_err(io_err)?;
            continue;
        }
        head.extend_from_slice(&chunk);
        if head.len() < 4 {
            continue;
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_VOTE_BYTES {
            return Err(ApiError::bad_request("invalid_snapshot", "vote header too long"));
        }
        if head.len() < 4 + len {
            continue;
        }
        vote = Some(decode("snapshot vote", &head[4..4 + len])?);
        file.write_all(&head[4 + len..]).await.map_err(io_err)?;
    }
    let vote = vote.ok_or_else(|| ApiError::bad_request("invalid_snapshot", "snapshot body ended before the vote"))?;
    file.sync_all().await.map_err(io_err)?;
    Ok((vote, SnapshotFile::new(path)))
}
