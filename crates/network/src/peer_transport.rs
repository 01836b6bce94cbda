//! [`PeerTransport`]: how this node reaches other members, plain HTTP or mutual TLS, and who a
//! peer on the other end of an incoming connection is.

use std::io;
use std::sync::Arc;

use raftkv_tls::{ConnectionInfo, PeerTls, PeerTlsFiles, ReloadingConfig, following_client_config};
use raftkv_types::NodeId;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection to a member: TCP, or TLS over TCP.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> PeerIo for T {}

/// How this node connects to the other members, and checks those that connect to it. Cheap to
/// clone.
///
/// With peer TLS, every connection to a member is TLS: the member's certificate must come from
/// the peer CA (and, on Raft's connections, name the member id this node means to reach), and
/// this node presents its own (both follow reloads of the files, for new connections). An
/// incoming peer RPC must come with a member certificate (verified against the peer CA), and the
/// member id it names is what the RPC may speak for.
#[derive(Clone, Default)]
pub struct PeerTransport {
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    files: Arc<ReloadingConfig<PeerTlsFiles>>,
    client: Arc<rustls::ClientConfig>,
}

impl PeerTransport {
    /// Plain HTTP.
    pub fn plain() -> PeerTransport {
        PeerTransport { tls: None }
    }

    /// Mutual TLS with the member files `files`.
    pub fn tls(files: Arc<ReloadingConfig<PeerTlsFiles>>) -> PeerTransport {
        let client = Arc::new(following_client_config(files.clone(), None));
        PeerTransport { tls: Some(Tls { files, client }) }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// The base URL of the member at `addr` (`host:port`).
    pub fn url(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// The client configuration of connections to members, with TLS.
    pub fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.as_ref().map(|t| t.client.clone())
    }

    /// The peer files as they are now loaded, with TLS.
    pub fn files(&self) -> Option<&Arc<ReloadingConfig<PeerTlsFiles>>> {
        self.tls.as_ref().map(|t| &t.files)
    }

    /// `builder` with this transport's TLS, for an HTTP client of members (any member: the
    /// server is checked against the peer CA and the address, not a member id).
    pub(crate) fn http_client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        match &self.tls {
            Some(tls) => builder.use_preconfigured_tls((*tls.client).clone()).build(),
            None => builder.build(),
        }
    }

    /// `builder` with this transport's TLS, for an HTTP client of member `member` alone: with
    /// TLS, a server whose certificate names another member is refused in the handshake.
    pub(crate) fn http_client_of(
        &self,
        builder: reqwest::ClientBuilder,
        member: NodeId,
    ) -> reqwest::Result<reqwest::Client> {
        match &self.tls {
            Some(tls) => {
                builder.use_preconfigured_tls(following_client_config(tls.files.clone(), Some(member))).build()
            }
            None => builder.build(),
        }
    }

    /// Opens a connection to member `member` at `addr` (TLS handshake included: with TLS, the
    /// server's certificate must name `member`).
    pub(crate) async fn connect(&self, addr: &str, tcp: TcpStream, member: NodeId) -> io::Result<Box<dyn PeerIo>> {
        let Some(tls) = &self.tls else { return Ok(Box::new(tcp)) };
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a host name: {e}")))?;
        let config = Arc::new(following_client_config(tls.files.clone(), Some(member)));
        let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Box::new(stream))
    }

    /// The member a request on `connection` comes from, with TLS: the member id its verified
    /// certificate names (judged once per connection, [`ConnectionInfo::member`]). `Ok(None)`
    /// without TLS (nothing to check).
    pub fn member_of(&self, connection: Option<&ConnectionInfo>) -> Result<Option<NodeId>, String> {
        let Some(tls) = &self.tls else { return Ok(None) };
        let connection = connection.ok_or("no client certificate was presented")?;
        let current: Arc<PeerTls> = tls.files.config();
        connection.member(&current).map(Some)
    }
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport").field("tls", &self.is_tls()).finish()
    }
}
