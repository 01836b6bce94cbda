//! Group commit: appends issued back to back, as openraft issues them, share WAL fsyncs, and each
//! is reported flushed only after an fsync.

use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::CommittedLeaderIdOf;
use openraft::vote::RaftLeaderId;
use openraft::{Entry, EntryPayload, LogId};
use raftkv_storage::Store;
use raftkv_types::{Command, Proposal, TypeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let appends = 500u64;
    let mut flushed = Vec::new();
    for index in 1..=appends {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal::new(
                0,
                Command::Put { key: format!("k{index}"), value: vec![7; 100] },
            )),
        };
        let (tx, rx) = TypeConfig::oneshot();
        // Like openraft, issue the next append without waiting for the previous flush.
        store.log.append([entry], IOFlushed::signal(tx)).await.unwrap();
        flushed.push(rx);
    }
    for rx in flushed {
        rx.await.unwrap().unwrap();
    }
    let stats = store.log.wal_stats();
    eprintln!("{} appends made durable with {} fsyncs", stats.appends, stats.fsyncs);
    assert_eq!(stats.appends, appends);
    assert!(stats.fsyncs < appends, "no append shared an fsync: {stats:?}");
    assert_eq!(store.log.try_get_log_entries(1..=appends).await.unwrap().len() as u64, appends);
}
