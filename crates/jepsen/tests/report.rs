//! `report.html` stays small enough to open whatever the run's length: a large history is drawn
//! per pixel column, a small one operation by operation.

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv_jepsen::checker::check;
use raftkv_jepsen::history::{Event, EventType, Process};
use raftkv_jepsen::report::{DETAIL_LIMIT, write_html};
use raftkv_jepsen::run::{RunResults, count_ops};
use serde_json::json;

/// `n` sequential writes then reads over 10 clients, each client on a new key every 20 operations
/// (short per-key histories keep the check quick).
fn history(n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut time = 0;
    for i in 0..n {
        let p = (i % 10) as u64;
        let key = Some(format!("k{p}-{}", i / 200));
        let (f, value) = if i % 20 < 10 { ("write", json!(i)) } else { ("read", json!(i - 10)) };
        for kind in [EventType::Invoke, EventType::Ok] {
            time += 50_000;
            let value = if kind == EventType::Invoke && f == "read" { json!(null) } else { value.clone() };
            events.push(Event {
                kind,
                process: Process::Client(p),
                f: f.into(),
                key: key.clone(),
                value,
                time,
                error: None,
            });
        }
    }
    events
}

fn report_bytes(events: &[Event]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let check = check(events, Duration::from_secs(60)).unwrap();
    let results = RunResults {
        summary: check.summary(),
        ops: count_ops(events),
        faults: Vec::new(),
        network: "loopback".into(),
        settings: BTreeMap::from([("concurrency".into(), "10".into())]),
        backups: 0,
        cluster_events: Vec::new(),
        lost_writes: Vec::new(),
        check,
    };
    let path = dir.path().join("report.html");
    write_html(&path, events, &results).unwrap();
    std::fs::metadata(&path).unwrap().len() as usize
}

#[test]
fn a_long_run_gives_a_report_of_bounded_size() {
    let small = report_bytes(&history(DETAIL_LIMIT / 2));
    let large = report_bytes(&history(100_000));
    let larger = report_bytes(&history(200_000));
    eprintln!(
        "report.html: {small} bytes for {} operations, {large} for 100 000, {larger} for 200 000",
        DETAIL_LIMIT / 2
    );
    assert!(large < 3_000_000, "{large} bytes for 100 000 operations");
    assert!(larger < large * 5 / 4, "the size does not grow with the history: {large} then {larger}");
}
