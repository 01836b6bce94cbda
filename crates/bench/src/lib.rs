//! Benchmarks of raftkv, side by side with etcd.
//!
//! # Layout
//! - [`target`]: the systems under test (raftkv over HTTP, etcd over gRPC).
//! - [`load`]: a closed-loop load with an HDR latency histogram.
//! - [`compare`]: the same rows against both systems, alternating, medians of several trials.
//! - [`backup`]: backup and restore of a large state: duration, throughput, peak memory.
//! - [`procstat`]: CPU seconds and peak RSS of the servers, and machine load, from /proc.
//! - [`recovery`]: failover and catch-up times on clusters started here.
//! - [`slow_disk`]: writes with one or two followers on slow disks (`raftkv-faultfs`).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use raftkv_bench::load::{LoadSpec, Workload, run};
//! use raftkv_bench::target::{Placement, System};
//!
//! let result = run(LoadSpec {
//!     system: System::Raftkv,
//!     endpoints: vec!["http://127.0.0.1:7001".into()],
//!     placement: Placement::Spread,
//!     read_preference: raftkv_client::ReadPreference::Any,
//!     workload: Workload::Write,
//!     consistency: raftkv_client::Consistency::Linearizable,
//!     clients: 16,
//!     duration: Duration::from_secs(10),
//!     warmup: Duration::from_secs(2),
//!     value_size: 100,
//!     keys: 10_000,
//!     read_ratio: 0.9,
//!     progress: true,
//! })
//! .await?;
//! println!("{:.0} ops/s, p99 {:.2} ms", result.ops_per_sec, result.p99_ms);
//! # Ok(()) }
//! ```

pub mod backup;
pub mod compare;
pub mod load;
pub mod procstat;
pub mod recovery;
pub mod slow_disk;
pub mod target;
