//! Write, drop, reopen: the log, the vote and the applied state are all still there.

use std::io;

use futures::stream;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::CommittedLeaderIdOf;
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder};
use raftkv_storage::Store;
use raftkv_types::{Command, LogId as KvLogId, PeerNode, Proposal, TypeConfig, Vote};

fn log_id(term: u64, index: u64) -> KvLogId {
    LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(term, 1), index)
}

fn put(term: u64, index: u64, key: &str, value: &str) -> raftkv_types::Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Proposal::new(
            0,
            Command::Put { key: key.into(), value: value.as_bytes().to_vec() },
        )),
    }
}

async fn append(store: &mut raftkv_storage::RocksLogStore, entries: Vec<raftkv_types::Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn apply(sm: &mut raftkv_storage::KvStateMachine, entries: Vec<raftkv_types::Entry>) {
    let items: Vec<io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_vote_and_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = std::collections::BTreeMap::from([(1u64, PeerNode::new("127.0.0.1:1"))]);
    let membership = Membership::new(vec![[1u64].into()], nodes).unwrap();
    let entries = vec![
        Entry { log_id: log_id(1, 1), payload: EntryPayload::Membership(membership) },
        put(1, 2, "a", "1"),
        put(1, 3, "b", "2"),
        put(1, 4, "a", "3"),
    ];
    let vote = Vote::new_committed(1, 1);

    {
        let mut store = Store::open(dir.path()).unwrap();
        store.log.save_vote(&vote).await.unwrap();
        append(&mut store.log, entries.clone()).await;
        store.log.save_committed(Some(log_id(1, 4))).await.unwrap();
        apply(&mut store.state_machine, entries[..3].to_vec()).await;
    }

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.log.read_committed().await.unwrap(), Some(log_id(1, 4)));
    let log = store.log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(log.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 4)));

    let (applied, membership) = store.state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1)));
    assert_eq!(store.state_machine.get("a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.state_machine.get("b").unwrap(), Some(b"2".to_vec()));

    // Applying the rest after reopening continues where it stopped.
    apply(&mut store.state_machine, entries[3..].to_vec()).await;
    assert_eq!(store.state_machine.get("a").unwrap(), Some(b"3".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_purge_leave_no_hole_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        append(&mut store.log, (1..=10).map(|i| put(1, i, "k", "v")).collect()).await;
        store.log.truncate_after(Some(log_id(1, 7))).await.unwrap();
        store.log.purge(log_id(1, 3)).await.unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 7)));
    let log = store.log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(log.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![4, 5, 6, 7]);

    // Purging everything keeps the last log id known.
    store.log.purge(log_id(1, 7)).await.unwrap();
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_snapshot_replaces_state_and_survives_reopen() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = Store::open(leader_dir.path()).unwrap();
    apply(&mut leader.state_machine, (1..=100).map(|i| put(1, i, &format!("key{i:03}"), &i.to_string())).collect())
        .await;
    let mut builder = leader.state_machine.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 100)));

    {
        let mut follower = Store::open(follower_dir.path()).unwrap();
        apply(&mut follower.state_machine, vec![put(1, 1, "stale", "x")]).await;
        let received = follower_dir.path().join("snapshots").join("incoming.part");
        std::fs::copy(snapshot.snapshot.path(), &received).unwrap();
        let file = raftkv_storage::SnapshotFile::new(received);
        assert_eq!(file.verify().unwrap().0.snapshot_meta(), snapshot.meta);
        follower.state_machine.install_snapshot(&snapshot.meta, file).await.unwrap();
    }
    let mut follower = Store::open(follower_dir.path()).unwrap();
    assert_eq!(follower.state_machine.get("stale").unwrap(), None);
    assert_eq!(follower.state_machine.get("key042").unwrap(), Some(b"42".to_vec()));
    assert_eq!(follower.state_machine.applied_index(), 100);
    let page = follower.state_machine.scan("key", Some("key097"), 10).unwrap();
    assert_eq!(page.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["key098", "key099", "key100"]);
    assert!(!page.more);
    let current = follower.state_machine.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
}
