//! Authentication and permissions over a cluster of real processes: the permission matrix
//! (anonymous, read-only, read-write on a prefix, admin) through a follower and the leader,
//! 401 with `WWW-Authenticate` and 403 `permission_denied`, scans, watches and transactions held
//! to the prefix scope, the auth file reloaded (and a broken version refused), peer RPC closed to
//! callers without the peer secret, and a member joining with the secret.

mod support;

use std::time::Duration;

use raftkv::{Client, Credentials};
use raftkv_network::authenticator::{hash_password, new_token};
use reqwest::StatusCode;
use support::cli::{raftkv, stderr, stdout};
use support::{Cluster, ClusterOptions, wait_for};

struct Secrets {
    admin: String,
    reader: String,
    app_password: String,
}

fn auth_file(admin_sha: &str, reader_sha: &str, app_hash: &str, reader_writes: bool) -> String {
    let reader_perms = if reader_writes { r#"["kv:read", "kv:write", "status"]"# } else { r#"["kv:read", "status"]"# };
    format!(
        r#"
[[token]]
name = "admin"
sha256 = "{admin_sha}"
roles = ["admin"]

[[token]]
name = "reader"
sha256 = "{reader_sha}"
roles = ["reader"]

[[user]]
name = "app"
password_argon2 = "{app_hash}"
roles = ["app"]

[[role]]
name = "admin"
permissions = ["*"]

[[role]]
name = "reader"
permissions = {reader_perms}

[[role]]
name = "app"
permissions = ["kv:read", "kv:write"]
prefixes = ["app/"]

[anonymous]
permissions = ["status"]
"#
    )
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, String, Vec<String>) {
    let mut request = http.request(method, url).body(body.to_string());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    (status, response.text().await.unwrap_or_default(), challenges)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permissions_hold_through_followers_and_the_file_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, admin_sha) = new_token();
    let (reader, reader_sha) = new_token();
    let (peer_secret, _) = new_token();
    let secrets = Secrets { admin, reader, app_password: "correct horse battery".into() };
    let app_hash = hash_password(&secrets.app_password).unwrap();
    let file = dir.path().join("auth.toml");
    std::fs::write(&file, auth_file(&admin_sha, &reader_sha, &app_hash, false)).unwrap();
    let secret_file = dir.path().join("peer-secret");
    std::fs::write(&secret_file, format!("{peer_secret}\n")).unwrap();
    let extra = vec![
        "--auth-file".to_string(),
        file.display().to_string(),
        "--peer-secret-file".to_string(),
        secret_file.display().to_string(),
    ];
    let mut cluster =
        Cluster::start(ClusterOptions { nodes: 3, extra_args: extra.clone(), ..ClusterOptions::default() }).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();
    let follower_url = cluster.nodes.iter().find(|n| n.id == follower).unwrap().url();
    let leader_url = cluster.nodes.iter().find(|n| n.id == leader).unwrap().url();
    let http = reqwest::Client::new();
    let admin = format!("Bearer {}", secrets.admin);
    let reader = format!("Bearer {}", secrets.reader);
    let app = basic("app", &secrets.app_password);
    use reqwest::Method as M;

    // Open and anonymous routes.
    for url in [&follower_url, &leader_url] {
        assert_eq!(call(&http, M::GET, &format!("{url}/livez"), None, "").await.0, StatusCode::OK);
        assert_eq!(call(&http, M::GET, &format!("{url}/v1/status"), None, "").await.0, StatusCode::OK);
        let (status, body, challenges) = call(&http, M::PUT, &format!("{url}/v1/kv/app%2Fx"), None, "v").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("\"unauthenticated\""), "{body}");
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")) && challenges.iter().any(|c| c.starts_with("Basic"))
        );
        let (status, body, _) = call(&http, M::GET, &format!("{url}/v1/kv/app%2Fx"), Some("Bearer rk_wrong"), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, body, _) = call(&http, M::GET, &format!("{url}/metrics"), None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous may not scrape: {body}");
    }

    // The app user on its prefix, through a follower: the follower forwards the caller's
    // credentials and the leader checks them again (anonymous may not write there).
    let (status, body, _) = call(&http, M::PUT, &format!("{follower_url}/v1/kv/app%2Fx"), Some(&app), "1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = call(&http, M::PUT, &format!("{follower_url}/v1/kv/other%2Fx"), Some(&app), "1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("permission_denied") && body.contains("other/x"), "{body}");
    let (status, body, _) = call(&http, M::GET, &format!("{follower_url}/v1/kv?prefix=app/"), Some(&app), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = call(&http, M::GET, &format!("{follower_url}/v1/kv"), Some(&app), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a scan of every key reaches beyond app/: {body}");
    let (status, body, _) =
        call(&http, M::GET, &format!("{follower_url}/v1/watch?prefix=other/"), Some(&app), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let txn_other =
        r#"{"success": [{"put": {"key": "app/y", "value": "1"}}, {"put": {"key": "other/y", "value": "1"}}]}"#;
    let (status, body, _) = call(&http, M::POST, &format!("{leader_url}/v1/txn"), Some(&app), txn_other).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let txn_app = r#"{"compare": [{"key": "app/x", "target": "exists", "op": "=", "value": true}], "success": [{"put": {"key": "app/y", "value": "1"}}]}"#;
    let (status, body, _) = call(&http, M::POST, &format!("{follower_url}/v1/txn"), Some(&app), txn_app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = call(&http, M::GET, &format!("{leader_url}/v1/status"), Some(&app), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "app has no status permission, anonymous has: {body}");
    let (status, body, _) =
        call(&http, M::POST, &format!("{leader_url}/v1/cluster/members"), Some(&app), r#"{"id": 9, "addr": "x:1"}"#)
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The reader reads anything and writes nothing.
    let (status, body, _) = call(&http, M::GET, &format!("{follower_url}/v1/kv/app%2Fx"), Some(&reader), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&http, M::GET, &format!("{follower_url}/v1/kv"), Some(&reader), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = call(&http, M::PUT, &format!("{follower_url}/v1/kv/app%2Fx"), Some(&reader), "2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("kv:write"), "{body}");

    // The admin does everything.
    let (status, body, _) = call(&http, M::PUT, &format!("{follower_url}/v1/kv/other%2Fx"), Some(&admin), "1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&http, M::GET, &format!("{leader_url}/metrics"), Some(&admin), "").await;
    assert_eq!(status, StatusCode::OK);

    // Peer RPC needs the peer secret, whatever else is presented.
    for auth in [None, Some(admin.as_str())] {
        let (status, body, _) = call(&http, M::POST, &format!("{leader_url}/raft/v1/vote"), auth, "x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("peer secret"), "{body}");
    }

    // The Rust client and the CLI present credentials.
    let client = Client::with_timeout(cluster.endpoints(), Duration::from_secs(10)).unwrap();
    let err = client.put("app/z", "1").await.unwrap_err();
    assert!(err.to_string().contains("unauthenticated"), "{err}");
    let app_client = client
        .with_credentials(&Credentials::Basic { user: "app".into(), password: secrets.app_password.clone() })
        .unwrap();
    app_client.put("app/z", "1").await.unwrap();
    assert!(app_client.put("other/z", "1").await.unwrap_err().to_string().contains("permission_denied"));
    let endpoints = cluster.endpoints().join(",");
    let out = raftkv(&["get", "app/z", "--endpoints", &endpoints, "--token", &secrets.reader]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1");
    let out =
        raftkv(&["put", "other/z", "1", "--endpoints", &endpoints, "--user", &format!("app:{}", secrets.app_password)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("permission_denied"), "{}", stderr(&out));
    let out = std::process::Command::new(support::raftkv_bin())
        .args(["put", "app/w", "1", "--endpoints", &endpoints, "--user", "app"])
        .env("RAFTKV_PASSWORD", &secrets.app_password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The file reloads: the reader gains kv:write. A broken version keeps the one in force.
    std::fs::write(&file, auth_file(&admin_sha, &reader_sha, &app_hash, true)).unwrap();
    wait_for(Duration::from_secs(20), "the reader to be allowed to write", || async {
        let (status, _, _) = call(&http, M::PUT, &format!("{follower_url}/v1/kv/app%2Fr"), Some(&reader), "3").await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    std::fs::write(&file, "[[role]]\nname = \"broken\"\npermissions = [\"kv:fly\"]\n").unwrap();
    wait_for(Duration::from_secs(20), "the broken file to be refused on every node", || async {
        for node in &cluster.nodes {
            let (_, metrics, _) = call(&http, M::GET, &format!("{}/metrics", node.url()), Some(&admin), "").await;
            if !metrics
                .lines()
                .any(|l| l.starts_with("raftkv_config_reloads_total{") && l.contains("result=\"failed\""))
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    let (status, body, _) = call(&http, M::PUT, &format!("{leader_url}/v1/kv/app%2Fr"), Some(&reader), "4").await;
    assert_eq!(status, StatusCode::OK, "the previous file stays in force: {body}");
    std::fs::write(&file, auth_file(&admin_sha, &reader_sha, &app_hash, true)).unwrap();

    // A member's own calls (joining) present the peer secret and pass the auth file.
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    cluster.add_node(4, true, &args).start();
    wait_for(Duration::from_secs(30), "node 4 to join as a learner", || async {
        let status = cluster.leader_status().await?;
        status.members.contains_key(&4).then_some(())
    })
    .await;
    cluster.wait_caught_up(4, Duration::from_secs(30)).await;
    let (status, body, _) =
        call(&http, M::GET, &format!("{}/v1/kv/app%2Fx?consistency=stale", cluster.nodes[3].url()), Some(&reader), "")
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
