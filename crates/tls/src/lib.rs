//! TLS for raftkv's listeners and connections.
//!
//! - [`ServerTlsFiles`] and [`ClientTlsFiles`]: rustls configurations built from PEM files
//!   (aws-lc-rs provider, TLS 1.2 and 1.3), with optional or required client certificates.
//! - [`ReloadingConfig`]: a configuration that is rebuilt whole (certificate, key and CA) when
//!   its files change or on request (SIGHUP), swapped in atomically for new connections; a
//!   broken new file keeps the old configuration, and is reported.
//! - [`TlsListener`]: an `axum::serve` listener whose handshakes run concurrently, each within a
//!   timeout, so that stalled or slow clients never keep others from being served.
//! - [`PeerTlsFiles`] and [`PeerTls`]: members' mutual TLS, each member's certificate naming its
//!   member id, and a client configuration that follows reloads ([`following_client_config`]).
//! - [`ConnectionInfo`]: the certificate a client presented, for handlers that check it.
//! - [`ThrowawayCa`]: a CA made on the spot (rcgen) for the example cluster and the tests.

mod connection_info;
mod error;
mod peer_tls;
mod reloading_config;
mod throwaway_ca;
mod tls_files;
mod tls_listener;

pub use connection_info::{ConnectionInfo, PlainListener};
pub use error::TlsError;
pub use peer_tls::{MEMBER_URI_PREFIX, PeerTls, PeerTlsFiles, following_client_config, member_id_of};
pub use reloading_config::{ReloadingConfig, TlsFiles};
pub use throwaway_ca::{IssuedPem, ThrowawayCa, ThrowawayCluster, member_uri};
pub use tls_files::{ClientAuth, ClientTlsFiles, ServerTlsFiles, certificates, provider};
pub use tls_listener::{DEFAULT_HANDSHAKE_TIMEOUT, TlsListener};
