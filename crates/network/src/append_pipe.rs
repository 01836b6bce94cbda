//! Pipelined replication: AppendEntries streamed over one long-lived connection per peer.
//!
//! # Protocol
//! The leader opens a TCP connection to the peer's HTTP address and asks to switch protocols:
//! `POST /raft/v1/append-stream` with `Connection: upgrade` and `Upgrade: raftkv-append/2`. The
//! peer answers `101 Switching Protocols`; from then on both directions carry frames of a 4-byte
//! big-endian length followed by a frame of `stream_frame` (a checksummed bincode
//! message, or a progress sign):
//! - leader to peer: one [`AppendEntriesRequest`] per message;
//! - peer to leader: one [`RemoteResult`]`<`[`StreamAppendResult`]`>` per request, in request
//!   order, and progress signs while it receives or works on one.
//!
//! A peer of an older release refuses version 2 with a 400; the leader then speaks version 1
//! (bare bincode bodies, no checksums, no progress signs) to it.
//!
//! # Dead or slow
//! An answer is late when nothing came from the peer (an answer or a progress sign) for a second
//! (or a whole RPC deadline, if longer) since the request was sent or the peer last showed
//! progress. A peer whose fsync takes seconds, or that takes a large entry in slowly, keeps
//! showing progress and is waited for; a dead or cut-off one goes silent and is given up on.
//!
//! The leader writes requests to the socket and reads the answers on openraft's replication task
//! itself, without an HTTP request per RPC or a connection task in between. The protocol allows
//! any number of requests in flight; the leader keeps one (see `MAX_IN_FLIGHT`).
//!
//! A conflict or a higher vote ends openraft's session; the connection survives it, and the next
//! session skips the answers still owed to the old one. Any transport error, a malformed frame or
//! an answer that takes longer than the RPC deadline closes the connection; the next session opens
//! a new one.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, Stream, StreamExt};
use openraft::error::{NetworkError as RaftNetworkError, RPCError, Timeout, Unreachable};
use openraft::network::RPCTypes;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use raftkv_types::{NodeId, TypeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::cluster_guard::ClusterGuard;
use crate::network_metrics::{NetworkMetrics, PeerLabels};
use crate::peer_router::{MAX_PEER_REQUEST_BYTES, RemoteResult};
use crate::peer_transport::PeerIo;
use crate::stream_frame::{self, StreamFrame};
use crate::wire;

/// Path of the streaming AppendEntries endpoint.
pub const PATH_APPEND_STREAM: &str = "/raft/v1/append-stream";
/// The protocol named in the `Upgrade` header: checksummed frames and progress signs.
pub const UPGRADE_PROTOCOL: &str = "raftkv-append/2";
/// The first version: bare bodies, answers only. Spoken to peers of older releases.
pub const UPGRADE_PROTOCOL_V1: &str = "raftkv-append/1";

/// Requests of one session sent and not yet answered, at most.
///
/// One: while a request is out, the entries proposed meanwhile accumulate and go out together
/// in the next one. Deeper pipelines sent smaller batches and cost more CPU per write, which is
/// what limits throughput on a small machine (64 clients, three members on 2 cores: 8,100
/// writes/s at depth 1, 7,500 at depth 2 or unbounded). The gain of the stream is the direct
/// connection, not the depth: no HTTP request per RPC and no connection task between the
/// replication task and the socket.
const MAX_IN_FLIGHT: usize = 1;

/// With a version 1 peer (no progress signs), the slowest it may take in a request's bytes (read,
/// decode, write and fsync them) before its answer counts as late: a request's deadline is
/// openraft's RPC deadline plus its size at this rate.
const MIN_PEER_BYTES_PER_SEC: f64 = 4.0 * 1024.0 * 1024.0;

/// The shortest silence that counts as a dead peer, whatever the RPC deadline: fifty progress
/// intervals. A peer that sends nothing for that long is dead or cut off; one that is merely slow
/// (or whose progress signs a loaded machine delays, or whose bytes a slow link delivers in
/// bursts) is not given up on. Giving up later on a dead peer costs nothing: the others commit
/// meanwhile, and its replication would only be retried.
const MIN_SILENCE: Duration = Duration::from_secs(1);

/// Largest response head accepted from the peer during the protocol switch.
const MAX_HANDSHAKE_BYTES: usize = 4096;

/// How long an idle connection may go without a sign of life before the kernel's keepalive
/// probes start; a peer cut off by a partition is found out within about 15 s even when idle.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Interval between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// The frame codec of both directions.
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(MAX_PEER_REQUEST_BYTES).new_codec()
}

