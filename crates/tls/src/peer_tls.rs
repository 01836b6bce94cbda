//! Peer mutual TLS: the files of a member's peer identity ([`PeerTlsFiles`]), what is built from
//! them ([`PeerTls`]), and a client configuration that follows their reloads
//! ([`following_client_config`]).
//!
//! A member's certificate names its member id in a URI subject alternative name
//! (`spiffe://raftkv/node/<id>`, [`member_uri`](crate::member_uri)). The receiving side of a
//! peer connection verifies the sender's certificate against the peer CA and takes the member id
//! from it ([`PeerTls::member_of`]); what the sender claims in its messages must match it. So a
//! certificate of the cluster's CA for node 2 cannot be used to speak as node 3.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::TlsError;
use crate::reloading_config::{ReloadingConfig, TlsFiles};
use crate::tls_files::{certificates, private_key, provider, rejected, root_store};

/// The prefix of a member's URI name; the member id follows.
pub const MEMBER_URI_PREFIX: &str = "spiffe://raftkv/node/";

/// The files of a member's peer identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsFiles {
    /// The CA every member's certificate comes from (PEM).
    pub ca: PathBuf,
    /// This member's certificate chain (PEM, leaf first), naming its member id.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// What a member's peer files give: its certificate and key to present, the verifier of servers
/// (other members), and the verifier of members' client certificates.
pub struct PeerTls {
    certified: Arc<CertifiedKey>,
    servers: Arc<WebPkiServerVerifier>,
    members: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl TlsFiles for PeerTlsFiles {
    type Config = PeerTls;

    fn files(&self) -> Vec<PathBuf> {
        vec![self.ca.clone(), self.cert.clone(), self.key.clone()]
    }

    fn build(&self) -> Result<PeerTls, TlsError> {
        let roots = Arc::new(root_store(&self.ca)?);
        let servers = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| rejected(&format!("peer CA {}", self.ca.display()), e))?;
        let members = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rejected(&format!("peer CA {}", self.ca.display()), e))?;
        let chain = certificates(&self.cert)?;
        member_id_of(&chain[0]).map_err(|reason| TlsError::Rejected {
            what: format!("peer certificate {}", self.cert.display()),
            reason,
        })?;
        let certified = CertifiedKey::from_der(chain, private_key(&self.key)?, &provider()).map_err(|e| {
            rejected(&format!("peer certificate {} with key {}", self.cert.display(), self.key.display()), e)
        })?;
        Ok(PeerTls { certified: Arc::new(certified), servers, members })
    }
}

impl PeerTls {
    /// The member a peer's certificate chain (leaf first) belongs to: it must verify against the
    /// peer CA as a client certificate and name exactly one member id.
    pub fn member_of(&self, chain: &[CertificateDer<'_>]) -> Result<u64, String> {
        let (leaf, intermediates) = chain.split_first().ok_or("no certificate presented")?;
        // The name first: a client certificate (no member) is refused without a signature check.
        let member = member_id_of(leaf)?;
        self.members
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| format!("the certificate does not come from the peer CA: {e}"))?;
        Ok(member)
    }

    /// The member id of this node's own certificate.
    pub fn own_member(&self) -> Result<u64, String> {
        member_id_of(&self.certified.cert[0])
    }
}

/// The member id a certificate names in its URI subject alternative name.
pub fn member_id_of(cert: &CertificateDer<'_>) -> Result<u64, String> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("not a certificate: {e}"))?;
    let ids: Vec<&str> = parsed.valid_uri_names().filter_map(|u| u.strip_prefix(MEMBER_URI_PREFIX)).collect();
    match ids.as_slice() {
        [id] => id.parse().map_err(|_| format!("member URI {MEMBER_URI_PREFIX}{id} does not end in a member id")),
        [] => Err(format!("the certificate names no member (a URI name {MEMBER_URI_PREFIX}<id>)")),
        _ => Err("the certificate names more than one member".into()),
    }
}

/// A client configuration for connections to other members that always uses the current
/// version of `peer`: its certificate is presented, and servers are verified against its CA.
/// With `member`, the server must also present a certificate naming that member id: a
/// certificate of another member, valid for the address, is refused during the handshake, before
/// anything is sent. Built once; a reload of the files applies to the next handshake.
pub fn following_client_config(peer: Arc<ReloadingConfig<PeerTlsFiles>>, member: Option<u64>) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FollowingVerifier { peer: peer.clone(), member }))
        .with_client_cert_resolver(Arc::new(FollowingCert(peer)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

struct FollowingVerifier {
    peer: Arc<ReloadingConfig<PeerTlsFiles>>,
    member: Option<u64>,
}
struct FollowingCert(Arc<ReloadingConfig<PeerTlsFiles>>);

impl fmt::Debug for FollowingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FollowingVerifier")
    }
}

impl fmt::Debug for FollowingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FollowingCert")
    }
}

impl ServerCertVerifier for FollowingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.peer.config().servers.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(expected) = self.member {
            let named = member_id_of(end_entity).map_err(rustls::Error::General)?;
            if named != expected {
                return Err(rustls::Error::General(format!(
                    "the server presented the certificate of member {named}, not of member {expected}"
                )));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.peer.config().servers.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.peer.config().servers.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.peer.config().servers.supported_verify_schemes()
    }
}

impl ResolvesClientCert for FollowingCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.config().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
