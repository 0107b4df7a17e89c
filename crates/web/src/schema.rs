//! The `messages` table: created once the database answers, and the readiness it gives.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::OnceCell;
use webfarm_node::Shutdown;

use crate::store::{MessageStore, StoreError};

/// Pause between two rounds of schema creation; each round already retries for `db_timeout`.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Whether the schema exists, and why not yet.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    created: OnceCell<()>,
    last_error: ArcSwapOption<String>,
}

impl Schema {
    /// Creates the table unless this node already did. Concurrent callers wait for the one
    /// attempt in progress; after a failure the next caller tries again.
    ///
    /// # Errors
    ///
    /// The store's error (also remembered for [`Schema::ready`]).
    pub(crate) async fn ensure<S: MessageStore>(&self, store: &S) -> Result<(), StoreError> {
        match self.created.get_or_try_init(|| store.create_schema()).await {
            Ok(&()) => Ok(()),
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
                    Ok(()) => {
                        tracing::info!("schema ready: the database is reachable");
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
