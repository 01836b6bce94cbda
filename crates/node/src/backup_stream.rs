//! Streaming a backup of a node's state out over HTTP, in bounded memory.

use std::io::{self, Write};
use std::time::Duration;

use bytes::Bytes;
use raftkv_network::{ApiError, BackupStream};
use raftkv_types::api::{BackupConsistency, Consistency};
use tokio::sync::mpsc;

use crate::kv_handle::KvHandle;

/// Bytes gathered before a piece is handed to the HTTP body.
const PIECE_BYTES: usize = 256 << 10;
/// Pieces buffered between the reading thread and the connection: at most 2 MiB in flight.
const PIECES_IN_FLIGHT: usize = 8;
/// How long the reading thread waits for the receiver to take a piece before it gives up (the
/// receiver stopped reading). There is no limit on the whole backup.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl KvHandle {
    /// Starts a backup: waits for a read index first when `consistency` is linearizable, takes a
    /// checkpoint, and streams it from a blocking thread. Applies go on meanwhile.
    pub(crate) async fn start_backup(&self, consistency: BackupConsistency) -> Result<BackupStream, ApiError> {
        if consistency == BackupConsistency::Linearizable {
            self.ready_to_read(Consistency::Linearizable).await?;
        }
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(PIECES_IN_FLIGHT);
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let state_machine = self.state_machine.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let out = PieceWriter { tx: tx.clone(), runtime, buf: Vec::with_capacity(PIECE_BYTES) };
            let mut head_tx = Some(head_tx);
            let result = state_machine.write_backup_with(out, consistency, |header| {
                if let Some(head_tx) = head_tx.take() {
                    let _ = head_tx.send(Ok(header.revision));
                }
            });
            match result {
                Ok((mut out, header, summary)) => {
                    if out.flush().is_ok() {
                        tracing::info!(revision = header.revision, records = summary.records, bytes = summary.file_bytes, sha256 = %summary.sha256, "backup sent");
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "backup failed");
                    match head_tx.take() {
                        Some(head_tx) => {
                            let _ = head_tx.send(Err(err.to_string()));
                        }
                        // Ends the body early: the receiver sees an incomplete file.
                        None => {
                            let _ = tx.blocking_send(Err(io::Error::other(err.to_string())));
                        }
                    }
                }
            }
        });
        let revision = match head_rx.await {
            Ok(Ok(revision)) => revision,
            Ok(Err(err)) => return Err(ApiError::Internal(format!("backup: {err}"))),
            Err(_) => return Err(ApiError::Internal("backup task ended before it started".into())),
        };
        let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) });
        Ok(BackupStream { revision, node: self.id, body: Box::pin(body) })
    }
}

/// A `Write` that hands its bytes to an async channel in pieces, waiting (at most the idle
/// timeout) while the receiver is behind: backpressure from the connection to the reading thread.
struct PieceWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl PieceWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE_BYTES)));
        let sent = self.runtime.block_on(tokio::time::timeout(IDLE_TIMEOUT, self.tx.send(Ok(piece))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the backup's receiver went away")),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the backup's receiver stopped reading")),
        }
    }
}

impl Write for PieceWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= PIECE_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
