//! Offline verification of a stopped node's data directory (`raftkv recover check`): every block
//! of every column family read back with its checksum verified, every record decoded, the log
//! checked for holes, and every snapshot file verified end to end. It changes nothing.

use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, Options, ReadOptions};
use serde::Serialize;

use crate::applied_state::AppliedState;
use crate::codec::{FORMAT_V2, decode, decode_versions};
use crate::error::{Result, StorageError};
use crate::keys::{ALL_CFS, CF_LOG, CF_RAFT_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_NODE_ID, KEY_VOTE, log_index};
use crate::snapshot::SnapshotFile;
use crate::state_machine::snapshot_files;
use crate::store::{cf_options, db_options};

/// What [`check`] found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The directory checked.
    pub data_dir: PathBuf,
    /// Nothing is wrong.
    pub ok: bool,
    /// What is wrong, one line each, naming the file or record.
    pub problems: Vec<String>,
    /// Records read (checksums verified) per column family.
    pub records: Vec<(String, u64)>,
    /// Log entries, and the first and last index.
    pub log_entries: u64,
    /// The first and last log index present.
    pub log_range: Option<(u64, u64)>,
    /// The last applied log index of the state machine.
    pub applied_index: u64,
    /// Snapshot files verified.
    pub snapshots: Vec<PathBuf>,
}

/// Verifies the stopped node's `data_dir`. Opens the database read-only with paranoid checks, and
/// reads everything with checksums verified: a flipped bit in an SST file, a broken WAL, an
/// undecodable record, a hole in the log or a damaged snapshot becomes a problem in the report
/// (with the file RocksDB names), never an error that hides the others.
pub fn check(data_dir: &Path) -> Result<CheckReport> {
    let db_dir = data_dir.join("db");
    if !db_dir.join("CURRENT").exists() {
        return Err(StorageError::Refused(format!("{} is not a raftkv data directory", data_dir.display())));
    }
    let mut report = CheckReport {
        data_dir: data_dir.to_path_buf(),
        ok: true,
        problems: Vec::new(),
        records: Vec::new(),
        log_entries: 0,
        log_range: None,
        applied_index: 0,
        snapshots: Vec::new(),
    };
    let mut opts: Options = db_options();
    opts.set_paranoid_checks(true);
    let cfs = ALL_CFS.iter().map(|name| rocksdb::ColumnFamilyDescriptor::new(*name, cf_options(name)));
    let db = match DB::open_cf_descriptors_read_only(&opts, &db_dir, cfs, false) {
        Ok(db) => Some(db),
        Err(e) if e.to_string().contains("lock") => {
            return Err(StorageError::Refused(format!("{e}: is the node still running? stop it first")));
        }
        Err(e) => {
            report.problems.push(format!("the database does not open: {e}"));
            None
        }
    };
    if let Some(db) = &db {
        check_column_families(db, &mut report);
        check_metadata(db, &mut report);
    }
    check_snapshots(&data_dir.join("snapshots"), &mut report);
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Reads every record of every column family with checksums verified; the log's records are
/// checked as log entries on the way ([`check_log_entry`]).
fn check_column_families(db: &DB, report: &mut CheckReport) {
    for name in ALL_CFS {
        let Some(cf) = db.cf_handle(name) else {
            report.problems.push(format!("column family {name} is missing"));
            continue;
        };
        let mut read = ReadOptions::default();
        read.set_verify_checksums(true);
        read.fill_cache(false);
        let mut count = 0u64;
        let mut previous_index = None;
        for item in db.iterator_cf_opt(cf, read, IteratorMode::Start) {
            match item {
                Ok((key, value)) => {
                    count += 1;
                    if name == CF_LOG {
                        check_log_entry(&key, &value, &mut previous_index, report);
                    }
                }
                Err(e) => {
                    report.problems.push(format!("column family {name}, after {count} records: {e}"));
                    break;
                }
            }
        }
        report.records.push((name.to_string(), count));
    }
}

/// Decodes the log record `key`/`value` and checks that its index follows `previous` (the
/// index of the record before it).
fn check_log_entry(key: &[u8], value: &[u8], previous: &mut Option<u64>, report: &mut CheckReport) {
    let Some(index) = log_index(key) else {
        report.problems.push(format!("log: a key of {} bytes, not 8", key.len()));
        return;
    };
    if let Err(e) = decode_versions::<raftkv_types::Entry>("log entry", value, &[FORMAT_V2]) {
        report.problems.push(format!("log entry {index}: {e}"));
    }
    if let Some(previous) = *previous
        && index != previous + 1
    {
        report.problems.push(format!("log: entries {} to {} are missing", previous + 1, index - 1));
    }
    report.log_range = Some((report.log_range.map_or(index, |(first, _)| first), index));
    report.log_entries += 1;
    *previous = Some(index);
}

/// Decodes the Raft and state-machine metadata, and checks that the log starts right after the
/// last purged entry.
fn check_metadata(db: &DB, report: &mut CheckReport) {
    let Some(meta) = db.cf_handle(CF_RAFT_META) else { return };
    let read = |key: &[u8]| db.get_cf(meta, key).map_err(|e| e.to_string());
    if let Ok(Some(bytes)) = read(KEY_VOTE)
        && let Err(e) = decode::<raftkv_types::Vote>("vote", &bytes)
    {
        report.problems.push(format!("raft metadata vote: {e}"));
    }
    let mut last_purged: Option<u64> = None;
    for (what, key) in [("committed log id", KEY_COMMITTED), ("last purged log id", KEY_LAST_PURGED)] {
        match read(key).map(|bytes| bytes.map(|b| decode::<Option<raftkv_types::LogId>>(what, &b))) {
            Ok(Some(Ok(id))) if key == KEY_LAST_PURGED => last_purged = id.map(|l| l.index),
            Ok(Some(Ok(_)) | None) => {}
            Ok(Some(Err(e))) => report.problems.push(format!("raft metadata {what}: {e}")),
            Err(e) => report.problems.push(format!("raft metadata {what}: {e}")),
        }
    }
    if let Ok(Some(bytes)) = read(KEY_NODE_ID)
        && let Err(e) = decode::<u64>("node id", &bytes)
    {
        report.problems.push(format!("raft metadata node id: {e}"));
    }
    if let (Some(purged), Some((first, _))) = (last_purged, report.log_range)
        && first > purged + 1
    {
        report.problems.push(format!(
            "log: entries {} to {} are missing after the last purged one",
            purged + 1,
            first - 1
        ));
    }
    match AppliedState::read(db) {
        Ok((_, state)) => report.applied_index = state.applied_index(),
        Err(e) => report.problems.push(format!("state-machine metadata: {e}")),
    }
}

/// Verifies every published snapshot file (its header, chunk and whole-file checksums).
fn check_snapshots(dir: &Path, report: &mut CheckReport) {
    let files = match snapshot_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.problems.push(format!("snapshots: {e}"));
            return;
        }
    };
    for path in files {
        if let Err(e) = SnapshotFile::new(path.clone()).verify() {
            report.problems.push(format!("snapshot {}: {e}", path.display()));
        }
        report.snapshots.push(path);
    }
}
