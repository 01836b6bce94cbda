//! Backup and restore of a large state on a node this tool starts itself: how long `raftkv backup
//! save` and `raftkv backup restore` take, their throughput, and the peak memory of the serving
//! node and of the command line, which must not grow with the size of the state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use raftkv_client::{Client, Consistency};
use serde::Serialize;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    /// The `raftkv` binary.
    pub bin: PathBuf,
    /// State sizes to measure, in MiB (each on a fresh node).
    pub sizes_mib: Vec<u64>,
    /// Value size of the bulk load.
    pub value_bytes: usize,
    /// Concurrent writers of the bulk load.
    pub writers: usize,
    /// The port the node listens on (the restored node uses the next one).
    pub port: u16,
    /// Where the data goes.
    pub dir: PathBuf,
}

/// One state size's results.
#[derive(Debug, Clone, Serialize)]
pub struct BackupResult {
    /// Size of the state loaded (keys and values), MiB.
    pub state_mib: f64,
    /// Keys loaded.
    pub keys: u64,
    /// Size of the backup file, MiB.
    pub file_mib: f64,
    /// Wall time of `raftkv backup save`, seconds.
    pub save_secs: f64,
    /// Its throughput, MiB of file per second.
    pub save_mib_per_sec: f64,
    /// Peak RSS of the command line during the save, MiB.
    pub save_cli_peak_rss_mib: f64,
    /// RSS of the serving node just before the backup, MiB.
    pub server_rss_before_mib: f64,
    /// Highest RSS of the serving node sampled during the backup, MiB.
    pub server_rss_during_mib: f64,
    /// Wall time of `raftkv backup restore` into an empty directory, seconds.
    pub restore_secs: f64,
    /// Its throughput, MiB of file per second.
    pub restore_mib_per_sec: f64,
    /// Peak RSS of the restore, MiB.
    pub restore_peak_rss_mib: f64,
    /// Time from starting a node on the restored directory to its first linearizable read, s.
    pub restored_serving_secs: f64,
}