/// Turns on TCP keepalive for `tcp`, so that a dead peer fails the reads that wait on it (both
/// ends of an append stream may wait on reads for a long time).
pub fn set_keepalive(tcp: &TcpStream) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// One upgraded connection to a peer, shared by the replication sessions to it one after another.
pub struct AppendPipe {
    reader: FramedRead<ReadHalf<Box<dyn PeerIo>>, LengthDelimitedCodec>,
    writer: FramedWrite<WriteHalf<Box<dyn PeerIo>>, LengthDelimitedCodec>,
    /// Requests sent whose answers have not been read.
    outstanding: usize,
    /// Answers still owed to an earlier session, to be read and dropped.
    stale: usize,
    /// A write was cut off halfway (its session was dropped): the byte stream is no longer framed.
    torn: bool,
    /// Whether the peer speaks version 2 (checksums and progress signs).
    v2: bool,
    /// For each request awaiting its answer, oldest first: when it was sent, if it was a
    /// heartbeat (no entries: its answer needs no disk, so its time is the round trip).
    sent_at: VecDeque<Option<Instant>>,
}

impl AppendPipe {
    /// Connects to `addr` (`host:port`) and switches the connection to the append stream protocol,
    /// all within `deadline`. A peer that cannot be connected to is [`Unreachable`] (openraft
    /// backs off longer); one that does not finish the switch in time is a [`Timeout`].
    pub(crate) async fn open(
        addr: &str,
        guard: &ClusterGuard,
        deadline: Duration,
        link: Link,
    ) -> Result<AppendPipe, RPCError<TypeConfig>> {
        let connect = async {
            match Self::handshake(addr, guard, link.to, UPGRADE_PROTOCOL).await {
                // A peer of an older release knows only version 1.
                Err(Refused::Old) => Self::handshake(addr, guard, link.to, UPGRADE_PROTOCOL_V1).await,
                other => other,
            }
        };
        match tokio::time::timeout(deadline, connect).await {
            Ok(Ok(pipe)) => Ok(pipe),
            Ok(Err(Refused::Connect(e))) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Ok(Err(Refused::Protocol(message))) => Err(network_error(message)),
            Ok(Err(Refused::Old)) => Err(network_error("peer refused both append stream versions".into())),
            Err(_) => Err(RPCError::Timeout(link.timeout(deadline))),
        }
    }

    async fn handshake(addr: &str, guard: &ClusterGuard, to: NodeId, protocol: &str) -> Result<AppendPipe, Refused> {
        let tcp = TcpStream::connect(addr).await.map_err(Refused::Connect)?;
        tcp.set_nodelay(true).map_err(|e| Refused::Protocol(format!("set TCP_NODELAY: {e}")))?;
        set_keepalive(&tcp).map_err(|e| Refused::Protocol(format!("set TCP keepalive: {e}")))?;
        // With peer TLS the handshake is part of connecting: a peer whose certificate is refused
        // is as unreachable as one that is down.
        let mut tcp = guard.transport().connect(addr, tcp, to).await.map_err(Refused::Connect)?;
        let identity: String = guard
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {}\r\n", value.to_str().unwrap_or_default()))
            .collect();
        let request = format!(
            "POST {PATH_APPEND_STREAM} HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n{identity}content-length: 0\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.map_err(|e| Refused::Protocol(format!("send upgrade request: {e}")))?;

        // The peer sends nothing after its response head until the first request, so everything
        // read up to the blank line is the head.
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.map_err(|e| Refused::Protocol(format!("read upgrade response: {e}")))?;
            if n == 0 {
                return Err(Refused::Protocol("connection closed during protocol switch".into()));
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HANDSHAKE_BYTES {
                return Err(Refused::Protocol("upgrade response head too long".into()));
            }
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n")
                && end + 4 != head.len()
            {
                return Err(Refused::Protocol("unexpected bytes after the upgrade response".into()));
            }
        }
        let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        if protocol != UPGRADE_PROTOCOL_V1 && status_line.starts_with(b"HTTP/1.1 400") {
            return Err(Refused::Old);
        }
        if !status_line.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(status_line);
            return Err(Refused::Protocol(format!("peer refused the append stream: {status}")));
        }
        let (read, write) = tokio::io::split(tcp);
        Ok(AppendPipe {
            reader: FramedRead::new(read, codec()),
            writer: FramedWrite::new(write, codec()),
            outstanding: 0,
            stale: 0,
            torn: false,
            sent_at: VecDeque::new(),
            v2: protocol == UPGRADE_PROTOCOL,
        })
    }

