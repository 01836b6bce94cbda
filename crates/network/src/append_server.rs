//! The peer's end of the append stream (see [`crate::append_pipe`]): feeds the leader's requests
//! to openraft and writes its answers back, with progress signs while it works.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use openraft::vote::RaftLeaderId;
use raftkv_types::TypeConfig;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::KvRaft;
use crate::append_pipe;
use crate::leader_contact::LeaderContact;
use crate::peer_router::{RemoteFailure, RemoteResult};
use crate::storage_gate::StorageGate;
use crate::stream_frame::{self, PROGRESS_INTERVAL, StreamFrame};
use crate::wire;

/// Counts the bytes read through it: bytes of a request still arriving are progress too.
struct CountingRead<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingRead<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bytes.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

/// Serves one upgraded connection until either side ends: `v2` with checksummed frames and
/// progress signs, version 1 with bare bodies. Accepted requests are recorded in `contact`.
///
/// Answers go out in request order. With version 2, every [`PROGRESS_INTERVAL`] in which a
/// request was pending (received, not yet answered: openraft is writing or fsyncing it) or
/// request bytes arrived, a progress sign goes out too.
pub(crate) async fn serve_append_stream<IO>(
    raft: KvRaft,
    contact: LeaderContact,
    storage: StorageGate,
    io: IO,
    v2: bool,
    member: Option<raftkv_types::NodeId>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let received = Arc::new(AtomicU64::new(0));
    let read = CountingRead { inner: read, bytes: received.clone() };
    let mut writer = FramedWrite::new(write, append_pipe::codec());
    // When each request arrived and the commit index it carried, oldest first: answers come back
    // in request order, so each answer pops its own request's entry.
    let arrivals = Arc::new(Mutex::new(VecDeque::<(Instant, u64)>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let input = {
        let arrivals = arrivals.clone();
        FramedRead::new(read, append_pipe::codec()).take_until(stopped).scan((), move |(), frame| {
            let rpc = frame.map_err(|e| e.to_string()).and_then(|frame| {
                let body = if v2 {
                    match stream_frame::decode(&frame)? {
                        StreamFrame::Message(body) => body,
                        StreamFrame::Progress => return Err("progress frame from the leader".to_string()),
                    }
                } else {
                    &frame[..]
                };
                let rpc = wire::decode::<AppendEntriesRequest<TypeConfig>>("append entries request", body)
                    .map_err(|e| e.to_string())?;
                // With peer TLS, the stream speaks only for the member its certificate names.
                let member = member.map(crate::cluster_guard::PeerMember);
                crate::cluster_guard::speaks_for(member.as_ref(), *rpc.vote.leader_id().node_id(), "append")
                    .map_err(|e| e.to_string())?;
                Ok(rpc)
            });
            let next = match rpc {
                // A nearly full disk takes no more entries: the stream ends, and the leader retries
                // (with its backoff) until space is freed.
                Ok(rpc) if !rpc.entries.is_empty() && storage.is_low() => {
                    tracing::debug!("append stream ends: this node's disk is below its reserve");
                    None
                }
                Ok(rpc) => {
                    let committed = rpc.leader_commit.as_ref().map_or(0, |l| l.index);
                    arrivals.lock().unwrap_or_else(|e| e.into_inner()).push_back((Instant::now(), committed));
                    Some(rpc)
                }
                Err(e) => {
                    // The leader sees the connection close and sends the request again.
                    tracing::warn!("append stream ends: {e}");
                    None
                }
            };
            std::future::ready(next)
        })
    };
    let mut answers = std::pin::pin!(raft.stream_append(input));
    let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_bytes = 0;
    loop {
        let answer = tokio::select! {
            answer = answers.next() => answer,
            _ = ticks.tick(), if v2 => {
                let now = received.load(Ordering::Relaxed);
                let pending = !arrivals.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                if pending || now != seen_bytes {
                    tracing::trace!(pending, bytes = now - seen_bytes, "progress sign");
                    if writer.send(stream_frame::progress()).await.is_err() {
                        break;
                    }
                }
                seen_bytes = now;
                continue;
            }
        };
        let Some(answer) = answer else { break };
        let arrival = arrivals.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let answer: RemoteResult<StreamAppendResult<TypeConfig>> = match answer {
            Ok(result) => {
                // Only a message from the leader this node follows says anything about freshness.
                if let (Ok(_), Some((at, committed))) = (&result, arrival) {
                    contact.record(at, committed);
                }
                Ok(result)
            }
            Err(fatal) => Err(RemoteFailure { message: fatal.to_string() }),
        };
        let last = !matches!(answer, Ok(Ok(_)));
        let body = match wire::encode(&answer) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("encode append answer: {e}");
                break;
            }
        };
        let frame = if v2 { stream_frame::message(&body) } else { Bytes::from(body) };
        if writer.send(frame).await.is_err() || last {
            break;
        }
    }
    // Ends the input (and with it openraft's reading task) even if the leader keeps the
    // connection open.
    drop(stop);
}
