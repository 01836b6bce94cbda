//! What `sm_meta` holds besides the data: the applied position, membership, revision, clock and
//! identity of the state machine.

use std::sync::Arc;

use raftkv_types::{ClusterIdentity, ClusterState, LogId, RecoveryRecord, StoredMembership};
use rocksdb::{ColumnFamily, DB, WriteBatch};

use crate::codec::{decode, encode};
use crate::error::{Result, StorageError};
use crate::keys::{
    CF_SM_META, KEY_CLOCK, KEY_CLUSTER, KEY_GENERATION, KEY_IDENTITY, KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_RECOVERY,
    KEY_REVISION, KEY_WATCH_FLOOR,
};

/// The state machine's position and cluster-wide counters, all written in the same batch as the
/// data they describe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// Data-changing commands applied (see [`raftkv_types::CommandResult::revision`]).
    pub revision: u64,
    /// The largest proposal time applied, ms since the Unix epoch: the state machine's
    /// deterministic clock. Every time-based decision in the state machine uses it.
    pub clock_ms: u64,
    /// The cluster the state belongs to, once founded.
    pub identity: Option<ClusterIdentity>,
    /// The last forced recovery, if any.
    pub recovery: Option<RecoveryRecord>,
    /// The cluster's operating state: standbys, autopilot, sync zones, events. Shared: the
    /// applied state is copied on every apply, and this part (with its event log) changes only
    /// with a cluster command, which copies it then.
    pub cluster: Arc<ClusterState>,
    /// The oldest revision the watch history may hold: every revision from here to `revision`
    /// that changed data has its changes in `watch_log`. Raised by trimming; after a snapshot
    /// install or a restore it is the state's revision plus one (no history before it).
    pub history_floor: u64,
}

impl AppliedState {
    /// Index of the last applied entry, 0 before any.
    pub fn applied_index(&self) -> u64 {
        self.last_applied.as_ref().map_or(0, |l| l.index)
    }

    /// Reads the live generation and the applied state from `db` (the live database or a
    /// checkpoint of it).
    pub(crate) fn read(db: &DB) -> Result<(u64, AppliedState)> {
        let cf = meta_cf(db);
        let get = |key: &[u8]| db.get_cf(cf, key).map_err(StorageError::rocks("read state machine metadata"));
        let generation = get(KEY_GENERATION)?.map(|b| decode("generation", &b)).transpose()?.unwrap_or(0);
        let state = AppliedState {
            last_applied: get(KEY_LAST_APPLIED)?.map(|b| decode("last applied", &b)).transpose()?.flatten(),
            membership: get(KEY_MEMBERSHIP)?.map(|b| decode("membership", &b)).transpose()?.unwrap_or_default(),
            revision: get(KEY_REVISION)?.map(|b| decode("revision", &b)).transpose()?.unwrap_or(0),
            clock_ms: get(KEY_CLOCK)?.map(|b| decode("clock", &b)).transpose()?.unwrap_or(0),
            identity: get(KEY_IDENTITY)?.map(|b| decode("identity", &b)).transpose()?,
            recovery: get(KEY_RECOVERY)?.map(|b| decode("recovery record", &b)).transpose()?,
            cluster: Arc::new(get(KEY_CLUSTER)?.map(|b| cluster_of(&b)).transpose()?.unwrap_or_default()),
            history_floor: get(KEY_WATCH_FLOOR)?.map(|b| decode("watch floor", &b)).transpose()?.unwrap_or(0),
        };
        Ok((generation, state))
    }

    /// Adds every field to `batch` (identity and recovery deleted when absent).
    pub(crate) fn write_all(&self, db: &DB, batch: &mut WriteBatch) -> Result<()> {
        let cf = meta_cf(db);
        batch.put_cf(cf, KEY_LAST_APPLIED, encode(&self.last_applied)?);
        batch.put_cf(cf, KEY_MEMBERSHIP, encode(&self.membership)?);
        batch.put_cf(cf, KEY_REVISION, encode(&self.revision)?);
        batch.put_cf(cf, KEY_CLOCK, encode(&self.clock_ms)?);
        match &self.identity {
            Some(identity) => batch.put_cf(cf, KEY_IDENTITY, encode(identity)?),
            None => batch.delete_cf(cf, KEY_IDENTITY),
        }
        match &self.recovery {
            Some(recovery) => batch.put_cf(cf, KEY_RECOVERY, encode(recovery)?),
            None => batch.delete_cf(cf, KEY_RECOVERY),
        }
        batch.put_cf(cf, KEY_CLUSTER, cluster_bytes(&self.cluster)?);
        batch.put_cf(cf, KEY_WATCH_FLOOR, encode(&self.history_floor)?);
        Ok(())
    }

    /// Adds to `batch` the fields an apply changes: the position, revision and clock always,
    /// membership and identity when they differ from `before`.
    pub(crate) fn write_changes(&self, before: &AppliedState, db: &DB, batch: &mut WriteBatch) -> Result<()> {
        let cf = meta_cf(db);
        batch.put_cf(cf, KEY_LAST_APPLIED, encode(&self.last_applied)?);
        batch.put_cf(cf, KEY_REVISION, encode(&self.revision)?);
        batch.put_cf(cf, KEY_CLOCK, encode(&self.clock_ms)?);
        if self.membership != before.membership {
            batch.put_cf(cf, KEY_MEMBERSHIP, encode(&self.membership)?);
        }
        if self.identity != before.identity
            && let Some(identity) = &self.identity
        {
            batch.put_cf(cf, KEY_IDENTITY, encode(identity)?);
        }
        if self.cluster != before.cluster {
            batch.put_cf(cf, KEY_CLUSTER, cluster_bytes(&self.cluster)?);
        }
        if self.history_floor != before.history_floor {
            batch.put_cf(cf, KEY_WATCH_FLOOR, encode(&self.history_floor)?);
        }
        Ok(())
    }
}

/// The cluster state is stored as JSON: every field has a default, so fields added by a later
/// release read back as unset here rather than failing the decode.
fn cluster_bytes(cluster: &ClusterState) -> Result<Vec<u8>> {
    serde_json::to_vec(cluster).map_err(|e| StorageError::corrupt("cluster state", e))
}

fn cluster_of(bytes: &[u8]) -> Result<ClusterState> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::corrupt("cluster state", e))
}

fn meta_cf(db: &DB) -> &ColumnFamily {
    db.cf_handle(CF_SM_META).expect("sm_meta column family is created at open")
}
