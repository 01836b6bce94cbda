//! How the harness's clients reach the cluster: plain HTTP, or TLS when the run is over TLS
//! (`--tls`). One run is one process with one cluster, so this is set once, when the cluster
//! starts, and every client of the run (workload clients, readers, the nemesis's admin calls)
//! is made here.

use std::sync::OnceLock;
use std::time::Duration;

use raftkv_client::{Client, ClientError, ClientTlsFiles};

static TLS: OnceLock<ClientTlsFiles> = OnceLock::new();

/// Makes every later client of this process speak TLS with `files`.
pub fn use_tls(files: ClientTlsFiles) {
    let _ = TLS.set(files);
}

/// `https` once [`use_tls`] was called, else `http`.
pub fn scheme() -> &'static str {
    if TLS.get().is_some() { "https" } else { "http" }
}

/// A client of `endpoints` with a request timeout of `timeout`, over TLS when the run is.
pub fn client<I, S>(endpoints: I, timeout: Duration) -> Result<Client, ClientError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    match TLS.get() {
        Some(files) => Client::with_tls(endpoints, timeout, files),
        None => Client::with_timeout(endpoints, timeout),
    }
}
