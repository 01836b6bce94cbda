//! openraft's storage conformance suite, run against the RocksDB store.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use raftkv_storage::{KvStateMachine, RocksLogStore, Store};
use raftkv_types::TypeConfig;
use tempfile::TempDir;

struct RocksStoreBuilder;

impl StoreBuilder<TypeConfig, RocksLogStore, KvStateMachine, TempDir> for RocksStoreBuilder {
    async fn build(&self) -> Result<(TempDir, RocksLogStore, KvStateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().expect("create temp dir");
        let store = Store::open(dir.path()).expect("open store");
        Ok((dir, store.log, store.state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocks_store_passes_the_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksStoreBuilder).await
}
