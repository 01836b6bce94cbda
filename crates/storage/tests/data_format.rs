//! Data directory formats: a format 1 directory (kept as a fixture, written by the release before
//! formats were recorded) is upgraded in place on open; a directory of a newer format is refused
//! with one line that names both versions.

use std::path::{Path, PathBuf};

use raftkv_storage::keys::{ALL_CFS, CF_RAFT_META, KEY_FORMAT};
use raftkv_storage::{DATA_FORMAT_VERSION, StorageError, Store, codec};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/format1/node-1")
}

/// A copy of the fixture (opening it upgrades it).
fn copy_fixture(to: &Path) {
    let status = std::process::Command::new("cp").arg("-r").arg(fixture()).arg(to).status().expect("run cp");
    assert!(status.success(), "copy the fixture");
}

#[test]
fn a_format_1_directory_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node-1");
    copy_fixture(&data);
    {
        let store = Store::open(&data).unwrap();
        let sm = &store.state_machine;
        assert_eq!(sm.get("key1").unwrap(), Some(b"swapped".to_vec()));
        assert_eq!(sm.get("key2").unwrap(), None);
        assert_eq!(sm.get("key25").unwrap(), Some(b"value25".to_vec()));
        assert_eq!(sm.get("big").unwrap(), Some(vec![b'x'; 3000]));
        let meta = sm.applied_meta();
        // Format 1's revision of a write was its log index: revisions go on from there.
        assert_eq!(meta.revision, meta.applied_index());
        assert_eq!(meta.identity, None, "the cluster's next leader founds it");
        // The log that was kept is readable in the new encoding.
        assert!(!store.log.entries().unwrap().is_empty());
        let snapshots: Vec<_> = std::fs::read_dir(data.join("snapshots")).unwrap().collect();
        assert!(snapshots.is_empty(), "format 1 snapshots are dropped (openraft rebuilds one)");
    }
    // Opened again, it is a format 2 directory: nothing to upgrade, same state. (What the last
    // memtable flush did not hold is re-applied from the log by openraft when a node starts: the
    // process-level test `tests/format_upgrade.rs` checks every key through a running node.)
    let store = Store::open(&data).unwrap();
    assert_eq!(store.state_machine.get("key1").unwrap(), Some(b"swapped".to_vec()));
    let meta = store.state_machine.applied_meta();
    assert_eq!(meta.revision, meta.applied_index());
}

#[test]
fn a_newer_format_is_refused_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path().join("db"), ALL_CFS).unwrap();
        let cf = db.cf_handle(CF_RAFT_META).unwrap();
        db.put_cf(cf, KEY_FORMAT, codec::encode(&(DATA_FORMAT_VERSION + 7)).unwrap()).unwrap();
    }
    let err = match Store::open(dir.path()) {
        Err(err) => err,
        Ok(_) => panic!("a newer format must be refused"),
    };
    assert!(matches!(err, StorageError::UnsupportedFormat { .. }), "{err}");
    let line = err.to_string();
    assert!(!line.contains('\n'));
    assert!(line.contains(&format!("format version {}", DATA_FORMAT_VERSION + 7)), "{line}");
    assert!(line.contains(&format!("1 to {DATA_FORMAT_VERSION}")) && line.contains("newer raftkv"), "{line}");
}
