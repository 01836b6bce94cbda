//! The server side of peer RPC: HTTP routes that hand Raft messages to the local openraft.

use std::io;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use openraft::Snapshot;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use raftkv_storage::{KvStateMachine, SnapshotFile};
use raftkv_types::{TypeConfig, Vote};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::api_error::ApiError;
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

#[derive(Clone)]
struct PeerState {
    raft: KvRaft,
    state_machine: KvStateMachine,
}

/// Routes for peer RPC under `/raft/v1/`. Bodies are bincode; a body that does not decode gets a
/// 400 with a JSON error and changes nothing.
pub fn peer_router(raft: KvRaft, state_machine: KvStateMachine) -> Router {
    let state = PeerState { raft, state_machine };
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_PRE_VOTE, post(pre_vote))
        .route(PATH_TRANSFER_LEADER, post(transfer_leader))
        .layer(DefaultBodyLimit::max(MAX_PEER_REQUEST_BYTES))
        // Snapshots are streamed to disk, never buffered: no body limit.
        .route(PATH_SNAPSHOT, post(snapshot).layer(DefaultBodyLimit::disable()))
        .with_state(state)
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

async fn append(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let rpc: AppendEntriesRequest<TypeConfig> = decode("append entries request", &body)?;
    Ok(reply(s.raft.append_entries(rpc).await))
}

async fn vote(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let rpc: VoteRequest<TypeConfig> = decode("vote request", &body)?;
    Ok(reply(s.raft.vote(rpc).await))
}

async fn pre_vote(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let rpc: VoteRequest<TypeConfig> = decode("pre-vote request", &body)?;
    Ok(reply(s.raft.pre_vote(rpc).await))
}

async fn transfer_leader(State(s): State<PeerState>, body: Bytes) -> Result<Response, ApiError> {
    let rpc: TransferLeaderRequest<TypeConfig> = decode("transfer leader request", &body)?;
    Ok(reply(s.raft.handle_transfer_leader(rpc).await))
}

/// Receives a snapshot: the vote, then the file, written to disk as it arrives, fsynced, verified
/// end to end, and only then handed to openraft for installation.
async fn snapshot(State(s): State<PeerState>, body: Body) -> Result<Response, ApiError> {
    let path = s.state_machine.incoming_snapshot_path();
    let received = receive_snapshot(body, &path).await;
    let (vote, file) = match received {
        Ok(ok) => ok,
        Err(err) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(err);
        }
    };
    let verify_file = file.clone();
    let meta = tokio::task::spawn_blocking(move || verify_file.verify())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let meta = match meta {
        Ok(meta) => meta,
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
