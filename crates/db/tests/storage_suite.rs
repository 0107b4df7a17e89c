//! openraft's storage test suite against the SQLite log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use webfarm_db::log_store::LogStore;
use webfarm_db::state_machine::StateMachine;
use webfarm_db::types::TypeConfig;
use webfarm_testkit::TempDir;

struct Builder;

fn err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write(AnyError::error(e)).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new("db-storage-suite");
        let log = LogStore::open(&dir.path().join("raft-log.db")).map_err(err)?;
        let sm = StateMachine::open(dir.path()).map_err(err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("the storage suite passes");
}
