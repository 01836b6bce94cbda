//! The watch workload: writers put unique values on a few keys (through client sessions), while
//! watchers follow the keys' prefix, each watch for a few seconds before it reopens on another
//! node from the revision after the last it completed (a fresh watch from a linearizable point
//! the first time). After the run, a reference watch from the first revision reads the committed
//! order of every change.
//!
//! Checked: the reference is in revision order, holds each acknowledged put at its revision and
//! no value twice; each watch delivered exactly the reference's changes of the revisions it
//! covered, in order, none missing, none twice; a watch opened without a start revision starts
//! after every put acknowledged before it was opened.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use raftkv_client::{TxnRequest, TxnRequestOp, WatchEvent, WatchOptions, WatchSelector};
use serde_json::{Value, json};

use crate::checker::{CheckReport, Property};
use crate::history::{Event, EventType, Process, paired};
use crate::workload::{Recorder, Rng, error_code};
use crate::workload_kind::session_client;
use crate::workload_run::WorkloadClient;

/// The watched prefix.
pub const PREFIX: &str = "w/";
/// Keys written under it.
const KEYS: u64 = 4;
/// The history's key of a watch operation.
const WATCH: &str = "watch";

/// Runs one writer until `spec.until`: puts of unique values (`{slot}-{n}`) on the keys.
pub async fn run_writer(spec: WorkloadClient, rec: &Recorder) {
    let Some(client) = session_client(spec.endpoints.clone(), spec.timeout, spec.retry_deadline) else { return };
    let mut rng = Rng::new(spec.slot + 1);
    let mut process = spec.slot;
    let mut n = 0u64;
    while Instant::now() < spec.until {
        n += 1;
        let p = Process::Client(process);
        let key = format!("{PREFIX}{}", rng.below(KEYS));
        let value = format!("{}-{n}", spec.slot);
        rec.record(EventType::Invoke, p.clone(), "put", Some(&key), json!(value), None);
        match client.put(&key, value.clone()).await {
            Ok(r) => {
                rec.record(EventType::Ok, p, "put", Some(&key), json!({"value": value, "revision": r.revision}), None)
            }
            Err(e) if e.may_have_applied() => {
                rec.record(EventType::Info, p, "put", Some(&key), json!(value), Some(error_code(&e)));
                process += spec.slots;
                spec.backoff().await;
            }
            Err(e) => {
                rec.record(EventType::Fail, p, "put", Some(&key), json!(value), Some(error_code(&e)));
                spec.backoff().await;
            }
        }
        // Leave the watchers some room: a write every few ms per writer is plenty.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one watch delivered: `[revision, key, value]` per change (value null for a delete).
#[derive(Default)]
struct Delivered {
    created: Option<u64>,
    through: Option<u64>,
    changes: Vec<Value>,
    end: Option<String>,
}

/// Follows `stream` until `stop`, collecting its changes.
async fn follow(mut stream: raftkv_client::WatchStream, stop: Instant) -> Delivered {
    let mut out = Delivered::default();
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => break,
            Ok(None) => {
                out.end = Some("ended".into());
                break;
            }
            Ok(Some(Err(e))) => {
                out.end = Some(error_code(&e));
                break;
            }
            Ok(Some(Ok(event))) => match event {
                WatchEvent::Created { revision } => out.created = Some(revision),
                WatchEvent::Put { revision, key, value, .. } => {
                    out.changes.push(json!([revision, key, String::from_utf8_lossy(&value.value)]));
                }
                WatchEvent::Delete { revision, key, .. } => out.changes.push(json!([revision, key, Value::Null])),
                WatchEvent::Compacted { compact_revision } => {
                    out.end = Some(format!("compacted at {compact_revision}"));
                    break;
                }
                _ => {}
            },
        }
    }
    out.through = stream.complete_through();
    out
}