    /// Whether a new session can use this connection.
    pub fn reusable(&self) -> bool {
        !self.torn
    }

    /// Sends one request; returns its size in bytes.
    async fn send(&mut self, request: &AppendEntriesRequest<TypeConfig>) -> Result<usize, String> {
        let body = wire::encode(request).map_err(|e| format!("encode append request: {e}"))?;
        let size = body.len();
        let frame = if self.v2 { stream_frame::message(&body) } else { Bytes::from(body) };
        self.torn = true;
        self.writer.send(frame).await.map_err(|e| format!("send append request: {e}"))?;
        self.torn = false;
        self.outstanding += 1;
        self.sent_at.push_back(request.entries.is_empty().then(Instant::now));
        Ok(size)
    }
}

/// Why a connection could not be switched to the append stream.
enum Refused {
    /// No TCP connection.
    Connect(std::io::Error),
    /// Connected, but the switch failed.
    Protocol(String),
    /// The peer refused the protocol version asked for (an older release).
    Old,
}

/// Who is talking to whom, for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
}

impl Link {
    fn timeout(self, after: Duration) -> Timeout<TypeConfig> {
        Timeout { action: RPCTypes::AppendEntries, id: self.from, target: self.to, timeout: after }
    }
}

type Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

struct Session<'s, S> {
    slot: &'s mut Option<AppendPipe>,
    /// This peer's traffic counters (bytes each way, failures).
    sent_bytes: Counter,
    received_bytes: Counter,
    failures: Counter,
    round_trip: Histogram,
    input: S,
    input_done: bool,
    ended: bool,
    link: Link,
    ttl: Duration,
    /// When the oldest unanswered request of this session was sent, or an answer last came.
    progress_at: Instant,
    /// Time added to `ttl` for the size of the request awaiting its answer.
    allowance: Duration,
}

/// One replication session over the pipe in `slot`: sends what `input` yields, yields the answers
/// in order. Ends when the input has ended and every answer has come, after a conflict or higher
/// vote, or with an error after which `slot` is emptied (the connection is not used again).
///
/// An answer that takes longer than `ttl` since the last progress is a [`Timeout`].
pub(crate) fn session<'s, S>(
    slot: &'s mut Option<AppendPipe>,
    input: S,
    link: Link,
    ttl: Duration,
    metrics: &NetworkMetrics,
) -> BoxStream<'s, Item>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    if let Some(pipe) = slot.as_mut() {
        pipe.stale = pipe.outstanding;
    }
    let peer = PeerLabels::of(link.to);
    let state = Session {
        slot,
        sent_bytes: metrics.peer_sent_bytes.get_or_create(&peer).clone(),
        received_bytes: metrics.peer_received_bytes.get_or_create(&peer).clone(),
        failures: metrics.peer_sent_failures.get_or_create(&peer).clone(),
        round_trip: metrics.peer_round_trip.get_or_create(&peer).clone(),
        input,
        input_done: false,
        ended: false,
        link,
        ttl,
        progress_at: Instant::now(),
        allowance: Duration::ZERO,
    };
    Box::pin(futures::stream::unfold(state, next_answer))
}

