//! webfarm's load balancer role: an HTTP reverse proxy with HAProxy's semantics and words.
//!
//! An lb node listens on every **frontend** of the farm (at its own address) and sends each
//! request to a **server** of the frontend's **backend**:
//!
//! - **Balancing**: `roundrobin`, done as nginx's smooth weighted round robin over the
//!   servers that are up; over `sum(weights)` requests each server gets exactly `weight`.
//! - **Health checks**: every `inter`, `GET <check.path>` with `Host: <site>`; 2xx/3xx
//!   passes. Servers start UP; `fall` consecutive failures take one DOWN, `rise` consecutive
//!   passes bring it back. A refused connection on the request path takes a server DOWN at
//!   once (HAProxy's `observe layer4` + `on-error mark-down`).
//! - **Retries**: a request whose connection failed is sent to another up server, at most
//!   `retries` more times (no byte was sent, so any request is safe to resend); a request
//!   that failed after it was sent is retried only when idempotent and bodiless.
//! - **Connections**: keep-alive HTTP/1.1 (and HTTP/2 prior knowledge) from clients; an
//!   upstream pool of keep-alive HTTP/1.1 connections per server. Bodies are streamed both
//!   ways, never buffered whole.
//! - **Headers**: hop-by-hop headers removed both ways; `X-Forwarded-For`,
//!   `X-Forwarded-Proto: http` and `X-Request-Id` (kept if valid, else generated) added.
//! - **Errors**: `503` with `Retry-After: 1` when no server is up, `502` when a server fails
//!   mid-way, `504` when it sends no response head in time; each with a one-line reason.
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
//! let ctx = NodeContext { data_dir: farm.node_data_dir(&node.name), farm, node, shutdown };
//! let lb = webfarm_lb::LbNode::start(ctx).await?;
//! let health = lb.health(); // for webfarm_node::admin::serve
//! assert!(health.ready().is_ok());
//! trigger.trigger();
//! lb.wait().await?; // in-flight requests finished
//! # Ok(()) }
//! ```

mod backend;
mod balance;
mod body;
mod check;
mod frontend;
mod headers;
mod pool;
mod proxy;
mod server;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::task::JoinHandle;
use webfarm_config::Role;
use webfarm_node::{BindError, Health, NodeContext, Shutdown};

use crate::backend::BackendState;
use crate::headers::RequestIds;
use crate::pool::PoolLimits;
use crate::proxy::Proxy;
use crate::status::LbHealth;

pub use crate::pool::{BoxError, ProxyBody};

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
    /// A task of the node panicked or was cancelled.
    #[error("the {what} task of the load balancer ended abnormally: {message}")]
    Task {
        /// Which task: `frontend www`, `health check web/web-1`...
        what: String,
        /// The panic message or cancellation.
        message: String,
    },
}

/// Tuning of a load balancer node. [`LbOptions::default`] is what [`LbNode::start`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbOptions {
    /// Deadline of a TCP connect to a server (HAProxy's `timeout connect`). Default 3s.
    pub connect_timeout: Duration,
    /// Deadline for a server's response head, counted from the moment the request (body
    /// included) was sent in full; past it the client gets a 504 (HAProxy's
    /// `timeout server`). Default 30s.
    pub response_timeout: Duration,
    /// Idle upstream connections kept per server. Default 64.
    pub max_idle_per_server: usize,
    /// Idle upstream connections older than this are closed. Default 30s.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it cuts them. Default 30s.
    pub grace_period: Duration,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions {
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(30),
            max_idle_per_server: 64,
            idle_timeout: Duration::from_secs(30),
            grace_period: Duration::from_secs(30),
        }
    }
}

/// A running load balancer node.
#[derive(Debug)]
pub struct LbNode {
    health: Arc<LbHealth>,
    addrs: Vec<(String, SocketAddr)>,
    backends: Vec<Arc<BackendState>>,
    frontends: Vec<(String, JoinHandle<()>)>,
    checks: Vec<(String, JoinHandle<()>)>,
    reaper: JoinHandle<()>,
}

