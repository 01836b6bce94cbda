//! The bank workload: transfers between accounts, each a transaction that moves an amount only
//! if neither account changed since it was read, and reads of every account at one revision
//! (a transaction of gets, or a linearizable scan). Transfers go through client sessions, so a
//! transfer of unknown outcome is retried and applied at most once.
//!
//! Checked: every read sees every account, none below zero, and the initial total.

use std::time::Instant;

use raftkv_client::{Client, Consistency, TxnRequest, TxnRequestOp, TxnResponse, TxnResult};
use serde_json::{Value, json};

use crate::checker::{CheckReport, Property};
use crate::history::{Event, EventType, Process, paired};
use crate::workload::{Recorder, Rng, error_code};
use crate::workload_kind::session_client;
use crate::workload_run::WorkloadClient;

/// Number of accounts.
pub const ACCOUNTS: usize = 5;
/// Each account's opening balance.
pub const OPENING_BALANCE: i64 = 100;
/// The history's key for bank operations.
const BANK: &str = "bank";

fn account(i: usize) -> String {
    format!("bank/{i}")
}

/// Opens the accounts, once, before the clients start (a transaction that writes them only if
/// the first does not exist yet).
pub async fn open_accounts(client: &Client) -> raftkv_client::Result<()> {
    let mut txn = TxnRequest::new().when(&account(0), "exists", "=", false);
    for i in 0..ACCOUNTS {
        txn = txn.then(TxnRequestOp::put(&account(i), &OPENING_BALANCE.to_string()));
    }
    client.txn(&txn).await.map(|_| ())
}

/// The balances a transaction's gets read, and their mod revisions (`None`: missing or not a
/// number).
fn balances(response: &TxnResponse) -> Vec<Option<(i64, u64)>> {
    response
        .results
        .iter()
        .map(|r| match r {
            TxnResult::Get(get) => {
                get.kv.as_ref().and_then(|kv| kv.value.parse::<i64>().ok().map(|b| (b, kv.mod_revision)))
            }
            _ => None,
        })
        .collect()
}

/// Runs one client until `spec.until`: transfers, and one read of every account in four
/// operations (alternately a transaction and a scan).
pub async fn run_bank_client(spec: WorkloadClient, rec: &Recorder) {
    let Some(client) = session_client(spec.endpoints.clone(), spec.timeout, spec.retry_deadline) else { return };
    let mut rng = Rng::new(spec.slot + 1);
    let mut process = spec.slot;
    while Instant::now() < spec.until {
        let p = Process::Client(process);
        match rng.below(8) {
            0 => {
                if !read_all(&client, p, rec, false).await {
                    spec.backoff().await;
                }
            }
            1 => {
                if !read_all(&client, p, rec, true).await {
                    spec.backoff().await;
                }
            }
            _ => {
                let from = rng.below(ACCOUNTS as u64) as usize;
                let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = 1 + rng.below(5) as i64;
                match transfer(&client, p, rec, from, to, amount).await {
                    Transfer::Done | Transfer::Skipped => {}
                    Transfer::Unknown => {
                        process += spec.slots;
                        spec.backoff().await;
                    }
                    Transfer::Failed => spec.backoff().await,
                }
            }
        }
    }
}

enum Transfer {
    Done,
    Skipped,
    Unknown,
    Failed,
}

/// Moves `amount` from account `from` to `to` if `from` has it: reads both, then a transaction
/// conditional on neither having changed.
async fn transfer(client: &Client, p: Process, rec: &Recorder, from: usize, to: usize, amount: i64) -> Transfer {
    let (a, b) = (account(from), account(to));
    let read = TxnRequest::new().then(TxnRequestOp::get(&a)).then(TxnRequestOp::get(&b));
    let Ok(seen) = client.txn(&read).await else { return Transfer::Failed };
    let [Some((balance_a, rev_a)), Some((balance_b, rev_b))] = balances(&seen)[..] else {
        return Transfer::Failed;
    };
    if balance_a < amount {
        return Transfer::Skipped;
    }
    let value = json!({"from": from, "to": to, "amount": amount});
    rec.record(EventType::Invoke, p.clone(), "transfer", Some(BANK), value.clone(), None);
    let txn = TxnRequest::new()
        .when(&a, "mod_revision", "=", rev_a)
        .when(&b, "mod_revision", "=", rev_b)
        .then(TxnRequestOp::put(&a, &(balance_a - amount).to_string()))
        .then(TxnRequestOp::put(&b, &(balance_b + amount).to_string()));
    match client.txn(&txn).await {
        Ok(r) if r.succeeded => {
            rec.record(EventType::Ok, p, "transfer", Some(BANK), value, None);
            Transfer::Done
        }
        Ok(_) => {
            rec.record(EventType::Fail, p, "transfer", Some(BANK), value, Some("changed-meanwhile".into()));
            Transfer::Skipped
        }
        Err(e) if e.may_have_applied() => {
            rec.record(EventType::Info, p, "transfer", Some(BANK), value, Some(error_code(&e)));
            Transfer::Unknown
        }
        Err(e) => {
            rec.record(EventType::Fail, p, "transfer", Some(BANK), value, Some(error_code(&e)));
            Transfer::Failed
        }
    }
}