async fn next_answer<S>(mut s: Session<'_, S>) -> Option<(Item, Session<'_, S>)>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    if s.ended {
        return None;
    }
    loop {
        let pipe = s.slot.as_mut()?;
        if s.input_done && pipe.outstanding == 0 {
            return None;
        }
        let deadline = s.progress_at + s.ttl.max(MIN_SILENCE) + s.allowance;
        // Answers first: they are what the replication task is waiting for.
        tokio::select! {
            biased;
            frame = pipe.reader.next(), if pipe.outstanding > 0 => {
                s.progress_at = Instant::now();
                let frame = match frame {
                    Some(Ok(frame)) => {
                        s.received_bytes.inc_by(frame.len() as u64);
                        frame
                    }
                    Some(Err(e)) => return Some(s.fail(network_error(format!("read append answer: {e}")))),
                    None => return Some(s.fail(network_error("peer closed the append stream".to_string()))),
                };
                let body = if pipe.v2 {
                    match stream_frame::decode(&frame) {
                        // The peer is alive and working: wait on.
                        Ok(StreamFrame::Progress) => {
                            tracing::trace!(to = s.link.to, "progress sign");
                            continue;
                        }
                        Ok(StreamFrame::Message(body)) => body,
                        Err(e) => return Some(s.fail(network_error(format!("append answer refused: {e}")))),
                    }
                } else {
                    &frame[..]
                };
                pipe.outstanding -= 1;
                if let Some(sent) = pipe.sent_at.pop_front().flatten() {
                    s.round_trip.observe(sent.elapsed().as_secs_f64());
                }
                if pipe.stale > 0 {
                    pipe.stale -= 1;
                    continue;
                }
                s.allowance = Duration::ZERO;
                let answer: RemoteResult<StreamAppendResult<TypeConfig>> = match wire::decode("append answer", body) {
                    Ok(answer) => answer,
                    Err(e) => return Some(s.fail(RPCError::Network(RaftNetworkError::new(&e)))),
                };
                return match answer {
                    Ok(result) => {
                        // A conflict or higher vote ends openraft's session; the connection stays.
                        s.ended = result.is_err();
                        Some((Ok(result), s))
                    }
                    // The peer's Raft is stopping: as good as unreachable.
                    Err(failure) => Some(s.fail(RPCError::Unreachable(Unreachable::new(&failure)))),
                };
            }
            request = s.input.next(), if !s.input_done && pipe.outstanding - pipe.stale < MAX_IN_FLIGHT => {
                let Some(request) = request else {
                    s.input_done = true;
                    continue;
                };
                let first = pipe.outstanding == pipe.stale;
                if first {
                    s.progress_at = Instant::now();
                }
                match pipe.send(&request).await {
                    Ok(size) => {
                        s.sent_bytes.inc_by(size as u64);
                        if pipe.v2 {
                            // The peer took the bytes in (the send finished): that is progress.
                            if first {
                                s.progress_at = Instant::now();
                            }
                        } else {
                            s.allowance =
                                s.allowance.max(Duration::from_secs_f64(size as f64 / MIN_PEER_BYTES_PER_SEC));
                        }
                    }
                    Err(e) => return Some(s.fail(network_error(e))),
                }
            }
            _ = tokio::time::sleep_until(deadline), if pipe.outstanding > 0 => {
                tracing::debug!(to = s.link.to, silent_ms = s.progress_at.elapsed().as_millis() as u64, "append answer late: giving up on the connection");
                let timeout = s.link.timeout(s.ttl.max(MIN_SILENCE) + s.allowance);
                return Some(s.fail(RPCError::Timeout(timeout)));
            }
        }
    }
}

impl<S> Session<'_, S> {
    /// Ends the session with `err` and drops the connection.
    fn fail(mut self, err: RPCError<TypeConfig>) -> (Item, Self) {
        self.failures.inc();
        *self.slot = None;
        self.ended = true;
        (Err(err), self)
    }
}

/// A transport failure on a connection that was up: openraft retries after a short backoff, as
/// for a failed HTTP request.
fn network_error(message: String) -> RPCError<TypeConfig> {
    RPCError::Network(RaftNetworkError::new(&std::io::Error::other(message)))
}
