//! A node's transport security, opened from its configuration: the TLS of its port, members'
//! mutual TLS, the peer secret; and the task that reloads them (and the auth file) when their
//! files change or on SIGHUP.

use std::sync::Arc;
use std::time::Duration;

use raftkv_network::network_metrics::ReloadLabels;
use raftkv_network::{AuthGate, NetworkMetrics, PeerSecret, PeerTransport};
use raftkv_tls::{ReloadingConfig, ServerTlsFiles, TlsFiles};
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::error::{NodeError, Result};
use crate::kv_handle::MemberAccess;

/// How often the TLS files and the auth file are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// What a node's security configuration opened to.
pub(super) struct Security {
    pub(super) access: MemberAccess,
    /// The TLS of the node's port, if it is TLS.
    pub(super) port_tls: Option<Arc<ReloadingConfig<ServerTlsFiles>>>,
}

impl Security {
    /// Loads the TLS files and the peer secret of `config`: an error names the file that is
    /// wrong.
    pub(super) fn open(config: &NodeConfig) -> Result<Security> {
        let secret = config.peer_secret.as_deref().map(PeerSecret::new).transpose().map_err(NodeError::Config)?;
        let tls_error = |what: &str, e: raftkv_tls::TlsError| NodeError::Config(format!("{what}: {e}"));
        let peer = match &config.peer_tls {
            Some(files) => Some(ReloadingConfig::new(files.clone()).map_err(|e| tls_error("peer TLS", e))?),
            None => None,
        };
        if let Some(peer) = &peer {
            let own = peer.config().own_member().map_err(NodeError::Config)?;
            if own != config.id {
                return Err(NodeError::Config(format!(
                    "--peer-tls-cert names member {own}, but this is node {}: each member needs a certificate of its own id",
                    config.id
                )));
            }
        }
        let port_tls = match config.port_tls() {
            Some(files) => Some(ReloadingConfig::new(files).map_err(|e| tls_error("TLS", e))?),
            None => None,
        };
        let transport = peer.map_or_else(PeerTransport::plain, PeerTransport::tls);
        Ok(Security { access: MemberAccess { secret, transport }, port_tls })
    }

    /// Reloads the TLS files and `gate`'s auth file when they change (checked every 2 s) and
    /// on SIGHUP, counting each reload in `raftkv_config_reloads_total`. `None` when there is
    /// nothing to reload.
    pub(super) fn watch(&self, gate: AuthGate, metrics: NetworkMetrics) -> Option<JoinHandle<()>> {
        let port = self.port_tls.clone();
        let peer = self.access.transport.files().cloned();
        if port.is_none() && peer.is_none() && !gate.enabled() {
            return None;
        }
        Some(tokio::spawn(async move {
            // An embedding process keeps its own SIGHUP behaviour unless the node has files.
            let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for SIGHUP; files are still reloaded when they change");
                    None
                }
            };
            let mut tick = tokio::time::interval(RELOAD_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match &mut hangups { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                        tracing::info!("SIGHUP: reloading the TLS files and the auth file");
                        true
                    }
                };
                if let Some(port) = &port {
                    reload(port, forced, "tls", &metrics);
                }
                if let Some(peer) = &peer {
                    reload(peer, forced, "peer_tls", &metrics);
                }
                match gate.reload_if_changed() {
                    Ok(true) => tracing::info!("auth file reloaded"),
                    Ok(false) => {}
                    Err(err) => tracing::error!(%err, "auth file not reloaded; the previous version stays in force"),
                }
            }
        }))
    }
}

/// Reloads `files` if they changed (or when `forced`), and counts the outcome.
fn reload<F: TlsFiles>(files: &ReloadingConfig<F>, forced: bool, label: &str, metrics: &NetworkMetrics) {
    let failures = files.failures();
    let tried = if forced {
        // The outcome is counted below; the error is logged by the reload.
        let _ = files.reload();
        true
    } else {
        files.reload_if_changed()
    };
    if tried {
        let result = if files.failures() > failures { "failed" } else { "ok" };
        metrics.config_reloads.get_or_create(&ReloadLabels::of(label, result)).inc();
    }
}
