//! The TLS listener on real sockets: client certificate modes, plain HTTP refused, stalled
//! handshakes that block nobody and are cut off, and certificates replaced on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use raftkv_tls::{ClientAuth, ClientTlsFiles, ReloadingConfig, ServerTlsFiles, ThrowawayCa, TlsListener};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, all on disk.
struct Pki {
    dir: tempfile::TempDir,
    ca: ThrowawayCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ThrowawayCa::new("raftkv test CA").unwrap();
        ca.write_cert(&dir.path().join("ca.crt")).unwrap();
        ca.issue_node(&["127.0.0.1", "localhost"], Some(1)).unwrap().write(dir.path(), "server").unwrap();
        ca.issue_client("alice").unwrap().write(dir.path(), "alice").unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, client_auth: ClientAuth) -> ServerTlsFiles {
        ServerTlsFiles {
            cert: self.path("server.crt"),
            key: self.path("server.key"),
            client_ca: (client_auth != ClientAuth::Off).then(|| self.path("ca.crt")),
            client_auth,
            peer_ca: None,
        }
    }

    /// A client trusting `ca`, presenting `identity` (`{name}.crt`/`.key` in `dir`) if given.
    fn client(ca: &Path, identity: Option<(&Path, &str)>) -> tokio_rustls::TlsConnector {
        let files = ClientTlsFiles {
            ca: Some(ca.to_path_buf()),
            cert: identity.map(|(dir, name)| dir.join(format!("{name}.crt"))),
            key: identity.map(|(dir, name)| dir.join(format!("{name}.key"))),
        };
        tokio_rustls::TlsConnector::from(Arc::new(files.load().unwrap()))
    }
}

/// Serves `GET /hello` over TLS with `files`; returns the address and the configuration.
async fn serve(files: ServerTlsFiles, handshake_timeout: Duration) -> (String, Arc<ReloadingConfig<ServerTlsFiles>>) {
    let config = ReloadingConfig::new(files).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, config.clone(), handshake_timeout, |_| {}).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap().to_string();
    let router = Router::new().route("/hello", get(|| async { "hello over tls" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, config)
}

/// `GET /hello` over TLS through `connector`: the body, or the error.
async fn hello(addr: &str, connector: &tokio_rustls::TlsConnector) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    // A refused client certificate shows up on the first read under TLS 1.3.
    tls.read_to_end(&mut answer).await.map_err(|e| format!("read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {answer}"));
    }
    Ok(answer.rsplit("\r\n\r\n").next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn client_certificates_off_optional_and_required() {
    let pki = Pki::new();
    let other = Pki::new();
    let anonymous = Pki::client(&pki.path("ca.crt"), None);
    let alice = Pki::client(&pki.path("ca.crt"), Some((pki.dir.path(), "alice")));
    let stranger = Pki::client(&pki.path("ca.crt"), Some((other.dir.path(), "alice")));

    let (off, _) = serve(pki.server(ClientAuth::Off), Duration::from_secs(10)).await;
    assert_eq!(hello(&off, &anonymous).await.unwrap(), "hello over tls");

    let (optional, _) = serve(pki.server(ClientAuth::Optional), Duration::from_secs(10)).await;
    assert_eq!(hello(&optional, &anonymous).await.unwrap(), "hello over tls");
    assert_eq!(hello(&optional, &alice).await.unwrap(), "hello over tls");
    assert!(hello(&optional, &stranger).await.is_err(), "a certificate of another CA is refused");

    let (required, _) = serve(pki.server(ClientAuth::Required), Duration::from_secs(10)).await;
    assert_eq!(hello(&required, &alice).await.unwrap(), "hello over tls");
    assert!(hello(&required, &anonymous).await.is_err(), "no certificate, no service");
    assert!(hello(&required, &stranger).await.is_err(), "a certificate of another CA is refused");

    // A client that trusts another CA does not accept the server.
    let wrong_ca = Pki::client(&other.path("ca.crt"), None);
    assert!(hello(&off, &wrong_ca).await.unwrap_err().contains("handshake"));

    // Optional or required client certificates without a CA is a configuration error.
    let no_ca = ServerTlsFiles { client_ca: None, ..pki.server(ClientAuth::Required) };
    assert!(no_ca.load().unwrap_err().to_string().contains("client CA"));
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_no_answer() {
    let pki = Pki::new();
    let (addr, _) = serve(pki.server(ClientAuth::Off), Duration::from_secs(10)).await;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("hello over tls"), "plain HTTP is not served");
}

#[tokio::test]
async fn stalled_handshakes_block_nobody_and_are_cut_off() {
    let pki = Pki::new();
    // A handshake timeout far longer than the test: if handshakes ran one at a time, the
    // client below would wait behind the stalled connections until the test is killed.
    let (addr, _) = serve(pki.server(ClientAuth::Off), Duration::from_secs(3600)).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(TcpStream::connect(&addr).await.unwrap());
    }
    let client = Pki::client(&pki.path("ca.crt"), None);
    let served = tokio::time::timeout(Duration::from_secs(60), hello(&addr, &client)).await;
    assert_eq!(served.expect("served beside 50 stalled handshakes").unwrap(), "hello over tls");

    // With a short timeout, a connection that never completes its handshake is closed.
    let (addr, _) = serve(pki.server(ClientAuth::Off), Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello, then nothing
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(60), slow.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the slow handshake was cut off: {closed:?}");
}

#[tokio::test]
async fn a_replaced_certificate_is_used_for_new_connections_and_a_broken_one_is_refused() {
    let pki = Pki::new();
    let (addr, config) = serve(pki.server(ClientAuth::Off), Duration::from_secs(10)).await;
    let old_client = Pki::client(&pki.path("ca.crt"), None);
    assert!(hello(&addr, &old_client).await.is_ok());

    // A new CA and a server certificate from it replace the files; the reload picks up both.
    let new_ca = ThrowawayCa::new("raftkv second CA").unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    new_ca.write_cert(&new_dir.path().join("ca.crt")).unwrap();
    let issued = new_ca.issue_node(&["127.0.0.1", "localhost"], None).unwrap();
    std::fs::write(pki.path("server.crt"), &issued.cert).unwrap();
    std::fs::write(pki.path("server.key"), &issued.key).unwrap();
    assert!(config.reload_if_changed(), "the change is seen");
    assert_eq!(config.reloads(), 1);
    let new_client = Pki::client(&new_dir.path().join("ca.crt"), None);
    assert_eq!(hello(&addr, &new_client).await.unwrap(), "hello over tls");
    assert!(hello(&addr, &old_client).await.is_err(), "the old certificate is no longer served");

    // A corrupt replacement keeps the configuration in use, and says why.
    std::fs::write(pki.path("server.key"), "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    assert!(config.reload().is_err());
    assert_eq!(config.failures(), 1);
    assert!(config.last_error().unwrap().contains("server.key"), "{:?}", config.last_error());
    assert_eq!(hello(&addr, &new_client).await.unwrap(), "hello over tls");
    let _ = pki.ca.cert_pem();
}
