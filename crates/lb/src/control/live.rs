//! The load balancer's live configuration: one immutable [`Snapshot`] (farm, frontends,
//! backends with their servers, reload generation) published through `ArcSwap`, read once
//! per request, and replaced whole by a hot reload (`super::reload`). Also owns the
//! health-check tasks, started and stopped to match the current snapshot, and the client
//! connection counts (`maxconn`).
//!
//! A reload builds new backends from the file; a server whose name and options are
//! unchanged is carried over as is (the same state, counters, check task and idle
//! connections), so requests in flight and idle keep-alive connections survive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::task::JoinHandle;
use webfarm_config::{Check, Farm, Frontend, Node, MAX_LB_THREADS};
use webfarm_node::Shutdown;

use crate::acl::{StickTable, Tracked};
use crate::acme::Challenges;
use crate::backend::check::{self, BackendLookup};
use crate::backend::pool::PoolLimits;
use crate::backend::server::ServerState;
use crate::backend::BackendState;
use crate::frontend::tls::TlsFrontends;
use crate::metrics::FrontendMetrics;
use tokio_rustls::TlsConnector;

/// How many event-loop threads `[lb] threads = configured` means: `configured`, or one per
/// CPU this process may run on when 0, at most [`MAX_LB_THREADS`].
pub(crate) fn thread_count(configured: u16) -> usize {
    let n = match configured {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => usize::from(n),
    };
    n.min(usize::from(MAX_LB_THREADS))
}

/// One frontend as the current snapshot sees it.
#[derive(Debug)]
pub(crate) struct LiveFrontend {
    /// Its configuration.
    pub config: Frontend,
    /// Its backend.
    pub backend: Arc<BackendState>,
    /// `Strict-Transport-Security` of its HTTPS answers (`tls.hsts`).
    pub hsts: Option<HeaderValue>,
    /// Its stick table (`stick_table`), kept over a reload that leaves the table's
    /// settings as they were.
    pub table: Option<Arc<StickTable>>,
}

/// Everything a request reads, as of the last (re)load.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The farm it was built from.
    pub farm: Arc<Farm>,
    /// `Host` for requests without one: the site's name.
    pub site: HeaderValue,
    /// The frontends, in file order (the same names and ports as at start).
    pub frontends: Vec<LiveFrontend>,
    /// Every backend, in file order.
    pub backends: Vec<Arc<BackendState>>,
    /// The reload generation: 0 as started, one more with each applied reload.
    pub generation: u64,
}

impl Snapshot {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<BackendState>> {
        self.backends.iter().find(|b| b.name() == name)
    }
}

struct CheckTask {
    server: Arc<ServerState>,
    check: Check,
    handle: JoinHandle<()>,
}

/// The live configuration and the tasks that follow it.
pub(crate) struct LiveConfig {
    pub(super) snapshot: ArcSwap<Snapshot>,
    /// This node.
    pub node: Node,
    pub(super) limits: PoolLimits,
    shutdown: Shutdown,
    checks: Mutex<HashMap<(String, String), CheckTask>>,
    /// Serializes reloads.
    pub(super) reload_lock: Mutex<()>,
    /// Reloads refused since the start (invalid file, change that needs a restart): with
    /// the snapshot's generation, what tells an operator (or a test) that a reload was
    /// processed.
    pub reloads_refused: AtomicU64,
    /// Client connections open now, over every frontend.
    pub conns: AtomicUsize,
    /// Client connections open now, per frontend (same order as the snapshot's).
    pub frontend_conns: Vec<AtomicUsize>,
    /// Each frontend's counters for `/metrics` (same order; frontends never change on a
    /// reload).
    pub frontend_metrics: Vec<Arc<FrontendMetrics>>,
    /// The TLS frontends' certificates and acceptors.
    pub tls: Arc<TlsFrontends>,
    /// Internal TLS to the farm's web nodes (this node's certificate), if on.
    pub(super) upstream_tls: Option<TlsConnector>,
    /// The pending ACME http-01 challenges, answered on every HTTP frontend.
    pub challenges: Arc<Challenges>,
    /// The farm CA's CRL (`<data_dir>/ca/ca.crl`), published on every HTTP frontend at
    /// [`webfarm_tls::revoke::CRL_PATH`].
    pub crl_file: std::path::PathBuf,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("node", &self.node.name)
            .field("conns", &self.conns)
            .finish_non_exhaustive()
    }
}

impl BackendLookup for LiveConfig {
    fn backend(&self, name: &str) -> Option<Arc<BackendState>> {
        self.snapshot.load().backend(name).cloned()
    }
}

