//! openraft's storage test suite against the SQLite log store and state machine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use webfarm_db::log_store::LogStore;
use webfarm_db::state_machine::StateMachine;
use webfarm_db::types::TypeConfig;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder;

static N: AtomicU64 = AtomicU64::new(0);

fn err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write(AnyError::error(e)).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = std::env::temp_dir().join(format!(
            "webfarm-db-suite-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(err)?;
        let log = LogStore::open(&dir.join("raft-log.db")).map_err(err)?;
        let sm = StateMachine::open(&dir).map_err(err)?;
        Ok((TempDir(dir), log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("the storage suite passes");
}
