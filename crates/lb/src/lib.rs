//! webfarm's load balancer role: an HTTP and TCP reverse proxy with HAProxy's semantics
//! and words. `crates/lb/DESIGN.md` maps the modules and the decisions.
//!
//! An lb node listens on every **frontend** of the farm (at its own address) and sends each
//! request (HTTP mode) or connection (TCP mode) to a **server** of the frontend's
//! **backend**:
//!
//! - **Balancing** (`balance`): `roundrobin` (smooth weighted), `static-rr`, `leastconn`,
//!   `first`, `source`, `uri`, `hdr(name)` (with `hash_type` `map-based` or `consistent`),
//!   `random(N)`. Weights change at run time; `slowstart` ramps a returning server up.
//! - **Servers**: `backup` (with `allbackups`), `maxconn` with a first-come-first-served
//!   backend queue (`timeout queue`, then 503), `disabled`, admin states ready/drain/maint.
//! - **Health**: active HTTP or TCP checks with `inter`, `fastinter`, `downinter`, `rise`,
//!   `fall`, `timeout`; passive health (`observe`, `error_limit`, `on_error`); every state
//!   change logged with its reason.
//! - **Retries**: `retries`, `redispatch`, `retry_on`; a request whose bytes reached a
//!   server is sent again only if idempotent and bodiless; `http-reuse safe`.
//! - **Sticky sessions**: `cookie = { name, insert }`.
//! - **Connections**: keep-alive HTTP/1.1, WebSocket upgrades and HTTP/2 prior knowledge
//!   from clients; a pool of keep-alive HTTP/1.1 connections per server. Bodies are
//!   streamed both ways, never buffered whole. Limits: `maxconn` (global and per
//!   frontend), `timeout client|http_request|http_keep_alive`, `max_header_size`,
//!   `max_body_size`.
//! - **Headers**: hop-by-hop headers removed both ways; `Forwarded`, `X-Forwarded-For`,
//!   `X-Forwarded-Proto: http` and `X-Request-Id` (kept if valid, else generated) added.
//! - **Errors**: `503` with `Retry-After: 1` when no server is up or the queue timed out,
//!   `502` when a server fails mid-way, `504` when it sends no response head in time,
//!   `400`/`408`/`413`/`431` for bad or slow clients; each with a one-line reason.
//! - **Access log**: one line per request, HAProxy's format or JSON (target `access`).
//! - **Access control** ([`acl`]): ACLs, `tcp-request connection` rules at accept,
//!   `http-request` rules (deny, tarpit, redirect) before a server is chosen, stick-table
//!   rate limits (`track-sc0 src`, `http_req_rate`, `conn_rate`, `conn_cur`).
//! - **TLS and ACME**: HTTPS frontends (SNI, ALPN, certificates swapped without a restart);
//!   with `[acme]` the first lb node obtains and renews the site certificate from an RFC
//!   8555 CA, answering the http-01 challenges itself on every HTTP frontend.
//! - **Run-time control**: [`LbNode::admin_routes`] (`/lb/servers`, weights, states,
//!   `/lb/reload`) and [`LbControl::reload`] (SIGHUP).
//!
//! ```no_run
//! use std::sync::Arc;
//! use webfarm_config::Farm;
//! use webfarm_node::{NodeContext, Shutdown};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let farm = Arc::new(Farm::builtin());
//! let node = farm.node("lb-1").cloned().ok_or("no node lb-1")?;
//! let (trigger, shutdown) = Shutdown::new();
//! let ctx = NodeContext { data_dir: farm.node_data_dir(&node.name), farm, node, shutdown, auth: Default::default() };
//! let lb = webfarm_lb::LbNode::start(ctx).await?;
//! let health = lb.health(); // for webfarm_node::admin::serve
//! assert!(health.ready().is_ok());
//! trigger.trigger();
//! lb.wait().await?; // in-flight requests finished
//! # Ok(()) }
//! ```

mod access_log;
pub mod acl;
mod acme;
mod attempt;
mod backend;
mod control;
mod frontend;
mod http;
mod metrics;
mod tcp;
mod termination;
mod vips;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use tokio::task::JoinHandle;
use webfarm_config::Role;
use webfarm_node::{BindError, Health, NodeContext, Shutdown};

use crate::backend::pool::PoolLimits;
use crate::control::live::{reap_period, LiveConfig};
use crate::control::status::LbHealth;