/// Reads every account as process `p`, by a linearizable scan or a transaction of gets;
/// whether the read succeeded. The result is `{"balances": [...], "via": "txn"|"scan"}`, a
/// missing or unreadable account as null.
pub async fn read_all(client: &Client, p: Process, rec: &Recorder, scan: bool) -> bool {
    let f = "read";
    rec.record(EventType::Invoke, p.clone(), f, Some(BANK), Value::Null, None);
    let read: raftkv_client::Result<Vec<Value>> = if scan {
        client.scan("bank/", 100, None, Consistency::Linearizable).await.map(|page| {
            (0..ACCOUNTS)
                .map(|i| {
                    let key = account(i);
                    page.entries
                        .iter()
                        .find(|kv| kv.key == key)
                        .and_then(|kv| kv.value.parse::<i64>().ok())
                        .map_or(Value::Null, Value::from)
                })
                .collect()
        })
    } else {
        let mut txn = TxnRequest::new();
        for i in 0..ACCOUNTS {
            txn = txn.then(TxnRequestOp::get(&account(i)));
        }
        client
            .txn(&txn)
            .await
            .map(|r| balances(&r).into_iter().map(|b| b.map_or(Value::Null, |(b, _)| b.into())).collect())
    };
    match read {
        Ok(balances) => {
            let via = if scan { "scan" } else { "txn" };
            rec.record(EventType::Ok, p, f, Some(BANK), json!({"balances": balances, "via": via}), None);
            true
        }
        Err(e) => {
            rec.record(EventType::Fail, p, f, Some(BANK), Value::Null, Some(error_code(&e)));
            false
        }
    }
}

/// Checks a bank history: every read complete, non-negative and conserving the total; at least
/// one read and one transfer.
pub fn check_bank(events: &[Event]) -> CheckReport {
    let started = Instant::now();
    let total = OPENING_BALANCE * ACCOUNTS as i64;
    let ops = paired(events);
    let mut problems = Vec::new();
    let mut reads = 0;
    let mut transfers = 0;
    for (invoke, complete) in &ops {
        let Some(complete) = complete.filter(|c| c.kind == EventType::Ok) else { continue };
        match invoke.f.as_str() {
            "transfer" => transfers += 1,
            "read" => {
                reads += 1;
                let balances: Vec<Option<i64>> = complete.value["balances"]
                    .as_array()
                    .map(|b| b.iter().map(Value::as_i64).collect())
                    .unwrap_or_default();
                let at = format!("read ({}) at {:.3} s", complete.value["via"], invoke.time as f64 / 1e9);
                if balances.len() != ACCOUNTS || balances.iter().any(Option::is_none) {
                    problems.push(format!("{at} did not see every account: {balances:?}"));
                    continue;
                }
                let balances: Vec<i64> = balances.into_iter().flatten().collect();
                let sum: i64 = balances.iter().sum();
                if sum != total {
                    problems.push(format!("{at} saw a total of {sum}, not {total}: {balances:?}"));
                } else if balances.iter().any(|b| *b < 0) {
                    problems.push(format!("{at} saw an account below zero: {balances:?}"));
                }
            }
            _ => {}
        }
    }
    let properties = vec![
        Property::new("conserved-total", reads, problems),
        Property::progress(&[("read", reads), ("transfer", transfers)]),
    ];
    CheckReport::of_properties("bank", properties, started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn read(p: u64, t: u64, balances: Value) -> [Event; 2] {
        let e = |kind, value| Event {
            kind,
            process: Process::Client(p),
            f: "read".into(),
            key: Some(BANK.into()),
            value,
            time: t,
            error: None,
        };
        [e(EventType::Invoke, Value::Null), e(EventType::Ok, json!({"balances": balances, "via": "txn"}))]
    }

    fn transfer(p: u64, t: u64) -> [Event; 2] {
        let e = |kind| Event {
            kind,
            process: Process::Client(p),
            f: "transfer".into(),
            key: Some(BANK.into()),
            value: json!({"from": 0, "to": 1, "amount": 1}),
            time: t,
            error: None,
        };
        [e(EventType::Invoke), e(EventType::Ok)]
    }

    #[test]
    fn totals_must_be_conserved() {
        let mut good: Vec<Event> = transfer(1, 0).into();
        good.extend(read(2, 10, json!([99, 101, 100, 100, 100])));
        assert_eq!(check_bank(&good).verdict, Verdict::Linearizable);
        let mut torn = good.clone();
        torn.extend(read(3, 20, json!([99, 100, 100, 100, 100])));
        let report = check_bank(&torn);
        assert_eq!(report.verdict, Verdict::NotLinearizable);
        assert!(report.keys[0].problems[0].contains("total of 499"), "{:?}", report.keys);
        let mut missing = good;
        missing.extend(read(3, 20, json!([99, 101, null, 100, 100])));
        assert!(check_bank(&missing).keys[0].problems[0].contains("every account"));
    }
}
