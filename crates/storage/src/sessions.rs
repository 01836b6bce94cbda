//! Exactly-once writes in the state machine: client sessions and idempotency keys.
//!
//! A write of a session ([`Command::InSession`](raftkv_types::Command::InSession)) or with an
//! idempotency key is checked before it runs: if its sequence number (or key) was applied
//! before, the entry is answered with the [`CommandResult`] it had then, revision and log index
//! included, and changes nothing. Otherwise it runs, and its result is kept, in the same batch,
//! until the client acknowledges it (sessions) or the key expires. Everything is in `sm_aux`,
//! so snapshots and backups carry it with the data, and time is the state-machine clock, so
//! every replica expires the same sessions at the same entry.

use raftkv_types::session::MAX_OUTSTANDING;
use raftkv_types::{CommandResult, IdempotencyRecord, SessionOutcome, SessionRecord, SessionStamp};

use crate::apply::ApplyBatch;
use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};
use crate::keys::{CF_SM_AUX, aux_key, expiry_aux_key, idempotency_aux_key, session_aux_key};

/// Most expired sessions, and most expired idempotency keys, one sweep forgets; the leader
/// proposes another sweep if more are left.
const MAX_SWEEP: usize = 10_000;

/// What the check of a session or idempotent write decided.
pub(crate) enum DedupCheck {
    /// Applied before: this is its result.
    Answered(CommandResult),
    /// Refused without applying.
    Refused(SessionOutcome),
    /// Run the write, then keep its result where the slot says (`None`: nowhere).
    Proceed(Option<DedupSlot>),
}

/// Where the result of a write that runs is kept.
pub(crate) enum DedupSlot {
    /// In session `id` (its record as updated by the check), under sequence number `seq`.
    Session { id: u64, record: SessionRecord, seq: u64 },
    /// Under idempotency key `key`.
    Key { key: String, fingerprint: [u8; 32], ttl_ms: u64 },
}

