//! The admin server every node runs on `address:admin_port`.
//!
//! - `GET /healthz`: 200 `ok` while the process serves requests (liveness).
//! - `GET /readyz`: 200 `ready`, or 503 with the reason the node cannot take traffic yet.
//! - `GET /status`: a [`NodeStatus`] as JSON, `{"name","role","state","reason"?,"details"}`;
//!   `details` is the role's own [`RoleStatus`] (for a db node: raft state, term, commit and
//!   applied index...).
//! - `GET /metrics`: Prometheus text format 0.0.4 ([`crate::metrics`]): `process_*`,
//!   `webfarm_build_info`, and the role's families ([`Health::metrics`]).
//!
//! A role may add routes of its own (the load balancer's `/lb/...` run-time control) by
//! passing them as `extra` to [`serve`].
//!
//! `/metrics` and the `extra` routes are operator-only, behind the [`Guard`] given to
//! [`serve`] (the operator's or the monitor's certificate, or the admin token without
//! internal TLS); `/healthz`, `/readyz` and `/status` stay open, for health checks and
//! `webfarm status`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
/// The router type of [`serve`]'s `extra` routes (axum's), re-exported so that callers need
/// no axum dependency of their own.
pub use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use webfarm_config::Role;

use crate::access::Guard;
use crate::metrics::{self, Scrape};
use crate::status::{NodeStatus, RoleStatus};
use crate::Shutdown;

/// What a role tells the admin server about itself.
pub trait Health: Send + Sync + 'static {
    /// `Ok` when the node can take traffic; `Err(reason)` otherwise, e.g. `"no leader"`.
    fn ready(&self) -> Result<(), String>;
    /// The role's details for `/status`.
    fn status(&self) -> RoleStatus;

    /// Writes the role's metric families for `/metrics`, read at scrape time from what the
    /// role keeps anyway; the default writes none.
    ///
    /// # Errors
    /// The writer's ([`Scrape`]'s calls return it).
    fn metrics(&self, scrape: &mut Scrape<'_>) -> std::fmt::Result {
        let _ = scrape;
        Ok(())
    }
}

struct AdminState {
    name: String,
    role: Role,
    health: Arc<dyn Health>,
    registry: prometheus_client::registry::Registry,
}

/// The admin router for node `name`, `/metrics` behind `guard` (whose refusals it counts);
/// exposed for roles that serve it on another port too.
pub fn router(name: &str, role: Role, health: Arc<dyn Health>, guard: Guard) -> Router {
    let state = Arc::new(AdminState {
        name: name.to_string(),
        role,
        registry: metrics::registry(health.clone(), Some(guard.refusals.clone())),
        health,
    });
    let metrics = guard.protect(Router::new().route("/metrics", get(metrics_text)));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .merge(metrics)
        .with_state(state)
}

/// The guard of a node's admin routes: the operator's and the monitor nodes' certificates
/// (the monitor scrapes `/metrics` and sets lb weights), or `auth`'s admin token.
pub fn guard(farm: &webfarm_config::Farm, auth: &crate::access::NodeAuth) -> Guard {
    let monitors = farm.nodes_with_role(Role::Monitor).map(|n| n.name.clone());
    Guard::new(
        std::iter::once("operator".to_string()).chain(monitors),
        auth,
    )
}

/// How callers reach an admin port: its TLS (internal TLS; `None` for plain HTTP) and the
/// guard of its operator-only routes.
#[derive(Debug, Clone)]
pub struct Access {
    /// The server configuration with internal TLS.
    pub tls: Option<Arc<webfarm_tls::rustls::ServerConfig>>,
    /// The guard of `/metrics` and the role's routes.
    pub guard: Guard,
}

/// Serves the admin endpoints, merged with the role's `extra` routes (`Router::new()` for
/// none; they go behind `access.guard` too), on `listener` until `shutdown` fires.
///
/// # Errors
///
/// The I/O error that stopped the server.
///
/// # Panics
///
/// If `extra` has a route that overlaps `/healthz`, `/readyz`, `/status` or `/metrics` (axum refuses
/// overlapping routes): a programming error, caught by any test that starts a node.
pub async fn serve(
    listener: TcpListener,
    name: &str,
    role: Role,
    health: Arc<dyn Health>,
    extra: Router,
    shutdown: Shutdown,
    access: Access,
) -> std::io::Result<()> {
    let Access { tls, guard } = access;
    let extra = guard.clone().protect(extra);
    crate::serve_router(
        listener,
        router(name, role, health, guard).merge(extra),
        async move { shutdown.wait().await },
        tls,
    )
    .await
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    match s.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    let reason = s.health.ready().err();
    let out = NodeStatus {
        name: s.name.clone(),
        role: s.role.as_str().to_string(),
        state: if reason.is_none() {
            "ready"
        } else {
            "not ready"
        }
        .to_string(),
        reason,
        details: s.health.status(),
    };
    // Through a `Value`, so the keys come out sorted, whatever the order of the fields.
    match serde_json::to_value(&out) {
        Ok(v) => Json::<Value>(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics_text(State(s): State<Arc<AdminState>>) -> Response {
    match metrics::render(&s.registry) {
        Ok(text) => ([(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
