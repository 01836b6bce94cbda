//! The cluster's replicated operating state and fenced writes in the state machine: applied
//! deterministically, stored with the data, carried by snapshots.

use std::io;

use futures::stream;
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::CommittedLeaderIdOf;
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use raftkv_storage::Store;
use raftkv_types::{
    AutopilotSettings, ClusterChange, Command, LeaderToken, LogId as KvLogId, Proposal, ReplicationMode,
    SyncReplication, TypeConfig,
};

/// An entry proposed by node `leader` in `term`.
fn entry(term: u64, leader: u64, index: u64, command: Command) -> raftkv_types::Entry {
    let log_id: KvLogId = LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(term, leader), index);
    Entry { log_id, payload: EntryPayload::Normal(Proposal::new(10_000 + index, command)) }
}

async fn apply(sm: &mut raftkv_storage::KvStateMachine, entries: Vec<raftkv_types::Entry>) {
    let items: Vec<io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

fn fenced_put(token: LeaderToken, key: &str) -> Command {
    Command::Fenced { token, command: Box::new(Command::Put { key: key.into(), value: b"job".to_vec() }) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_apply_only_in_their_own_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let term2 = LeaderToken { term: 2, leader: 1, since_index: 1 };
    apply(
        &mut store.state_machine,
        vec![
            // Proposed by node 1 in term 2 with its own token: applied.
            entry(2, 1, 1, fenced_put(term2, "a")),
            // The same token, but the entry comes from the leader of term 3 (node 1 deposed and a
            // write forwarded to its successor, or node 1 re-elected): refused.
            entry(3, 2, 2, fenced_put(term2, "b")),
            entry(3, 1, 3, fenced_put(term2, "c")),
            // A token naming another node in the same term: refused.
            entry(3, 2, 4, fenced_put(LeaderToken { term: 3, leader: 1, since_index: 2 }, "d")),
            // The successor's own token: applied.
            entry(3, 2, 5, fenced_put(LeaderToken { term: 3, leader: 2, since_index: 2 }, "e")),
        ],
    )
    .await;
    let sm = &store.state_machine;
    let present: Vec<&str> = ["a", "b", "c", "d", "e"].into_iter().filter(|k| sm.get(k).unwrap().is_some()).collect();
    assert_eq!(present, ["a", "e"]);
    assert_eq!(sm.applied_meta().revision, 5, "before founding a revision is the log index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_state_is_applied_stored_and_carried_by_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let settings = AutopilotSettings { enabled: true, dead_after_ms: 9_000, ..AutopilotSettings::default() };
    let sync = SyncReplication { zones: vec!["dr".into()], wait_timeout_ms: 1_500 };
    {
        let mut store = Store::open(dir.path()).unwrap();
        apply(
            &mut store.state_machine,
            vec![
                entry(1, 1, 1, Command::Cluster(ClusterChange::SetStandby { id: 4, standby: true })),
                entry(1, 1, 2, Command::Cluster(ClusterChange::SetAutopilot(settings))),
                entry(1, 1, 3, Command::Cluster(ClusterChange::SetSyncReplication(sync.clone()))),
                entry(1, 1, 4, Command::Cluster(ClusterChange::Leaving { id: 2, until_ms: 99_000 })),
                entry(
                    1,
                    1,
                    5,
                    Command::Cluster(ClusterChange::SetReplicationMode {
                        mode: ReplicationMode::Async,
                        reason: "test".into(),
                    }),
                ),
                entry(
                    1,
                    1,
                    6,
                    Command::Cluster(ClusterChange::Replaced { dead: 2, standby: 4, reason: "test".into() }),
                ),
            ],
        )
        .await;
    }
    // Reopened: everything is still there, with one event per change.
    let mut store = Store::open(dir.path()).unwrap();
    let cluster = store.state_machine.cluster_state();
    assert_eq!(cluster.autopilot, settings);
    assert_eq!(cluster.sync, sync);
    assert_eq!(cluster.replication_mode, ReplicationMode::Async);
    assert!(cluster.standbys.contains(&2) && cluster.standbys.contains(&4), "the replaced voter is a standby");
    assert!(cluster.leaving.is_empty(), "a replaced member's planned absence is over");
    let kinds: Vec<&str> = cluster.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["standby_added", "autopilot_settings", "sync_zones", "member_leaving", "replication_async", "voter_replaced"]
    );
    assert_eq!(cluster.events.back().unwrap().log_index, 6);
    assert_eq!(store.state_machine.applied_meta().revision, 6, "cluster changes change no data");

    // A snapshot carries it to a new member.
    let mut builder = store.state_machine.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut follower = Store::open(other.path()).unwrap();
    let received = other.path().join("snapshots").join("incoming.part");
    std::fs::copy(snapshot.snapshot.path(), &received).unwrap();
    let file = raftkv_storage::SnapshotFile::new(received);
    follower.state_machine.install_snapshot(&snapshot.meta, file).await.unwrap();
    assert_eq!(follower.state_machine.cluster_state(), cluster);
}