impl ApplyBatch<'_> {
    /// Session `id` as of the commands applied so far, if it exists and has not expired.
    fn session(&self, id: u64) -> Result<Option<SessionRecord>> {
        let record: Option<SessionRecord> =
            self.aux_get(&session_aux_key(id))?.map(|b| decode("session", &b)).transpose()?;
        Ok(record.filter(|r| self.state.clock_ms < r.expires_at_ms()))
    }

    fn set_session(&mut self, id: u64, record: Option<&SessionRecord>) -> Result<()> {
        let bytes = record.map(encode).transpose()?;
        self.aux_set(session_aux_key(id), bytes);
        Ok(())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.aux_get(&idempotency_aux_key(key))?.map(|b| decode("idempotency key", &b)).transpose()
    }

    /// Registers session `id` (the entry's log index: unique, and the same on every replica).
    pub(crate) fn register_session(&mut self, id: u64, ttl_ms: u64) -> Result<SessionOutcome> {
        let record = SessionRecord { ttl_ms, last_active_ms: self.state.clock_ms, ..SessionRecord::default() };
        self.set_session(id, Some(&record))?;
        Ok(SessionOutcome::Registered { id, ttl_ms })
    }

    /// Checks a write of a session: refreshes the session, forgets what the client has
    /// acknowledged, and answers a retry from what is kept.
    pub(crate) fn session_check(&mut self, stamp: SessionStamp) -> Result<DedupCheck> {
        let SessionStamp { session, seq, ack_below } = stamp;
        let Some(mut record) = self.session(session)? else {
            return Ok(DedupCheck::Refused(SessionOutcome::Expired { session }));
        };
        record.last_active_ms = self.state.clock_ms;
        if ack_below > record.acked_below {
            record.acked_below = ack_below;
            record.responses = record.responses.split_off(&ack_below);
        }
        let answer = if let Some(result) = record.responses.get(&seq) {
            DedupCheck::Answered(result.clone())
        } else if seq < record.acked_below {
            DedupCheck::Refused(SessionOutcome::AlreadyAcknowledged { session, seq })
        } else if record.responses.len() >= MAX_OUTSTANDING {
            DedupCheck::Refused(SessionOutcome::TooManyOutstanding { session })
        } else {
            return Ok(DedupCheck::Proceed(Some(DedupSlot::Session { id: session, record, seq })));
        };
        self.set_session(session, Some(&record))?;
        Ok(answer)
    }

    /// Checks a write sent with idempotency key `key`.
    pub(crate) fn idempotency_check(&mut self, key: String, fingerprint: [u8; 32], ttl_ms: u64) -> Result<DedupCheck> {
        if let Some(record) = self.idempotency(&key)? {
            if self.state.clock_ms < record.expires_at_ms {
                return Ok(if record.fingerprint == fingerprint {
                    DedupCheck::Answered(record.result)
                } else {
                    DedupCheck::Refused(SessionOutcome::KeyReused { key })
                });
            }
            // Expired but not swept yet: the key starts afresh.
            self.aux_set(expiry_aux_key(record.expires_at_ms, &key), None);
        }
        Ok(DedupCheck::Proceed(Some(DedupSlot::Key { key, fingerprint, ttl_ms })))
    }

    /// Keeps `result`, the result of the write that ran, where `slot` says.
    pub(crate) fn remember(&mut self, slot: DedupSlot, result: &CommandResult) -> Result<()> {
        match slot {
            DedupSlot::Session { id, mut record, seq } => {
                record.responses.insert(seq, result.clone());
                self.set_session(id, Some(&record))
            }
            DedupSlot::Key { key, fingerprint, ttl_ms } => {
                let expires_at_ms = self.state.clock_ms.saturating_add(ttl_ms);
                let record = IdempotencyRecord { fingerprint, expires_at_ms, result: result.clone() };
                self.aux_set(idempotency_aux_key(&key), Some(encode(&record)?));
                self.aux_set(expiry_aux_key(expires_at_ms, &key), Some(Vec::new()));
                Ok(())
            }
        }
    }

    /// Forgets the sessions and idempotency keys expired by the state-machine clock (at most
    /// [`MAX_SWEEP`] of each).
    pub(crate) fn sweep_sessions(&mut self) -> Result<SessionOutcome> {
        let clock = self.state.clock_ms;
        let mut sessions = 0;
        for (key, _) in self.aux_range(b"S", b"T")? {
            if sessions as usize >= MAX_SWEEP {
                break;
            }
            // Read through this batch: a session used earlier in it is not expired.
            let Some(bytes) = self.aux_get(&key)? else { continue };
            let record: SessionRecord = decode("session", &bytes)?;
            if clock >= record.expires_at_ms() {
                self.aux_set(key, None);
                sessions += 1;
            }
        }
        let mut idempotency_keys = 0;
        let mut end = b"E".to_vec();
        end.extend_from_slice(&clock.saturating_add(1).to_be_bytes());
        for (key, _) in self.aux_range(b"E", &end)? {
            if idempotency_keys as usize >= MAX_SWEEP {
                break;
            }
            if self.aux_get(&key)?.is_none() {
                continue;
            }
            let name = String::from_utf8_lossy(&key[9..]).into_owned();
            self.aux_set(key, None);
            self.aux_set(idempotency_aux_key(&name), None);
            idempotency_keys += 1;
        }
        Ok(SessionOutcome::Swept { sessions, idempotency_keys })
    }

    /// The stored `sm_aux` records from `start` to before `end` (keys without the generation),
    /// as RocksDB has them (not this batch's writes).
    fn aux_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let cf = self.db.cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(aux_key(self.generation, end));
        let from = aux_key(self.generation, start);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(cf, opts, rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward)) {
            let (key, value) = item.map_err(StorageError::rocks("scan sm_aux"))?;
            out.push((key[8..].to_vec(), value.to_vec()));
        }
        Ok(out)
    }
}

/// What the state machine keeps for exactly-once writes, for metrics and the leader's sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupCounts {
    /// Client sessions kept (expired ones not yet swept included).
    pub sessions: u64,
    /// The earliest expiry of an idempotency key, by the state-machine clock.
    pub next_key_expiry_ms: Option<u64>,
    /// The earliest expiry of a session.
    pub next_session_expiry_ms: Option<u64>,
}

