//! The load balancer's live configuration: one immutable [`Snapshot`] (farm, frontends,
//! backends with their servers) published through `ArcSwap`, read once per request, and
//! replaced whole by a hot reload. Also owns the health-check tasks, started and stopped to
//! match the current snapshot.
//!
//! A reload builds new backends from the file; a server whose name and options are
//! unchanged is carried over as is (the same state, counters, check task and idle
//! connections), so requests in flight and idle keep-alive connections survive.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::task::JoinHandle;
use webfarm_config::{Check, ConfigError, Farm, Frontend, Node, Role};
use webfarm_node::Shutdown;

use crate::backend::BackendState;
use crate::check::{self, BackendLookup};
use crate::headers::RequestIds;
use crate::pool::PoolLimits;
use crate::server::ServerState;

/// One frontend as the current snapshot sees it.
#[derive(Debug)]
pub(crate) struct FrontendRt {
    /// Its configuration.
    pub config: Frontend,
    /// Its backend.
    pub backend: Arc<BackendState>,
}

/// Everything a request reads, as of the last (re)load.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The farm it was built from.
    pub farm: Arc<Farm>,
    /// `Host` for requests without one: the site's name.
    pub site: HeaderValue,
    /// The frontends, in file order (the same names and ports as at start).
    pub frontends: Vec<FrontendRt>,
    /// Every backend, in file order.
    pub backends: Vec<Arc<BackendState>>,
}

impl Snapshot {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<BackendState>> {
        self.backends.iter().find(|b| b.name() == name)
    }
}

/// Why a reload was refused; the running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The node runs the built-in farm, which cannot change.
    #[error(
        "this node runs the built-in farm, which cannot change; start it with --config FILE \
         to reload from a file"
    )]
    BuiltIn,
    /// The file is invalid.
    #[error("the new configuration is invalid, keeping the running one: {0}")]
    Config(#[from] ConfigError),
    /// The file is valid but cannot be applied without a restart.
    #[error("cannot apply {file} without a restart, keeping the running configuration: {reason}")]
    NeedsRestart {
        /// The file.
        file: PathBuf,
        /// What changed.
        reason: String,
    },
}

/// What a reload changed, for logs and the admin answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The file read.
    pub file: PathBuf,
    /// Backends that did not exist before.
    pub backends_added: Vec<String>,
    /// Backends that are gone.
    pub backends_removed: Vec<String>,
    /// `backend/server` of servers that are new or whose options changed.
    pub servers_added: Vec<String>,
    /// `backend/server` of servers that are gone (or replaced).
    pub servers_removed: Vec<String>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "reloaded {}: backends added: {}; removed: {}; servers added: {}; removed: {}",
            self.file.display(),
            list(&self.backends_added),
            list(&self.backends_removed),
            list(&self.servers_added),
            list(&self.servers_removed)
        )
    }
}

struct CheckTask {
    server: Arc<ServerState>,
    check: Check,
    handle: JoinHandle<()>,
}

/// The live configuration and the tasks that follow it.
pub(crate) struct Runtime {
    snapshot: ArcSwap<Snapshot>,
    /// This node.
    pub node: Node,
    limits: PoolLimits,
    shutdown: Shutdown,
    checks: Mutex<HashMap<(String, String), CheckTask>>,
    reload_lock: Mutex<()>,
    /// Request id generator shared by every frontend.
    pub ids: RequestIds,
    /// Client connections open now, over every frontend.
    pub conns: AtomicUsize,
    /// Client connections open now, per frontend (same order as the snapshot's).
    pub frontend_conns: Vec<AtomicUsize>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("node", &self.node.name)
            .field("conns", &self.conns)
            .finish_non_exhaustive()
    }
}

impl BackendLookup for Runtime {
    fn backend(&self, name: &str) -> Option<Arc<BackendState>> {
        self.snapshot.load().backend(name).cloned()
    }
}

