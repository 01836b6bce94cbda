//! The checker against known-good and known-bad register histories.

use std::time::Duration;

use raftkv_jepsen::checker::{Verdict, check};
use raftkv_jepsen::history::{Event, EventType, Process};
use serde_json::{Value, json};

/// A history under construction: `op` adds a whole operation as invoke + completion.
#[derive(Default)]
struct H(Vec<Event>);

impl H {
    fn ev(&mut self, kind: EventType, p: u64, f: &str, value: Value, time: u64, error: Option<&str>) -> &mut Self {
        self.0.push(Event {
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("k".into()),
            value,
            time,
            error: error.map(str::to_string),
        });
        self
    }

    fn op(
        &mut self,
        p: u64,
        f: &str,
        value: Value,
        (start, end): (u64, u64),
        outcome: EventType,
        result: Value,
    ) -> &mut Self {
        let invoke_value = if f == "read" { Value::Null } else { value };
        let error = match (f, outcome) {
            ("cas", EventType::Fail) => Some("cas-mismatch"),
            (_, EventType::Fail) => Some("refused"),
            (_, EventType::Info) => Some("timeout"),
            _ => None,
        };
        self.ev(EventType::Invoke, p, f, invoke_value.clone(), start, None);
        let completion_value = if f == "read" { result } else { invoke_value };
        self.ev(outcome, p, f, completion_value, end, error)
    }

    fn write(&mut self, p: u64, v: i64, start: u64, end: u64) -> &mut Self {
        self.op(p, "write", json!(v), (start, end), EventType::Ok, Value::Null)
    }

    fn read(&mut self, p: u64, v: Value, start: u64, end: u64) -> &mut Self {
        self.op(p, "read", Value::Null, (start, end), EventType::Ok, v)
    }

    fn cas(&mut self, p: u64, from: i64, to: i64, start: u64, end: u64, outcome: EventType) -> &mut Self {
        self.op(p, "cas", json!([from, to]), (start, end), outcome, Value::Null)
    }

    fn verdict(&self) -> Verdict {
        check(&self.0, Duration::from_secs(10)).unwrap().verdict
    }
}

#[test]
fn accepts_sequential_and_concurrent_histories() {
    assert_eq!(H::default().write(0, 1, 0, 10).read(1, json!(1), 20, 30).verdict(), Verdict::Linearizable);
    // A read concurrent with a write may see either value.
    assert_eq!(
        H::default().write(0, 1, 0, 100).read(1, Value::Null, 10, 20).read(2, json!(1), 30, 40).verdict(),
        Verdict::Linearizable
    );
    // Reads of an absent key.
    assert_eq!(H::default().read(0, Value::Null, 0, 10).verdict(), Verdict::Linearizable);
    // A cas chain.
    assert_eq!(
        H::default()
            .write(0, 1, 0, 10)
            .cas(1, 1, 2, 20, 30, EventType::Ok)
            .cas(2, 2, 3, 40, 50, EventType::Ok)
            .read(0, json!(3), 60, 70)
            .verdict(),
        Verdict::Linearizable
    );
    // A cas that failed because the value differed is consistent with the value being 1.
    assert_eq!(
        H::default().write(0, 1, 0, 10).cas(1, 5, 6, 20, 30, EventType::Fail).read(2, json!(1), 40, 50).verdict(),
        Verdict::Linearizable
    );
    // Concurrent writes, reads agreeing on one order.
    assert_eq!(
        H::default()
            .write(0, 1, 0, 50)
            .write(1, 2, 0, 50)
            .read(2, json!(2), 60, 70)
            .read(3, json!(2), 80, 90)
            .verdict(),
        Verdict::Linearizable
    );
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // The client gave up at 10; the write shows up after a read that did not see it. An `info`
    // operation does not complete when its client gives up.
    let mut late = H::default();
    late.op(0, "write", json!(1), (0, 10), EventType::Info, Value::Null).read(1, Value::Null, 20, 30).read(
        2,
        json!(1),
        40,
        50,
    );
    assert_eq!(late.verdict(), Verdict::Linearizable);
    let mut never = H::default();
    never.op(0, "write", json!(1), (0, 10), EventType::Info, Value::Null).read(1, Value::Null, 20, 30).read(
        2,
        Value::Null,
        40,
        50,
    );
    assert_eq!(never.verdict(), Verdict::Linearizable);
    // An unknown cas, likewise.
    let mut cas = H::default();
    cas.write(0, 1, 0, 10).op(1, "cas", json!([1, 2]), (20, 30), EventType::Info, Value::Null).read(
        2,
        json!(2),
        100,
        110,
    );
    assert_eq!(cas.verdict(), Verdict::Linearizable);
    // But it cannot take effect before it was invoked.
    let mut early = H::default();
    early.read(1, json!(1), 0, 10).op(0, "write", json!(1), (20, 30), EventType::Info, Value::Null);
    assert_eq!(early.verdict(), Verdict::NotLinearizable);
}

