//! The deployment files: the Kubernetes manifests in `deploy/kubernetes/` are valid against the
//! Kubernetes API schemas (strict) and every flag, probe path and probe port they use exists in
//! the real binary; the Prometheus files in `deploy/prometheus/` pass promtool (config, rules and
//! the rules' unit tests), and every metric the alerts and the Grafana dashboard use is exported
//! by a running cluster.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::cli::{raftkv, stdout};
use support::{Cluster, ClusterOptions, free_port, wait_for};

fn validator_or_skip() -> bool {
    let ok =
        Command::new("python3").args(["-c", "import kubernetes_validate, yaml"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must validate the manifests (pip install kubernetes-validate)");
        eprintln!("skipping: needs python3 with kubernetes-validate (pip install kubernetes-validate)");
    }
    ok
}

/// The port of a `--flag=HOST:PORT` argument.
fn port_of(args: &[&str], flag: &str) -> u16 {
    let value = args.iter().find_map(|a| a.strip_prefix(&format!("{flag}="))).expect(flag);
    value.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_valid_and_use_what_the_binary_has() {
    if !validator_or_skip() {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let checked = Command::new("python3")
        .arg(format!("{root}/scripts/check-kubernetes.py"))
        .arg(format!("{root}/deploy/kubernetes/raftkv.yaml"))
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let used: Value = serde_json::from_slice(&checked.stdout).unwrap();

    let help = stdout(&raftkv(&["serve", "--help"]));
    for flag in used["flags"].as_array().unwrap() {
        let flag = flag.as_str().unwrap();
        assert!(help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")), "serve has no {flag}");
    }
    let args: Vec<&str> = used["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args.first(), Some(&"serve"));
    let (main_port, ops_port) = (port_of(&args, "--listen"), port_of(&args, "--ops-listen"));
    assert_eq!(used["ports"]["raft"], main_port);
    assert_eq!(used["ports"]["ops"], ops_port);

    // The probes, on a real node started with the same ports mapped to free ones.
    let dir = tempfile::tempdir().unwrap();
    let (main, ops) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let data = dir.path().display().to_string();
    let mut node = Command::new(support::raftkv_bin())
        .args(["serve", "--id", "1", "--listen", &main, "--ops-listen", &ops, "--data-dir", &data])
        .args(["--initial-cluster", &format!("1={main}")])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    for probe in used["probes"].as_array().unwrap() {
        let port = probe["port"].as_u64().unwrap() as u16;
        let host = if port == ops_port {
            &ops
        } else {
            assert_eq!(port, main_port);
            &main
        };
        let url = format!("http://{host}{}", probe["path"].as_str().unwrap());
        wait_for(Duration::from_secs(20), &format!("{} passing at {url}", probe["kind"]), || async {
            (reqwest::get(&url).await.ok()?.status() == 200).then_some(())
        })
        .await;
    }
    let _ = node.kill();
    let _ = node.wait();
}

fn promtool_or_skip() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must check the Prometheus files (apt-get install prometheus)");
        eprintln!("skipping: needs promtool (apt-get install prometheus)");
    }
    ok
}

/// The metric names (`raftkv_*`, `process_*`) a PromQL text mentions.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    for prefix in ["raftkv_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |e| start + e);
            if !preceded {
                names.push(text[start..end].to_string());
            }
            from = end;
        }
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_files_pass_promtool_and_use_exported_metrics() {
    if !promtool_or_skip() {
        return;
    }
    let dir = format!("{}/deploy/prometheus", env!("CARGO_MANIFEST_DIR"));
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "raftkv-alerts.yaml"],
        vec!["test", "rules", "raftkv-alerts.test.yaml"],
    ] {
        let out = Command::new("promtool").args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/grafana-dashboard.json")).unwrap()).unwrap();
    let mut used = metric_names(&std::fs::read_to_string(format!("{dir}/raftkv-alerts.yaml")).unwrap());
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(used.len() > 20, "{used:?}");

    // What a running cluster exports: the leader has the per-member families.
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let leader = cluster.leader_status().await.unwrap().id;
    cluster.client_of(leader).put("k", "v").await.unwrap();
    cluster.client_of(leader).get("k", raftkv::Consistency::Linearizable).await.unwrap();
    let url = format!("{}/metrics", cluster.nodes[leader as usize - 1].url());
    let exported = wait_for(Duration::from_secs(10), "heartbeat round trips in the metrics", || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let complete = ["raftkv_network_peer_round_trip_time_seconds_bucket", "raftkv_disk_free_bytes"];
        complete.iter().all(|name| text.contains(name)).then_some(text)
    })
    .await;
    for name in used {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        assert!(
            exported.lines().any(|l| l.starts_with(&name) || l.starts_with(&format!("# TYPE {family} "))),
            "{name} is used by deploy/prometheus but not exported"
        );
    }
}
