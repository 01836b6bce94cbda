//! Exactly-once writes against real processes: a write whose answer is lost after it committed,
//! with the leader killed before the client hears back, is retried by the client on the next
//! leader and applied once, answered with its first revision; the same across a snapshot
//! install and a leader change; an expired session is refused without applying; an
//! `Idempotency-Key` retry gets the first answer and a reused key a clear error.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raftkv::{Client, Consistency, KeyValue};
use serde_json::{Value, json};
use support::{Cluster, ClusterOptions, phase, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy in front of one node that can swallow the node's answers: it then tells the test
/// that an answer came (so the write committed) and holds the client's connection open until
/// [`AnswerDropper::cut`], which closes every connection and stops listening (the node is gone).
struct AnswerDropper {
    url: String,
    swallowing: Arc<AtomicBool>,
    swallowed: watch::Receiver<bool>,
    cut: watch::Sender<bool>,
}

impl AnswerDropper {
    async fn start(upstream: String) -> AnswerDropper {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let swallowing = Arc::new(AtomicBool::new(false));
        let (swallowed_tx, swallowed) = watch::channel(false);
        let (cut, cut_rx) = watch::channel(false);
        let swallowed_tx = Arc::new(swallowed_tx);
        let (flag, mut stop) = (swallowing.clone(), cut_rx.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|cut| *cut) => return,
                };
                let Ok((client, _)) = accepted else { return };
                let Ok(node) = TcpStream::connect(&upstream).await else { continue };
                tokio::spawn(relay(client, node, flag.clone(), swallowed_tx.clone(), cut_rx.clone()));
            }
        });
        AnswerDropper { url, swallowing, swallowed, cut }
    }

    /// From now on, the node's answers are swallowed.
    fn swallow_answers(&self) {
        self.swallowing.store(true, Ordering::SeqCst);
    }

    /// Waits until the node has answered a request whose answer was swallowed.
    async fn wait_swallowed(&mut self) {
        tokio::time::timeout(Duration::from_secs(30), self.swallowed.wait_for(|s| *s))
            .await
            .expect("the node answered within 30 s")
            .unwrap();
    }

    /// Closes every connection and stops listening.
    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

async fn relay(
    client: TcpStream,
    node: TcpStream,
    swallowing: Arc<AtomicBool>,
    swallowed: Arc<watch::Sender<bool>>,
    mut cut: watch::Receiver<bool>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut node_read, mut node_write) = node.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut client_read, &mut node_write).await;
    };
    let answers = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match node_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallowing.load(Ordering::SeqCst) {
                swallowed.send_replace(true);
            } else if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

/// A client that talks to `first`, then the other endpoints.
fn client_through(first: &str, others: &[String]) -> Client {
    let endpoints = std::iter::once(first.to_string()).chain(others.iter().cloned());
    Client::with_timeout(endpoints, Duration::from_secs(10)).unwrap()
}

