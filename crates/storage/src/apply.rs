//! Applying log entries: the deterministic evaluation of commands over the state machine.
//!
//! Every replica applies the same entries in the same order and must reach the same state, so
//! nothing here reads a clock, a random number or anything but the entries and the stored state.

use std::collections::{BTreeMap, HashMap};

use openraft::EntryPayload;
use raftkv_types::{
    ClusterIdentity, Command, CommandResult, Entry, KeyChange, KeyMeta, LeaseOutcome, LogId, Outcome, SessionOutcome,
    Txn, TxnOp, TxnOpResult, TxnOutcome, Versioned,
};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::applied_state::AppliedState;
use crate::codec::encode;
use crate::error::{Result, StorageError};
use crate::keys::{CF_SM_AUX, CF_SM_DATA, CF_WATCH_LOG, aux_key, data_key, generation_start, history_key};
use crate::sessions::DedupCheck;
use crate::value_record::{decode_value, encode_value};

/// One batch of applies: data writes gathered in a RocksDB batch, with the values written so far
/// visible to later commands of the same batch.
pub(crate) struct ApplyBatch<'a> {
    pub(crate) db: &'a DB,
    pub(crate) generation: u64,
    pub(crate) batch: WriteBatch,
    /// Values written earlier in this batch but not yet in RocksDB (`None`: deleted).
    overlay: HashMap<String, Option<Versioned>>,
    /// `sm_aux` records (by key without the generation) written earlier in this batch.
    pub(crate) aux_overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The applied state after the entries so far.
    pub(crate) state: AppliedState,
}

/// The write a command makes: the revision its changes get, and the changes so far.
pub(crate) struct Changes {
    revision: u64,
    list: Vec<KeyChange>,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(db: &'a DB, generation: u64, state: AppliedState) -> ApplyBatch<'a> {
        ApplyBatch {
            db,
            generation,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            aux_overlay: HashMap::new(),
            state,
        }
    }

    fn data_cf(&self) -> &'a ColumnFamily {
        self.db.cf_handle(CF_SM_DATA).expect("sm_data column family is created at open")
    }

    /// Applies one entry and returns what its proposer is told.
    ///
    /// Revisions: until the cluster has an identity (format 1 data, or the first moments of a new
    /// cluster) a revision is the log index of the entry, as format 1 had it; from the entry that
    /// founds the cluster on, each data-changing command raises it by one. Both rules never go
    /// backwards, and every replica switches at the same entry. The keys a command changes get
    /// that revision as their `mod_revision`, and the changes are recorded in the watch history
    /// under it, in the same batch.
    ///
    /// A write of a client session or with an idempotency key that was applied before is
    /// answered with the result it had then and changes nothing (see [`crate::sessions`]).
    pub(crate) fn apply(&mut self, entry: Entry) -> Result<CommandResult> {
        let index = entry.log_id.index;
        let counting = self.state.identity.is_some();
        let mut remember = None;
        let outcome = match entry.payload {
            EntryPayload::Blank => Outcome::None,
            EntryPayload::Membership(m) => {
                self.state.membership = raftkv_types::StoredMembership::new(Some(entry.log_id), m);
                Outcome::None
            }
            EntryPayload::Normal(proposal) => {
                self.state.clock_ms = self.state.clock_ms.max(proposal.proposed_at_ms);
                let (check, command) = match proposal.command {
                    Command::InSession { stamp, command } => (self.session_check(stamp)?, *command),
                    Command::Idempotent { key, fingerprint, ttl_ms, command } => {
                        (self.idempotency_check(key, fingerprint, ttl_ms)?, *command)
                    }
                    command => (DedupCheck::Proceed(None), command),
                };
                match check {
                    DedupCheck::Answered(result) => {
                        self.state.last_applied = Some(entry.log_id);
                        return Ok(result);
                    }
                    DedupCheck::Refused(outcome) => Outcome::Session(outcome),
                    DedupCheck::Proceed(slot) => {
                        remember = slot;
                        self.execute(command, &entry.log_id, counting)?
                    }
                }
            }
        };
        if !counting {
            self.state.revision = self.state.revision.max(index);
        }
        self.state.last_applied = Some(entry.log_id);
        let result = CommandResult { revision: self.state.revision, log_index: index, outcome };
        if let Some(slot) = remember {
            self.remember(slot, &result)?;
        }
        Ok(result)
    }

