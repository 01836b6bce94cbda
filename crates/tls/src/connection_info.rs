//! [`ConnectionInfo`]: what a handler may know of the connection a request came on: the remote
//! address and, on TLS, the certificate chain the client presented (verified by the listener).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};

use crate::peer_tls::PeerTls;
use crate::tls_listener::TlsListener;

/// The connection of a request, as `axum::extract::ConnectInfo<ConnectionInfo>`. Every request
/// of a connection gets a clone of the same one.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The certificate chain the client presented, leaf first, if it did (TLS with client
    /// certificates); the listener verified it against its client CAs.
    pub certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// [`member`](ConnectionInfo::member)'s answer, and the version of the peer files it holds
    /// for.
    member: Arc<Mutex<Option<MemberAnswer>>>,
}

type MemberAnswer = (Weak<PeerTls>, Result<u64, String>);

impl ConnectionInfo {
    /// A connection from `remote` whose client presented `certificates` (verified).
    pub fn new(remote: SocketAddr, certificates: Option<Arc<[CertificateDer<'static>]>>) -> ConnectionInfo {
        ConnectionInfo { remote, certificates, member: Arc::default() }
    }

    /// The member whose certificate the client presented, as [`PeerTls::member_of`] says.
    ///
    /// Worked out once per connection and version of the peer files: the requests of a
    /// connection that follow reuse the answer (a certificate is judged when the connection is
    /// made, as its handshake is), and a reload of the peer CA makes the next request judge it
    /// again.
    pub fn member(&self, peer: &Arc<PeerTls>) -> Result<u64, String> {
        let chain = self.certificates.as_deref().ok_or("no client certificate was presented")?;
        let mut answer = self.member.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, result)) = &*answer
            && std::ptr::eq(version.as_ptr(), Arc::as_ptr(peer))
        {
            return result.clone();
        }
        // The `Weak` keeps the version's allocation, so no later version can reuse its address.
        let result = peer.member_of(chain);
        *answer = Some((Arc::downgrade(peer), result.clone()));
        result
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> ConnectionInfo {
        let certificates = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>().into());
        ConnectionInfo::new(*stream.remote_addr(), certificates)
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> ConnectionInfo {
        ConnectionInfo::new(*stream.remote_addr(), None)
    }
}

/// A plain TCP listener for `axum::serve` that runs `on_tcp` on each connection first (socket
/// options), and whose requests can know their [`ConnectionInfo`] as TLS ones can.
pub struct PlainListener {
    tcp: TcpListener,
    on_tcp: Box<dyn Fn(&TcpStream) + Send + Sync>,
}

impl PlainListener {
    /// Serves plain TCP on `tcp`.
    pub fn new(tcp: TcpListener, on_tcp: impl Fn(&TcpStream) + Send + Sync + 'static) -> PlainListener {
        PlainListener { tcp, on_tcp: Box::new(on_tcp) }
    }
}

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, remote)) => {
                    (self.on_tcp)(&stream);
                    return (stream, remote);
                }
                Err(error) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