pub use crate::acme::AcmeError;
pub use crate::backend::pool::{BoxError, ProxyBody};
pub use crate::backend::server::AdminState;
pub use crate::control::reload::{ReloadError, ReloadSummary};
/// The request-head checks without a listener, for the fuzz targets (`fuzz/`); not part of
/// the lb's API.
#[doc(hidden)]
pub use crate::http::fuzzing;

/// Why a load balancer node could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The node given to [`LbNode::start`] is not a load balancer.
    #[error("node {node:?} has role {role}, not lb; start it with the {role} role instead")]
    NotLb {
        /// The node's name.
        node: String,
        /// Its role.
        role: Role,
    },
    /// The farm's site name cannot be a `Host` header.
    #[error("site {site:?} is not a valid Host header value; fix `site` in the farm file")]
    BadSite {
        /// The site name.
        site: String,
    },
    /// A frontend could not listen (address in use, not local...).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The event-loop threads (`[lb] threads`) could not be started.
    #[error("cannot start {threads} lb thread(s): {message}; lower [lb] threads")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// The system's error.
        message: String,
    },
    /// A TLS frontend's certificate cannot be used (the error names the file).
    #[error("TLS: {0}")]
    Tls(#[from] webfarm_tls::TlsError),
    /// The ACME client cannot start (`[acme] ca_file`, no trusted roots).
    #[error("ACME: {0}")]
    Acme(#[from] AcmeError),
    /// VRRP (`[[vrrp]]`) cannot run: a capability, the interface, the UDP port.
    #[error(transparent)]
    Vrrp(#[from] webfarm_vrrp::VrrpError),
    /// A task of the node panicked or was cancelled.
    #[error("the {what} task of the load balancer ended abnormally: {message}")]
    Task {
        /// Which task: `frontend www`, `health check web/web-1`...
        what: String,
        /// The panic message or cancellation.
        message: String,
    },
}

/// Tuning of a load balancer node that the topology file does not carry.
/// [`LbOptions::default`] is what [`LbNode::start`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbOptions {
    /// Idle upstream connections kept per server, shared out evenly among the node's
    /// event-loop threads (each keeps at least one). Default 64.
    pub max_idle_per_server: usize,
    /// Idle upstream connections older than this are closed. Default 30s.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it cuts them. Default 30s.
    pub grace_period: Duration,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions {
            max_idle_per_server: 64,
            idle_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(30),
        }
    }
}

/// Loads and checks every TLS frontend's certificates of `farm` as [`LbNode::start`] does
/// (files readable, key matching, the site name covered), so that a command can refuse to
/// start anything when one is bad. Expired certificates only warn.
///
/// # Errors
///
/// The first certificate that cannot be used, naming its file.
pub fn check_certificates(farm: &webfarm_config::Farm) -> Result<(), webfarm_tls::TlsError> {
    frontend::tls::TlsFrontends::load(farm).map(|_| ())
}

/// A handle on a running node's configuration, for signals and admin commands.
#[derive(Debug, Clone)]
pub struct LbControl(Arc<LiveConfig>);

impl LbControl {
    /// Re-reads the topology file the node was started with and applies it without
    /// dropping requests in flight or idle keep-alive connections. Blocking (reads a file):
    /// call it from a blocking context (`spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`ReloadError`]: the built-in farm, an invalid file, or a change that needs a
    /// restart (frontends, this node's address, the number of `[lb] threads`, `[acme]`).
    /// The running configuration is kept.
    pub fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.0.reload()
    }
}

/// A running load balancer node.
#[derive(Debug)]
pub struct LbNode {
    live: Arc<LiveConfig>,
    health: Arc<LbHealth>,
    addrs: Vec<(String, SocketAddr)>,
    frontends: Vec<(String, JoinHandle<()>)>,
    reaper: JoinHandle<()>,
    /// The ACME renewal loop, on the node that orders (`[acme]`).
    acme: Option<JoinHandle<()>>,
    /// VRRP: the task that leaves the virtual routers at shutdown, and the VIP listeners.
    vrrp: Option<(JoinHandle<()>, Arc<vips::LbVips>)>,
}

