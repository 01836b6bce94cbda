//! Per-key revisions, transactions and the watch history in the state machine: computed at
//! apply, written in the apply's batch, carried by snapshots, trimmed by count and age, and
//! brought to format 2 directories by their upgrade.

use std::io;
use std::time::Duration;

use futures::stream;
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::CommittedLeaderIdOf;
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use raftkv_storage::keys::{CF_RAFT_META, CF_SM_DATA, CF_SM_META, KEY_FORMAT, KEY_GENERATION, KEY_WATCH_FLOOR};
use raftkv_storage::{HistoryRead, HistoryRetention, KvStateMachine, Store, StoreOptions, codec};
use raftkv_types::{Command, Compare, CompareOp, CompareTarget, LogId as KvLogId, Proposal, Txn, TxnOp, TypeConfig};

fn entry(index: u64, clock_ms: u64, command: Command) -> raftkv_types::Entry {
    let log_id: KvLogId = LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(1, 1), index);
    Entry { log_id, payload: EntryPayload::Normal(Proposal::new(clock_ms, command)) }
}

/// Applies `commands` after `sm`'s last entry, one second apart on the state-machine clock; the
/// revision after each.
async fn apply(sm: &mut KvStateMachine, commands: Vec<Command>) -> Vec<u64> {
    let mut revisions = Vec::new();
    for command in commands {
        let index = sm.applied_index() + 1;
        let items: Vec<io::Result<_>> = vec![Ok((entry(index, index * 1000, command), None))];
        sm.apply(stream::iter(items)).await.unwrap();
        revisions.push(sm.applied_meta().revision);
    }
    revisions
}

fn put(key: &str, value: &str) -> Command {
    Command::Put { key: key.into(), value: value.into() }
}

/// The value of `key` with its create revision, mod revision and version.
fn found(sm: &KvStateMachine, key: &str) -> Option<(Vec<u8>, u64, u64, u64)> {
    sm.get_versioned(key).unwrap().map(|v| (v.value, v.meta.create_revision, v.meta.mod_revision, v.meta.version))
}

