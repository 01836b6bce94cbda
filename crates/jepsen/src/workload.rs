//! The register workload: concurrent clients doing read, write and cas on a rotating set of keys,
//! recording every invocation and completion.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raftkv_client::{ClientError, Consistency, SessionOptions};
use serde_json::{Value, json};

use crate::history::{Event, EventType, Process};

/// Pause after an error, so that a client of a dead node does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Collects the history, with times in nanoseconds since the run started.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), events: Mutex::new(Vec::new()) }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends an event stamped now.
    pub fn record(
        &self,
        kind: EventType,
        process: Process,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) {
        let event = Event { kind, process, f: f.into(), key: key.map(str::to_string), value, time: self.now(), error };
        self.events.lock().expect("recorder lock").push(event);
    }

    /// Records a nemesis event.
    pub fn nemesis(&self, f: &str, value: impl Into<String>) {
        self.record(EventType::Info, Process::Named("nemesis".into()), f, None, Value::String(value.into()), None);
    }

    /// The history so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("recorder lock").clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The keys being worked on. Each key is retired after `ops_per_key` operations and replaced by a
/// fresh one, so that no key's history grows beyond what the checker handles quickly.
pub struct KeySpace {
    active: Mutex<Vec<(String, usize)>>,
    next: AtomicU64,
    ops_per_key: usize,
    /// The last value each key was seen to hold, to give cas a fair chance of succeeding.
    last_seen: Mutex<HashMap<String, Value>>,
    used: Mutex<Vec<String>>,
}

impl KeySpace {
    /// `active` keys at a time, each used for `ops_per_key` operations.
    pub fn new(active: usize, ops_per_key: usize) -> KeySpace {
        let keys: Vec<(String, usize)> = (0..active).map(|i| (format!("r{i}"), 0)).collect();
        let used = keys.iter().map(|(k, _)| k.clone()).collect();
        KeySpace {
            active: Mutex::new(keys),
            next: AtomicU64::new(active as u64),
            ops_per_key,
            last_seen: Mutex::new(HashMap::new()),
            used: Mutex::new(used),
        }
    }

    fn pick(&self, rng: &mut Rng) -> String {
        let mut active = self.active.lock().expect("keys lock");
        let slot = rng.below(active.len() as u64) as usize;
        let (key, count) = &mut active[slot];
        let picked = key.clone();
        *count += 1;
        if *count >= self.ops_per_key {
            let fresh = format!("r{}", self.next.fetch_add(1, Ordering::Relaxed));
            self.used.lock().expect("used lock").push(fresh.clone());
            active[slot] = (fresh, 0);
        }
        picked
    }

    /// The keys in use right now.
    pub fn active(&self) -> Vec<String> {
        self.active.lock().expect("keys lock").iter().map(|(key, _)| key.clone()).collect()
    }

    /// Every key that received operations.
    pub fn used(&self) -> Vec<String> {
        self.used.lock().expect("used lock").clone()
    }

    fn seen(&self, key: &str, value: Value) {
        self.last_seen.lock().expect("seen lock").insert(key.to_string(), value);
    }

    fn last(&self, key: &str) -> Value {
        self.last_seen.lock().expect("seen lock").get(key).cloned().unwrap_or(Value::Null)
    }
}

/// A small xorshift generator: reproducible per client, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Settings of one client.
pub struct ClientSpec {
    /// The client slot (0-based); its first process number.
    pub slot: u64,
    /// Number of slots: a slot's next process number after an `info` is `process + slots`.
    pub slots: u64,
    /// The node it sends writes and cas to.
    pub endpoint: String,
    /// Nodes it moves on to when `endpoint` cannot be connected to (nothing was sent), in order.
    pub fallbacks: Vec<String>,
    /// The node it sends reads to (a learner, to test read replicas; else `endpoint`).
    pub read_endpoint: String,
    /// Consistency of its reads.
    pub consistency: Consistency,
    /// When to stop.
    pub until: Instant,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long a write of unknown outcome is retried through the client's session before it
    /// is `info`.
    pub retry_deadline: Duration,
    /// Only read (from `read_endpoint`, never moving on): a client that keeps asking one node
    /// whatever happens to the others.
    pub reads_only: bool,
}