/// Runs one watcher until `spec.until`: watches of 1 to 4 s, each on the next node.
pub async fn run_watcher(spec: WorkloadClient, rec: &Recorder) {
    let mut rng = Rng::new(spec.slot + 101);
    let mut process = spec.slot;
    let mut resume: Option<u64> = None;
    let mut round = 0usize;
    while Instant::now() < spec.until {
        round += 1;
        let n = spec.endpoints.len();
        let endpoints: Vec<String> = (0..n).map(|i| spec.endpoints[(round + i) % n].clone()).collect();
        let Ok(client) = crate::cluster_client::client(endpoints, spec.timeout) else { return };
        let p = Process::Client(process);
        rec.record(EventType::Invoke, p.clone(), "watch", Some(WATCH), json!({"start": resume}), None);
        let options = WatchOptions {
            selector: WatchSelector::Prefix(PREFIX.into()),
            start_revision: resume,
            progress_every: Some(Duration::from_millis(500)),
            ..WatchOptions::prefix(PREFIX)
        };
        let stop = (Instant::now() + Duration::from_millis(1000 + rng.below(3000))).min(spec.until);
        // Opening tries every node for a while; a watch that never opened delivered nothing.
        let opening =
            tokio::time::timeout(stop.saturating_duration_since(Instant::now()) + spec.timeout, client.watch(options));
        let opened = opening.await.unwrap_or_else(|_| {
            Err(raftkv_client::ClientError::Api {
                status: 504,
                code: "watch-open-timeout".into(),
                message: String::new(),
            })
        });
        match opened {
            Ok(stream) => {
                let got = follow(stream, stop).await;
                let value = json!({
                    "start": resume, "created": got.created, "through": got.through,
                    "changes": got.changes, "end": got.end,
                });
                // A watch that delivered something is a result, whatever ended it.
                rec.record(EventType::Ok, p, "watch", Some(WATCH), value, None);
                if let Some(through) = got.through {
                    resume = Some(through + 1);
                }
            }
            Err(e) => {
                rec.record(EventType::Fail, p, "watch", Some(WATCH), Value::Null, Some(error_code(&e)));
                process += spec.slots;
                spec.backoff().await;
            }
        }
    }
}

/// After the run: every change under the prefix from the first revision to the current one,
/// recorded as a watch by `process` (from the first node that still holds the whole history).
pub async fn reference_watch(endpoints: &[String], process: u64, rec: &Recorder) -> bool {
    for endpoint in endpoints {
        let Ok(client) = crate::cluster_client::client([endpoint.clone()], Duration::from_secs(10)) else { continue };
        // The revision now: a transaction goes through the log and answers it.
        let Ok(now) = client.txn(&TxnRequest::new().then(TxnRequestOp::get("w/0"))).await else { continue };
        let p = Process::Client(process);
        rec.record(EventType::Invoke, p.clone(), "watch", Some(WATCH), json!({"start": 1, "reference": true}), None);
        let options = WatchOptions {
            selector: WatchSelector::Prefix(PREFIX.into()),
            start_revision: Some(1),
            progress_every: Some(Duration::from_millis(200)),
            ..WatchOptions::prefix(PREFIX)
        };
        let Ok(mut stream) = client.watch(options).await else {
            rec.record(EventType::Fail, p, "watch", Some(WATCH), Value::Null, Some("refused".into()));
            continue;
        };
        let mut changes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while stream.complete_through().is_none_or(|t| t < now.revision) && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(WatchEvent::Put { revision, key, value, .. }))) => {
                    changes.push(json!([revision, key, String::from_utf8_lossy(&value.value)]));
                }
                Ok(Some(Ok(WatchEvent::Delete { revision, key, .. }))) => {
                    changes.push(json!([revision, key, Value::Null]));
                }
                Ok(Some(Ok(WatchEvent::Compacted { .. }))) | Ok(None) | Ok(Some(Err(_))) => break,
                _ => {}
            }
        }
        let through = stream.complete_through();
        if through.is_none_or(|t| t < now.revision) {
            rec.record(EventType::Fail, p, "watch", Some(WATCH), Value::Null, Some("incomplete".into()));
            continue;
        }
        let value = json!({"start": 1, "through": through, "changes": changes, "reference": true});
        rec.record(EventType::Ok, p, "watch", Some(WATCH), value, None);
        return true;
    }
    false
}