    /// Evaluates `command` at the next revision, and records what it changed in the history.
    fn execute(&mut self, command: Command, log_id: &LogId, counting: bool) -> Result<Outcome> {
        let revision = if counting { self.state.revision + 1 } else { self.state.revision.max(log_id.index) };
        let mut changes = Changes { revision, list: Vec::new() };
        let outcome = self.evaluate(command, log_id, &mut changes)?;
        if !changes.list.is_empty() {
            self.state.revision = revision;
            self.record_history(revision, &changes.list)?;
        }
        Ok(outcome)
    }

    /// Evaluates `command`, carried by the entry at `log_id`, adding what it changes to `changes`.
    fn evaluate(&mut self, command: Command, log_id: &LogId, changes: &mut Changes) -> Result<Outcome> {
        Ok(match command {
            Command::Put { key, value } => {
                self.put(key, value, None, changes)?;
                Outcome::Put
            }
            Command::Delete { key } => Outcome::Delete { deleted: self.delete(key, changes)? },
            Command::Cas { key, expected, value } => {
                let current = self.current(&key)?.map(|v| v.value);
                let succeeded = current == expected;
                if succeeded {
                    self.put(key, value, None, changes)?;
                }
                Outcome::Cas { succeeded, current }
            }
            Command::Txn(txn) => {
                // A put naming a lease that does not exist writes nothing at all: the key would
                // otherwise outlive what it was meant to be tied to.
                let branch_leases = txn.success.iter().chain(&txn.failure).filter_map(|op| match op {
                    TxnOp::Put { lease: Some(id), .. } => Some(*id),
                    _ => None,
                });
                for id in branch_leases.collect::<Vec<_>>() {
                    if self.lease(id)?.is_none() {
                        return Ok(Outcome::Lease(LeaseOutcome::NotFound { id }));
                    }
                }
                Outcome::Txn(self.txn(txn, changes)?)
            }
            Command::LeaseGrant { id, ttl_ms } => Outcome::Lease(self.lease_grant(id, ttl_ms)?),
            Command::LeaseKeepAlive { id } => Outcome::Lease(self.lease_keep_alive(id)?),
            Command::LeaseRevoke { id } => Outcome::Lease(self.lease_end(id, false, changes)?),
            Command::LeaseExpire { id } => Outcome::Lease(self.lease_end(id, true, changes)?),
            Command::RegisterSession { ttl_ms } => Outcome::Session(self.register_session(log_id.index, ttl_ms)?),
            Command::SweepSessions => Outcome::Session(self.sweep_sessions()?),
            // A session or idempotent write is unwrapped by `apply`: one inside another (or
            // inside a fenced write) is refused.
            Command::InSession { .. } | Command::Idempotent { .. } => Outcome::Session(SessionOutcome::Nested),
            Command::FoundCluster { cluster_id } => {
                if self.state.identity.is_none() && ClusterIdentity::is_valid_id(&cluster_id) {
                    self.state.identity = Some(ClusterIdentity::new(cluster_id, 1));
                }
                Outcome::None
            }
            Command::Cluster(change) => {
                std::sync::Arc::make_mut(&mut self.state.cluster).apply(change, log_id.index, self.state.clock_ms);
                Outcome::None
            }
            Command::Fenced { token, command } => {
                // The entry's own leader is the leadership that proposed it: a token of any other
                // (an earlier term, or the same node re-elected since) is stale. Entries of a
                // deposed leader that were committed later are ordered before the new leader's
                // first entry, so they are still in their leadership.
                let proposer = log_id.committed_leader_id();
                if proposer.term != token.term || proposer.node_id != token.leader {
                    Outcome::Fenced { current_term: proposer.term }
                } else if matches!(
                    *command,
                    Command::Fenced { .. } | Command::Cluster(_) | Command::FoundCluster { .. }
                ) {
                    // Only key-value writes are fenced (the API never proposes anything else).
                    Outcome::Fenced { current_term: proposer.term }
                } else {
                    self.evaluate(*command, log_id, changes)?
                }
            }
        })
    }

