//! `raftkv backup schedule`: timestamped backups named by revision, skipped when nothing changed,
//! pruned to `--keep` only after a verified backup, and never a partial file under a final name,
//! even when the scheduler is SIGKILLed in the middle of a backup.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cli::raftkv_ok;
use support::{Cluster, ClusterOptions, phase, raftkv_bin};

/// Files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)));
    found.sort();
    found
}

fn schedule_once(endpoint: &str, dir: &Path, keep: &str) -> String {
    raftkv_ok(&[
        "backup",
        "schedule",
        "--once",
        "--endpoints",
        endpoint,
        "--dir",
        &dir.display().to_string(),
        "--keep",
        keep,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_skip_prune_and_survive_sigkill() {
    let cluster = Cluster::start(ClusterOptions { nodes: 1, ..Default::default() }).await;
    let endpoint = cluster.endpoints()[0].clone();
    let client = cluster.client();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backups");

    phase("the first run takes a backup named by its revision");
    client.put("a", "1").await.unwrap();
    let out = schedule_once(&endpoint, &dir, "2");
    assert!(out.contains("saved"), "{out}");
    let first = files(&dir, ".rkvbak");
    assert_eq!(first.len(), 1);
    let revision = client.status().await.unwrap().revision;
    assert!(first[0].file_name().unwrap().to_str().unwrap().starts_with(&format!("raftkv-r{revision:020}-")));

    phase("nothing changed: skipped");
    let out = schedule_once(&endpoint, &dir, "2");
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(files(&dir, ".rkvbak"), first);

    phase("two more changes: two more backups, the oldest pruned to keep 2");
    client.put("b", "2").await.unwrap();
    schedule_once(&endpoint, &dir, "2");
    client.put("c", "3").await.unwrap();
    let out = schedule_once(&endpoint, &dir, "2");
    assert!(out.contains("removed"), "{out}");
    let kept = files(&dir, ".rkvbak");
    assert_eq!(kept.len(), 2);
    assert!(!kept.contains(&first[0]), "the oldest backup was pruned");
    for file in &kept {
        let inspected = raftkv_ok(&["backup", "inspect", &file.display().to_string()]);
        assert!(inspected.contains("status:       OK"), "{inspected}");
    }

    phase("a large state, and the scheduler SIGKILLed while a backup is being written");
    let value = vec![b'z'; 1 << 20];
    for i in 0..40 {
        client.put(&format!("big{i}"), value.clone()).await.unwrap();
    }
    let killed_dir = work.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let mut scheduler = Command::new(raftkv_bin())
        .args(["backup", "schedule", "--every", "1h", "--endpoints", &endpoint, "--dir"])
        .arg(&killed_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut caught = false;
    while Instant::now() < deadline {
        if !files(&killed_dir, ".part").is_empty() {
            scheduler.kill().unwrap();
            caught = true;
            break;
        }
        if !files(&killed_dir, ".rkvbak").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = scheduler.kill();
    let _ = scheduler.wait();
    assert!(caught, "the backup finished before the scheduler could be killed in the middle of it");
    assert!(files(&killed_dir, ".rkvbak").is_empty(), "a killed backup left a file under a final name");

    phase("the next run clears the leftover and completes");
    let out = schedule_once(&endpoint, &killed_dir, "24");
    assert!(out.contains("saved"), "{out}");
    assert!(files(&killed_dir, ".part").is_empty());
    let done = files(&killed_dir, ".rkvbak");
    assert_eq!(done.len(), 1);
    let inspected = raftkv_ok(&["backup", "inspect", &done[0].display().to_string()]);
    assert!(inspected.contains("status:       OK"), "{inspected}");
}