impl LbNode {
    /// Binds every frontend on the node's address, then starts serving and checking, with
    /// [`LbOptions::default`].
    ///
    /// # Errors
    ///
    /// [`LbError::NotLb`] if `ctx.node` is not an lb node, [`LbError::BadSite`] for a site
    /// name that is no valid `Host`, [`LbError::Bind`] if a frontend port cannot be bound
    /// (nothing is started then).
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
        let farm = &ctx.farm;
        let site = HeaderValue::from_str(&farm.site).map_err(|_| LbError::BadSite {
            site: farm.site.clone(),
        })?;
        let limits = PoolLimits {
            connect_timeout: options.connect_timeout,
            max_idle: options.max_idle_per_server,
            idle_timeout: options.idle_timeout,
        };
        let backends: Vec<Arc<BackendState>> = farm
            .backends
            .iter()
            .map(|b| Arc::new(BackendState::new(b, limits)))
            .collect();

        // Bind everything before starting anything, so "address in use" leaves no task behind.
        let mut listeners = Vec::new();
        for f in &farm.frontends {
            let addr = SocketAddr::new(ctx.node.address, f.port);
            let listener = webfarm_node::bind(addr, &format!("frontend {}", f.name)).await?;
            let local = listener.local_addr().unwrap_or(addr);
            listeners.push((f, listener, local));
        }

        let ids = Arc::new(RequestIds::new());
        let mut frontends = Vec::new();
        let mut addrs = Vec::new();
        for (f, listener, local) in listeners {
            let Some(backend) = backends.get(f.default_backend) else {
                continue; // The validated farm guarantees the index.
            };
            let proxy = Arc::new(Proxy {
                frontend: f.name.clone(),
                backend: backend.clone(),
                site: site.clone(),
                ids: ids.clone(),
                response_timeout: options.response_timeout,
            });
            tracing::info!(
                "frontend {} listening on {local}, default_backend {}",
                f.name,
                backend.name()
            );
            let task = tokio::spawn(frontend::serve(
                listener,
                proxy,
                ctx.shutdown.clone(),
                options.grace_period,
            ));
            frontends.push((format!("frontend {}", f.name), task));
            addrs.push((f.name.clone(), local));
        }

        let mut checks = Vec::new();
        for b in &backends {
            for (i, m) in b.members.iter().enumerate() {
                let task = tokio::spawn(check::run(
                    b.clone(),
                    i,
                    farm.site.clone(),
                    ctx.shutdown.clone(),
                ));
                checks.push((format!("health check {}", m.state.id), task));
            }
        }
        let reaper = tokio::spawn(reap_idle(
            backends.clone(),
            options.idle_timeout,
            ctx.shutdown.clone(),
        ));

        let health = Arc::new(LbHealth {
            frontends: farm.frontends.clone(),
            backends: backends.clone(),
        });
        Ok(LbNode {
            health,
            addrs,
            backends,
            frontends,
            checks,
            reaper,
        })
    }

    /// Readiness and status for the admin server (`/readyz`, `/status`).
    pub fn health(&self) -> Arc<dyn Health> {
        self.health.clone()
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
        for (what, task) in self.frontends.into_iter().chain(self.checks) {
            if let Err(e) = task.await {
                tracing::error!("the {what} task ended abnormally: {e}");
                first_error.get_or_insert(LbError::Task {
                    what,
                    message: e.to_string(),
                });
            }
        }
        if let Err(e) = self.reaper.await {
            first_error.get_or_insert(LbError::Task {
                what: "idle connection reaper".into(),
                message: e.to_string(),
            });
        }
        for b in &self.backends {
            b.close_idle();
        }
        tracing::info!("load balancer stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// Closes expired idle upstream connections every `idle_timeout / 4` (at least every 10s,
/// at most every 100ms) until shutdown.
async fn reap_idle(backends: Vec<Arc<BackendState>>, idle_timeout: Duration, shutdown: Shutdown) {
    let period = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                for b in &backends {
                    b.reap_idle();
                }
            }
        }
    }
}
