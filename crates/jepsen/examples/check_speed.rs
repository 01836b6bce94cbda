//! Run with: `cargo run --release -p raftkv-jepsen --example check_speed -- [OPS] [KEYS] [CLIENTS]`
//!
//! How fast the checker is: builds a synthetic linearizable history of OPS operations (default
//! 100 000) over KEYS keys (default 500) from CLIENTS concurrent clients (default 10), with
//! overlapping operations, cas mismatches and unknown outcomes, then checks it and prints the time.

use std::time::{Duration, Instant};

use raftkv_jepsen::checker::{Verdict, check};
use raftkv_jepsen::history::{Event, EventType, Process};
use raftkv_jepsen::workload::Rng;
use serde_json::{Value, json};

struct Planned {
    process: u64,
    key: String,
    f: &'static str,
    arg: Value,
    invoke: u64,
    point: u64,
    complete: u64,
    unknown: bool,
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (ops, keys, clients) = (
        args.first().copied().unwrap_or(100_000),
        args.get(1).copied().unwrap_or(500),
        args.get(2).copied().unwrap_or(10),
    );
    let mut rng = Rng::new(42);
    let mut planned = Vec::new();
    let mut clock = vec![0u64; clients as usize];
    let mut process: Vec<u64> = (0..clients).collect();
    for i in 0..ops {
        let c = (i % clients) as usize;
        let invoke = clock[c] + rng.below(1_000);
        let point = invoke + 1 + rng.below(2_000_000);
        let complete = point + 1 + rng.below(2_000_000);
        clock[c] = complete;
        let key = format!("k{}", rng.below(keys));
        let value = i + 1; // unique written values
        let (f, arg) = match rng.below(4) {
            0 | 1 => ("read", Value::Null),
            2 => ("write", json!(value)),
            _ => ("cas", json!(value)),
        };
        let unknown = f != "read" && rng.below(50) == 0;
        planned.push(Planned { process: process[c], key, f, arg, invoke, point, complete, unknown });
        if unknown {
            process[c] += clients;
        }
    }
    // Apply in linearization order to learn each result.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| planned[i].point);
    let mut registers = std::collections::HashMap::<String, Value>::new();
    let mut results = vec![(EventType::Ok, Value::Null, None); planned.len()];
    for i in order {
        let p = &planned[i];
        let current = registers.get(&p.key).cloned().unwrap_or(Value::Null);
        results[i] = match p.f {
            "read" => (EventType::Ok, current, None),
            "write" => {
                registers.insert(p.key.clone(), p.arg.clone());
                (EventType::Ok, p.arg.clone(), None)
            }
            _ => {
                // Expect the current value most of the time, so that most cas succeed.
                let expected = if p.arg.as_u64().unwrap_or(0) % 3 == 0 { json!(-1) } else { current.clone() };
                if expected == current {
                    registers.insert(p.key.clone(), p.arg.clone());
                    (EventType::Ok, json!([expected, p.arg]), None)
                } else {
                    (EventType::Fail, json!([expected, p.arg]), Some("cas-mismatch".to_string()))
                }
            }
        };
    }
    let mut events = Vec::with_capacity(planned.len() * 2);
    for (p, (kind, value, error)) in planned.iter().zip(results) {
        let invoke_value = if p.f == "read" {
            Value::Null
        } else if p.f == "cas" {
            value.clone()
        } else {
            p.arg.clone()
        };
        let event = |kind, value, time, error| Event {
            kind,
            process: Process::Client(p.process),
            f: p.f.into(),
            key: Some(p.key.clone()),
            value,
            time,
            error,
        };
        events.push(event(EventType::Invoke, invoke_value.clone(), p.invoke, None));
        if p.unknown {
            events.push(event(EventType::Info, invoke_value, p.complete, Some("timeout".into())));
        } else {
            events.push(event(kind, value, p.complete, error));
        }
    }
    events.sort_by_key(|e| e.time);
    let started = Instant::now();
    let report = check(&events, Duration::from_secs(300)).expect("well-formed history");
    let elapsed = started.elapsed();
    println!(
        "{ops} operations, {keys} keys, {clients} clients: {} in {:.2} s ({:.0} ops/s)",
        report.verdict,
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(report.verdict, Verdict::Linearizable, "the synthetic history is linearizable by construction");
}