/// Builds the snapshot of `farm`, carrying servers over from `previous` (and counting
/// one more generation than it).
pub(super) fn build(
    farm: Arc<Farm>,
    site: HeaderValue,
    (limits, tls): (PoolLimits, Option<&TlsConnector>),
    previous: Option<&Snapshot>,
) -> Snapshot {
    let backends: Vec<Arc<BackendState>> = farm
        .backends
        .iter()
        .map(|b| {
            let old = previous.and_then(|p| p.backend(&b.name)).map(|o| &**o);
            Arc::new(BackendState::new(b, limits, old, tls))
        })
        .collect();
    let frontends = farm
        .frontends
        .iter()
        .filter_map(|f| {
            let old = previous.and_then(|p| p.frontends.iter().find(|o| o.config.name == f.name));
            Some(LiveFrontend {
                table: stick_table(f, old),
                config: f.clone(),
                backend: backends.get(f.default_backend)?.clone(),
                hsts: f.tls.as_ref().and_then(|t| t.hsts).and_then(|max_age| {
                    HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).ok()
                }),
            })
        })
        .collect();
    Snapshot {
        farm,
        site,
        frontends,
        backends,
        generation: previous.map_or(0, |p| p.generation + 1),
    }
}

/// The stick table of frontend `f`: the `old` frontend's when its settings are the same
/// (its counters go on), a new one otherwise.
fn stick_table(f: &Frontend, old: Option<&LiveFrontend>) -> Option<Arc<StickTable>> {
    let spec = f.rules.stick_table.as_ref()?;
    let kept = old
        .and_then(|o| o.table.as_ref())
        .filter(|t| t.spec() == spec);
    Some(
        kept.cloned()
            .unwrap_or_else(|| Arc::new(StickTable::new(spec.clone()))),
    )
}

impl LiveConfig {
    /// The live configuration of `farm` for `node`; no task is started until [`LiveConfig::sync_checks`].
    pub fn new(
        farm: Arc<Farm>,
        node: Node,
        site: HeaderValue,
        limits: PoolLimits,
        shutdown: Shutdown,
        (tls, upstream_tls): (TlsFrontends, Option<TlsConnector>),
        challenges: Arc<Challenges>,
    ) -> LiveConfig {
        let crl_file = webfarm_tls::ca::Layout::of_data_dir(&farm.data_dir).crl();
        let snapshot = build(farm, site, (limits, upstream_tls.as_ref()), None);
        let frontend_conns = snapshot
            .frontends
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect();
        let frontend_metrics = snapshot.frontends.iter().map(|_| Arc::default()).collect();
        LiveConfig {
            snapshot: ArcSwap::from_pointee(snapshot),
            node,
            limits,
            shutdown,
            checks: Mutex::new(HashMap::new()),
            reload_lock: Mutex::new(()),
            reloads_refused: AtomicU64::new(0),
            conns: AtomicUsize::new(0),
            frontend_conns,
            frontend_metrics,
            tls: Arc::new(tls),
            upstream_tls,
            challenges,
            crl_file,
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
            let n = u32::try_from(b.servers.len()).unwrap_or(u32::MAX).max(1);
            for (i, srv) in b.servers.iter().enumerate() {
                let key = (b.name().to_string(), srv.state.name().to_string());
                let keep = checks.remove(&key).and_then(|t| {
                    let same = Arc::ptr_eq(&t.server, &srv.state)
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
                        server: srv.state.clone(),
                        check: b.config.check.clone(),
                        handle: tokio::spawn(check::run(
                            lookup,
                            b.name().to_string(),
                            srv.state.clone(),
                            b.config.check.clone(),
                            (site.clone(), srv.pool.tls().cloned()),
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

    /// How long a connection to a server may stay idle, and how many are kept.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Counts one client connection on frontend `index` if both the frontend's `maxconn`
    /// and the global `[lb] maxconn` allow it; the slot holds `sc0`, the connection's
    /// tracked stick-table entry, until it closes.
    pub fn admit(self: &Arc<Self>, index: usize, sc0: Option<Tracked>) -> Option<ConnSlot> {
        let snap = self.snapshot.load();
        let fe_max = snap.frontends.get(index).map_or(0, |f| f.config.maxconn);
        let global_max = snap.farm.lb.maxconn;
        let fe = self.frontend_conns.get(index)?;
        let taken = fe.fetch_add(1, Ordering::AcqRel);
        let global = self.conns.fetch_add(1, Ordering::AcqRel);
        let mut slot = ConnSlot {
            live: self.clone(),
            index,
            sc0,
        };
        if (fe_max != 0 && taken >= fe_max as usize) || global >= global_max as usize {
            // A refused connection does not count in its tracked entry's connection rate.
            if let Some(t) = slot.sc0.take() {
                t.refused();
            }
            return None; // `slot` drops here and gives both counts back.
        }
        if let Some(m) = self.frontend_metrics.get(index) {
            m.sessions.fetch_add(1, Ordering::Relaxed);
        }
        Some(slot)
    }
}

/// One admitted client connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    live: Arc<LiveConfig>,
    index: usize,
    /// The stick-table entry a `tcp-request connection track-sc0` rule tracks for the
    /// connection's whole life.
    pub sc0: Option<Tracked>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.live.conns.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = self.live.frontend_conns.get(self.index) {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How often idle upstream connections are reaped: `idle_timeout / 4`, within 100ms..10s.
pub(crate) fn reap_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
}
