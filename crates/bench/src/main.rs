//! `raftkv-bench`: closed-loop load against raftkv or etcd, and the side-by-side comparison.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftkv_bench::backup::BackupSpec;
use raftkv_bench::compare::{CompareSpec, compare, markdown};
use raftkv_bench::load::{LoadSpec, Workload, preload, run};
use raftkv_bench::recovery::{RecoverySpec, measure};
use raftkv_bench::target::{Placement, System};
use raftkv_client::Consistency;

/// Benchmarks of raftkv, side by side with etcd.
#[derive(Debug, Parser)]
#[command(name = "raftkv-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One closed-loop load against one system; prints a table (and JSON with --json).
    Run {
        /// raftkv (HTTP API) or etcd (gRPC API).
        #[arg(long, default_value = "raftkv")]
        target: System,
        /// Comma-separated endpoints (http://host:port for raftkv, host:port for etcd).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
        )]
        endpoints: Vec<String>,
        /// write, read, mixed or cas.
        #[arg(long, default_value = "write")]
        workload: Workload,
        /// Read consistency: linearizable, lease or stale (etcd: stale = serializable).
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Fraction of reads in `mixed`.
        #[arg(long, default_value_t = 0.9)]
        read_ratio: f64,
        /// Which members the clients talk to: `spread` over all, or all to the `leader`.
        #[arg(long, default_value = "spread")]
        placement: Placement,
        /// raftkv: where clients send reads: sticky (the member they talk to), leader, any
        /// (spread over every member, learners included) or nearest.
        #[arg(long, default_value = "sticky")]
        read_preference: raftkv_client::ReadPreference,
        #[command(flatten)]
        shape: Shape,
    },
    /// The same rows against raftkv and etcd, alternating, medians of --trials.
    Compare {
        /// raftkv endpoints.
        #[arg(long, value_delimiter = ',', required = true)]
        raftkv: Vec<String>,
        /// etcd endpoints.
        #[arg(long, value_delimiter = ',', required = true)]
        etcd: Vec<String>,
        /// raftkv server PIDs (CPU and memory).
        #[arg(long, value_delimiter = ',')]
        raftkv_pids: Vec<u32>,
        /// etcd server PIDs.
        #[arg(long, value_delimiter = ',')]
        etcd_pids: Vec<u32>,
        /// Trials per row and system.
        #[arg(long, default_value_t = 3)]
        trials: usize,
        /// The rows, as WORKLOAD:CLIENTS (write or read), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "write:1,write:16,write:64,write:256,read:64")]
        rows: Vec<String>,
        /// Speak TLS to both systems, verifying their certificates against this CA (PEM).
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
        /// The client certificate presented to both systems (PEM), with --tls-key.
        #[arg(long, requires = "tls_ca")]
        tls_cert: Option<PathBuf>,
        /// The key of --tls-cert (PEM).
        #[arg(long, requires = "tls_ca")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        shape: Shape,
    },
    /// Writes a throwaway CA, a certificate per member (for 127.0.0.1, naming member ids 1..N,
    /// usable by raftkv and etcd members alike) and a client certificate into DIR, for runs over
    /// TLS (scripts/bench-vs-etcd.sh with BENCH_TLS=1).
    Certs {
        /// Where the files go: ca.crt, member-N.crt/.key, client.crt/.key.
        #[arg(long)]
        dir: PathBuf,
        /// Members.
        #[arg(long, default_value_t = 3)]
        members: u64,
    },
    /// Backup and restore of a bulk-loaded state on a node this command starts itself: duration,
    /// throughput and peak memory of the node and of the command line, per state size.
    Backup(BackupArgs),
    /// Failover and catch-up times on three-member clusters this command starts itself:
    /// SIGKILL of the leader under a write load until the first write acknowledged after it
    /// (median of --rounds), and a member restarted after missing --catch-up-writes writes until
    /// it has applied them.
    Recovery {
        /// The raftkv binary.
        #[arg(long)]
        raftkv_bin: PathBuf,
        /// The etcd binary; without it only raftkv is measured.
        #[arg(long)]
        etcd_bin: Option<PathBuf>,
        /// Leader kills to time, per system.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Writes the restarted member misses.
        #[arg(long, default_value_t = 20_000)]
        catch_up_writes: usize,
        /// First of the ports the clusters use (about 15 consecutive ports).
        #[arg(long, default_value_t = 24100)]
        base_port: u16,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes with no, one and two followers on slow disks (every fsync answered --delay late),
    /// each member on a raftkv-faultfs disk of its own, raftkv and etcd alike. Needs root (FUSE).
    SlowDisk {
        /// The raftkv binary.
        #[arg(long)]
        raftkv_bin: PathBuf,
        /// The etcd binary; without it only raftkv is measured.
        #[arg(long)]
        etcd_bin: Option<PathBuf>,
        /// How late a slow disk answers each fsync ("300ms", "1s").
        #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
        delay: Duration,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Measured seconds per row.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// First of the ports the clusters use (about 15 consecutive ports).
        #[arg(long, default_value_t = 24200)]
        base_port: u16,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Flags of `backup`.
#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// The raftkv binary.
    #[arg(long, default_value = "target/release/raftkv")]
    raftkv_bin: PathBuf,
    /// State sizes to measure, MiB, comma-separated (each on a fresh node).
    #[arg(long, value_delimiter = ',', default_values_t = [256u64, 1024])]
    sizes_mib: Vec<u64>,
    /// Value size of the bulk load, bytes.
    #[arg(long, default_value_t = 65536)]
    value_bytes: usize,
    /// Concurrent writers of the bulk load.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Port of the node (the restored node uses the next one).
    #[arg(long, default_value_t = 27101)]
    port: u16,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Flags both commands share: how long each measurement runs, and on what data.
#[derive(Debug, clap::Args)]
struct Shape {
    /// Measured seconds (per trial, for `compare`).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (per trial, for `compare`).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Value size, bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key space.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Writes `value` as pretty JSON to `path`, when one was given.
fn write_json<T: serde::Serialize>(path: Option<&std::path::Path>, value: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    }
    Ok(())
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(s.is_finite() && s >= 0.0, "durations must be non-negative seconds, got {s}");
    Ok(Duration::from_secs_f64(s))
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            target,
            endpoints,
            workload,
            consistency,
            clients,
            read_ratio,
            placement,
            read_preference,
            shape: Shape { duration, warmup, value_size, keys, json },
        } => {
            anyhow::ensure!(clients >= 1, "--clients must be at least 1");
            anyhow::ensure!(keys >= 1, "--keys must be at least 1");
            if matches!(workload, Workload::Read | Workload::Mixed | Workload::Cas) {
                preload(target, &endpoints, keys, value_size).await?;
            }
            let result = run(LoadSpec {
                system: target,
                endpoints,
                placement,
                read_preference,
                workload,
                consistency,
                clients,
                duration: secs(duration)?,
                warmup: secs(warmup)?,
                value_size,
                keys,
                read_ratio,
                progress: true,
            })
            .await?;
            println!("| system | workload | clients | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |");
            println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            println!(
                "| {target} | {workload:?} | {clients} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                result.ops_per_sec,
                result.p50_ms,
                result.p90_ms,
                result.p99_ms,
                result.p999_ms,
                result.max_ms,
                result.errors
            );
            if let Some(e) = &result.first_error {
                eprintln!("first error: {e}");
            }
            write_json(json.as_deref(), &result)?;
            Ok(())
        }
        Command::Compare {
            raftkv,
            etcd,
            raftkv_pids,
            etcd_pids,
            trials,
            rows,
            tls_ca,
            tls_cert,
            tls_key,
            shape: Shape { duration, warmup, value_size, keys, json },
        } => {
            anyhow::ensure!(trials >= 1, "--trials must be at least 1");
            if let (Some(ca), Some(cert), Some(key)) = (tls_ca, tls_cert, tls_key) {
                raftkv_bench::target::use_tls(raftkv_bench::target::BenchTls { ca, cert, key });
            }
            let rows = rows.iter().map(|r| raftkv_bench::compare::parse_row(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let comparison = compare(CompareSpec {
                rows,
                raftkv,
                etcd,
                raftkv_pids,
                etcd_pids,
                trials,
                duration: secs(duration)?,
                warmup: secs(warmup)?,
                value_size,
                keys,
            })
            .await?;
            println!("{}", markdown(&comparison));
            write_json(json.as_deref(), &comparison)?;
            Ok(())
        }
        Command::Certs { dir, members } => {
            let ca = raftkv_tls::ThrowawayCa::new("raftkv-bench CA")?;
            let members: Vec<(u64, Vec<String>)> = (1..=members).map(|id| (id, Vec::new())).collect();
            ca.write_cluster(&dir, &members, "raftkv-bench")?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::Backup(args) => backup(args).await,
        Command::SlowDisk { raftkv_bin, etcd_bin, delay, clients, duration_secs, value_size, base_port, json } => {
            let mut systems = vec![(System::Raftkv, raftkv_bin)];
            systems.extend(etcd_bin.map(|bin| (System::Etcd, bin)));
            let spec = raftkv_bench::slow_disk::SlowDiskSpec {
                systems,
                delay,
                clients: clients.max(1),
                duration: Duration::from_secs(duration_secs.max(1)),
                value_size: value_size.max(1),
                base_port,
                dir: std::env::temp_dir().join(format!("raftkv-slow-disk-{}", std::process::id())),
            };
            slow_disk(spec, json).await
        }
        Command::Recovery { raftkv_bin, etcd_bin, rounds, catch_up_writes, base_port, json } => {
            anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
            let dir = std::env::temp_dir().join(format!("raftkv-recovery-{}", std::process::id()));
            let mut systems = vec![(System::Raftkv, raftkv_bin)];
            systems.extend(etcd_bin.map(|bin| (System::Etcd, bin)));
            let mut results = Vec::new();
            for (system, bin) in systems {
                let spec =
                    RecoverySpec { system, bin, base_port, rounds, catch_up_writes, dir: dir.join(system.to_string()) };
                let result = measure(spec).await;
                let _ = std::fs::remove_dir_all(dir.join(system.to_string()));
                results.push(result?);
            }
            let _ = std::fs::remove_dir_all(&dir);
            println!("| system | failover median ms | failover rounds ms | catch-up of {catch_up_writes} writes ms |");
            println!("|---|---:|---|---:|");
            for r in &results {
                let rounds: Vec<String> = r.failover_ms.iter().map(|ms| format!("{ms:.0}")).collect();
                println!(
                    "| {} | {:.0} | {} | {:.0} |",
                    r.system,
                    r.failover_median_ms,
                    rounds.join(", "),
                    r.catch_up_ms
                );
            }
            write_json(json.as_deref(), &results)?;
            Ok(())
        }
    }
}

async fn slow_disk(spec: raftkv_bench::slow_disk::SlowDiskSpec, json: Option<PathBuf>) -> anyhow::Result<()> {
    let rows = raftkv_bench::slow_disk::measure(&spec).await;
    let _ = std::fs::remove_dir_all(&spec.dir);
    let rows = rows?;
    println!("{}", raftkv_bench::slow_disk::markdown(&rows));
    write_json(json.as_deref(), &rows)
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.value_bytes >= 1 && args.writers >= 1, "--value-bytes and --writers must be at least 1");
    let dir = std::env::temp_dir().join(format!("raftkv-backup-bench-{}", std::process::id()));
    let spec = BackupSpec {
        bin: args.raftkv_bin,
        sizes_mib: args.sizes_mib,
        value_bytes: args.value_bytes,
        writers: args.writers,
        port: args.port,
        dir: dir.clone(),
    };
    let results = raftkv_bench::backup::measure(&spec).await;
    let _ = std::fs::remove_dir_all(&dir);
    let results = results?;
    println!("{}", raftkv_bench::backup::markdown(&results));
    write_json(args.json.as_deref(), &results)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
