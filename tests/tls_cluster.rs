//! A cluster of real processes over TLS: members verify each other (mutual TLS, certificates
//! naming member ids), clients must present certificates of the client CA. Plain HTTP, missing
//! and foreign client certificates are refused; a node with a certificate of another CA cannot
//! join; a valid certificate for the wrong member cannot speak for another; stalled handshakes
//! hold up nobody; certificates replaced on disk are used without a restart, and a corrupt
//! replacement keeps the old one; a server with another member's certificate gets nothing. Certificates are made by the test (nothing committed expires).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raftkv::{Client, ClientTlsFiles, Consistency};
use raftkv_tls::{ThrowawayCa, certificates};
use support::{Cluster, ClusterOptions, wait_for};

struct Pki {
    dir: PathBuf,
    ca: ThrowawayCa,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let ca = ThrowawayCa::new(name).unwrap();
        ca.write_cert(&dir.join(format!("{name}.crt"))).unwrap();
        Pki { dir: dir.to_path_buf(), ca }
    }

    fn node(&self, file: &str, member: u64) -> (PathBuf, PathBuf) {
        self.ca.issue_node(&["127.0.0.1", "localhost"], Some(member)).unwrap().write(&self.dir, file).unwrap()
    }

    fn client(&self, file: &str) -> (PathBuf, PathBuf) {
        self.ca.issue_client(file).unwrap().write(&self.dir, file).unwrap()
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The leaf certificate a TLS server at `addr` presents to a client of `files`.
async fn served_certificate(addr: &str, files: &ClientTlsFiles) -> Result<Vec<u8>, String> {
    let config = Arc::new(files.load().map_err(|e| e.to_string())?);
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let chain = tls.get_ref().1.peer_certificates().ok_or("no certificate")?;
    Ok(chain[0].to_vec())
}

/// Failed reloads of the TLS files node `id` counted (`None`: no answer).
async fn failed_tls_reloads(cluster: &Cluster, id: u64) -> Option<u64> {
    let node = cluster.nodes.iter().find(|n| n.id == id)?;
    let metrics = cluster.client_of(id).metrics_of(&node.url()).await.ok()?;
    Some(
        metrics
            .lines()
            .filter(|l| l.starts_with("raftkv_config_reloads_total{") && l.contains("result=\"failed\""))
            .filter(|l| l.contains("file=\"tls\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// A TLS server presenting a certificate it was given, counting the connections that reach it
/// and those on which a request arrives after the handshake.
struct ImpostorServer {
    addr: String,
    attempts: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ImpostorServer {
    async fn start(cert: &Path, key: &Path) -> ImpostorServer {
        let files = raftkv_tls::ServerTlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: None,
            client_auth: raftkv_tls::ClientAuth::Off,
            peer_ca: None,
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(files.load().unwrap()));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap().to_string();
        let (attempts, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, r) = (attempts.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (acceptor, r) = (acceptor.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let mut buf = [0u8; 64];
                    if let Ok(n) = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await
                        && n > 0
                    {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        ImpostorServer { addr, attempts, requests, task }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ImpostorServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_mutual_tls_serves_clients_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster-ca");
    let strangers = Pki::new(dir.path(), "stranger-ca");
    let ca = dir.path().join("cluster-ca.crt");
    let mut node_args = Vec::new();
    for id in 1..=3 {
        let (peer_cert, peer_key) = pki.node(&format!("peer-{id}"), id);
        let (port_cert, port_key) = pki.node(&format!("port-{id}"), id);
        node_args.push(
            [
                "--peer-tls-ca",
                &path(&ca),
                "--peer-tls-cert",
                &path(&peer_cert),
                "--peer-tls-key",
                &path(&peer_key),
                "--tls-cert",
                &path(&port_cert),
                "--tls-key",
                &path(&port_key),
                "--tls-client-ca",
                &path(&ca),
                "--tls-client-auth",
                "required",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
    }
    let (client_cert, client_key) = pki.client("app");
    let tls = ClientTlsFiles { ca: Some(ca.clone()), cert: Some(client_cert), key: Some(client_key) };
    let mut cluster =
        Cluster::start(ClusterOptions { nodes: 3, node_args, tls: Some(tls.clone()), ..ClusterOptions::default() })
            .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let follower_addr = cluster.addr(follower);

    // Writes through a follower are forwarded to the leader over TLS; a linearizable read on
    // the follower asks the leader for a read index over TLS.
    let via_follower = cluster.client_of(follower);
    for i in 0..20 {
        via_follower.put(&format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let read = via_follower.get("k19", Consistency::Linearizable).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"v19"[..]));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(&follower_addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "plain HTTP was served");

    // No client certificate, or one of another CA: refused.
    let endpoint = [format!("https://{follower_addr}")];
    let anonymous = ClientTlsFiles { ca: Some(ca.clone()), cert: None, key: None };
    let err = Client::with_tls(&endpoint, Duration::from_secs(5), &anonymous).unwrap().status().await.unwrap_err();
    assert!(!err.to_string().is_empty());
    let (foreign_cert, foreign_key) = strangers.client("intruder");
    let foreign = ClientTlsFiles { ca: Some(ca.clone()), cert: Some(foreign_cert), key: Some(foreign_key) };
    assert!(Client::with_tls(&endpoint, Duration::from_secs(5), &foreign).unwrap().status().await.is_err());

    // A valid certificate of the cluster's CA for member 2 cannot speak for node 3.
    let (impostor_cert, impostor_key) = pki.node("impostor", 2);
    let impostor = ClientTlsFiles { ca: Some(ca.clone()), cert: Some(impostor_cert), key: Some(impostor_key) };
    let http = reqwest::Client::builder().use_preconfigured_tls(impostor.load().unwrap()).build().unwrap();
    let vote = openraft::raft::VoteRequest::<raftkv_types::TypeConfig>::new(raftkv_types::Vote::new(1_000, 3), None);
    let body = raftkv_network::wire::encode(&vote).unwrap();
    let leader_addr = cluster.addr(leader);
    let answer = http.post(format!("https://{leader_addr}/raft/v1/vote")).body(body).send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::FORBIDDEN);
    let text = answer.text().await.unwrap();
    assert!(text.contains("certificate of member 2"), "{text}");
    // A client certificate (no member) may not speak Raft at all.
    let app = reqwest::Client::builder().use_preconfigured_tls(tls.load().unwrap()).build().unwrap();
    let answer = app.post(format!("https://{leader_addr}/raft/v1/vote")).body("x").send().await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::FORBIDDEN);

    // A server at a member's address that presents another member's certificate (valid, of
    // the cluster's CA, for that address) is refused in the handshake: nothing reaches it.
    let (cert_2, key_2) = pki.node("impostor-server", 2);
    let impostor_server = ImpostorServer::start(&cert_2, &key_2).await;
    cluster.client().add_learner(5, &impostor_server.addr).await.unwrap();
    wait_for(Duration::from_secs(30), "the leader to try to reach member 5", || async {
        (impostor_server.attempts() >= 2).then_some(())
    })
    .await;
    assert_eq!(impostor_server.requests(), 0, "a request reached a server with another member's certificate");
    cluster.client().remove_member(5, false).await.unwrap();

    // 50 connections that never finish their handshake keep nobody from being served.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(tokio::net::TcpStream::connect(&follower_addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    via_follower.put("after-stall", "1").await.unwrap();
    let fresh = cluster.client_of(follower);
    fresh.status().await.unwrap();
    eprintln!("served beside 50 stalled handshakes in {:?}", started.elapsed());
    // A slow-loris client is cut off once the handshake timeout passes.
    let mut slow = stalled.pop().unwrap();
    let mut buf = [0u8; 1];
    let cut = tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncReadExt::read(&mut slow, &mut buf)).await;
    assert!(matches!(cut, Ok(Ok(0)) | Ok(Err(_))), "a stalled handshake was not cut off: {cut:?}");
    drop(stalled);

    // A node whose peer certificate comes from another CA cannot join.
    let (stranger_cert, stranger_key) = strangers.node("stranger-4", 4);
    let stranger_ca = dir.path().join("stranger-ca.crt");
    let args = [
        "--peer-tls-ca",
        &path(&stranger_ca),
        "--peer-tls-cert",
        &path(&stranger_cert),
        "--peer-tls-key",
        &path(&stranger_key),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = cluster.add_node(4, true, &args).log.clone();
    cluster.node(4).start();
    wait_for(Duration::from_secs(30), "node 4 to fail to join", || async {
        std::fs::read_to_string(&log).ok().filter(|l| l.contains("could not join yet")).map(|_| ())
    })
    .await;
    let status = cluster.leader_status().await.unwrap();
    assert!(!status.members.contains_key(&4), "a node of another CA joined: {:?}", status.members);
    cluster.node(4).kill9();
    cluster.nodes.retain(|n| n.id != 4);

    // Node 1's port certificate replaced on disk is served to new connections; a corrupt
    // replacement is refused and the previous one stays.
    let port1 = cluster.addr(1);
    let before = served_certificate(&port1, &tls).await.unwrap();
    let renewed = pki.ca.issue_node(&["127.0.0.1", "localhost"], Some(1)).unwrap();
    let renewed_der = {
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let (cert, _) = renewed.write(&staging, "renewed").unwrap();
        certificates(&cert).unwrap()[0].to_vec()
    };
    assert_ne!(before, renewed_der);
    // Key first, then certificate: a reload that sees one of them new fails and keeps the old
    // pair, and the next change is picked up.
    std::fs::write(dir.path().join("port-1.key"), &renewed.key).unwrap();
    std::fs::write(dir.path().join("port-1.crt"), &renewed.cert).unwrap();
    wait_for(Duration::from_secs(20), "node 1 to serve its renewed certificate", || async {
        (served_certificate(&port1, &tls).await.ok()? == renewed_der).then_some(())
    })
    .await;
    let failed = failed_tls_reloads(&cluster, 1).await.unwrap();
    std::fs::write(dir.path().join("port-1.crt"), "not a certificate").unwrap();
    wait_for(Duration::from_secs(20), "the corrupt certificate to be refused", || async {
        (failed_tls_reloads(&cluster, 1).await? > failed).then_some(())
    })
    .await;
    assert_eq!(served_certificate(&port1, &tls).await.unwrap(), renewed_der, "the renewed certificate stays");
    cluster.client_of(1).put("after-corrupt", "1").await.unwrap();
}
