//! Leases in the state machine: granting, renewing and ending them, and keeping each lease's
//! set of keys as puts attach keys to it and deletes detach them. All of it in the apply's batch,
//! in `sm_aux`, so snapshots and backups carry leases with the keys.

use raftkv_types::{LeaseOutcome, LeaseRecord};

use crate::apply::{ApplyBatch, Changes};
use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};
use crate::keys::{CF_SM_AUX, aux_key, lease_aux_key};

impl ApplyBatch<'_> {
    /// The lease `id` as of the commands applied so far.
    pub(crate) fn lease(&self, id: u64) -> Result<Option<LeaseRecord>> {
        self.aux_get(&lease_aux_key(id))?.map(|b| decode("lease", &b)).transpose()
    }

    fn set_lease(&mut self, id: u64, lease: Option<&LeaseRecord>) -> Result<()> {
        let bytes = lease.map(encode).transpose()?;
        self.aux_set(lease_aux_key(id), bytes);
        Ok(())
    }

    /// Records that `key` is attached to lease `id` (if the lease exists).
    pub(crate) fn attach(&mut self, id: u64, key: &str) -> Result<()> {
        if let Some(mut lease) = self.lease(id)?
            && lease.keys.insert(key.to_string())
        {
            self.set_lease(id, Some(&lease))?;
        }
        Ok(())
    }

    /// Records that `key` is no longer attached to lease `id`.
    pub(crate) fn detach(&mut self, id: u64, key: &str) -> Result<()> {
        if let Some(mut lease) = self.lease(id)?
            && lease.keys.remove(key)
        {
            self.set_lease(id, Some(&lease))?;
        }
        Ok(())
    }

    pub(crate) fn lease_grant(&mut self, id: u64, ttl_ms: u64) -> Result<LeaseOutcome> {
        if id == 0 || self.lease(id)?.is_some() {
            return Ok(LeaseOutcome::Exists { id });
        }
        let lease = LeaseRecord { ttl_ms, renewed_at_ms: self.state.clock_ms, keys: Default::default() };
        self.set_lease(id, Some(&lease))?;
        Ok(LeaseOutcome::Granted { id, ttl_ms })
    }

    pub(crate) fn lease_keep_alive(&mut self, id: u64) -> Result<LeaseOutcome> {
        let Some(mut lease) = self.lease(id)? else { return Ok(LeaseOutcome::NotFound { id }) };
        lease.renewed_at_ms = self.state.clock_ms;
        self.set_lease(id, Some(&lease))?;
        Ok(LeaseOutcome::KeptAlive { id, ttl_ms: lease.ttl_ms })
    }

    /// Ends lease `id`: with `only_if_expired`, only if it has run out by the state-machine
    /// clock (an expiry proposed before a renewal that was applied first does nothing). Its keys
    /// are deleted in this one command, so at one revision.
    pub(crate) fn lease_end(&mut self, id: u64, only_if_expired: bool, changes: &mut Changes) -> Result<LeaseOutcome> {
        let Some(lease) = self.lease(id)? else { return Ok(LeaseOutcome::NotFound { id }) };
        if only_if_expired && self.state.clock_ms < lease.expires_at_ms() {
            return Ok(LeaseOutcome::StillAlive { id });
        }
        self.set_lease(id, None)?;
        let mut deleted = 0;
        for key in lease.keys {
            deleted += u64::from(self.delete(key, changes)?);
        }
        Ok(LeaseOutcome::Ended { id, deleted })
    }
}

impl crate::KvStateMachine {
    /// Every lease of the applied state, by id.
    pub fn leases(&self) -> Result<Vec<(u64, LeaseRecord)>> {
        let generation = self.generation();
        let cf = self.db().cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        let start = aux_key(generation, &lease_aux_key(0));
        let end = aux_key(generation, b"M");
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let mut out = Vec::new();
        let iter =
            self.db().iterator_cf_opt(cf, opts, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(StorageError::rocks("read leases"))?;
            let id = key.get(9..17).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            let id = id.ok_or_else(|| StorageError::corrupt("lease key", "not 17 bytes"))?;
            out.push((id, decode("lease", &value)?));
        }
        Ok(out)
    }

    /// Lease `id` of the applied state.
    pub fn lease(&self, id: u64) -> Result<Option<LeaseRecord>> {
        let cf = self.db().cf_handle(CF_SM_AUX).expect("sm_aux column family is created at open");
        self.db()
            .get_cf(cf, aux_key(self.generation(), &lease_aux_key(id)))
            .map_err(StorageError::rocks("read lease"))?
            .map(|b| decode("lease", &b))
            .transpose()
    }
}
