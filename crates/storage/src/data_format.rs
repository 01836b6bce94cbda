//! The format version of a data directory, and the upgrade of older ones.
//!
//! | version | written by | what changed |
//! |---|---|---|
//! | 1 | raftkv before cluster identities (no `format` key) | - |
//! | 2 | raftkv before per-key revisions | log entries carry stamped proposals; members carry a zone; `sm_meta` holds revision, clock and identity; snapshots are `RKVSNAP2` |
//! | 3 | this release | values in `sm_data` carry their key's create and mod revision, version and lease; `sm_aux` and `watch_log` exist; snapshot files of format 3 (format 2 files are still read) |
//!
//! Opening a directory of an older version upgrades it in place, in one synced batch, before
//! anything reads it; a directory of a newer version is refused with one line that names both
//! versions. Nothing is ever read in a format it was not written in.

use std::path::Path;

use std::collections::BTreeMap;

use openraft::EntryPayload;
use raftkv_types::{Command, CommandResult, Entry, Membership, NodeId, PeerNode, Proposal, StoredMembership};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::codec::{FORMAT_V1, decode, decode_versions, encode};
use crate::error::{Result, StorageError};
use crate::keys::{
    CF_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META, KEY_CLOCK, KEY_FORMAT, KEY_GENERATION, KEY_LAST_APPLIED,
    KEY_MEMBERSHIP, KEY_REVISION, KEY_WATCH_FLOOR, data_key, generation_start,
};
use crate::state_machine::snapshot_files;
use crate::value_record::upgraded_value;

/// The data directory format this release writes.
pub const DATA_FORMAT_VERSION: u32 = 3;

/// A member's address book entry in format 1: no zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyPeerNode {
    addr: String,
}

openraft::declare_raft_types!(
    /// The type configuration of format 1 data: log entries carried bare commands, members no
    /// zone.
    LegacyConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = LegacyPeerNode,
);

type LegacyEntry = openraft::type_config::alias::EntryOf<LegacyConfig>;
type LegacyMembership = openraft::Membership<NodeId, LegacyPeerNode>;
type LegacyStoredMembership = openraft::type_config::alias::StoredMembershipOf<LegacyConfig>;

/// A format 1 membership with the members in no zone.
fn upgrade_membership(m: &LegacyMembership) -> Result<Membership> {
    let nodes: BTreeMap<NodeId, PeerNode> = m.nodes().map(|(id, n)| (*id, PeerNode::new(n.addr.clone()))).collect();
    Membership::new(m.get_joint_config().clone(), nodes).map_err(|e| StorageError::corrupt("format 1 membership", e))
}

/// Checks the format of the database just opened from `dir` and upgrades it if it is older.
/// `created` tells that the directory was empty before this open.
pub(crate) fn check_and_upgrade(db: &DB, dir: &Path, snapshot_dir: &Path, created: bool) -> Result<()> {
    let meta = db.cf_handle(CF_RAFT_META).expect("raft_meta column family is created at open");
    let stored: Option<u32> = db
        .get_cf(meta, KEY_FORMAT)
        .map_err(StorageError::rocks("read data format"))?
        .map(|b| decode("data format", &b))
        .transpose()?;
    match stored {
        Some(DATA_FORMAT_VERSION) => Ok(()),
        Some(2) => upgrade_from_v2(db, dir),
        Some(found) => Err(StorageError::UnsupportedFormat {
            path: dir.display().to_string(),
            found,
            supported: DATA_FORMAT_VERSION,
            advice: "it was written by a newer raftkv; run that version (or newer) on it",
        }),
        None if created => write_format(db, WriteBatch::default()),
        None => {
            upgrade_from_v1(db, dir, snapshot_dir)?;
            upgrade_from_v2(db, dir)
        }
    }
}

fn write_format(db: &DB, batch: WriteBatch) -> Result<()> {
    write_format_version(db, batch, DATA_FORMAT_VERSION)
}

fn write_format_version(db: &DB, mut batch: WriteBatch, version: u32) -> Result<()> {
    let meta = db.cf_handle(CF_RAFT_META).expect("raft_meta column family is created at open");
    batch.put_cf(meta, KEY_FORMAT, encode(&version)?);
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.write_opt(batch, &synced).map_err(StorageError::rocks("write data format"))
}

