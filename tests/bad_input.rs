//! Bad input gets the documented error, and the cluster keeps serving.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Cluster, ClusterOptions, phase};

async fn expect_error(resp: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status, "status for expected {code}");
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).expect("a follower");
    let http = reqwest::Client::new();
    for id in [leader, follower] {
        let base = cluster.nodes.iter().find(|n| n.id == id).expect("node").url();
        phase(&format!("client API on node {id}"));
        expect_error(
            http.put(format!("{base}/v1/kv/")).body("x").send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        )
        .await;
        let long_key = "k".repeat(4097);
        expect_error(
            http.put(format!("{base}/v1/kv/{long_key}")).body("x").send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        )
        .await;
        expect_error(
            http.get(format!("{base}/v1/kv/a?consistency=eventual")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_consistency",
        )
        .await;
        expect_error(
            http.get(format!("{base}/v1/kv/absent")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "key_not_found",
        )
        .await;
        expect_error(
            http.post(format!("{base}/v1/kv/a/cas")).body("{not json").send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        )
        .await;
        expect_error(
            http.post(format!("{base}/v1/kv/a/cas")).body(r#"{"expected": 5, "value": "x"}"#).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        )
        .await;
        let big = vec![b'x'; (1 << 20) + 1];
        expect_error(
            http.put(format!("{base}/v1/kv/big")).body(big).send().await.unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
        )
        .await;
        expect_error(
            http.get(format!("{base}/v1/kv?limit=0")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        )
        .await;
        expect_error(
            http.get(format!("{base}/v1/kv?limit=ten")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        )
        .await;
        expect_error(http.get(format!("{base}/v1/nothing")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
            .await;

        phase(&format!("peer RPC on node {id}"));
        for path in ["append", "append-stream", "vote", "pre-vote", "transfer-leader", "snapshot"] {
            let resp = http.post(format!("{base}/raft/v1/{path}")).body(vec![0xffu8; 64]).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "garbage to /raft/v1/{path}");
        }
        garbage_on_append_stream(&cluster.addr(id)).await;
        let huge = vec![0u8; 65 << 20];
        let resp = http.post(format!("{base}/raft/v1/append")).body(huge).send().await;
        // Either a 413 or the server closing the oversized upload: never a crash.
        if let Ok(resp) = resp {
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
    }

    phase("nothing was written, and the cluster keeps serving");
    let client = cluster.client();
    assert_eq!(client.get("big", raftkv::Consistency::Linearizable).await.unwrap(), None);
    assert_eq!(client.get("a", raftkv::Consistency::Linearizable).await.unwrap(), None);
    client.put("still", "serving").await.expect("write after bad input");
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(5)).await, leader);
    // A key exactly at the limits is fine.
    client.put(&"k".repeat(4096), vec![b'v'; 1 << 20]).await.expect("limits are inclusive");
}

/// An upgraded append stream that receives a frame that is not a request is closed by the peer,
/// which keeps serving.
async fn garbage_on_append_stream(addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let upgrade = format!(
        "POST /raft/v1/append-stream HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: raftkv-append/1\r\ncontent-length: 0\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "connection closed during the protocol switch");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    // A frame of 8 bytes of garbage.
    tcp.write_all(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "the peer should close the stream without answering: {read:?}");
}

/// A snapshot damaged on the way to a follower is refused before anything is installed: the
/// follower answers 400 `invalid_snapshot` naming the damage and keeps its state (the leader sends
/// the snapshot again on its next attempt, as after any failed transfer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_damaged_in_transit_is_refused() {
    let extra = ["--snapshot-every", "50"].map(String::from).to_vec();
    let cluster = Cluster::start(ClusterOptions { extra_args: extra, ..ClusterOptions::default() }).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let client = cluster.client();
    for i in 0..120 {
        client.put(&format!("snap{i}"), format!("v{i}")).await.unwrap();
    }
    phase("take a real snapshot file off the leader and flip one byte of it");
    let snapshots = cluster.nodes.iter().find(|n| n.id == leader).unwrap().data_dir.join("snapshots");
    let file = support::wait_for(Duration::from_secs(20), "a snapshot file", || async {
        std::fs::read_dir(&snapshots)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "snap"))
    })
    .await;
    let mut bytes = std::fs::read(&file).unwrap();
    // A byte of a record (a key), so that it is a chunk's checksum that catches it: a flipped
    // framing byte is refused too, but with another message.
    let key = bytes.windows(6).position(|w| w == b"snap10").expect("a key in the snapshot");
    bytes[key + 4] ^= 0x10;

    phase("send it to a follower the way the leader does: vote, then the file");
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let before = cluster.status(follower.id).await.unwrap().applied_index;
    let vote = raftkv_network::wire::encode(&raftkv_types::Vote::new(1, leader)).unwrap();
    let mut body = (vote.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(&vote);
    body.extend_from_slice(&bytes);
    let resp =
        reqwest::Client::new().post(format!("{}/raft/v1/snapshot", follower.url())).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_snapshot");
    assert!(error["error"]["message"].as_str().unwrap().contains("checksum"), "{error}");

    phase("the follower kept its state and keeps up");
    let after = cluster.status(follower.id).await.unwrap();
    assert!(after.applied_index >= before);
    client.put("after-bad-snapshot", "ok").await.unwrap();
    let follower_client = cluster.client_of(follower.id);
    let read = follower_client.get("snap7", raftkv::Consistency::Linearizable).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"v7"[..]));
}
