//! openraft's state machine: a thin adapter over the store of `db.sqlite` and its snapshots.

use std::sync::atomic::Ordering;

use crate::metrics::SnapshotStats;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageError, StorageIOError,
};

use crate::sqlite::apply::AppliedState;
use crate::sqlite::database::{task_failed, Database, DatabaseError};
use crate::sqlite::snapshot::Meta;
use crate::types::{CommandResponse, TypeConfig};

type StorageResult<T> = Result<T, StorageError<u64>>;

fn sm_read(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_state_machine(AnyError::error(e)).into()
}

fn sm_write(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::error(e)).into()
}

fn snap_err(meta: Option<&Meta>, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_snapshot(meta.map(Meta::signature), AnyError::error(e)).into()
}

/// Runs blocking `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DatabaseError> + Send + 'static,
) -> Result<T, DatabaseError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(task_failed("storage"))?
}

/// Why [`StateMachine::open`] failed: the file that cannot be opened, and why.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OpenError(DatabaseError);

/// The state machine of one node: the user's SQLite database.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Arc<Database>,
    /// Snapshots built and installed, for `/metrics`.
    stats: Arc<SnapshotStats>,
}

impl StateMachine {
    /// Opens `data_dir/db.sqlite` and `data_dir/snapshot/`.
    ///
    /// # Errors
    ///
    /// [`OpenError`], naming the file that cannot be opened.
    pub fn open(data_dir: &std::path::Path) -> Result<StateMachine, OpenError> {
        Ok(StateMachine {
            store: Database::open(data_dir).map_err(OpenError)?,
            stats: Arc::default(),
        })
    }

    pub(crate) fn store(&self) -> &Arc<Database> {
        &self.store
    }

    /// Its snapshot counters.
    pub(crate) fn snapshot_stats(&self) -> Arc<SnapshotStats> {
        Arc::clone(&self.stats)
    }
}

/// Builds a snapshot of the state machine as it is when `build_snapshot` runs.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Arc<Database>,
    stats: Arc<SnapshotStats>,
}

/// A snapshot of an already open file (opened where the file cannot vanish first).
fn snapshot_of(meta: Meta, file: std::fs::File) -> Snapshot<TypeConfig> {
    Snapshot {
        meta,
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let store = Arc::clone(&self.store);
        let start = std::time::Instant::now();
        let (meta, file) = blocking(move || store.build_snapshot())
            .await
            .map_err(|e| snap_err(None, e))?;
        self.stats.seconds.observe(start.elapsed());
        self.stats.built.fetch_add(1, Ordering::Relaxed);
        if let Ok(m) = file.metadata() {
            self.stats.bytes.store(m.len(), Ordering::Relaxed);
        }
        Ok(snapshot_of(meta, file))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<AppliedState> {
        let store = Arc::clone(&self.store);
        blocking(move || store.applied_state())
            .await
            .map_err(sm_read)
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let store = Arc::clone(&self.store);
        blocking(move || store.apply(&entries))
            .await
            .map_err(sm_write)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: Arc::clone(&self.store),
            stats: Arc::clone(&self.stats),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        let path = self.store.receiving_path();
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(None, format!("{}: {e}", path.display())))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        self.store
            .install_snapshot(meta.clone(), &mut snapshot)
            .await
            .map_err(|e| snap_err(Some(meta), e))?;
        self.stats.installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let store = Arc::clone(&self.store);
        let current = blocking(move || store.open_current_snapshot())
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::read_snapshot(None, AnyError::error(e)))
            })?;
        Ok(current.map(|(meta, file)| snapshot_of(meta, file)))
    }
}
