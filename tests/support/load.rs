//! A closed-loop write load that records what was acknowledged and what certainly failed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftkv::Client;
use tokio::task::JoinHandle;

/// What the writers saw.
#[derive(Debug, Default)]
pub struct WriteLog {
    /// Keys whose put was acknowledged, with the value written.
    pub acked: Vec<(String, String)>,
    /// The revision each acknowledged put got, in the order of `acked`.
    pub acked_revisions: Vec<u64>,
    /// Keys whose put certainly did not happen (refused before being proposed).
    pub refused: Vec<String>,
    /// Keys whose put may or may not have happened.
    pub unknown: Vec<String>,
    /// Error codes seen, for the report.
    pub errors: Vec<String>,
    /// The longest time between two consecutive acknowledgements (any writer).
    pub longest_stall: Duration,
}

/// Writers putting unique keys in a loop until stopped.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    log: Arc<Mutex<WriteLog>>,
    tasks: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts `writers` writers; writer `i` talks to the endpoints rotated by `i`, so that
    /// followers receive writes too.
    pub fn start(endpoints: &[String], writers: usize, prefix: &str) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let last_ack = Arc::new(Mutex::new(Instant::now()));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let mut eps = endpoints.to_vec();
            eps.rotate_left(w % endpoints.len());
            let client = Client::with_timeout(eps, Duration::from_secs(8)).expect("client");
            let (stop, acked, log, last_ack) = (stop.clone(), acked.clone(), log.clone(), last_ack.clone());
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}-{w}-{n}");
                    let value = format!("v{n}");
                    n += 1;
                    match client.put(&key, value.clone()).await {
                        Ok(put) => {
                            let mut log = log.lock().unwrap();
                            let now = Instant::now();
                            let mut last = last_ack.lock().unwrap();
                            log.longest_stall = log.longest_stall.max(now - *last);
                            *last = now;
                            log.acked.push((key, value));
                            log.acked_revisions.push(put.revision);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            {
                                let mut log = log.lock().unwrap();
                                log.errors.push(e.to_string());
                                if e.may_have_applied() {
                                    log.unknown.push(key);
                                } else {
                                    log.refused.push(key);
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        WriteLoad { stop, acked, log, tasks }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more writes are acknowledged than `from`, up to `timeout`.
    pub async fn wait_acked_beyond(&self, from: usize, n: usize, timeout: Duration) {
        super::wait_for(timeout, &format!("{n} more acknowledged writes"), || async {
            (self.acked() >= from + n).then_some(())
        })
        .await
    }

    /// Stops the writers and returns what they saw.
    pub async fn stop(self) -> WriteLog {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer task");
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}