    /// Runs the comparisons, then the branch they choose, operation by operation.
    fn txn(&mut self, txn: Txn, changes: &mut Changes) -> Result<TxnOutcome> {
        let mut succeeded = true;
        for compare in &txn.compare {
            if !compare.holds(self.current(&compare.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded { txn.success } else { txn.failure };
        let mut results = Vec::with_capacity(branch.len());
        for op in branch {
            results.push(match op {
                TxnOp::Put { key, value, lease } => {
                    self.put(key, value, lease, changes)?;
                    TxnOpResult::Put
                }
                TxnOp::Delete { key } => TxnOpResult::Delete { deleted: u64::from(self.delete(key, changes)?) },
                TxnOp::DeletePrefix { prefix } => {
                    let mut deleted = 0;
                    for key in self.keys_with_prefix(&prefix)? {
                        deleted += u64::from(self.delete(key, changes)?);
                    }
                    TxnOpResult::Delete { deleted }
                }
                TxnOp::Get { key } => TxnOpResult::Get { found: self.current(&key)? },
            });
        }
        Ok(TxnOutcome { succeeded, results })
    }

    fn put(&mut self, key: String, value: Vec<u8>, lease: Option<u64>, changes: &mut Changes) -> Result<()> {
        let previous = self.current(&key)?;
        let before = previous.as_ref().and_then(|p| p.meta.lease);
        if before != lease {
            if let Some(old) = before {
                self.detach(old, &key)?;
            }
            if let Some(new) = lease {
                self.attach(new, &key)?;
            }
        }
        let revision = changes.revision;
        let meta = match &previous {
            Some(p) => KeyMeta {
                create_revision: p.meta.create_revision,
                mod_revision: revision,
                version: p.meta.version + 1,
                lease,
            },
            None => KeyMeta { create_revision: revision, mod_revision: revision, version: 1, lease },
        };
        let record = Versioned::new(value, meta);
        self.batch.put_cf(self.data_cf(), data_key(self.generation, key.as_bytes()), encode_value(&record));
        self.overlay.insert(key.clone(), Some(record.clone()));
        changes.list.push(KeyChange { key, current: Some(record), previous });
        Ok(())
    }

    /// Deletes `key`; whether it existed.
    pub(crate) fn delete(&mut self, key: String, changes: &mut Changes) -> Result<bool> {
        let Some(previous) = self.current(&key)? else { return Ok(false) };
        if let Some(lease) = previous.meta.lease {
            self.detach(lease, &key)?;
        }
        self.batch.delete_cf(self.data_cf(), data_key(self.generation, key.as_bytes()));
        self.overlay.insert(key.clone(), None);
        changes.list.push(KeyChange { key, current: None, previous: Some(previous) });
        Ok(true)
    }

    /// The key's value and revisions as of the commands applied so far.
    pub(crate) fn current(&self, key: &str) -> Result<Option<Versioned>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self
                .db
                .get_pinned_cf(self.data_cf(), data_key(self.generation, key.as_bytes()))
                .map_err(StorageError::rocks("read key"))?
                .map(|bytes| decode_value(&bytes))
                .transpose(),
        }
    }

    /// Every key starting with `prefix` as of the commands applied so far, in key order.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys: BTreeMap<String, bool> = BTreeMap::new();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(generation_start(self.generation + 1).to_vec());
        let start = data_key(self.generation, prefix.as_bytes());
        for item in self.db.iterator_cf_opt(self.data_cf(), opts, IteratorMode::From(&start, Direction::Forward)) {
            let (key, _) = item.map_err(StorageError::rocks("scan keys"))?;
            let user_key = &key[8..];
            if !user_key.starts_with(prefix.as_bytes()) {
                break;
            }
            keys.insert(String::from_utf8_lossy(user_key).into_owned(), true);
        }
        for (key, value) in &self.overlay {
            if key.starts_with(prefix) {
                keys.insert(key.clone(), value.is_some());
            }
        }
        Ok(keys.into_iter().filter_map(|(k, exists)| exists.then_some(k)).collect())
    }

    /// Writes what the command at `revision` changed to the watch history.
    fn record_history(&mut self, revision: u64, changes: &[KeyChange]) -> Result<()> {
        let cf = self.db.cf_handle(CF_WATCH_LOG).expect("watch_log column family is created at open");
        let mut value = self.state.clock_ms.to_le_bytes().to_vec();
        value.extend_from_slice(&encode(&changes)?);
        self.batch.put_cf(cf, history_key(revision), value);
        Ok(())
    }

