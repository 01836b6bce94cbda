//! [`TlsListener`]: TLS connections for `axum::serve`, handshakes run concurrently.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::reloading_config::ReloadingConfig;
use crate::tls_files::ServerTlsFiles;

/// How long a client has to complete its TLS handshake, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at most; beyond them new connections wait to be accepted (the
/// kernel's backlog holds them).
const MAX_HANDSHAKES: usize = 4096;

/// Accepted connections whose handshake is done and that `axum::serve` has not taken yet.
const READY_QUEUE: usize = 256;

/// A listener whose TLS handshakes happen off the accept loop.
///
/// A task accepts TCP connections and runs each handshake in a task of its own, with the
/// configuration [`ReloadingConfig::config`] gives at that moment and within the handshake
/// timeout; only connections whose handshake completed reach `axum::serve`. So one client that
/// connects and sends nothing (or sends it a byte a minute) is dropped after the timeout and
/// holds up nobody. `on_tcp` runs on each TCP connection first (socket options).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS on `tcp` with `config`, handshakes within `handshake_timeout`.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ReloadingConfig<ServerTlsFiles>>,
        handshake_timeout: Duration,
        on_tcp: impl Fn(&TcpStream) + Send + Sync + 'static,
    ) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, config, handshake_timeout, on_tcp, tx));
        Ok(TlsListener { ready, local, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    config: Arc<ReloadingConfig<ServerTlsFiles>>,
    handshake_timeout: Duration,
    on_tcp: impl Fn(&TcpStream) + Send + Sync + 'static,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        on_tcp(&stream);
        let acceptor = TlsAcceptor::from(config.config());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends with the listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
