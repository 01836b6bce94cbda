//! Opening a node's storage, its Raft configuration, and its HTTP servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use openraft::{Config, SnapshotPolicy};
use raftkv_network::ApiError;
use raftkv_storage::{Store, StoreOptions};
use raftkv_tls::{
    ConnectionInfo, DEFAULT_HANDSHAKE_TIMEOUT, PlainListener, ReloadingConfig, ServerTlsFiles, TlsListener,
};
use raftkv_types::NodeId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::error::{NodeError, Result};

/// Binds `addr`, naming it in the error.
pub(super) async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Bind { addr: addr.to_string(), source })?;
    Ok((listener, bound))
}

/// Serves `router` on `listener` (TLS with `tls`, handshakes concurrent and within
/// [`DEFAULT_HANDSHAKE_TIMEOUT`]) until `stopped` turns true, then lets in-flight requests
/// finish. Handlers may ask for the connection's [`ConnectionInfo`] (a client certificate).
pub(super) fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig<ServerTlsFiles>>>,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let service = router.into_make_service_with_connect_info::<ConnectionInfo>();
    Ok(match tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, DEFAULT_HANDSHAKE_TIMEOUT, socket_options)
                .map_err(|source| NodeError::Bind { addr: "the TLS listener".into(), source })?;
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
                    tracing::error!(%err, "https server failed");
                }
            })
        }
        None => {
            let listener = PlainListener::new(listener, socket_options);
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
                    tracing::error!(%err, "http server failed");
                }
            })
        }
    })
}

/// Small answers (acks, votes, responses) go out at once rather than waiting on Nagle;
/// keepalive ends a long-lived append stream whose leader was cut off.
fn socket_options(tcp: &tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::warn!(%err, "could not set TCP_NODELAY");
    }
    if let Err(err) = raftkv_network::append_pipe::set_keepalive(tcp) {
        tracing::warn!(%err, "could not set TCP keepalive");
    }
}

/// Once `draining` is set, refuses new client requests with `503 node_stopping` and
/// `Connection: close`: nothing is done, and clients move to another node before this one closes
/// its connections. Peer RPC is still served: Raft runs until the end.
pub(super) async fn refuse_when_draining(
    axum::extract::State(draining): axum::extract::State<Arc<AtomicBool>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !draining.load(Ordering::Relaxed) || request.uri().path().starts_with("/raft/") {
        return next.run(request).await;
    }
    let mut response = ApiError::Stopping.into_response();
    response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    response
}

/// Opens the node's storage. A node of this process that was just shut down on the same directory
/// may still be releasing RocksDB's lock (its tasks wind down after `shutdown` returns): that is
/// waited out for a few seconds.
pub(super) async fn open_store(dir: &std::path::Path, id: NodeId, options: StoreOptions) -> Result<Store> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (dir, options) = (dir.to_path_buf(), options.clone());
        let opened = tokio::task::spawn_blocking(move || Store::open_as_with(dir, id, options))
            .await
            .map_err(|e| NodeError::Raft(format!("open storage task: {e}")))?;
        match opened {
            Err(e) if e.to_string().contains("lock hold by current process") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Delays between replication retries to a failing member (openraft's backoff series syntax).
const REPLICATION_BACKOFF: &str = "10ms 20ms ...200ms";

pub(super) fn raft_config(config: &NodeConfig) -> Result<Arc<Config>> {
    let t = &config.raft;
    let raft = Config {
        cluster_name: "raftkv".to_string(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: t.keep_logs_after_snapshot,
        enable_pre_vote: Some(true),
        // After replication to a member fails repeatedly (it is down or cut off), retry after
        // 10 ms, doubling up to 200 ms: a restarted member is found within a few milliseconds of
        // coming back instead of up to openraft's default 200 ms later.
        backoff: REPLICATION_BACKOFF.to_string(),
        // A restarted leader must win an election again, never take its leadership back at
        // startup: applies are not fsynced and the committed log id is persisted without fsync
        // (both are rebuilt from the log), so after a power loss a restored leader could serve
        // linearizable reads from a state machine that lacks acknowledged writes (its own log tail
        // may be lost while the followers that made them durable still have them). openraft
        // documents this hazard of `enable_leader_restore`; the power-loss fault found it.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(raft.validate().map_err(|e| NodeError::Config(e.to_string()))?))
}