    /// The `sm_aux` record `key` (without the generation) as of the commands applied so far.
    pub(crate) fn aux_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.aux_overlay.get(key) {
            return Ok(v.clone());
        }
        let cf = self.db.cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        self.db.get_cf(cf, aux_key(self.generation, key)).map_err(StorageError::rocks("read sm_aux"))
    }

    /// Writes (`Some`) or deletes (`None`) the `sm_aux` record `key` in this batch.
    pub(crate) fn aux_set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let cf = self.db.cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        let stored = aux_key(self.generation, &key);
        match &value {
            Some(bytes) => self.batch.put_cf(cf, stored, bytes),
            None => self.batch.delete_cf(cf, stored),
        }
        self.aux_overlay.insert(key, value);
    }

    /// Starts the next batch from the state reached so far, once this one has been written.
    pub(crate) fn take(&mut self) -> WriteBatch {
        self.overlay.clear();
        self.aux_overlay.clear();
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests {
    use openraft::type_config::alias::CommittedLeaderIdOf;
    use openraft::vote::RaftLeaderId;
    use raftkv_types::{Compare, CompareOp, CompareTarget, Proposal, TypeConfig};

    use super::*;

    fn entry(index: u64, command: Command) -> Entry {
        let log_id: LogId = openraft::LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(1, 1), index);
        Entry { log_id, payload: EntryPayload::Normal(Proposal::new(index, command)) }
    }

    #[test]
    fn a_transaction_answers_its_branch_and_gets_see_earlier_operations() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let db = store.state_machine.db();
        let mut batch = ApplyBatch::new(db, 0, AppliedState::default());
        batch.apply(entry(1, Command::FoundCluster { cluster_id: "0123456789abcdef0123456789abcdef".into() })).unwrap();
        batch.apply(entry(2, Command::Put { key: "a".into(), value: b"1".to_vec() })).unwrap();
        let txn = Txn {
            compare: vec![Compare { key: "a".into(), target: CompareTarget::Version(1), op: CompareOp::Equal }],
            success: vec![
                TxnOp::Put { key: "a".into(), value: b"2".to_vec(), lease: None },
                TxnOp::Get { key: "a".into() },
                TxnOp::Get { key: "missing".into() },
                TxnOp::Delete { key: "missing".into() },
            ],
            failure: vec![TxnOp::Get { key: "a".into() }],
        };
        // Before the founding entry a revision was the log index: 1 there, then counted.
        let result = batch.apply(entry(3, Command::Txn(txn.clone()))).unwrap();
        assert_eq!(result.revision, 3);
        let Outcome::Txn(outcome) = result.outcome else { panic!("{:?}", result.outcome) };
        assert!(outcome.succeeded);
        assert_eq!(outcome.results[0], TxnOpResult::Put);
        let TxnOpResult::Get { found: Some(a) } = &outcome.results[1] else { panic!("{:?}", outcome.results) };
        assert_eq!(
            (a.value.as_slice(), a.meta.version, a.meta.mod_revision, a.meta.create_revision),
            (&b"2"[..], 2, 3, 2)
        );
        assert_eq!(outcome.results[2], TxnOpResult::Get { found: None });
        assert_eq!(outcome.results[3], TxnOpResult::Delete { deleted: 0 });
        // Again: version is 2 now, the failure branch runs, nothing changes.
        let result = batch.apply(entry(4, Command::Txn(txn))).unwrap();
        let Outcome::Txn(outcome) = result.outcome else { panic!() };
        assert!(!outcome.succeeded);
        assert_eq!(result.revision, 3);
        assert_eq!(outcome.results.len(), 1);
        // A cas is a one-comparison transaction on the value.
        let cas = Command::Cas { key: "a".into(), expected: Some(b"2".to_vec()), value: b"3".to_vec() };
        let result = batch.apply(entry(5, cas)).unwrap();
        assert_eq!(result.outcome, Outcome::Cas { succeeded: true, current: Some(b"2".to_vec()) });
        assert_eq!(result.revision, 4);
    }
}