#[test]
fn rejects_stale_reads() {
    assert_eq!(
        H::default().write(0, 1, 0, 10).write(0, 2, 20, 30).read(1, json!(1), 40, 50).verdict(),
        Verdict::NotLinearizable
    );
}

#[test]
fn rejects_a_lost_acknowledged_write() {
    assert_eq!(H::default().write(0, 1, 0, 10).read(1, Value::Null, 20, 30).verdict(), Verdict::NotLinearizable);
}

#[test]
fn rejects_a_value_no_one_wrote() {
    assert_eq!(H::default().write(0, 1, 0, 10).read(1, json!(7), 20, 30).verdict(), Verdict::NotLinearizable);
}

#[test]
fn rejects_two_successful_cas_from_the_same_value() {
    let mut h = H::default();
    h.write(0, 0, 0, 10).cas(1, 0, 1, 20, 40, EventType::Ok).cas(2, 0, 2, 20, 40, EventType::Ok);
    assert_eq!(h.verdict(), Verdict::NotLinearizable);
}

#[test]
fn a_cas_mismatch_is_an_observation() {
    // The value was certainly 1 throughout, so a cas expecting 1 cannot have found something else.
    assert_eq!(
        H::default().write(0, 1, 0, 10).cas(1, 1, 2, 20, 30, EventType::Fail).verdict(),
        Verdict::NotLinearizable
    );
}

#[test]
fn failed_operations_took_no_effect() {
    let mut h = H::default();
    h.op(0, "write", json!(5), (0, 10), EventType::Fail, Value::Null).read(1, json!(5), 20, 30);
    assert_eq!(h.verdict(), Verdict::NotLinearizable);
    let mut read_failed = H::default();
    read_failed.write(0, 1, 0, 10).op(1, "read", Value::Null, (20, 30), EventType::Fail, Value::Null);
    assert_eq!(read_failed.verdict(), Verdict::Linearizable);
}

#[test]
fn reports_a_minimal_failing_set_and_skips_the_nemesis() {
    let mut h = H::default();
    h.write(0, 1, 0, 10).read(3, json!(1), 12, 14).write(1, 2, 20, 30).read(4, json!(2), 31, 35);
    h.0.push(Event {
        kind: EventType::Info,
        process: Process::Named("nemesis".into()),
        f: "start-partition".into(),
        key: None,
        value: json!("isolate n1"),
        time: 36,
        error: None,
    });
    h.read(2, json!(1), 40, 50).write(5, 3, 60, 70);
    let report = check(&h.0, Duration::from_secs(10)).unwrap();
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let failing = &report.keys[0].failing;
    let times: Vec<u64> = failing.iter().map(|o| o.invoke).collect();
    // The stale read, the write it should have seen, and the write whose value it returned.
    assert_eq!(times, vec![0, 20, 40], "{failing:?}");
}

#[test]
fn keys_are_independent_and_malformed_histories_are_errors() {
    let mut h = H::default();
    h.write(0, 1, 0, 10);
    for e in &mut h.0 {
        e.key = Some("a".into());
    }
    h.read(1, Value::Null, 20, 30); // key "k": absent, fine
    assert_eq!(h.verdict(), Verdict::Linearizable);

    let mut orphan = H::default();
    orphan.ev(EventType::Ok, 0, "write", json!(1), 5, None);
    assert!(check(&orphan.0, Duration::from_secs(1)).is_err());
}