/// Builds the snapshot of `farm`, carrying servers over from `previous`.
fn build(
    farm: Arc<Farm>,
    site: HeaderValue,
    limits: PoolLimits,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let backends: Vec<Arc<BackendState>> = farm
        .backends
        .iter()
        .map(|b| {
            let old = previous.and_then(|p| p.backend(&b.name)).map(|o| &**o);
            Arc::new(BackendState::new(b, limits, old))
        })
        .collect();
    let frontends = farm
        .frontends
        .iter()
        .filter_map(|f| {
            Some(FrontendRt {
                config: f.clone(),
                backend: backends.get(f.default_backend)?.clone(),
            })
        })
        .collect();
    Snapshot {
        farm,
        site,
        frontends,
        backends,
    }
}

impl Runtime {
    /// The runtime of `farm` for `node`; no task is started until [`Runtime::sync_checks`].
    pub fn new(
        farm: Arc<Farm>,
        node: Node,
        site: HeaderValue,
        limits: PoolLimits,
        shutdown: Shutdown,
    ) -> Runtime {
        let snapshot = build(farm, site, limits, None);
        let frontend_conns = snapshot
            .frontends
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect();
        Runtime {
            snapshot: ArcSwap::from_pointee(snapshot),
            node,
            limits,
            shutdown,
            checks: Mutex::new(HashMap::new()),
            reload_lock: Mutex::new(()),
            ids: RequestIds::new(),
            conns: AtomicUsize::new(0),
            frontend_conns,
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn checks(&self) -> MutexGuard<'_, HashMap<(String, String), CheckTask>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a check task for every server of the snapshot that has none (or whose server
    /// state or check changed), and stops the tasks of servers that are gone.
    pub fn sync_checks(self: &Arc<Self>) {
        let snap = self.snapshot();
        let site = snap.farm.site.clone();
        let mut checks = self.checks();
        let mut wanted = HashMap::new();
        for b in &snap.backends {
            let n = u32::try_from(b.members.len()).unwrap_or(u32::MAX).max(1);
            for (i, m) in b.members.iter().enumerate() {
                let key = (b.name().to_string(), m.state.name().to_string());
                let keep = checks.remove(&key).and_then(|t| {
                    let same = Arc::ptr_eq(&t.server, &m.state)
                        && t.check == b.config.check
                        && !t.handle.is_finished();
                    if same {
                        Some(t)
                    } else {
                        t.handle.abort();
                        None
                    }
                });
                let task = keep.unwrap_or_else(|| {
                    // Spread the servers' first checks over one interval, as HAProxy does.
                    let offset = b.config.check.inter / n * u32::try_from(i).unwrap_or(0);
                    let lookup: Arc<dyn BackendLookup> = self.clone();
                    CheckTask {
                        server: m.state.clone(),
                        check: b.config.check.clone(),
                        handle: tokio::spawn(check::run(
                            lookup,
                            b.name().to_string(),
                            m.state.clone(),
                            b.config.check.clone(),
                            site.clone(),
                            offset,
                            self.shutdown.clone(),
                        )),
                    }
                });
                wanted.insert(key, task);
            }
        }
        for (_, gone) in checks.drain() {
            gone.handle.abort();
        }
        *checks = wanted;
    }

    /// Takes every check task (to wait for them at shutdown).
    pub fn take_checks(&self) -> Vec<(String, JoinHandle<()>)> {
        self.checks()
            .drain()
            .map(|((b, s), t)| (format!("health check {b}/{s}"), t.handle))
            .collect()
    }

    /// Re-reads the topology file the node was started with and applies it: new and changed
    /// backends, servers, weights and settings take effect for the next request; requests
    /// in flight and idle keep-alive connections are kept. Frontends (names, ports, modes),
    /// this node's own address and the number of `[lb] threads` cannot change without a
    /// restart.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]; the running configuration is then unchanged.
    pub fn reload(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.snapshot();
        let file = old.farm.source.clone().ok_or(ReloadError::BuiltIn)?;
        let mut farm = Farm::load(&file)?;
        // The node keeps the data directory it was started with (`--data-dir`).
        farm.data_dir.clone_from(&old.farm.data_dir);
        let restart = |reason: String| ReloadError::NeedsRestart {
            file: file.clone(),
            reason,
        };
        match farm.node(&self.node.name) {
            Some(n) if n.role == Role::Lb && n.address == self.node.address => {}
            Some(_) => {
                return Err(restart(format!(
                    "node {:?} changed its role or address",
                    self.node.name
                )))
            }
            None => {
                return Err(restart(format!(
                    "node {:?} is no longer in the file",
                    self.node.name
                )))
            }
        }
        let shape = |f: &Farm| -> Vec<(String, u16, &'static str)> {
            f.frontends
                .iter()
                .map(|fe| (fe.name.clone(), fe.port, fe.mode.as_str()))
                .collect()
        };
        if crate::workers::count(farm.lb.threads) != self.limits.shards {
            return Err(restart(
                "[lb] threads changed; restart the node to run the new number of threads".into(),
            ));
        }
        if shape(&farm) != shape(&old.farm) {
            return Err(restart(
                "the frontends changed (added, removed, or a new port or mode); restart the \
                 node to listen on the new set"
                    .into(),
            ));
        }
        let site = HeaderValue::from_str(&farm.site)
            .map_err(|_| restart(format!("site {:?} is not a valid Host", farm.site)))?;
        let snapshot = build(Arc::new(farm), site, self.limits, Some(&old));
        let summary = summarize(file, &old, &snapshot);
        self.snapshot.store(Arc::new(snapshot));
        self.sync_checks();
        tracing::info!("{summary}");
        Ok(summary)
    }

    /// How long a connection to a server may stay idle, and how many are kept.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Counts one client connection on frontend `index` if both the frontend's `maxconn`
    /// and the global `[lb] maxconn` allow it.
    pub fn admit(self: &Arc<Self>, index: usize) -> Option<ConnSlot> {
        let snap = self.snapshot.load();
        let fe_max = snap.frontends.get(index).map_or(0, |f| f.config.maxconn);
        let global_max = snap.farm.lb.maxconn;
        let fe = self.frontend_conns.get(index)?;
        let taken = fe.fetch_add(1, Ordering::AcqRel);
        let global = self.conns.fetch_add(1, Ordering::AcqRel);
        let slot = ConnSlot {
            rt: self.clone(),
            index,
        };
        if (fe_max != 0 && taken >= fe_max as usize) || global >= global_max as usize {
            return None; // `slot` drops here and gives both counts back.
        }
        Some(slot)
    }
}

/// One admitted client connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    rt: Arc<Runtime>,
    index: usize,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.rt.conns.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = self.rt.frontend_conns.get(self.index) {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn summarize(file: PathBuf, old: &Snapshot, new: &Snapshot) -> ReloadSummary {
    let names =
        |s: &Snapshot| -> Vec<String> { s.backends.iter().map(|b| b.name().into()).collect() };
    let (old_b, new_b) = (names(old), names(new));
    let mut summary = ReloadSummary {
        file,
        backends_added: new_b
            .iter()
            .filter(|n| !old_b.contains(n))
            .cloned()
            .collect(),
        backends_removed: old_b
            .iter()
            .filter(|n| !new_b.contains(n))
            .cloned()
            .collect(),
        ..ReloadSummary::default()
    };
    let servers = |s: &Snapshot| -> Vec<Arc<ServerState>> {
        s.backends
            .iter()
            .flat_map(|b| b.members.iter().map(|m| m.state.clone()))
            .collect()
    };
    let (old_s, new_s) = (servers(old), servers(new));
    let kept =
        |s: &Arc<ServerState>, other: &[Arc<ServerState>]| other.iter().any(|o| Arc::ptr_eq(o, s));
    summary.servers_added = new_s
        .iter()
        .filter(|s| !kept(s, &old_s))
        .map(|s| s.id.clone())
        .collect();
    summary.servers_removed = old_s
        .iter()
        .filter(|s| !kept(s, &new_s))
        .map(|s| s.id.clone())
        .collect();
    summary
}

/// How often idle upstream connections are reaped: `idle_timeout / 4`, within 100ms..10s.
pub(crate) fn reap_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
}