impl crate::KvStateMachine {
    /// Counts the sessions of the applied state and finds when the next session or idempotency
    /// key expires. Reads every session (there is one per client process) but only the first
    /// idempotency key by expiry.
    pub fn dedup_counts(&self) -> Result<DedupCounts> {
        let generation = self.generation();
        let cf = self.db().cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        let range = |start: &[u8], end: &[u8]| {
            let mut opts = rocksdb::ReadOptions::default();
            opts.set_iterate_upper_bound(aux_key(generation, end));
            let from = aux_key(generation, start);
            self.db().iterator_cf_opt(cf, opts, rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward))
        };
        let mut counts = DedupCounts::default();
        for item in range(b"S", b"T") {
            let (_, value) = item.map_err(StorageError::rocks("read sessions"))?;
            let record: SessionRecord = decode("session", &value)?;
            counts.sessions += 1;
            let at = record.expires_at_ms();
            counts.next_session_expiry_ms = Some(counts.next_session_expiry_ms.map_or(at, |n| n.min(at)));
        }
        if let Some(item) = range(b"E", b"F").next() {
            let (key, _) = item.map_err(StorageError::rocks("read idempotency keys"))?;
            counts.next_key_expiry_ms = key.get(9..17).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::type_config::alias::CommittedLeaderIdOf;
    use openraft::vote::RaftLeaderId;
    use raftkv_types::{Command, Entry, LogId, Outcome, Proposal, TypeConfig};

    use super::*;
    use crate::applied_state::AppliedState;

    fn entry(index: u64, at_ms: u64, command: Command) -> Entry {
        let log_id: LogId = openraft::LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(1, 1), index);
        Entry { log_id, payload: EntryPayload::Normal(Proposal::new(at_ms, command)) }
    }

    fn put(key: &str, value: &str) -> Box<Command> {
        Box::new(Command::Put { key: key.into(), value: value.as_bytes().to_vec() })
    }

