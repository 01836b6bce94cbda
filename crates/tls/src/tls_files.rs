//! TLS configurations built from PEM files: the server side of a listener (with optional or
//! required client certificates) and the client side of outgoing connections.
//!
//! Every configuration uses the aws-lc-rs provider (post-quantum hybrid key exchange first) and
//! TLS 1.2 or 1.3, and offers HTTP/1.1 over
//! ALPN. A configuration is built whole from its files each time (certificate, key **and** CA),
//! so a reload picks up a new CA as well.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TlsError;

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates.
    #[default]
    Off,
    /// A client may present a certificate from the client CA (it is verified if it does);
    /// clients without one are served too.
    Optional,
    /// Every client must present a certificate from the client CA.
    Required,
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientAuth, String> {
        match s {
            "off" => Ok(ClientAuth::Off),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!("client certificate mode must be off, optional or required, got {other:?}")),
        }
    }
}

/// The files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA whose certificates clients may present (PEM, one or more certificates).
    pub client_ca: Option<PathBuf>,
    /// Whether clients must, may or need not present one.
    pub client_auth: ClientAuth,
    /// The CA of the cluster's members, when peer RPC shares this listener: their certificates
    /// are accepted as client certificates too, and the listener asks for one (at least
    /// optionally) so that a member can prove who it is.
    pub peer_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// Every file the configuration is built from.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths.extend(self.peer_ca.as_deref());
        paths
    }

    /// Builds the server configuration from the files as they are now.
    pub fn load(&self) -> Result<rustls::ServerConfig, TlsError> {
        let chain = certificates(&self.cert)?;
        let key = private_key(&self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?;
        let cas: Vec<&PathBuf> = self.client_ca.iter().chain(&self.peer_ca).collect();
        let mode = match (self.client_auth, &self.peer_ca) {
            (ClientAuth::Off, Some(_)) => ClientAuth::Optional,
            (mode, _) => mode,
        };
        let builder = match (mode, cas.is_empty()) {
            (ClientAuth::Off, _) => builder.with_no_client_auth(),
            (mode, false) => {
                let mut roots = RootCertStore::empty();
                for ca in &cas {
                    for cert in certificates(ca)? {
                        roots.add(cert).map_err(|e| rejected(&format!("CA {}", ca.display()), e))?;
                    }
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if mode == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                let verifier = verifier.build().map_err(|e| rejected("client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            (_, true) => {
                return Err(TlsError::Rejected {
                    what: "client certificates".into(),
                    reason: "optional or required client certificates need a client CA".into(),
                });
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            rejected(&format!("certificate {} with key {}", self.cert.display(), self.key.display()), e)
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The files of the client side of TLS connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTlsFiles {
    /// The CA that servers' certificates must come from (PEM).
    pub ca: Option<PathBuf>,
    /// A certificate chain to present to servers that ask for one (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
}

impl ClientTlsFiles {
    /// Every file the configuration is built from.
    pub fn paths(&self) -> Vec<&Path> {
        [&self.ca, &self.cert, &self.key].into_iter().flatten().map(PathBuf::as_path).collect()
    }

    /// Builds the client configuration from the files as they are now. Without a CA, servers
    /// are verified against nothing and every connection fails: a CA is required.
    pub fn load(&self) -> Result<rustls::ClientConfig, TlsError> {
        let Some(ca) = &self.ca else {
            return Err(TlsError::Rejected {
                what: "TLS client".into(),
                reason: "a CA certificate is needed to verify servers".into(),
            });
        };
        let roots = Arc::new(root_store(ca)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rejected(&format!("CA {}", ca.display()), e))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("TLS versions", e))?
            .with_webpki_verifier(verifier);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|e| rejected(&format!("client certificate {}", cert.display()), e))?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Rejected {
                    what: "client certificate".into(),
                    reason: "a certificate and its key go together".into(),
                });
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The crypto provider of every configuration.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub(crate) fn rejected(what: &str, error: impl std::fmt::Display) -> TlsError {
    TlsError::Rejected { what: what.into(), reason: error.to_string() }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// The certificates of a PEM file, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), reason: format!("not PEM certificates: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), reason: "holds no certificate".into() });
    }
    Ok(certs)
}

pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), reason: format!("holds no private key: {e}") })
}

pub(crate) fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| rejected(&format!("CA {}", path.display()), e))?;
    }
    Ok(roots)
}