/// Format 1 to 2: every log entry rewritten with a stamped proposal (stamp 0: unknown), the
/// revision set to the last applied index (format 1's revision of a write was its log index, so
/// revisions go on from where they were), format 1 snapshot files removed (openraft builds a new
/// snapshot at start when the log has been purged).
fn upgrade_from_v1(db: &DB, dir: &Path, snapshot_dir: &Path) -> Result<()> {
    let log = db.cf_handle(CF_LOG).expect("log column family is created at open");
    let sm_meta = db.cf_handle(CF_SM_META).expect("sm_meta column family is created at open");
    let mut batch = WriteBatch::default();
    let mut entries = 0u64;
    for item in db.iterator_cf(log, IteratorMode::Start) {
        let (key, value) = item.map_err(StorageError::rocks("read log for upgrade"))?;
        let legacy: LegacyEntry = decode_versions("format 1 log entry", &value, &[FORMAT_V1])?;
        let payload = match legacy.payload {
            EntryPayload::Blank => EntryPayload::Blank,
            EntryPayload::Normal(command) => EntryPayload::Normal(Proposal::new(0, command)),
            EntryPayload::Membership(m) => EntryPayload::Membership(upgrade_membership(&m)?),
        };
        batch.put_cf(log, key, encode(&Entry { log_id: legacy.log_id, payload })?);
        entries += 1;
    }
    let membership: LegacyStoredMembership = match db.get_cf(sm_meta, KEY_MEMBERSHIP) {
        Ok(Some(bytes)) => decode_versions("format 1 membership", &bytes, &[FORMAT_V1])?,
        Ok(None) => LegacyStoredMembership::default(),
        Err(e) => return Err(StorageError::Rocks { op: "read membership for upgrade", source: e }),
    };
    let membership = StoredMembership::new(*membership.log_id(), upgrade_membership(membership.membership())?);
    batch.put_cf(sm_meta, KEY_MEMBERSHIP, encode(&membership)?);
    let last_applied: Option<raftkv_types::LogId> = match db.get_cf(sm_meta, KEY_LAST_APPLIED) {
        Ok(bytes) => bytes.map(|b| decode("last applied", &b)).transpose()?.flatten(),
        Err(e) => return Err(StorageError::Rocks { op: "read last applied for upgrade", source: e }),
    };
    let applied_index = last_applied.map_or(0, |l| l.index);
    batch.put_cf(sm_meta, KEY_REVISION, encode(&applied_index)?);
    batch.put_cf(sm_meta, KEY_CLOCK, encode(&0u64)?);
    // Snapshots first: if the upgrade stops halfway, the directory is still a format 1 one
    // without snapshots, which format 1 and this upgrade both handle.
    for path in snapshot_files(snapshot_dir)? {
        std::fs::remove_file(&path).map_err(StorageError::io("remove format 1 snapshot", &path))?;
    }
    write_format_version(db, batch, 2)?;
    tracing::info!(
        path = %dir.display(),
        log_entries = entries,
        revision = applied_index,
        "upgraded data directory from format 1 to format 2"
    );
    Ok(())
}

/// Format 2 to 3: every value of the live generation rewritten with its key's revisions (created
/// and last written at the state's revision, version 1: format 2 did not record them) into the
/// next generation, then one synced batch switches generation and format and starts the watch
/// history after the state's revision. A stop halfway leaves a format 2 directory whose partial
/// next generation the next attempt clears first.
fn upgrade_from_v2(db: &DB, dir: &Path) -> Result<()> {
    let data = db.cf_handle(CF_SM_DATA).expect("sm_data column family is created at open");
    let sm_meta = db.cf_handle(CF_SM_META).expect("sm_meta column family is created at open");
    let read = |key: &[u8]| db.get_cf(sm_meta, key).map_err(StorageError::rocks("read state for upgrade"));
    let generation: u64 = read(KEY_GENERATION)?.map(|b| decode("generation", &b)).transpose()?.unwrap_or(0);
    let revision: u64 = read(KEY_REVISION)?.map(|b| decode("revision", &b)).transpose()?.unwrap_or(0);
    let next = generation + 1;
    db.delete_range_cf(data, generation_start(next), generation_start(next + 1))
        .map_err(StorageError::rocks("clear upgrade generation"))?;
    let mut batch = WriteBatch::default();
    let mut keys = 0u64;
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(generation_start(generation + 1).to_vec());
    let start = generation_start(generation);
    for item in db.iterator_cf_opt(data, opts, IteratorMode::From(&start, Direction::Forward)) {
        let (key, value) = item.map_err(StorageError::rocks("read data for upgrade"))?;
        batch.put_cf(data, data_key(next, &key[8..]), upgraded_value(&value, revision));
        keys += 1;
        if batch.size_in_bytes() >= 4 << 20 {
            db.write(std::mem::take(&mut batch)).map_err(StorageError::rocks("write upgraded data"))?;
        }
    }
    batch.put_cf(sm_meta, KEY_GENERATION, encode(&next)?);
    batch.put_cf(sm_meta, KEY_WATCH_FLOOR, encode(&(revision + 1))?);
    write_format(db, batch)?;
    db.delete_range_cf(data, generation_start(generation), generation_start(next))
        .map_err(StorageError::rocks("drop format 2 data"))?;
    tracing::info!(path = %dir.display(), keys, revision, "upgraded data directory from format 2 to format {DATA_FORMAT_VERSION}");
    Ok(())
}
