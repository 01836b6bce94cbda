//! A distributed lock and a leader election on leases, with fencing tokens (etcd's
//! `concurrency.Mutex` and `concurrency.Election`).
//!
//! A contender writes `NAME/<lease id>` attached to a lease of its own, created only if absent
//! (a transaction). The contender whose key has the lowest `create_revision` holds the lock (or
//! leads); the others each wait for the deletion of the key just before theirs, so a release
//! wakes one waiter, not all. The holder's `create_revision` is its **fencing token**: it only
//! grows from one holder to the next, and a write guarded by it ([`Lock::put_fenced`], a
//! transaction comparing the holder's key's `create_revision` with the token) is refused once
//! the holder's lease has ended, however late the write arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raftkv_types::api::{Consistency, KeyValue, TxnRequest, TxnRequestOp, TxnResult};
use raftkv_types::{WatchEvent, WatchOptions};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// A held lock (or a won election): released by [`Lock::unlock`] or when its lease ends (the
/// holder stopped renewing it, e.g. its process died). Dropping it stops the renewals, so the
/// lock is released one time to live later.
pub struct Lock {
    client: Client,
    key: String,
    lease: u64,
    token: u64,
    lost: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Waits until this client holds the lock `name` (a key prefix, e.g. `locks/db-migration`),
    /// renewing it every third of `ttl` (at least 1 s) until [`Lock::unlock`] or drop.
    pub async fn lock(&self, name: &str, ttl: Duration) -> Result<Lock> {
        self.hold(name, "", ttl).await
    }

    /// Campaigns in election `name` with `value` (what observers see as the leader, e.g. an
    /// address) and returns once elected. The same mechanism as [`Client::lock`]; resign with
    /// [`Lock::unlock`].
    pub async fn campaign(&self, name: &str, value: &str, ttl: Duration) -> Result<Lock> {
        self.hold(name, value, ttl).await
    }

    async fn hold(&self, name: &str, value: &str, ttl: Duration) -> Result<Lock> {
        let ttl_ms = (ttl.as_millis() as u64).max(1_000);
        let lease = self.grant_lease(ttl_ms).await?.id;
        let key = format!("{}/{lease:016x}", name.trim_end_matches('/'));
        let lost = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep_alive(self.clone(), lease, Duration::from_millis(ttl_ms / 3), lost.clone()));
        let mut lock = Lock { client: self.clone(), key, lease, token: 0, lost, keeper };
        match lock.acquire(value).await {
            Ok(()) => Ok(lock),
            Err(e) => {
                let _ = lock.unlock().await;
                Err(e)
            }
        }
    }

    /// The current leader of election `name` (its key, value and revisions), if any.
    pub async fn election_leader(&self, name: &str) -> Result<Option<KeyValue>> {
        Ok(contenders(self, &format!("{}/", name.trim_end_matches('/'))).await?.into_iter().next())
    }

    /// Waits until the leader of election `name` differs from `known` (by key and revision) and
    /// returns the new one (`None`: nobody leads).
    pub async fn observe_leader(&self, name: &str, known: Option<&KeyValue>) -> Result<Option<KeyValue>> {
        let prefix = format!("{}/", name.trim_end_matches('/'));
        let mut watch = self.watch(WatchOptions::prefix(&prefix)).await?;
        loop {
            let leader = contenders(self, &prefix).await?.into_iter().next();
            let same = match (&leader, known) {
                (Some(a), Some(b)) => a.key == b.key && a.create_revision == b.create_revision,
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Ok(leader);
            }
            match watch.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => watch = self.watch(WatchOptions::prefix(&prefix)).await?,
            }
        }
    }
}

impl Lock {
    /// The fencing token: the revision at which this holder acquired. Later holders have larger
    /// ones; pass it to whatever the lock protects, or guard writes with [`Lock::put_fenced`].
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// The key that represents this holder.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the hold is attached to.
    pub fn lease(&self) -> u64 {
        self.lease
    }

    /// Whether a renewal found the lease ended: the lock is no longer held.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Writes `value` under `key` only while this hold is current: a transaction comparing the
    /// holder's key's `create_revision` with the fencing token. Once the lease has ended (the
    /// holder paused past its time to live, its key was deleted) it fails with `409 fenced` and
    /// writes nothing.
    pub async fn put_fenced(&self, key: &str, value: &str) -> Result<u64> {
        let txn =
            TxnRequest::new().when(&self.key, "create_revision", "=", self.token).then(TxnRequestOp::put(key, value));
        let answer = self.client.txn(&txn).await?;
        if answer.succeeded {
            Ok(answer.revision)
        } else {
            Err(ClientError::Api {
                status: 409,
                code: "fenced".into(),
                message: format!("the lock held with token {} is no longer held; nothing was written", self.token),
            })
        }
    }

    /// Releases the lock: revokes the lease, which deletes the holder's key.
    pub async fn unlock(self) -> Result<()> {
        self.keeper.abort();
        match self.client.revoke_lease(self.lease).await {
            Ok(_) => Ok(()),
            Err(ClientError::Api { code, .. }) if code == "lease_not_found" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes this contender's key (if absent) and waits until it is the oldest.
    async fn acquire(&mut self, value: &str) -> Result<()> {
        let create = TxnRequest::new()
            .when(&self.key, "create_revision", "=", 0)
            .then(TxnRequestOp::put_with_lease(&self.key, value, self.lease))
            .then(TxnRequestOp::get(&self.key))
            .otherwise(TxnRequestOp::get(&self.key));
        let answer = self.client.txn(&create).await?;
        let mine = answer.results.iter().find_map(|r| match r {
            TxnResult::Get(get) => get.kv.clone(),
            _ => None,
        });
        let mine = mine.ok_or_else(|| ClientError::Config(format!("lock key {} vanished as it was made", self.key)))?;
        self.token = mine.create_revision;
        let prefix = format!("{}/", self.key.rsplit_once('/').map_or("", |(p, _)| p));
        loop {
            let all = contenders(&self.client, &prefix).await?;
            let Some(at) = all.iter().position(|kv| kv.key == self.key) else {
                return Err(ClientError::Api {
                    status: 409,
                    code: "lock_lost".into(),
                    message: format!("the lease of {} ended while waiting for the lock", self.key),
                });
            };
            if at == 0 {
                return Ok(());
            }
            // Wait for the contender just before this one to go.
            let before = &all[at - 1];
            let mut watch =
                self.client.watch(WatchOptions::key(&before.key).from_revision(before.mod_revision + 1)).await?;
            loop {
                match watch.next().await {
                    Some(Ok(WatchEvent::Delete { .. })) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// The keys under `prefix`, oldest (lowest `create_revision`) first.
async fn contenders(client: &Client, prefix: &str) -> Result<Vec<KeyValue>> {
    let mut all = client.scan(prefix, 10_000, None, Consistency::Linearizable).await?.entries;
    all.sort_by_key(|kv| kv.create_revision);
    Ok(all)
}

/// Renews `lease` every `every` until aborted; sets `lost` once it has ended.
async fn keep_alive(client: Client, lease: u64, every: Duration, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(every).await;
        match client.keep_alive_lease(lease).await {
            Ok(_) => {}
            Err(ClientError::Api { code, .. }) if code == "lease_not_found" => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(_) => {}
        }
    }
}