async fn read_kv(cluster: &Cluster, key: &str) -> KeyValue {
    cluster.client().get_kv(key, Consistency::Linearizable).await.unwrap().unwrap_or_else(|| panic!("{key} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_applied_once_after_the_leader_dies() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;

    phase("a put whose answer is lost after it committed; the leader is killed before the client hears");
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let others: Vec<String> = cluster.nodes.iter().filter(|n| n.id != leader).map(|n| n.url()).collect();
    let mut proxy = AnswerDropper::start(cluster.addr(leader)).await;
    let client = client_through(&proxy.url, &others);
    client.put("warm-up", "registers the session").await.expect("warm-up put");
    let session = client.session_id().expect("the first write registered a session");
    proxy.swallow_answers();
    let put = tokio::spawn({
        let client = client.clone();
        async move { client.put("once", "1").await }
    });
    proxy.wait_swallowed().await;
    cluster.node(leader).kill9();
    proxy.cut();

    phase("the client retries on the next leader: the first answer, applied once");
    let answer = put.await.unwrap().expect("the retried put is answered");
    assert_eq!(client.session_id().as_deref(), Some(session.as_str()), "the same session carried the retry");
    let kv = read_kv(&cluster, "once").await;
    assert_eq!(kv.value, "1");
    assert_eq!(kv.version, 1, "applied once: {kv:?}");
    assert_eq!(kv.mod_revision, answer.revision, "the retry got the first write's revision");

    phase("the killed node comes back; a cas whose answer is lost is applied once too");
    cluster.node(leader).start();
    let second = cluster.wait_for_leader(Duration::from_secs(20)).await;
    cluster.wait_caught_up(leader, Duration::from_secs(30)).await;
    let others: Vec<String> = cluster.nodes.iter().filter(|n| n.id != second).map(|n| n.url()).collect();
    let mut proxy = AnswerDropper::start(cluster.addr(second)).await;
    let client = client_through(&proxy.url, &others);
    client.put("warm-up", "again").await.expect("warm-up put");
    proxy.swallow_answers();
    let cas = tokio::spawn({
        let client = client.clone();
        async move { client.cas("once", Some("1"), "2").await }
    });
    proxy.wait_swallowed().await;
    cluster.node(second).kill9();
    proxy.cut();
    let answer = cas.await.unwrap().expect("the retried cas is answered");
    // Applied twice, the second would have failed: the value is no longer "1".
    assert!(answer.succeeded, "the retry got the first answer: {answer:?}");
    assert_eq!(answer.current.as_deref(), Some("1"));
    let kv = read_kv(&cluster, "once").await;
    assert_eq!((kv.value.as_str(), kv.version), ("2", 2), "{kv:?}");
    assert_eq!(kv.mod_revision, answer.revision);
}

/// `POST /v1/sessions` on `node`, returning the session id.
async fn register(http: &reqwest::Client, node: &str, body: Value) -> String {
    let answer = http.post(format!("{node}/v1/sessions")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let json: Value = answer.json().await.unwrap();
    json["session_id"].as_str().expect("a session id").to_string()
}

/// `PUT /v1/kv/{key}` with `headers`: status and JSON body.
async fn put_with_headers(
    http: &reqwest::Client,
    node: &str,
    key: &str,
    value: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut request = http.put(format!("{node}/v1/kv/{key}")).body(value.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

fn stamp(session: &str, seq: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-raftkv-session", session.to_string()),
        ("x-raftkv-seq", seq.to_string()),
        ("x-raftkv-ack-below", seq.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_snapshot_install_and_a_leader_change_gets_the_first_answer() {
    let opts = ClusterOptions {
        extra_args: ["--snapshot-every", "50", "--keep-logs", "10"].iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut cluster = Cluster::start(opts).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let behind = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    let http = reqwest::Client::new();
    let leader_url = cluster.nodes.iter().find(|n| n.id == leader).unwrap().url();

    phase("a follower is down while a session write commits and the log moves on past snapshots");
    cluster.node(behind).terminate();
    let session = register(&http, &leader_url, json!({})).await;
    let (status, first) = put_with_headers(&http, &leader_url, "stamped", "first", &stamp(&session, 1)).await;
    assert_eq!(status, 200, "{first}");
    let revision = first["revision"].as_u64().unwrap();
    let client = cluster.client_of(leader);
    for i in 0..200 {
        client.put(&format!("filler-{i:03}"), "x".repeat(50)).await.expect("put");
    }

    phase("it catches up by a snapshot, which carries the session, and takes the leadership");
    cluster.node(behind).start();
    cluster.wait_caught_up(behind, Duration::from_secs(30)).await;
    let status = cluster.status(behind).await.unwrap();
    assert!(status.snapshot_index > 0, "caught up without a snapshot: {status:?}");
    cluster.hand_leadership_to(behind).await;

    phase("the retry, sent to the new leader, gets the first answer and changes nothing");
    let behind_url = cluster.nodes.iter().find(|n| n.id == behind).unwrap().url();
    let (status, retry) = put_with_headers(&http, &behind_url, "stamped", "first", &stamp(&session, 1)).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["revision"].as_u64(), Some(revision), "{retry}");
    let kv = read_kv(&cluster, "stamped").await;
    assert_eq!((kv.version, kv.mod_revision), (1, revision), "{kv:?}");
    let (status, next) = put_with_headers(&http, &behind_url, "stamped", "second", &stamp(&session, 2)).await;
    assert_eq!(status, 200, "{next}");
    assert!(next["revision"].as_u64().unwrap() > revision);
    assert_eq!(read_kv(&cluster, "stamped").await.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_and_reused_idempotency_keys_are_refused_without_applying() {
    let cluster = Cluster::start(ClusterOptions { nodes: 1, ..Default::default() }).await;
    let node = cluster.endpoints()[0].clone();
    let http = reqwest::Client::new();

    phase("a session with a one-second time to live expires when it writes no more");
    let session = register(&http, &node, json!({"ttl_ms": 1000})).await;
    let (status, body) = put_with_headers(&http, &node, "live", "1", &stamp(&session, 1)).await;
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(30), "the session to be swept", || async {
        let metrics = http.get(format!("{node}/metrics")).send().await.ok()?.text().await.ok()?;
        metrics.lines().any(|l| l == "raftkv_kv_sessions 0").then_some(())
    })
    .await;
    let (status, body) = put_with_headers(&http, &node, "late", "1", &stamp(&session, 2)).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "session_expired", "{body}");
    assert_eq!(cluster.client().get("late", Consistency::Linearizable).await.unwrap(), None, "nothing applied");

    phase("bad session headers are refused");
    for headers in [
        vec![("x-raftkv-seq", "1".to_string())],
        vec![("x-raftkv-session", "not-a-session".to_string()), ("x-raftkv-seq", "1".to_string())],
        vec![("x-raftkv-session", session.clone()), ("x-raftkv-seq", "zero".to_string())],
    ] {
        let (status, body) = put_with_headers(&http, &node, "bad", "1", &headers).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(code == "invalid_header" || code == "invalid_session", "{body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| m.contains("x-raftkv") || m.contains("session")),
            "{body}"
        );
    }

    phase("an Idempotency-Key retry gets the first answer; the key on another request is refused");
    let key = [("idempotency-key", "order-17".to_string())];
    let (status, first) = put_with_headers(&http, &node, "order", "paid", &key).await;
    assert_eq!(status, 200, "{first}");
    let (status, retry) = put_with_headers(&http, &node, "order", "paid", &key).await;
    assert_eq!((status, &retry), (200, &first));
    let kv = read_kv(&cluster, "order").await;
    assert_eq!((kv.version, Some(kv.mod_revision)), (1, first["revision"].as_u64()), "{kv:?}");
    let (status, reused) = put_with_headers(&http, &node, "order", "refunded", &key).await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["error"]["code"], "idempotency_key_reused", "{reused}");
    let answer = http.delete(format!("{node}/v1/kv/order")).header("idempotency-key", "order-17").send().await.unwrap();
    assert_eq!(answer.status(), 422);
    assert_eq!(read_kv(&cluster, "order").await.value, "paid");
}
