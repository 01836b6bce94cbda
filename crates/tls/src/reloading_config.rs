//! [`ReloadingConfig`]: a TLS configuration swapped for a new one when its files change.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::error::TlsError;
use crate::tls_files::{ClientTlsFiles, ServerTlsFiles};

/// Files a configuration of type `Self::Config` is built from.
pub trait TlsFiles: Send + Sync + 'static {
    /// The rustls configuration built.
    type Config: Send + Sync + 'static;

    /// Every file it is built from.
    fn files(&self) -> Vec<PathBuf>;

    /// Builds it from the files as they are now.
    fn build(&self) -> Result<Self::Config, TlsError>;
}

impl TlsFiles for ServerTlsFiles {
    type Config = rustls::ServerConfig;

    fn files(&self) -> Vec<PathBuf> {
        self.paths().into_iter().map(PathBuf::from).collect()
    }

    fn build(&self) -> Result<rustls::ServerConfig, TlsError> {
        self.load()
    }
}

impl TlsFiles for ClientTlsFiles {
    type Config = rustls::ClientConfig;

    fn files(&self) -> Vec<PathBuf> {
        self.paths().into_iter().map(PathBuf::from).collect()
    }

    fn build(&self) -> Result<rustls::ClientConfig, TlsError> {
        self.load()
    }
}

/// What identifies a version of the files: size and modification time of each (`None`: the
/// file is missing).
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// A TLS configuration that follows its files.
///
/// [`config`](ReloadingConfig::config) is the configuration to use for the next connection;
/// connections already made keep theirs. [`reload`](ReloadingConfig::reload) rebuilds it from
/// the files and swaps it in only if the whole of it (certificate, key and CA) loads; otherwise
/// the old one stays, the failure is counted and logged, and the error returned.
/// [`reload_if_changed`](ReloadingConfig::reload_if_changed) reloads when the files' sizes or
/// modification times changed (the node's reload task calls it every 2 s).
pub struct ReloadingConfig<F: TlsFiles> {
    files: F,
    current: ArcSwap<F::Config>,
    stamp: Mutex<Stamp>,
    reloads: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl<F: TlsFiles> ReloadingConfig<F> {
    /// Loads the configuration from `files`: an error if it cannot be built now.
    pub fn new(files: F) -> Result<Arc<ReloadingConfig<F>>, TlsError> {
        let stamp = stamp_of(&files.files());
        let config = files.build()?;
        Ok(Arc::new(ReloadingConfig {
            files,
            current: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }))
    }

    /// The configuration for new connections.
    pub fn config(&self) -> Arc<F::Config> {
        self.current.load_full()
    }

    /// The files it is built from.
    pub fn files(&self) -> &F {
        &self.files
    }

    /// Rebuilds the configuration from the files now and swaps it in; on an error the current
    /// one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp_of(&self.files.files());
        *self.stamp.lock().expect("stamp lock") = stamp;
        match self.files.build() {
            Ok(config) => {
                self.current.store(Arc::new(config));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().expect("error lock") = None;
                tracing::info!(files = ?self.files.files(), "TLS configuration reloaded");
                Ok(())
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().expect("error lock") = Some(error.to_string());
                tracing::error!(%error, "TLS configuration not reloaded: the previous one stays in use");
                Err(error)
            }
        }
    }

    /// Reloads if a file changed since the last load (or attempt); whether it tried.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = stamp_of(&self.files.files());
        if *self.stamp.lock().expect("stamp lock") == stamp {
            return false;
        }
        let _ = self.reload();
        true
    }

    /// Successful reloads since the start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Failed reloads since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Why the last reload failed, if it did (cleared by a successful one).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("error lock").clone()
    }
}

fn stamp_of(files: &[PathBuf]) -> Stamp {
    files.iter().map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.len(), m.modified().ok()?)))).collect()
}
