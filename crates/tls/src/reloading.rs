//! Values built from files and built again when the files change, looked at on use and at
//! most once a second: what lets a node refuse a peer revoked a moment ago, and present
//! its own renewed certificate, without a restart and without a watcher task.
//!
//! The check is a `stat` of each file (modification time and length) when a second has
//! passed since the last one; a handshake otherwise pays one uncontended lock. When the
//! files changed but the value cannot be built (a half-written pair, a bad CRL), the
//! previous value is kept and the failure logged; the next check tries again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::TlsError;

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

type Build<T> = Box<dyn Fn() -> Result<Arc<T>, TlsError> + Send + Sync>;

/// A value of type `T` built by a function from `paths`.
pub(crate) struct Reloading<T: ?Sized> {
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<State<T>>,
}

struct State<T: ?Sized> {
    checked: Instant,
    stamps: Vec<Stamp>,
    current: Arc<T>,
}

/// What a change of a file is seen by: its modification time and length, or absence.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

impl<T: ?Sized> Reloading<T> {
    /// Builds the value now (`what` names it in the log).
    ///
    /// # Errors
    ///
    /// What `build` returns: at start a value that cannot be built is an error.
    pub(crate) fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<Arc<T>, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let before = stamps(&paths);
        let current = build()?;
        Ok(Reloading {
            what,
            paths,
            build: Box::new(build),
            state: Mutex::new(State {
                checked: Instant::now(),
                stamps: before,
                current,
            }),
        })
    }

    /// The value, built again first if a second has passed since the last look and a file
    /// changed.
    pub(crate) fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamps(&self.paths);
            if now != state.stamps {
                match (self.build)() {
                    Ok(value) => {
                        tracing::info!("{}: reloaded", self.what);
                        state.current = value;
                        state.stamps = now;
                    }
                    Err(e) => {
                        tracing::warn!("{}: changed but kept the previous one: {e}", self.what);
                    }
                }
            }
        }
        state.current.clone()
    }
}

impl<T: ?Sized> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}
