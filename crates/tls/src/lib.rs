//! TLS for raftkv's listeners and connections.
//!
//! - [`ServerTlsFiles`] and [`ClientTlsFiles`]: rustls configurations built from PEM files
//!   (aws-lc-rs provider, TLS 1.2 and 1.3), with optional or required client certificates.
//! - [`ReloadingConfig`]: a configuration that is rebuilt whole (certificate, key and CA) when
//!   its files change or on request (SIGHUP), swapped in atomically for new connections; a
//!   broken new file keeps the old configuration, and is reported.
//! - [`TlsListener`]: an `axum::serve` listener whose handshakes run concurrently, each within a
//!   timeout, so that stalled or slow clients never keep others from being served.
//! - [`ThrowawayCa`]: a CA made on the spot (rcgen) for the example cluster and the tests.

mod error;
mod reloading_config;
mod throwaway_ca;
mod tls_files;
mod tls_listener;

pub use error::TlsError;
pub use reloading_config::{ReloadingConfig, TlsFiles};
pub use throwaway_ca::{IssuedPem, ThrowawayCa, member_uri};
pub use tls_files::{ClientAuth, ClientTlsFiles, ServerTlsFiles, certificates, provider};
pub use tls_listener::{DEFAULT_HANDSHAKE_TIMEOUT, TlsListener};