/// Runs the measurement for every size in `spec`.
pub async fn measure(spec: &BackupSpec) -> anyhow::Result<Vec<BackupResult>> {
    let mut results = Vec::new();
    for &size in &spec.sizes_mib {
        let dir = spec.dir.join(format!("{size}mib"));
        std::fs::create_dir_all(&dir)?;
        let result = measure_one(spec, size, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        results.push(result?);
    }
    Ok(results)
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bin: &Path, port: u16, data: &Path, initial: bool) -> anyhow::Result<Proc> {
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--id", "1", "--listen", &addr, "--data-dir"]).arg(data);
    if initial {
        cmd.args(["--initial-cluster", &format!("1={addr}")]);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("start raftkv serve")?;
    Ok(Proc(child))
}

async fn wait_serving(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if client.get("bench-probe", Consistency::Linearizable).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node did not serve within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Current RSS (VmRSS) of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1));
    kb.and_then(|kb| kb.parse::<f64>().ok()).map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `cmd` to completion, sampling its peak RSS (VmHWM) and, with `server`, the server's RSS;
/// returns the wall time, the command's peak RSS and the server's highest RSS seen.
fn run_sampled(mut cmd: Command, server: Option<u32>) -> anyhow::Result<(Duration, f64, f64)> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().context("start the command")?;
    let pid = child.id();
    let (mut peak, mut server_peak) = (0.0f64, 0.0f64);
    loop {
        peak = peak.max(crate::procstat::peak_rss_mib(&[pid])[0]);
        if let Some(server) = server {
            server_peak = server_peak.max(rss_mib(server));
        }
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut stderr, &mut err)?;
                }
                bail!("command failed: {err}");
            }
            return Ok((started.elapsed(), peak, server_peak));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn measure_one(spec: &BackupSpec, size_mib: u64, dir: &Path) -> anyhow::Result<BackupResult> {
    let url = format!("http://127.0.0.1:{}", spec.port);
    let node = serve(&spec.bin, spec.port, &dir.join("node"), true)?;
    let client = Client::with_timeout([url.clone()], Duration::from_secs(30))?;
    wait_serving(&client, Duration::from_secs(30)).await?;

    let keys = (size_mib << 20) / spec.value_bytes as u64;
    eprintln!("loading {keys} keys of {} bytes ({size_mib} MiB)", spec.value_bytes);
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..spec.writers {
        // Random bytes: a state that compresses as little as real data, so RocksDB and the backup
        // handle every byte.
        let value: Vec<u8> = (0..spec.value_bytes).map(|_| rand::random::<u8>()).collect();
        let (client, next) = (client.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<_, anyhow::Error>(());
                }
                client.put(&format!("bulk-{i:012}"), value.clone()).await?;
            }
        }));
    }
    for writer in writers {
        writer.await??;
    }

    let file = dir.join("state.rkvbak");
    let server_rss_before_mib = rss_mib(node.0.id());
    eprintln!("backup save");
    let mut save = Command::new(&spec.bin);
    save.args(["backup", "save", "--endpoints", &url]).arg(&file);
    let (save_time, save_peak, server_peak) = run_sampled(save, Some(node.0.id()))?;
    let file_mib = std::fs::metadata(&file)?.len() as f64 / (1 << 20) as f64;
    drop(node);

    eprintln!("backup restore");
    let restored = dir.join("restored");
    let mut restore = Command::new(&spec.bin);
    restore.args(["backup", "restore"]).arg(&file).arg("--data-dir").arg(&restored).args([
        "--id",
        "1",
        "--initial-cluster",
        &format!("1=127.0.0.1:{}", spec.port + 1),
    ]);
    let (restore_time, restore_peak, _) = run_sampled(restore, None)?;

    let started = Instant::now();
    let _restored_node = serve(&spec.bin, spec.port + 1, &restored, false)?;
    let restored_client =
        Client::with_timeout([format!("http://127.0.0.1:{}", spec.port + 1)], Duration::from_secs(30))?;
    wait_serving(&restored_client, Duration::from_secs(120)).await?;
    let restored_serving = started.elapsed();
    let last = format!("bulk-{:012}", keys - 1);
    let value = restored_client.get(&last, Consistency::Linearizable).await?;
    anyhow::ensure!(value.map(|v| v.len()) == Some(spec.value_bytes), "the restored node lacks {last}");

    Ok(BackupResult {
        state_mib: (keys * (spec.value_bytes as u64 + 17)) as f64 / (1 << 20) as f64,
        keys,
        file_mib,
        save_secs: save_time.as_secs_f64(),
        save_mib_per_sec: file_mib / save_time.as_secs_f64(),
        save_cli_peak_rss_mib: save_peak,
        server_rss_before_mib,
        server_rss_during_mib: server_peak,
        restore_secs: restore_time.as_secs_f64(),
        restore_mib_per_sec: file_mib / restore_time.as_secs_f64(),
        restore_peak_rss_mib: restore_peak,
        restored_serving_secs: restored_serving.as_secs_f64(),
    })
}

/// The results as a markdown table.
pub fn markdown(results: &[BackupResult]) -> String {
    let mut out = String::from(
        "| state MiB | keys | file MiB | save s | save MiB/s | CLI peak RSS MiB | server RSS before / during MiB | restore s | restore MiB/s | restore peak RSS MiB | restored node serving s |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {:.0} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {:.0} / {:.0} | {:.2} | {:.0} | {:.1} | {:.2} |\n",
            r.state_mib,
            r.keys,
            r.file_mib,
            r.save_secs,
            r.save_mib_per_sec,
            r.save_cli_peak_rss_mib,
            r.server_rss_before_mib,
            r.server_rss_during_mib,
            r.restore_secs,
            r.restore_mib_per_sec,
            r.restore_peak_rss_mib,
            r.restored_serving_secs,
        ));
    }
    out
}
