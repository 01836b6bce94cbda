//! The counter workload: clients add one to a counter and read it, through client sessions that
//! retry writes of unknown outcome with the same sequence number. The counter is the version of
//! one key (each put raises it by one), so an add applied twice or lost shows in the reads.
//!
//! Checked as Jepsen's counter: a read that returned `v` must satisfy
//! `completed adds before it began <= v <= adds invoked (and not failed) before it ended`.

use std::time::Instant;

use raftkv_client::{ClientError, Consistency, SessionOptions};
use serde_json::{Value, json};

use crate::checker::{CheckReport, Property};
use crate::history::{Event, EventType, Process, paired};
use crate::workload::{Recorder, Rng, error_code};
use crate::workload_kind::session_client;
use crate::workload_run::WorkloadClient;

/// The counter's key.
pub const COUNTER_KEY: &str = "counter";

/// Runs one client until `spec.until`: three adds for each read.
pub async fn run_counter_client(spec: WorkloadClient, rec: &Recorder) {
    let Some(client) = session_client(spec.endpoints.clone(), spec.timeout, spec.retry_deadline) else { return };
    let client = if spec.blind_retries {
        client.with_session_options(SessionOptions { enabled: false, ..SessionOptions::default() })
    } else {
        client
    };
    let mut rng = Rng::new(spec.slot + 1);
    let mut process = spec.slot;
    let mut n = 0u64;
    while Instant::now() < spec.until {
        let p = Process::Client(process);
        if rng.below(4) == 0 {
            if !read_counter(&client, p, rec).await {
                spec.backoff().await;
            }
            continue;
        }
        n += 1;
        rec.record(EventType::Invoke, p.clone(), "add", Some(COUNTER_KEY), json!(1), None);
        let value = format!("{}-{n}", spec.slot);
        let put = if spec.blind_retries {
            blind_put(&client, &value, Instant::now() + spec.retry_deadline).await
        } else {
            client.put(COUNTER_KEY, value).await.map(|_| ())
        };
        match put {
            Ok(_) => rec.record(EventType::Ok, p, "add", Some(COUNTER_KEY), json!(1), None),
            Err(e) if e.may_have_applied() => {
                rec.record(EventType::Info, p, "add", Some(COUNTER_KEY), json!(1), Some(error_code(&e)));
                process += spec.slots;
                spec.backoff().await;
            }
            Err(e) => {
                rec.record(EventType::Fail, p, "add", Some(COUNTER_KEY), json!(1), Some(error_code(&e)));
                spec.backoff().await;
            }
        }
    }
}

/// A put without a session, sent again as a new write while its outcome is unknown, until
/// `deadline`: what a client without exactly-once writes does, and what etcd's clients did
/// before they stopped retrying (etcd#14890).
async fn blind_put(client: &raftkv_client::Client, value: &str, deadline: Instant) -> Result<(), ClientError> {
    loop {
        match client.put(COUNTER_KEY, value.to_string()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.may_have_applied() && Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the counter as process `p`; whether the read succeeded.
pub async fn read_counter(client: &raftkv_client::Client, p: Process, rec: &Recorder) -> bool {
    rec.record(EventType::Invoke, p.clone(), "read", Some(COUNTER_KEY), Value::Null, None);
    let read: Result<u64, ClientError> =
        client.get_kv(COUNTER_KEY, Consistency::Linearizable).await.map(|kv| kv.map_or(0, |kv| kv.version));
    match read {
        Ok(version) => {
            rec.record(EventType::Ok, p, "read", Some(COUNTER_KEY), json!(version), None);
            true
        }
        Err(e) => {
            rec.record(EventType::Fail, p, "read", Some(COUNTER_KEY), Value::Null, Some(error_code(&e)));
            false
        }
    }
}

/// Checks a counter history: every read between its bounds, and at least one read.
pub fn check_counter(events: &[Event]) -> CheckReport {
    let started = Instant::now();
    let ops = paired(events);
    // Completion times of the adds that certainly applied, and invocation times of those that
    // may have (ok, unknown, never completed).
    let mut done: Vec<u64> = Vec::new();
    let mut invoked: Vec<u64> = Vec::new();
    let mut reads: Vec<(u64, u64, u64)> = Vec::new();
    for (invoke, complete) in &ops {
        match (invoke.f.as_str(), complete.map(|c| c.kind)) {
            ("add", Some(EventType::Ok)) => {
                done.push(complete.map_or(0, |c| c.time));
                invoked.push(invoke.time);
            }
            ("add", Some(EventType::Fail)) => {}
            ("add", _) => invoked.push(invoke.time),
            ("read", Some(EventType::Ok)) => {
                let c = complete.expect("matched Some");
                if let Some(v) = c.value.as_u64() {
                    reads.push((invoke.time, c.time, v));
                }
            }
            _ => {}
        }
    }
    done.sort_unstable();
    invoked.sort_unstable();
    let mut problems = Vec::new();
    for &(begin, end, value) in &reads {
        let lower = done.partition_point(|t| *t < begin) as u64;
        let upper = invoked.partition_point(|t| *t < end) as u64;
        if value < lower {
            problems.push(format!(
                "read at {:.3} s saw {value}, but {lower} adds had completed before it began: adds lost",
                begin as f64 / 1e9
            ));
        } else if value > upper {
            problems.push(format!(
                "read at {:.3} s saw {value}, but only {upper} adds had been invoked before it ended: an add applied twice",
                begin as f64 / 1e9
            ));
        }
    }
    let adds = done.len();
    let properties = vec![
        Property::new("counter-bounds", ops.len(), problems),
        Property::progress(&[("add", adds), ("read", reads.len())]),
    ];
    CheckReport::of_properties("counter", properties, started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventType, process: u64, f: &str, value: Value, time: u64) -> Event {
        Event {
            kind,
            process: Process::Client(process),
            f: f.into(),
            key: Some(COUNTER_KEY.into()),
            value,
            time,
            error: None,
        }
    }

    #[test]
    fn reads_must_lie_between_completed_and_invoked_adds() {
        let add =
            |p, t| [event(EventType::Invoke, p, "add", json!(1), t), event(EventType::Ok, p, "add", json!(1), t + 5)];
        let read = |p, t, v: u64| {
            [event(EventType::Invoke, p, "read", Value::Null, t), event(EventType::Ok, p, "read", json!(v), t + 5)]
        };
        let history = |final_value: u64| -> Vec<Event> {
            let mut h = Vec::new();
            h.extend(add(1, 0));
            h.extend(add(2, 10));
            // An add of unknown outcome: counts as maybe.
            h.push(event(EventType::Invoke, 3, "add", json!(1), 20));
            h.push(event(EventType::Info, 3, "add", json!(1), 25));
            h.extend(read(4, 100, final_value));
            h
        };
        assert_eq!(check_counter(&history(2)).verdict, crate::checker::Verdict::Linearizable);
        assert_eq!(check_counter(&history(3)).verdict, crate::checker::Verdict::Linearizable);
        let lost = check_counter(&history(1));
        assert_eq!(lost.verdict, crate::checker::Verdict::NotLinearizable);
        assert!(lost.keys[0].problems[0].contains("lost"), "{:?}", lost.keys);
        let twice = check_counter(&history(4));
        assert!(twice.keys[0].problems[0].contains("twice"), "{:?}", twice.keys);
    }
}