/// A stored value as the history records it: a number when it is one, else a string; `null` when
/// absent.
pub(crate) fn value_of(bytes: Option<Vec<u8>>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            s.parse::<i64>().map(Value::from).unwrap_or(Value::String(s))
        }
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Runs one client until `spec.until`: operations one at a time, each recorded as an invocation
/// and a completion. After an `info` the client continues as a fresh process, as Jepsen does.
pub async fn run_client(spec: ClientSpec, keys: &KeySpace, values: &AtomicU64, rec: &Recorder) {
    let endpoints = std::iter::once(spec.endpoint.clone()).chain(spec.fallbacks.iter().cloned());
    let Ok(client) = crate::cluster_client::client(endpoints, spec.timeout) else { return };
    let client = client
        .with_session_options(SessionOptions { retry_deadline: spec.retry_deadline, ..SessionOptions::default() });
    let Ok(reader) = crate::cluster_client::client([spec.read_endpoint.clone()], spec.timeout) else { return };
    let mut rng = Rng::new(spec.slot + 1);
    let mut process = spec.slot;
    let mut backoff = false;
    while Instant::now() < spec.until {
        if std::mem::take(&mut backoff) {
            // The node is down or refusing: do not spin on it.
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
        let key = keys.pick(&mut rng);
        let p = || Process::Client(process);
        let kind = if spec.reads_only { 0 } else { rng.below(4) };
        let unknown = |e: &ClientError| e.may_have_applied();
        match kind {
            0 | 1 => {
                rec.record(EventType::Invoke, p(), "read", Some(&key), Value::Null, None);
                match reader.get(&key, spec.consistency).await {
                    Ok(v) => {
                        let v = value_of(v);
                        keys.seen(&key, v.clone());
                        rec.record(EventType::Ok, p(), "read", Some(&key), v, None);
                    }
                    // A read changes nothing: whatever happened, it failed.
                    Err(e) => {
                        rec.record(EventType::Fail, p(), "read", Some(&key), Value::Null, Some(error_code(&e)));
                        backoff = true;
                    }
                }
            }
            2 => {
                let v = json!(values.fetch_add(1, Ordering::Relaxed));
                rec.record(EventType::Invoke, p(), "write", Some(&key), v.clone(), None);
                match client.put(&key, v.to_string()).await {
                    Ok(_) => {
                        keys.seen(&key, v.clone());
                        rec.record(EventType::Ok, p(), "write", Some(&key), v, None);
                    }
                    Err(e) if unknown(&e) => {
                        rec.record(EventType::Info, p(), "write", Some(&key), v, Some(error_code(&e)));
                        process += spec.slots;
                        backoff = true;
                    }
                    Err(e) => {
                        rec.record(EventType::Fail, p(), "write", Some(&key), v, Some(error_code(&e)));
                        backoff = true;
                    }
                }
            }
            _ => {
                let expected = keys.last(&key);
                let new = json!(values.fetch_add(1, Ordering::Relaxed));
                let pair = json!([expected.clone(), new.clone()]);
                rec.record(EventType::Invoke, p(), "cas", Some(&key), pair.clone(), None);
                let text = as_text(&new).unwrap_or_default();
                match client.cas(&key, as_text(&expected).as_deref(), &text).await {
                    Ok(r) if r.succeeded => {
                        keys.seen(&key, new);
                        rec.record(EventType::Ok, p(), "cas", Some(&key), pair, None);
                    }
                    Ok(r) => {
                        keys.seen(&key, value_of(r.current.map(String::into_bytes)));
                        rec.record(EventType::Fail, p(), "cas", Some(&key), pair, Some("cas-mismatch".into()));
                    }
                    Err(e) if unknown(&e) => {
                        rec.record(EventType::Info, p(), "cas", Some(&key), pair, Some(error_code(&e)));
                        process += spec.slots;
                        backoff = true;
                    }
                    Err(e) => {
                        rec.record(EventType::Fail, p(), "cas", Some(&key), pair, Some(error_code(&e)));
                        backoff = true;
                    }
                }
            }
        }
    }
}

/// A read of `key` at the end of the run by a fresh process, recorded like any other.
pub async fn final_read(endpoints: &[String], key: &str, process: u64, rec: &Recorder) -> bool {
    let Ok(client) = crate::cluster_client::client(endpoints, Duration::from_secs(5)) else { return false };
    let p = Process::Client(process);
    rec.record(EventType::Invoke, p.clone(), "read", Some(key), Value::Null, None);
    match client.get(key, Consistency::Linearizable).await {
        Ok(v) => {
            rec.record(EventType::Ok, p, "read", Some(key), value_of(v), None);
            true
        }
        Err(e) => {
            rec.record(EventType::Fail, p, "read", Some(key), Value::Null, Some(error_code(&e)));
            false
        }
    }
}

pub(crate) fn error_code(e: &ClientError) -> String {
    match e {
        ClientError::Api { code, .. } => code.clone(),
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::NoAnswer { .. } => "no-answer".into(),
        other => other.to_string(),
    }
}