impl LbNode {
    /// Binds every frontend on the node's address, then starts serving and checking, with
    /// [`LbOptions::default`].
    ///
    /// # Errors
    ///
    /// [`LbError::NotLb`] if `ctx.node` is not an lb node, [`LbError::BadSite`] for a site
    /// name that is no valid `Host`, [`LbError::Tls`] for a certificate that cannot be used,
    /// [`LbError::Acme`] for an unusable `[acme] ca_file` (or no trusted root),
    /// [`LbError::Bind`] if a frontend port cannot be bound, [`LbError::Threads`] if the
    /// event-loop threads cannot be started (nothing is left running then).
    pub async fn start(ctx: NodeContext) -> Result<LbNode, LbError> {
        LbNode::start_with(ctx, LbOptions::default()).await
    }

    /// As [`LbNode::start`], with explicit `options`.
    ///
    /// # Errors
    ///
    /// As [`LbNode::start`].
    pub async fn start_with(ctx: NodeContext, options: LbOptions) -> Result<LbNode, LbError> {
        if ctx.node.role != Role::Lb {
            return Err(LbError::NotLb {
                node: ctx.node.name.clone(),
                role: ctx.node.role,
            });
        }
        let site = HeaderValue::from_str(&ctx.farm.site).map_err(|_| LbError::BadSite {
            site: ctx.farm.site.clone(),
        })?;
        let threads = control::live::thread_count(ctx.farm.lb.threads);
        let limits = PoolLimits {
            max_idle: options.max_idle_per_server.div_ceil(threads).max(1),
            idle_timeout: options.idle_timeout,
            shards: threads,
        };

        // Certificates first: a bad file stops the node before it binds anything.
        let tls = frontend::tls::TlsFrontends::load(&ctx.farm)?;
        // The node's certificate is needed only to reach the farm's own web nodes.
        let to_nodes = ctx.farm.nodes_with_role(Role::Web).next().is_some();
        let upstream_tls = match to_nodes {
            true => webfarm_node::tls::identity(&ctx.farm, &ctx.node.name)?,
            false => None,
        }
        .map(|id| tokio_rustls::TlsConnector::from(id.client));
        let challenges = Arc::new(acme::Challenges::new(ctx.farm.acme.is_some()));
        let acme = acme::prepare(&ctx.farm, &ctx.node.name)?;
        // Bind everything before starting anything, so "address in use" leaves no task behind.
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for (index, f) in ctx.farm.frontends.iter().enumerate() {
            let addr = SocketAddr::new(ctx.node.address, f.port);
            let what = format!("frontend {}", f.name);
            let listener = webfarm_node::bind(addr, &what).await?;
            let local = listener.local_addr().unwrap_or(addr);
            // The event-loop threads register their own clones of the socket.
            let listener = listener.into_std().map_err(|source| BindError {
                addr,
                what: what.clone(),
                source,
            })?;
            listeners.push((index, listener));
            addrs.push((f.name.clone(), local));
        }

        let live = Arc::new(LiveConfig::new(
            ctx.farm.clone(),
            ctx.node.clone(),
            site,
            limits,
            ctx.shutdown.clone(),
            (tls, upstream_tls),
            challenges.clone(),
        ));
        // VRRP before the event loops: a missing capability stops the node here.
        let vrrp = match vips::spec(&ctx.farm, &ctx.node) {
            Some(spec) => {
                let grace = options.grace_period;
                let holder = Arc::new(vips::LbVips::new(
                    live.clone(),
                    ctx.node.address,
                    ctx.shutdown.clone(),
                    grace,
                ));
                let routers = webfarm_vrrp::Vrrp::start(spec, holder.clone()).await?;
                Some((routers, holder))
            }
            None => None,
        };
        let snap = live.snapshot();
        for (index, (name, local)) in addrs.iter().enumerate() {
            if let Some(f) = snap.frontends.get(index) {
                let sni = match f.config.sni_routes.len() {
                    0 => String::new(),
                    n => format!(
                        ", {n} SNI route(s) (inspect_delay {:?})",
                        f.config.inspect_delay
                    ),
                };
                tracing::info!(
                    "frontend {name} listening on {local} (mode {}), default_backend {}{sni}, \
                     {threads} thread(s)",
                    f.config.mode.as_str(),
                    f.backend.name()
                );
            }
        }
        let started = frontend::workers::start(
            threads,
            &listeners,
            &live,
            &ctx.shutdown,
            options.grace_period,
        )
        .await;
        let started = match (started, vrrp) {
            (Ok(s), vrrp) => (s, vrrp),
            (Err(e), vrrp) => {
                if let Some((routers, _)) = vrrp {
                    routers.shutdown().await;
                }
                return Err(LbError::Threads {
                    threads,
                    message: e.to_string(),
                });
            }
        };
        let (started, vrrp) = started;
        let view = vrrp.as_ref().map(|(routers, _)| routers.view());
        let vrrp = vrrp.map(|(routers, holder)| {
            let stop = ctx.shutdown.clone();
            let leave = tokio::spawn(async move {
                stop.wait().await;
                routers.shutdown().await;
            });
            (leave, holder)
        });
        let frontends = started
            .into_iter()
            .enumerate()
            .map(|(k, task)| (format!("lb-worker-{k}"), task))
            .collect();
        drop(listeners);
        live.sync_checks();
        let reaper = tokio::spawn(reap_idle(live.clone(), ctx.shutdown.clone()));
        if live.tls.by_index.iter().any(Option::is_some) {
            let watched = live.clone();
            tokio::spawn(frontend::tls::watch(
                live.tls.clone(),
                move || watched.snapshot().farm.clone(),
                ctx.shutdown.clone(),
            ));
        }
        // Last, once every frontend answers: the first order's challenges come at once.
        let acme = acme.map(|a| a.spawn(challenges, ctx.shutdown.clone()));
        Ok(LbNode {
            health: Arc::new(LbHealth {
                live: live.clone(),
                vrrp: view,
            }),
            live,
            addrs,
            frontends,
            reaper,
            acme,
            vrrp,
        })
    }

