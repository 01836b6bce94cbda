//! How the client uses its connections, against a minimal HTTP/1.1 server on a real socket:
//! one kept-alive connection for sequential requests, a new one when the node closed the old one,
//! and the next endpoint when one refuses connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use raftkv_client::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that answers a session registration with a session and every other request with
/// `{"revision":1}`; it closes each connection after
/// `answers_per_connection` answers, without saying so. Returns its address and the number of
/// connections it accepted.
async fn server(answers_per_connection: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, answers_per_connection));
        }
    });
    (addr, accepted)
}

async fn serve(mut stream: TcpStream, answers: usize) {
    let mut buf = Vec::new();
    for _ in 0..answers {
        // Read one request: headers, then the body its Content-Length announces.
        let (head_end, body_len, registers) = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                break (end + 4, len, head.starts_with("post /v1/sessions "));
            }
        };
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + body_len);
        let body: &[u8] = if registers {
            br#"{"session_id":"c0ffee-1-1","ttl_ms":600000,"revision":1}"#
        } else {
            br#"{"revision":1}"#
        };
        let answer =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        stream.write_all(answer.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
    }
    // Closing with no warning, as a node that restarts does.
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, accepted) = server(usize::MAX).await;
    let client = Client::new([addr.as_str()]).unwrap();
    for i in 0..20 {
        assert_eq!(client.put(&format!("k{i}"), "v").await.unwrap().revision, 1);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_node_closed_is_replaced() {
    let (addr, accepted) = server(1).await;
    let client = Client::new([addr.as_str()]).unwrap();
    for i in 0..5 {
        // Let the client's connection task see the close before the next request, as it would
        // between requests spaced in time.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(client.put(&format!("k{i}"), "v").await.unwrap().revision, 1);
    }
    // One more for the session the first write registered.
    assert_eq!(accepted.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_refusing_endpoint_is_skipped() {
    // A port nobody listens on: bind one, note it, close it.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
    let (addr, _) = server(usize::MAX).await;
    let client = Client::new([dead.as_str(), addr.as_str()]).unwrap();
    assert_eq!(client.put("k", "v").await.unwrap().revision, 1);

    let only_dead = Client::new([dead.as_str()]).unwrap();
    let err = only_dead.put("k", "v").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(!err.may_have_applied());
}

#[test]
fn endpoints_other_than_http_host_port_are_refused() {
    for bad in ["https://127.0.0.1:1", "http://127.0.0.1:1/prefix", "http://user@127.0.0.1:1", "http://a b:1"] {
        let err = Client::new([bad]).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(matches!(err, ClientError::Config(_)), "{bad}: {err:?}");
    }
}
