//! A real browser for the dashboard tests: headless Chromium, driven over the DevTools protocol.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Debian's Chromium, if installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Whether the test may run: it needs Chromium. Without it, it skips with a message, except
/// under `CI` (where `scripts/setup.sh` installs it), where it fails.
pub fn chromium_or_skip(test: &str) -> Option<&'static str> {
    let found = chromium();
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{test} needs chromium, and CI must run it");
        eprintln!("skipping {test}: needs chromium (apt-get install chromium)");
    }
    found
}

/// One headless Chromium showing one page; killed when dropped.
pub struct Browser {
    child: Child,
    /// The page's DevTools socket; one command at a time.
    page: tokio::sync::Mutex<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    next_id: std::sync::atomic::AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `binary` on `url` and connects to the page's DevTools socket.
    pub async fn open(binary: &str, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--remote-debugging-port=0", "--window-size=1280,900"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium names its DevTools port on standard error.
        let stderr = child.stderr.take().unwrap();
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let port = loop {
                let line = lines.next().expect("chromium exited before naming its DevTools port").unwrap();
                if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                    break rest.split('/').next().unwrap().parse::<u16>().unwrap();
                }
            };
            // Keep draining, so that Chromium never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            port
        })
        .await
        .unwrap();
        let targets: Value =
            reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await.unwrap().json().await.unwrap();
        let ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (page, _) = tokio_tungstenite::connect_async(ws).await.expect("connect to the page");
        Browser { child, page: tokio::sync::Mutex::new(page), next_id: 1.into(), _profile: profile }
    }

    /// Sends one DevTools command and returns its result.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let command = json!({ "id": id, "method": method, "params": params });
        let mut page = self.page.lock().await;
        page.send(Message::text(command.to_string())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), page.next())
                .await
                .expect("chromium answers")
                .expect("the socket stays open")
                .unwrap();
            if let Message::Text(text) = frame {
                let answer: Value = serde_json::from_str(&text).unwrap();
                if answer["id"] == id {
                    assert!(answer.get("error").is_none(), "{method}: {answer}");
                    return answer["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value (JSON-serialisable).
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true })).await;
        result["result"]["value"].clone()
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot saved to {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