    /// Readiness and status for the admin server (`/readyz`, `/status`).
    pub fn health(&self) -> Arc<dyn Health> {
        self.health.clone()
    }

    /// The run-time control routes (`/lb/servers`, `/lb/servers/{b}/{s}/weight|state`,
    /// `/lb/reload`), to serve on the node's admin address beside `/status`.
    pub fn admin_routes(&self) -> axum::Router {
        control::admin::routes(self.live.clone())
    }

    /// A handle to reload the configuration (on SIGHUP).
    pub fn control(&self) -> LbControl {
        LbControl(self.live.clone())
    }

    /// Every frontend's name and the address it listens on.
    pub fn frontend_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Returns once the node's shutdown signal fired and the node stopped: listeners
    /// closed, in-flight requests finished (or cut after the grace period), health checks
    /// stopped, idle upstream connections closed.
    ///
    /// # Errors
    ///
    /// [`LbError::Task`] if a task panicked; the other tasks are still waited for.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future detaches the remaining tasks.
    pub async fn wait(self) -> Result<(), LbError> {
        let mut first_error = None;
        let mut record = |what: String, e: tokio::task::JoinError| {
            tracing::error!("the {what} task ended abnormally: {e}");
            first_error.get_or_insert(LbError::Task {
                what,
                message: e.to_string(),
            });
        };
        for (what, task) in self.frontends {
            if let Err(e) = task.await {
                record(what, e);
            }
        }
        if let Some((leave, holder)) = self.vrrp {
            if let Err(e) = leave.await {
                record("VRRP".into(), e);
            }
            for task in holder.take_tasks() {
                if let Err(e) = task.await {
                    record("VIP frontend".into(), e);
                }
            }
        }
        if let Err(e) = self.reaper.await {
            record("idle connection reaper".into(), e);
        }
        if let Some(acme) = self.acme {
            if let Err(e) = acme.await {
                record("ACME renewal".into(), e);
            }
        }
        // Check tasks end with the shutdown signal; a reload may still have started some
        // while the frontends drained, so take them last.
        for (what, task) in self.live.take_checks() {
            if let Err(e) = task.await {
                if !e.is_cancelled() {
                    record(what, e);
                }
            }
        }
        for b in &self.live.snapshot().backends {
            b.close_idle();
        }
        tracing::info!("load balancer stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// Closes expired idle upstream connections and drops expired stick-table entries until
/// shutdown.
async fn reap_idle(live: Arc<LiveConfig>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(reap_period(live.limits().idle_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                let snap = live.snapshot();
                for b in &snap.backends {
                    b.reap_idle();
                }
                // Expired stick-table entries give their memory back.
                for t in snap.frontends.iter().filter_map(|f| f.table.as_ref()) {
                    t.purge();
                }
            }
        }
    }
}