    /// A batch on `store` whose first entry founded the cluster at 1 000 ms.
    fn founded(store: &crate::Store) -> ApplyBatch<'_> {
        let mut batch = ApplyBatch::new(store.state_machine.db(), 0, AppliedState::default());
        batch
            .apply(entry(1, 1_000, Command::FoundCluster { cluster_id: "0123456789abcdef0123456789abcdef".into() }))
            .unwrap();
        batch
    }

    fn in_session(session: u64, seq: u64, ack_below: u64, command: Box<Command>) -> Command {
        Command::InSession { stamp: SessionStamp { session, seq, ack_below }, command }
    }

    #[test]
    fn a_retried_session_write_answers_its_first_result_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let mut batch = founded(&store);
        let registered = batch.apply(entry(2, 1_000, Command::RegisterSession { ttl_ms: 5_000 })).unwrap();
        assert_eq!(registered.outcome, Outcome::Session(SessionOutcome::Registered { id: 2, ttl_ms: 5_000 }));

        let first = batch.apply(entry(3, 1_100, in_session(2, 1, 1, put("a", "1")))).unwrap();
        assert_eq!((first.revision, first.log_index, &first.outcome), (2, 3, &Outcome::Put));
        let other = batch.apply(entry(4, 1_200, Command::Put { key: "b".into(), value: b"x".to_vec() })).unwrap();
        assert_eq!(other.revision, 3);
        // The retry (a later entry) gets entry 3's answer and writes nothing.
        let retry = batch.apply(entry(5, 1_300, in_session(2, 1, 1, put("a", "1")))).unwrap();
        assert_eq!(retry, first);
        assert_eq!(batch.state.revision, 3);

        // A failed cas retried still reports its first (successful) outcome.
        let cas = || Box::new(Command::Cas { key: "a".into(), expected: Some(b"1".to_vec()), value: b"2".to_vec() });
        let swapped = batch.apply(entry(6, 1_400, in_session(2, 2, 1, cas()))).unwrap();
        assert!(matches!(swapped.outcome, Outcome::Cas { succeeded: true, .. }));
        assert_eq!(batch.apply(entry(7, 1_500, in_session(2, 2, 1, cas()))).unwrap(), swapped);

        // Acknowledged results are forgotten; a retry of one is refused.
        batch.apply(entry(8, 1_600, in_session(2, 3, 3, put("c", "1")))).unwrap();
        let stale = batch.apply(entry(9, 1_700, in_session(2, 1, 3, put("a", "1")))).unwrap();
        assert_eq!(stale.outcome, Outcome::Session(SessionOutcome::AlreadyAcknowledged { session: 2, seq: 1 }));
        let record = batch.session(2).unwrap().unwrap();
        assert_eq!(record.responses.keys().copied().collect::<Vec<_>>(), vec![3]);

        // Idle past its time to live, the session refuses writes without applying them.
        let revision = batch.state.revision;
        let late = batch.apply(entry(10, 1_700 + 5_000, in_session(2, 4, 4, put("d", "1")))).unwrap();
        assert_eq!(late.outcome, Outcome::Session(SessionOutcome::Expired { session: 2 }));
        assert_eq!(batch.state.revision, revision);
        assert!(batch.current("d").unwrap().is_none());
        let unknown = batch.apply(entry(11, 6_800, in_session(99, 1, 0, put("d", "1")))).unwrap();
        assert_eq!(unknown.outcome, Outcome::Session(SessionOutcome::Expired { session: 99 }));

        // Written to RocksDB, then swept.
        store.state_machine.db().write(batch.take()).unwrap();
        assert_eq!(store.state_machine.dedup_counts().unwrap().sessions, 1);
        let swept = batch.apply(entry(12, 6_900, Command::SweepSessions)).unwrap();
        assert_eq!(swept.outcome, Outcome::Session(SessionOutcome::Swept { sessions: 1, idempotency_keys: 0 }));
        store.state_machine.db().write(batch.take()).unwrap();
        assert_eq!(store.state_machine.dedup_counts().unwrap().sessions, 0);
    }

    #[test]
    fn an_idempotency_key_answers_the_same_request_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let mut batch = founded(&store);
        let keyed = |fingerprint: u8, value: &str| Command::Idempotent {
            key: "k1".into(),
            fingerprint: [fingerprint; 32],
            ttl_ms: 10_000,
            command: put("a", value),
        };
        let first = batch.apply(entry(2, 1_000, keyed(7, "1"))).unwrap();
        assert_eq!(first.revision, 2);
        store.state_machine.db().write(batch.take()).unwrap();
        assert_eq!(batch.apply(entry(3, 2_000, keyed(7, "1"))).unwrap(), first);
        let reused = batch.apply(entry(4, 2_000, keyed(8, "2"))).unwrap();
        assert_eq!(reused.outcome, Outcome::Session(SessionOutcome::KeyReused { key: "k1".into() }));
        assert_eq!(batch.state.revision, 2);
        assert_eq!(store.state_machine.dedup_counts().unwrap().next_key_expiry_ms, Some(11_000));
        // Expired, the key starts afresh; the sweep then finds nothing old to forget.
        let again = batch.apply(entry(5, 11_000, keyed(8, "2"))).unwrap();
        assert_eq!((again.revision, again.log_index), (3, 5));
        store.state_machine.db().write(batch.take()).unwrap();
        let swept = batch.apply(entry(6, 12_000, Command::SweepSessions)).unwrap();
        assert_eq!(swept.outcome, Outcome::Session(SessionOutcome::Swept { sessions: 0, idempotency_keys: 0 }));
        let swept = batch.apply(entry(7, 21_000, Command::SweepSessions)).unwrap();
        assert_eq!(swept.outcome, Outcome::Session(SessionOutcome::Swept { sessions: 0, idempotency_keys: 1 }));
        store.state_machine.db().write(batch.take()).unwrap();
        assert_eq!(store.state_machine.dedup_counts().unwrap().next_key_expiry_ms, None);
    }
}
