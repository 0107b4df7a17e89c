//! The `messages` table: created once the database answers, the readiness it gives, and the
//! Raft log index of its creation, below which no read may be served (a replica that has not
//! applied it has no table yet).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::OnceCell;
use webfarm_node::Shutdown;

use crate::store::{MessageStore, StoreError};

/// Pause between two rounds of schema creation; each round already retries for `db_timeout`.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Whether the schema exists (and at which Raft log index), and why not yet.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    created: OnceCell<u64>,
    last_error: ArcSwapOption<String>,
}

impl Schema {
    /// Creates the table unless this node already did; returns the Raft log index of the
    /// creation. Concurrent callers wait for the one attempt in progress; after a failure the
    /// next caller tries again.
    ///
    /// # Errors
    ///
    /// The store's error (also remembered for [`Schema::ready`]).
    pub(crate) async fn ensure<S: MessageStore>(&self, store: &S) -> Result<u64, StoreError> {
        match self.created.get_or_try_init(|| store.create_schema()).await {
            Ok(&index) => Ok(index),
            Err(e) => {
                self.last_error.store(Some(Arc::new(e.to_string())));
                Err(e)
            }
        }
    }

    /// `Ok` once the table was created (the database was reachable).
    pub(crate) fn ready(&self) -> Result<(), String> {
        if self.created.initialized() {
            return Ok(());
        }
        let why = self.last_error.load_full();
        Err(format!(
            "database not reachable yet: {}",
            why.as_deref().map_or("creating the schema", String::as_str)
        ))
    }

    /// Tries until the table exists or `shutdown` fires.
    pub(crate) async fn create_until_done<S: MessageStore>(
        self: Arc<Self>,
        store: S,
        shutdown: Shutdown,
    ) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                r = self.ensure(&store) => match r {
                    Ok(index) => {
                        tracing::info!(raft_index = index, "schema ready: the database is reachable");
                        return;
                    }
                    Err(e) if e.is_unavailable() => tracing::warn!("creating the schema: {e}"),
                    Err(e) => tracing::error!("creating the schema: {e}"),
                },
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
    }
}

/// The `min_index` of a read: the newer of the browser's last write (`cookie`) and the
/// table's creation (`schema`).
pub(crate) fn read_index(cookie: Option<u64>, schema: u64) -> Option<u64> {
    match cookie {
        Some(c) => Some(c.max(schema)),
        None if schema > 0 => Some(schema),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::read_index;

    #[test]
    fn reads_wait_for_the_table_and_the_browsers_write() {
        assert_eq!(read_index(None, 0), None);
        assert_eq!(read_index(None, 4), Some(4));
        assert_eq!(read_index(Some(9), 4), Some(9));
        assert_eq!(read_index(Some(2), 4), Some(4));
    }
}
