//! The client over TLS, against a TLS server on a real socket that requires client
//! certificates: served with the right CA and certificate, refused with a clear error
//! otherwise, and endpoints whose scheme does not match the client's refused up front.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use raftkv_client::{Client, ClientError, ClientTlsFiles, Consistency};
use raftkv_tls::{ClientAuth, DEFAULT_HANDSHAKE_TIMEOUT, ReloadingConfig, ServerTlsFiles, ThrowawayCa, TlsListener};

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate into `dir`.
fn pki(dir: &Path) {
    let ca = ThrowawayCa::new("raftkv client test CA").unwrap();
    ca.write_cert(&dir.join("ca.crt")).unwrap();
    ca.issue_node(&["127.0.0.1"], None).unwrap().write(dir, "server").unwrap();
    ca.issue_client("app").unwrap().write(dir, "app").unwrap();
}

/// A TLS server requiring client certificates from `dir`'s CA, answering every get with `v`.
async fn server(dir: &Path) -> String {
    let files = ServerTlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_ca: Some(dir.join("ca.crt")),
        client_auth: ClientAuth::Required,
        peer_ca: None,
    };
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener =
        TlsListener::new(tcp, ReloadingConfig::new(files).unwrap(), DEFAULT_HANDSHAKE_TIMEOUT, |_| {}).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap().to_string();
    let router = Router::new().route("/v1/kv/{key}", get(|| async { "v" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn files(dir: &Path, ca_dir: &Path, identity: bool) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(ca_dir.join("ca.crt")),
        cert: identity.then(|| dir.join("app.crt")),
        key: identity.then(|| dir.join("app.key")),
    }
}

#[tokio::test]
async fn a_tls_client_is_served_with_its_ca_and_certificate_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let other = tempfile::tempdir().unwrap();
    pki(other.path());
    let addr = server(dir.path()).await;
    let timeout = Duration::from_secs(10);

    let client = Client::with_tls([addr.as_str()], timeout, &files(dir.path(), dir.path(), true)).unwrap();
    assert_eq!(client.endpoints(), [format!("https://{addr}")], "a bare host:port is https with TLS");
    assert_eq!(client.scheme(), "https");
    assert_eq!(client.get("k", Consistency::Stale).await.unwrap().as_deref(), Some(&b"v"[..]));

    // Without a client certificate, or with one from another CA, the server refuses.
    for (what, files) in [
        ("no client certificate", files(dir.path(), dir.path(), false)),
        ("a certificate of another CA", files(other.path(), dir.path(), true)),
    ] {
        let client = Client::with_tls([addr.as_str()], timeout, &files).unwrap();
        let err = client.get("k", Consistency::Stale).await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. } | ClientError::NoAnswer { .. }), "{what}: {err:?}");
    }

    // A client that trusts another CA refuses the server, naming TLS.
    let client = Client::with_tls([addr.as_str()], timeout, &files(other.path(), other.path(), true)).unwrap();
    let err = client.get("k", Consistency::Stale).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");

    // Schemes that do not match the client are refused before anything is sent.
    let err = Client::with_timeout([format!("https://{addr}")], timeout).err().unwrap();
    assert!(err.to_string().contains("--cacert"), "{err}");
    let err =
        Client::with_tls([format!("http://{addr}")], timeout, &files(dir.path(), dir.path(), true)).err().unwrap();
    assert!(err.to_string().contains("https://"), "{err}");
    let missing = ClientTlsFiles { ca: Some(dir.path().join("nope.crt")), cert: None, key: None };
    let err = Client::with_tls([addr.as_str()], timeout, &missing).err().unwrap();
    assert!(err.to_string().contains("nope.crt"), "{err}");
}
