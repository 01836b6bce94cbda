//! Transactions and watches on three in-process nodes: atomic multi-key writes, revisions per
//! key, and watch streams that stay in order with no gap across a leader's death, resume on
//! another node, report compaction and progress correctly, and end when their node loses the
//! leader.

use std::time::Duration;

use futures::StreamExt;
use raftkv_client::{Client, TxnRequest, TxnRequestOp, TxnResult, WatchEvent, WatchOptions};
use raftkv_node::Consistency;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::three_nodes;

/// The next change event (put or delete), skipping progress; panics after 20 s.
async fn next_change(stream: &mut raftkv_client::WatchStream) -> WatchEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on")
            .expect("no error");
        if matches!(event, WatchEvent::Put { .. } | WatchEvent::Delete { .. }) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_apply_atomically_and_watches_see_them_whole() {
    let (_dirs, nodes) = three_nodes(|_| {}).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let client = Client::new(&urls).unwrap();
    client.put("acct/a", "100").await.unwrap();
    let b = client.put("acct/b", "100").await.unwrap();

    // A watch from now sees nothing before it: it starts after every acknowledged write.
    let mut watch = client.watch(WatchOptions::prefix("acct/")).await.unwrap();
    let Some(Ok(WatchEvent::Created { revision })) = watch.next().await else { panic!("created first") };
    assert!(revision >= b.revision, "the watch starts after the acknowledged write at {}", b.revision);

    // Transfer 30 from a to b if a still has its version 1; both writes at one revision.
    let a = client.get_kv("acct/a", Consistency::Linearizable).await.unwrap().unwrap();
    assert_eq!((a.version, a.create_revision, a.mod_revision), (1, a.mod_revision, a.mod_revision));
    let transfer = TxnRequest::new()
        .when("acct/a", "mod_revision", "=", a.mod_revision)
        .when("acct/b", "exists", "=", true)
        .then(TxnRequestOp::put("acct/a", "70"))
        .then(TxnRequestOp::put("acct/b", "130"))
        .then(TxnRequestOp::get("acct/a"))
        .otherwise(TxnRequestOp::get("acct/a"));
    let done = nodes[1].txn(transfer.clone()).await.unwrap();
    assert!(done.succeeded);
    let TxnResult::Get(get) = &done.results[2] else { panic!("{:?}", done.results) };
    assert_eq!(get.kv.as_ref().unwrap().value, "70");
    // The same transfer again: the comparison fails, nothing is written.
    let again = client.txn(&transfer).await.unwrap();
    assert!(!again.succeeded);
    assert_eq!(again.revision, done.revision);

    for key in ["acct/a", "acct/b"] {
        match next_change(&mut watch).await {
            WatchEvent::Put { revision, key: k, value, .. } => {
                assert_eq!((revision, k.as_str()), (done.revision, key), "one revision for both writes");
                assert_eq!(value.meta.version, 2);
            }
            other => panic!("{other:?}"),
        }
    }
    // Bad input: a clear 400 with a code, nothing written.
    let bad = TxnRequest::new().then(TxnRequestOp::put("x", "1")).then(TxnRequestOp::delete("x"));
    let err = client.txn(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some("duplicate_key"));
    let bad = TxnRequest::new().when("x", "version", "=", "one");
    assert_eq!(client.txn(&bad).await.unwrap_err().code(), Some("invalid_compare"));

    // The embedding API's watch: from a given revision, with previous values.
    let mut options = WatchOptions::key("acct/a").from_revision(done.revision);
    options.prev_kv = true;
    let stream = nodes[2].watch(options).await.unwrap();
    let events: Vec<WatchEvent> = stream.take(2).collect().await;
    let WatchEvent::Put { value, prev: Some(prev), .. } = &events[1] else { panic!("{events:?}") };
    assert_eq!((value.value.as_slice(), prev.value.as_slice()), (&b"70"[..], &b"100"[..]));

    // A long poll returns once the key changes after the revision it names.
    let addr = nodes[2].addr();
    let poll = tokio::spawn(async move {
        http_get(&addr.to_string(), &format!("/v1/kv/acct%2Fa?wait_revision={}&wait=20s", done.revision), &[]).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing changed yet: the poll waits");
    let moved = client.put("acct/a", "71").await.unwrap();
    let answer = poll.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("x-raftkv-mod-revision: {}", moved.revision)), "{answer}");
    assert!(answer.ends_with("71"), "{answer}");

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_misses_nothing_across_a_leader_death_and_resumes_elsewhere() {
    let (_dirs, mut nodes) = three_nodes(|_| {}).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let client = Client::new(&urls).unwrap();
    let leader = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
    // Watch through the leader first, so that its death breaks the stream.
    let leader_url = nodes.iter().find(|n| n.id() == leader).unwrap().url();
    let mut ordered = vec![leader_url.clone()];
    ordered.extend(urls.iter().filter(|u| **u != leader_url).cloned());
    let watcher = Client::new(&ordered).unwrap();
    let mut watch = watcher.watch(WatchOptions::prefix("seq/")).await.unwrap();
    assert!(matches!(watch.next().await, Some(Ok(WatchEvent::Created { .. }))));

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push((client.put(&format!("seq/{i}"), i.to_string()).await.unwrap().revision, i));
    }
    let at = nodes.iter().position(|n| n.id() == leader).unwrap();
    nodes.remove(at).shutdown().await.unwrap();
    let survivor = Client::new(nodes.iter().map(|n| n.url())).unwrap();
    for i in 20..40 {
        let revision = loop {
            match survivor.put(&format!("seq/{i}"), i.to_string()).await {
                Ok(r) => break r.revision,
                Err(e) if !e.may_have_applied() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("{e}"),
            }
        };
        acknowledged.push((revision, i));
    }
    let mut seen = Vec::new();
    while seen.len() < acknowledged.len() {
        match next_change(&mut watch).await {
            WatchEvent::Put { revision, key, .. } => seen.push((revision, key["seq/".len()..].parse().unwrap())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, acknowledged, "every write once, in revision order, across the leader's death");

    // Resume by SSE on the other node from Last-Event-ID: the next revision comes first.
    let (last_revision, _) = acknowledged[29];
    let other = nodes[1].addr().to_string();
    let answer = http_get(
        &other,
        "/v1/watch?prefix=seq/&progress=0",
        &[("accept", "text/event-stream"), ("last-event-id", &last_revision.to_string())],
    )
    .await;
    let first_put = answer.lines().find(|l| l.starts_with("data:") && l.contains("\"put\"")).unwrap();
    assert!(first_put.contains(&format!("\"revision\":{}", last_revision + 1)), "{first_put}");
    assert!(answer.contains(&format!("id: {}", acknowledged[39].0)), "{answer}");

    // With the other two gone, the last node has no leader: its watch ends with no_leader.
    let alone = nodes.remove(1);
    nodes.remove(0).shutdown().await.unwrap();
    let mut options = WatchOptions::prefix("seq/").from_revision(acknowledged[0].0);
    options.progress_every = None;
    let events: Vec<WatchEvent> = alone.watch(options).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(WatchEvent::NoLeader { .. })), "{:?}", events.last());
    alone.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_compaction_progress_and_slow_consumers() {
    let (_dirs, nodes) = three_nodes(|c| c.watch_history.revisions = 50).await;
    let client = Client::new(nodes.iter().map(|n| n.url())).unwrap();
    let first = client.put("h/0", "0").await.unwrap().revision;
    // A watcher that does not read while 300 writes of 8 KiB go by: it reads them all later,
    // from the history, holding one page at a time.
    let mut slow = nodes[1].watch(WatchOptions::prefix("h/").from_revision(first)).await.unwrap().boxed();
    let value = "v".repeat(8 << 10);
    let mut last = first;
    for i in 1..40 {
        last = client.put(&format!("h/{i}"), value.clone()).await.unwrap().revision;
    }
    let mut delivered = Vec::new();
    while delivered.len() < 40 {
        match tokio::time::timeout(Duration::from_secs(20), slow.next()).await.unwrap().unwrap() {
            WatchEvent::Put { revision, .. } => delivered.push(revision),
            WatchEvent::Created { .. } | WatchEvent::Progress { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delivered, (first..=last).collect::<Vec<_>>());
    // Progress after the events it covers, never below one sent.
    let mut options = WatchOptions::prefix("h/").from_revision(last);
    options.progress_every = Some(Duration::from_millis(200));
    let events: Vec<WatchEvent> = nodes[2].watch(options).await.unwrap().take(4).collect().await;
    let mut highest = 0;
    for event in &events {
        assert!(event.revision() >= highest, "{events:?}");
        highest = event.revision();
    }
    assert!(matches!(events[2], WatchEvent::Progress { revision } if revision == last), "{events:?}");

    // Past what the history keeps: refused with 410 compacted naming the oldest revision.
    for i in 0..60 {
        client.put("h/more", i.to_string()).await.unwrap();
    }
    let addr = nodes[0].addr().to_string();
    let answer = http_get(&addr, &format!("/v1/watch?prefix=h/&start_revision={first}"), &[]).await;
    assert!(answer.starts_with("HTTP/1.1 410"), "{answer}");
    assert!(answer.contains("\"code\":\"compacted\"") && answer.contains("compact_revision"), "{answer}");
    let err = client.watch(WatchOptions::prefix("h/").from_revision(first)).await.err().unwrap();
    assert_eq!(err.code(), Some("compacted"));
    for (path, code) in [
        ("/v1/watch?start_revision=x", "invalid_revision"),
        ("/v1/watch?filter=noget", "invalid_filter"),
        ("/v1/watch?progress=soon", "invalid_duration"),
        ("/v1/watch?key=a&prefix=b", "invalid_query"),
    ] {
        let answer = http_get(&addr, path, &[]).await;
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(code), "{path}: {answer}");
    }
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A GET over a fresh connection; the whole answer as text (a stream is read for 1.5 s).
async fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let mut quiet_until = None;
    loop {
        let wait = quiet_until.unwrap_or(deadline).min(deadline);
        match tokio::time::timeout_at(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if text.contains("text/event-stream") || text.contains("x-ndjson") {
                    quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    // Chunked bodies: keep the text readable for the checks (chunk sizes stay in between).
    text.trim_end().to_string()
}