/// One change: revision, key, value.
type Change = (u64, String, Option<String>);

fn changes_of(value: &Value) -> Vec<Change> {
    value["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| Some((c[0].as_u64()?, c[1].as_str()?.to_string(), c[2].as_str().map(str::to_string))))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a watch history (see the module documentation).
pub fn check_watch(events: &[Event]) -> CheckReport {
    let started = Instant::now();
    let ops = paired(events);
    let reference = ops.iter().rev().find_map(|(_, c)| {
        c.filter(|c| c.kind == EventType::Ok && c.f == "watch" && c.value["reference"] == json!(true))
    });
    let Some(reference) = reference else {
        let missing = Property::new("reference", 0, vec!["no reference watch succeeded after the run".into()]);
        return CheckReport::of_properties("watch", vec![missing], started);
    };
    let committed = changes_of(&reference.value);

    // The committed order itself: increasing revisions, each value once, each put invoked.
    let mut order = Vec::new();
    let invoked: HashSet<String> =
        ops.iter().filter(|(i, _)| i.f == "put").filter_map(|(i, _)| i.value.as_str().map(str::to_string)).collect();
    let mut seen = HashSet::new();
    for pair in committed.windows(2) {
        if pair[1].0 <= pair[0].0 {
            order.push(format!("reference revisions out of order: {:?} then {:?}", pair[0], pair[1]));
        }
    }
    for (revision, key, value) in &committed {
        let Some(value) = value else { continue };
        if !seen.insert(value.clone()) {
            order.push(format!("value {value} written twice (again at revision {revision} on {key})"));
        }
        if !invoked.contains(value) {
            order.push(format!("value {value} at revision {revision} was never written"));
        }
    }

    // Acknowledged puts at their revisions.
    let by_revision: BTreeMap<u64, &Change> = committed.iter().map(|c| (c.0, c)).collect();
    let mut acknowledged = Vec::new();
    let mut puts = 0;
    for (invoke, complete) in &ops {
        let Some(c) = complete.filter(|c| c.kind == EventType::Ok && c.f == "put") else { continue };
        puts += 1;
        let (Some(revision), Some(value)) = (c.value["revision"].as_u64(), c.value["value"].as_str()) else { continue };
        let key = invoke.key.clone().unwrap_or_default();
        match by_revision.get(&revision) {
            Some((_, k, Some(v))) if *k == key && v == value => {}
            other => acknowledged.push(format!(
                "put {key}={value} acknowledged at revision {revision}, but the committed change there is {other:?}"
            )),
        }
    }

    // Each watch against the reference; a watch from a linearizable point after every put
    // acknowledged before it began.
    let mut watches = Vec::new();
    let mut linearizable_start = Vec::new();
    let mut acked: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|(_, c)| c.filter(|c| c.kind == EventType::Ok && c.f == "put"))
        .filter_map(|c| Some((c.time, c.value["revision"].as_u64()?)))
        .collect();
    acked.sort_unstable();
    let mut watch_count = 0;
    for (invoke, complete) in &ops {
        let Some(c) = complete.filter(|c| c.kind == EventType::Ok && c.f == "watch") else { continue };
        if c.value["reference"] == json!(true) {
            continue;
        }
        watch_count += 1;
        let Process::Client(p) = c.process else { continue };
        let got = changes_of(&c.value);
        let start = c.value["start"].as_u64();
        let created = c.value["created"].as_u64();
        if start.is_none()
            && let Some(created) = created
        {
            let before = acked.partition_point(|(t, _)| *t < invoke.time);
            if let Some((_, revision)) = acked[..before].iter().find(|(_, r)| *r > created) {
                linearizable_start.push(format!(
                    "watch of process {p} opened at {:.3} s started after revision {created}, but revision {revision} was acknowledged before",
                    invoke.time as f64 / 1e9
                ));
            }
        }
        let Some(from) = start.or(created.map(|c| c + 1)) else { continue };
        // Completed through `through`, and delivered up to its last change (a revision is
        // completed only once the next is seen; each put here changes one key).
        let through = c.value["through"].as_u64().max(got.last().map(|g| g.0)).unwrap_or(0);
        let expected: Vec<&Change> = committed.iter().filter(|c| c.0 >= from && c.0 <= through).collect();
        let got_refs: Vec<&Change> = got.iter().collect();
        if got_refs != expected {
            let first_diff =
                expected.iter().zip(&got_refs).position(|(e, g)| e != g).unwrap_or(expected.len().min(got_refs.len()));
            watches.push(format!(
                "watch of process {p} from revision {from} through {through}: {} changes, the committed order has {}; first difference at #{first_diff}: got {:?}, committed {:?}",
                got_refs.len(),
                expected.len(),
                got_refs.get(first_diff),
                expected.get(first_diff),
            ));
        }
    }
    let properties = vec![
        Property::new("committed-order", committed.len(), order),
        Property::new("acknowledged-puts", puts, acknowledged),
        Property::new("watch-sequences", watch_count, watches),
        Property::new("linearizable-start", watch_count, linearizable_start),
        Property::progress(&[("put", puts), ("watch", watch_count)]),
    ];
    CheckReport::of_properties("watch", properties, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn op(p: u64, f: &str, key: &str, invoke: Value, ok: Value, t: u64) -> [Event; 2] {
        let e = |kind, value, time| Event {
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some(key.into()),
            value,
            time,
            error: None,
        };
        [e(EventType::Invoke, invoke, t), e(EventType::Ok, ok, t + 5)]
    }

    fn history(watched: Value) -> Vec<Event> {
        let mut h = Vec::new();
        h.extend(op(1, "put", "w/0", json!("a"), json!({"value": "a", "revision": 3}), 0));
        h.extend(op(1, "put", "w/1", json!("b"), json!({"value": "b", "revision": 4}), 10));
        h.extend(op(2, "watch", WATCH, json!({"start": null}), watched, 20));
        h.extend(op(
            9,
            "watch",
            WATCH,
            json!({"start": 1}),
            json!({"start": 1, "through": 5, "reference": true,
                   "changes": [[3, "w/0", "a"], [4, "w/1", "b"], [5, "w/0", "c"]]}),
            100,
        ));
        h.extend(op(3, "put", "w/0", json!("c"), json!({"value": "c", "revision": 5}), 30));
        h.sort_by_key(|e| e.time);
        h
    }

    #[test]
    fn watches_must_match_the_committed_order() {
        let good = json!({"start": 3, "created": null, "through": 5, "changes": [[3, "w/0", "a"], [4, "w/1", "b"], [5, "w/0", "c"]]});
        assert_eq!(check_watch(&history(good)).verdict, Verdict::Linearizable);
        let gap = json!({"start": 3, "through": 5, "changes": [[3, "w/0", "a"], [5, "w/0", "c"]]});
        let report = check_watch(&history(gap));
        assert_eq!(report.verdict, Verdict::NotLinearizable);
        assert!(report.keys.iter().any(|k| k.key == "watch-sequences" && !k.problems.is_empty()), "{:?}", report.keys);
        // Opened after b was acknowledged (at 15 ns), but starting before it.
        let early = json!({"start": null, "created": 3, "through": 5, "changes": [[4, "w/1", "b"], [5, "w/0", "c"]]});
        let report = check_watch(&history(early));
        assert!(
            report.keys.iter().any(|k| k.key == "linearizable-start" && !k.problems.is_empty()),
            "{:?}",
            report.keys
        );
    }
}
