//! A closed-loop load: N clients, each issuing its next request as soon as the previous one is
//! answered, for a fixed time after a warm-up, with latencies in an HDR histogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raftkv_client::Consistency;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::target::{ConnectOptions, Placement, System, Target, leader_first};

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Puts of fixed-size values over the key space.
    Write,
    /// Gets over the key space (preloaded).
    Read,
    /// Reads and writes, `--read-ratio` of them reads.
    Mixed,
    /// Compare-and-swap on the key space, each client on its own keys.
    Cas,
}

/// Settings of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSpec {
    /// The system.
    pub system: System,
    /// Its endpoints.
    pub endpoints: Vec<String>,
    /// Which members the clients talk to.
    pub placement: Placement,
    /// Where raftkv clients send reads (`sticky`: the member they talk to).
    #[serde(serialize_with = "display")]
    pub read_preference: raftkv_client::ReadPreference,
    /// The workload.
    pub workload: Workload,
    /// Read consistency (raftkv: as named; etcd: stale = serializable, else linearizable).
    #[serde(serialize_with = "display")]
    pub consistency: Consistency,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Value size in bytes.
    pub value_size: usize,
    /// Number of distinct keys.
    pub keys: usize,
    /// Fraction of reads in `mixed`.
    pub read_ratio: f64,
    /// Print a progress line every second.
    pub progress: bool,
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// The outcome of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// The settings.
    pub spec: LoadSpec,
    /// Successful operations in the measured window.
    pub ops: u64,
    /// Failed operations in the measured window.
    pub errors: u64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Latency percentiles of successful operations, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    ops: AtomicU64,
    errors: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

fn key(i: usize) -> String {
    format!("bench-{i:08}")
}

/// Writes every key once, so that reads and cas find values.
pub async fn preload(system: System, endpoints: &[String], keys: usize, value_size: usize) -> anyhow::Result<()> {
    let value = vec![b'v'; value_size];
    let workers = 32.min(keys.max(1));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let endpoints = endpoints.to_vec();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut target = Target::connect(system, &endpoints, w, Consistency::Linearizable).await?;
            for i in (w..keys).step_by(workers) {
                target.put(&key(i), &value).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs the load and returns its figures.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        first_error: Mutex::new(None),
    });
    let endpoints = match spec.placement {
        Placement::Spread => spec.endpoints.clone(),
        Placement::Leader => leader_first(spec.system, &spec.endpoints).await?,
    };
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let first = if spec.placement == Placement::Leader { 0 } else { c };
        let options = ConnectOptions { read_preference: spec.read_preference, ..ConnectOptions::default() };
        let mut target = Target::connect_with(spec.system, &endpoints, first, spec.consistency, options).await?;
        let shared = shared.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let value = vec![b'x'; spec.value_size];
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut n: usize = c.wrapping_mul(7919);
            // cas: each client owns the keys congruent to its number, and knows their values.
            let own_keys: Vec<usize> = (c..spec.keys.max(1)).step_by(spec.clients).collect();
            let mut cas_values: Vec<Vec<u8>> = own_keys.iter().map(|_| vec![b'v'; spec.value_size]).collect();
            let mut counter = 0u64;
            while !shared.stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let k = n % spec.keys.max(1);
                let started = Instant::now();
                let result = match spec.workload {
                    Workload::Write => target.put(&key(k), &value).await,
                    Workload::Read => target.get(&key(k)).await,
                    Workload::Mixed => {
                        if (n % 1000) as f64 / 1000.0 < spec.read_ratio {
                            target.get(&key(k)).await
                        } else {
                            target.put(&key(k), &value).await
                        }
                    }
                    Workload::Cas => {
                        let slot = n % own_keys.len().max(1);
                        counter += 1;
                        let mut next = format!("c{c}-{counter}-").into_bytes();
                        next.resize(spec.value_size.max(next.len()), b'c');
                        let r = target.cas(&key(own_keys[slot]), &cas_values[slot], &next).await;
                        if r.is_ok() {
                            cas_values[slot] = next;
                        }
                        r
                    }
                };
                let micros = started.elapsed().as_micros() as u64;
                if !shared.measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok(()) => {
                        shared.ops.fetch_add(1, Ordering::Relaxed);
                        let _ = local.record(micros.max(1));
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = shared.first_error.lock().await;
                        if first.is_none() {
                            *first = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            shared.hist.lock().await.add(&local).expect("compatible histograms");
        }));
    }
    tokio::time::sleep(spec.warmup).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < spec.duration {
        let step = Duration::from_secs(1).min(spec.duration.saturating_sub(started.elapsed()));
        tokio::time::sleep(step).await;
        if spec.progress {
            let ops = shared.ops.load(Ordering::Relaxed);
            eprint!(
                "\r{} {:?} x{}: {:>8.0} ops/s now, {:>9} ops, {} errors, {:>3.0}s   ",
                spec.system,
                spec.workload,
                spec.clients,
                (ops - last) as f64 / step.as_secs_f64().max(0.001),
                ops,
                shared.errors.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
            last = ops;
        }
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    if spec.progress {
        eprintln!();
    }
    let hist = shared.hist.lock().await;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let ops = shared.ops.load(Ordering::Relaxed);
    Ok(LoadResult {
        ops,
        errors: shared.errors.load(Ordering::Relaxed),
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        first_error: shared.first_error.lock().await.clone(),
        spec,
    })
}
