//! Jepsen-style testing of raftkv: run real nodes under faults, record what clients saw, and check
//! that the history is linearizable.
//!
//! # Layout
//! - [`history`]: the JSONL history format (Jepsen's: invoke / ok / fail / info).
//! - [`operation`]: pairing invocations with completions, per key.
//! - [`checker`]: the linearizability checker for registers; [`lost_writes`] names the
//!   acknowledged writes the final reads prove lost.
//! - [`campaign`]: many runs cycling through fault mixes and workloads, with one summary.
//! - [`run`]: one test run; [`cluster`] (the nodes), [`testnet`] (namespaces and nftables),
//!   [`workload`] (the clients), [`nemesis`] (the faults), [`report`] (report.html);
//!   [`backup_reads`] records linearizable backups as reads of every key in use. With power-loss
//!   or slow-disk faults, each node runs on a `raftkv_faultfs` disk of its own.
//! - [`workload_kind`]: the workloads. Beside the register workload ([`workload`]):
//!   [`counter_workload`] (increments through client sessions: none lost, none twice),
//!   [`bank_workload`] (transfers in transactions: totals conserved) and [`watch_workload`]
//!   (watch sequences are the committed order), driven by [`workload_run`] and checked by
//!   properties instead of per-key linearizability.
//!
//! # Example
//! ```
//! use raftkv_jepsen::checker::{Verdict, check};
//! use raftkv_jepsen::history::read_history;
//!
//! let jsonl = r#"
//! {"type":"invoke","process":0,"f":"write","key":"k","value":1,"time":0}
//! {"type":"ok","process":0,"f":"write","key":"k","value":1,"time":10}
//! {"type":"invoke","process":1,"f":"read","key":"k","value":null,"time":20}
//! {"type":"ok","process":1,"f":"read","key":"k","value":1,"time":30}
//! "#;
//! let history = read_history(jsonl.as_bytes()).unwrap();
//! let report = check(&history, std::time::Duration::from_secs(5)).unwrap();
//! assert_eq!(report.verdict, Verdict::Linearizable);
//! ```

pub mod backup_reads;
pub mod bank_workload;
pub mod campaign;
pub mod checker;
pub mod cluster;
pub mod cluster_client;
pub mod counter_workload;
mod error;
pub mod history;
pub mod lost_writes;
pub mod nemesis;
pub mod operation;
pub mod report;
pub mod run;
pub mod testnet;
pub mod watch_workload;
pub mod workload;
pub mod workload_kind;
pub mod workload_run;

pub use error::{JepsenError, Result};
