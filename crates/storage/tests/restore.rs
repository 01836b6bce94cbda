//! Backups and restores at the storage level: a backup restored into an empty directory gives a
//! state machine that openraft elects a leader from and serves, with an empty, purged log; bad
//! files and non-empty directories are refused.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::{CommittedLeaderIdOf, SnapshotOf};
use openraft::vote::RaftLeaderId;
use openraft::{AnyError, Config, Entry, EntryPayload, LogId, Membership};
use raftkv_storage::{BackupConsistency, SnapshotFile, StorageError, Store};
use raftkv_types::{Command, LogId as KvLogId, NodeId, Outcome, PeerNode, Proposal, TypeConfig, Vote};

/// A network for a one-member cluster: there is no one to talk to.
struct Alone;

impl RaftNetworkFactory<TypeConfig> for Alone {
    type Network = Alone;
    async fn new_client(&mut self, _: NodeId, _: &PeerNode) -> Alone {
        Alone
    }
}

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::new(&AnyError::error("a one-member cluster has no peers"))
}

impl RaftNetworkV2<TypeConfig> for Alone {
    type SnapshotData = SnapshotFile;
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn vote(
        &mut self,
        _: VoteRequest<TypeConfig>,
        _: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn full_snapshot(
        &mut self,
        _: Vote,
        _: SnapshotOf<TypeConfig, SnapshotFile>,
        _: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

fn log_id(term: u64, index: u64) -> KvLogId {
    LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(term, 1), index)
}

fn command(index: u64, command: Command) -> raftkv_types::Entry {
    Entry { log_id: log_id(1, index), payload: EntryPayload::Normal(Proposal::new(1_000 + index, command)) }
}

fn put(key: &str, value: &[u8]) -> Command {
    Command::Put { key: key.into(), value: value.to_vec() }
}

async fn apply(sm: &mut raftkv_storage::KvStateMachine, entries: Vec<raftkv_types::Entry>) {
    let items: Vec<io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

/// A source state machine with 200 keys (one with a value that is not UTF-8), founded, and a
/// backup of it.
async fn backup_of_source(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let mut store = Store::open(dir.join("source")).unwrap();
    let nodes = BTreeMap::from([(1u64, PeerNode::new("127.0.0.1:1"))]);
    let membership = Membership::new(vec![[1u64].into()], nodes).unwrap();
    let mut entries = vec![
        Entry { log_id: log_id(1, 1), payload: EntryPayload::Membership(membership) },
        command(2, Command::FoundCluster { cluster_id: "0123456789abcdef0123456789abcdef".into() }),
    ];
    for i in 0..200u64 {
        entries.push(command(3 + i, put(&format!("key{i:03}"), format!("value {i}").as_bytes())));
    }
    entries.push(command(203, put("binary", &[0xff, 0x00, 0xfe])));
    apply(&mut store.state_machine, entries).await;
    let revision = store.state_machine.applied_meta().revision;
    let path = dir.join("backup.rkvbak");
    let (header, summary) = store.state_machine.backup_to_file(&path, BackupConsistency::Stale).unwrap();
    assert_eq!(header.revision, revision);
    assert_eq!(summary.records, 201);
    (path, revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_directory_elects_a_leader_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (backup, revision) = backup_of_source(dir.path()).await;
    // Revision: 2 (the founding entry, counted as its log index) + 201 writes.
    assert_eq!(revision, 2 + 201);

    let target = dir.path().join("restored");
    let members = BTreeMap::from([(1u64, "127.0.0.1:1".to_string())]);
    let restored = raftkv_storage::restore(&backup, &target, 1, &members, 1000).unwrap();
    assert_eq!(restored.revision, revision + 1000);
    assert_ne!(restored.identity.cluster_id, "0123456789abcdef0123456789abcdef");
    // The same file and members give the same cluster id: independent restores agree.
    let again = raftkv_storage::restore(&backup, &dir.path().join("again"), 1, &members, 0).unwrap();
    assert_eq!(again.identity, restored.identity);

    let store = Store::open_as(&target, 1).unwrap();
    let sm = store.state_machine.clone();
    let config = Arc::new(
        Config { election_timeout_min: 150, election_timeout_max: 300, heartbeat_interval: 50, ..Default::default() }
            .validate()
            .unwrap(),
    );
    let raft = openraft::Raft::<TypeConfig, _>::new(1, config, Alone, store.log, store.state_machine).await.unwrap();
    assert!(raft.is_initialized().await.unwrap(), "a restored directory is an initialised member");
    raft.wait(Some(Duration::from_secs(10))).current_leader(1, "restored member leads").await.unwrap();

    let written = raft.client_write(Proposal::new(5_000, put("after", b"restore"))).await.unwrap();
    assert_eq!(written.data.revision, revision + 1000 + 1, "revisions go on above the backup's");
    assert_eq!(written.data.outcome, Outcome::Put);
    assert_eq!(sm.get("key042").unwrap(), Some(b"value 42".to_vec()));
    assert_eq!(sm.get("binary").unwrap(), Some(vec![0xff, 0x00, 0xfe]));
    assert_eq!(sm.get("after").unwrap(), Some(b"restore".to_vec()));
    // openraft built a snapshot at start (the log was purged up to the restored state), so a
    // member that joins later can be sent one.
    let mut sm_for_snapshot = sm.clone();
    assert!(sm_for_snapshot.get_current_snapshot().await.unwrap().is_some());
    raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_and_used_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (backup, _) = backup_of_source(dir.path()).await;
    let members = BTreeMap::from([(1u64, "127.0.0.1:1".to_string())]);
    let good = std::fs::read(&backup).unwrap();

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&backup, &flipped).unwrap();
    let err = raftkv_storage::restore(&backup, &dir.path().join("a"), 1, &members, 0).unwrap_err();
    assert!(err.is_damaged_file() && err.to_string().contains("checksum"), "{err}");
    assert!(!dir.path().join("a").exists(), "a refused restore creates nothing");

    std::fs::write(&backup, &good[..good.len() - 10]).unwrap();
    let err = raftkv_storage::restore(&backup, &dir.path().join("b"), 1, &members, 0).unwrap_err();
    assert!(matches!(err, StorageError::Truncated { .. }), "{err}");

    std::fs::write(&backup, &good).unwrap();
    let used = dir.path().join("source");
    let err = raftkv_storage::restore(&backup, &used, 1, &members, 0).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let err = raftkv_storage::restore(&backup, &dir.path().join("c"), 9, &members, 0).unwrap_err();
    assert!(err.to_string().contains("not in the member list"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_count_data_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // Before the cluster is founded, a revision is the log index (format 1's rule).
    apply(&mut store.state_machine, vec![command(1, put("a", b"1")), command(2, put("a", b"2"))]).await;
    assert_eq!(store.state_machine.applied_meta().revision, 2);
    let founding = Command::FoundCluster { cluster_id: "00000000000000000000000000000001".into() };
    apply(&mut store.state_machine, vec![Entry { log_id: log_id(1, 3), payload: EntryPayload::Blank }]).await;
    apply(&mut store.state_machine, vec![command(4, founding.clone())]).await;
    let meta = store.state_machine.applied_meta();
    assert_eq!((meta.revision, meta.identity.as_ref().map(|i| i.epoch)), (4, Some(1)));
    apply(
        &mut store.state_machine,
        vec![
            command(5, put("b", b"x")),                            // +1
            command(6, Command::Delete { key: "missing".into() }), // +0
            command(7, Command::Cas { key: "b".into(), expected: Some(b"no".to_vec()), value: vec![] }), // +0
            command(8, Command::Cas { key: "b".into(), expected: Some(b"x".to_vec()), value: vec![] }), // +1
            Entry { log_id: log_id(1, 9), payload: EntryPayload::Blank }, // +0
            command(10, Command::Delete { key: "a".into() }),      // +1
            command(11, Command::FoundCluster { cluster_id: "ffffffffffffffffffffffffffffffff".into() }), // +0
        ],
    )
    .await;
    let meta = store.state_machine.applied_meta();
    assert_eq!(meta.revision, 7);
    assert_eq!(meta.clock_ms, 1_011, "the clock is the largest stamp applied");
    assert_eq!(meta.identity.unwrap().cluster_id, "00000000000000000000000000000001", "the first founding wins");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.state_machine.applied_meta().revision, 7, "the revision is stored with the data");
}