fn history(sm: &KvStateMachine, from: u64) -> Vec<(u64, Vec<(String, bool)>)> {
    match sm.history(from, 1000, usize::MAX).unwrap() {
        HistoryRead::Page(page) => page
            .into_iter()
            .map(|r| (r.revision, r.changes.into_iter().map(|c| (c.key.clone(), c.is_delete())).collect()))
            .collect(),
        HistoryRead::Compacted { floor } => panic!("compacted at {floor}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_carries_its_revisions_and_every_change_is_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let sm = &mut store.state_machine;
    // Before the cluster is founded a revision is the entry's index: found it first.
    apply(sm, vec![Command::FoundCluster { cluster_id: "0123456789abcdef0123456789abcdef".into() }]).await;
    let base = sm.applied_meta().revision;
    let revisions = apply(
        sm,
        vec![put("a", "1"), put("a", "2"), put("b", "x"), Command::Delete { key: "a".into() }, put("a", "3")],
    )
    .await;
    assert_eq!(revisions, (base + 1..=base + 5).collect::<Vec<_>>());
    // Deleted and written again: created anew, version from 1.
    assert_eq!(found(sm, "a"), Some((b"3".to_vec(), base + 5, base + 5, 1)));
    assert_eq!(found(sm, "b"), Some((b"x".to_vec(), base + 3, base + 3, 1)));
    let h = history(sm, 0);
    assert_eq!(h.len(), 5);
    assert_eq!(h[3], (base + 4, vec![("a".to_string(), true)]));

    // A transaction: comparisons on revisions, several writes at one revision (what its gets
    // return is checked by the unit tests of `apply`).
    let txn = Txn {
        compare: vec![
            Compare { key: "a".into(), target: CompareTarget::ModRevision(base + 5), op: CompareOp::Equal },
            Compare { key: "c".into(), target: CompareTarget::Exists(false), op: CompareOp::Equal },
            Compare { key: "b".into(), target: CompareTarget::Value(b"w".to_vec()), op: CompareOp::Greater },
        ],
        success: vec![
            TxnOp::Put { key: "c".into(), value: b"new".to_vec(), lease: None },
            TxnOp::Put { key: "a".into(), value: b"4".to_vec(), lease: None },
            TxnOp::Get { key: "a".into() },
            TxnOp::DeletePrefix { prefix: "b".into() },
        ],
        failure: vec![TxnOp::Get { key: "a".into() }],
    };
    let revision = apply(sm, vec![Command::Txn(txn.clone())]).await.remove(0);
    assert_eq!(revision, base + 6, "one revision for the whole transaction");
    assert_eq!(found(sm, "b"), None);
    assert_eq!(found(sm, "c"), Some((b"new".to_vec(), base + 6, base + 6, 1)));
    let last = history(sm, base + 6);
    assert_eq!(
        last,
        vec![(base + 6, vec![("c".into(), false), ("a".into(), false), ("b".into(), true)])],
        "the changes of one revision together, in the order made"
    );

    // The same transaction again: a's mod revision moved, so the failure branch runs and
    // changes nothing (the revision stays).
    let revision = apply(sm, vec![Command::Txn(txn)]).await.remove(0);
    assert_eq!(revision, base + 6);
    assert_eq!(history(sm, base + 7), vec![]);

    // Scans carry revisions too.
    let page = sm.scan("", None, 10).unwrap();
    let metas: Vec<(String, u64)> = page.entries.iter().map(|(k, v)| (k.clone(), v.meta.mod_revision)).collect();
    assert_eq!(metas, vec![("a".into(), base + 6), ("c".into(), base + 6)]);

    // A lease and a key attached to it, for the snapshot to carry.
    let with_lease = Txn {
        success: vec![TxnOp::Put { key: "eph".into(), value: b"1".to_vec(), lease: Some(77) }],
        ..Txn::default()
    };
    apply(sm, vec![Command::LeaseGrant { id: 77, ttl_ms: 5_000 }, Command::Txn(with_lease)]).await;
    assert_eq!(sm.lease(77).unwrap().unwrap().keys.len(), 1);
    assert_eq!(sm.applied_meta().revision, base + 7, "a grant changes no key; the put does");

    // A snapshot carries values with their revisions, and the leases; the new member's history
    // starts after it.
    let mut builder = sm.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut follower = Store::open(other.path()).unwrap();
    let received = other.path().join("snapshots").join("incoming.part");
    std::fs::copy(snapshot.snapshot.path(), &received).unwrap();
    follower.state_machine.install_snapshot(&snapshot.meta, raftkv_storage::SnapshotFile::new(received)).await.unwrap();
    assert_eq!(found(&follower.state_machine, "a"), Some((b"4".to_vec(), base + 5, base + 6, 2)));
    let lease = follower.state_machine.lease(77).unwrap().expect("the lease came with the snapshot");
    assert_eq!((lease.ttl_ms, lease.keys.iter().next().map(String::as_str)), (5_000, Some("eph")));
    // Revoked there: its key goes, in one revision.
    let fsm = &mut follower.state_machine;
    let before = fsm.applied_meta().revision;
    let index = snapshot.meta.last_log_id.unwrap().index + 1;
    let items: Vec<io::Result<_>> = vec![Ok((entry(index, index * 1000, Command::LeaseRevoke { id: 77 }), None))];
    fsm.apply(stream::iter(items)).await.unwrap();
    assert_eq!(fsm.applied_meta().revision, before + 1);
    assert_eq!(fsm.get("eph").unwrap(), None);
    assert!(fsm.leases().unwrap().is_empty());
    assert_eq!(follower.state_machine.history(base + 7, 10, 0).unwrap(), HistoryRead::Compacted { floor: base + 8 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_by_count_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let retention = HistoryRetention { revisions: 10, max_age: Duration::from_secs(30) };
    let mut store =
        Store::open_with(dir.path(), StoreOptions { history: retention, ..StoreOptions::default() }).unwrap();
    let sm = &mut store.state_machine;
    apply(sm, vec![Command::FoundCluster { cluster_id: "0123456789abcdef0123456789abcdef".into() }]).await;
    // 25 writes, a second apart: the count keeps the last 10.
    apply(sm, (0..25).map(|i| put("k", &i.to_string())).collect()).await;
    let revision = sm.applied_meta().revision;
    assert_eq!(sm.history_floor(), revision - 9);
    assert!(matches!(sm.history(revision - 10, 10, 0).unwrap(), HistoryRead::Compacted { .. }));
    assert_eq!(history(sm, revision - 9).len(), 10);
    // A write 60 s later on the state-machine clock: everything older than 30 s goes.
    let index = sm.applied_index() + 1;
    let late = entry(index, index * 1000 + 60_000, put("k", "late"));
    let items: Vec<io::Result<_>> = vec![Ok((late, None))];
    sm.apply(stream::iter(items)).await.unwrap();
    assert_eq!(sm.history_floor(), revision + 1, "only the late write is young enough");
    assert_eq!(history(sm, revision + 1).len(), 1);
    // The floor is stored with the data.
    drop(store);
    let store = Store::open_with(dir.path(), StoreOptions { history: retention, ..StoreOptions::default() }).unwrap();
    assert_eq!(store.state_machine.history_floor(), revision + 1);
}

#[test]
fn a_format_2_directory_gets_revisions_for_every_key() {
    let dir = tempfile::tempdir().unwrap();
    // Make a format 2 directory: raw values in the live generation, format 2, no watch floor.
    {
        let store = Store::open(dir.path()).unwrap();
        drop(store);
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, dir.path().join("db"), raftkv_storage::keys::ALL_CFS).unwrap();
        let data = db.cf_handle(CF_SM_DATA).unwrap();
        let meta = db.cf_handle(CF_SM_META).unwrap();
        let generation = 0u64;
        db.put_cf(meta, KEY_GENERATION, codec::encode(&generation).unwrap()).unwrap();
        db.put_cf(meta, b"revision", codec::encode(&41u64).unwrap()).unwrap();
        db.delete_cf(meta, KEY_WATCH_FLOOR).unwrap();
        for (key, value) in [("a", "1"), ("b", "2")] {
            db.put_cf(data, raftkv_storage::keys::data_key(generation, key.as_bytes()), value).unwrap();
        }
        db.put_cf(db.cf_handle(CF_RAFT_META).unwrap(), KEY_FORMAT, codec::encode(&2u32).unwrap()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let sm = &store.state_machine;
    assert_eq!(found(sm, "a"), Some((b"1".to_vec(), 41, 41, 1)));
    assert_eq!(found(sm, "b"), Some((b"2".to_vec(), 41, 41, 1)));
    assert_eq!(sm.history_floor(), 42, "no history before the upgrade");
    drop(store);
    // Opened again: nothing more to do, same values.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(found(&store.state_machine, "a"), Some((b"1".to_vec(), 41, 41, 1)));
}
