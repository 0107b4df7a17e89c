//! What every webfarm node shares, whatever its role.
//!
//! - [`Shutdown`]: the graceful-shutdown signal every task of a node watches.
//! - [`admin`]: the admin server with `GET /healthz`, `GET /readyz`, `GET /status`, fed by the
//!   role through the [`Health`] trait.
//! - [`status`]: what `/status` answers, typed ([`NodeStatus`], [`RoleStatus`]), and the
//!   answers of the lb's run-time control (`/lb/servers`, `/lb/reload`).
//! - [`http`]: a small pooled HTTP/1.1 client (hyper-util) for node-to-node calls.
//! - [`logging`]: the tracing subscriber every node installs.
//! - [`metrics`]: `GET /metrics` (Prometheus text): process and build metrics, the
//!   role's families written at scrape time, an atomic-bucket [`metrics::Histogram`].
//! - [`hash`]: FNV-1a and splitmix64, fixed across hosts (node ids, hash balancing, seeds).
//! - [`access`]: who may call what: the operator-only [`access::Guard`], the admin token,
//!   rqlite's users for the db API ([`access::NodeAuth`]).
//! - [`NodeContext`]: what a role needs to start (the farm, its own node, its data dir).
//!
//! A role crate exposes `start(ctx) -> Result<RoleNode, Error>` that binds its listeners and
//! spawns its tasks, `health()` for the admin server, and `wait()` that returns once the node
//! has shut down gracefully.

pub mod access;
pub mod admin;
pub mod hash;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod sendfile;
mod shutdown;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use admin::Health;
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use status::{NodeStatus, RoleStatus};
use webfarm_config::{Farm, Node};

/// Everything a role needs to start one node.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The whole farm (every role reads the others' addresses from it).
    pub farm: Arc<Farm>,
    /// This node.
    pub node: Node,
    /// This node's own data directory (created by the caller).
    pub data_dir: PathBuf,
    /// Fires when the node must stop: stop accepting, finish in-flight work, flush.
    pub shutdown: Shutdown,
    /// Who may call the node's guarded routes, and the credentials it sends
    /// ([`access::NodeAuth`]; its default checks nothing).
    pub auth: access::NodeAuth,
}

/// Binds a TCP listener, with an error that names the address and the node's key.
///
/// # Errors
///
/// [`BindError`] when the address is in use, not local, or not permitted.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError {
            addr,
            what: what.to_string(),
            source,
        })
}

/// Serves `router` on `listener` until `until` completes, then finishes in-flight requests
/// (axum's graceful shutdown) and returns.
///
/// With `tls` (internal TLS, [`tls::identity`]) every connection is a TLS one whose client
/// presented a certificate of the farm CA ([`tls::TlsListener`]); without, plain TCP.
/// Handlers can read the caller as `axum::extract::ConnectInfo<tls::Peer>`.
///
/// Every accepted connection gets `TCP_NODELAY`. Without it, a response written in two
/// pieces (hyper writes the head, then the body) leaves the second piece behind Nagle's
/// algorithm until the peer acknowledges the first, and the peer delays that ACK for up to
/// 40 ms (Linux's delayed ACK): every keep-alive response stalls. nginx (`tcp_nodelay on`,
/// its default) and HAProxy set it on every connection too. Every axum listener of every
/// role is served through this function so none can miss it; the web role's own
/// connection loop accepts through the same listeners ([`tls::PlainListener`],
/// [`tls::TlsListener`]).
///
/// # Errors
/// The I/O error that stopped the server.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    until: impl std::future::Future<Output = ()> + Send + 'static,
    tls: Option<std::sync::Arc<webfarm_tls::rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<tls::Peer>();
    match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(until)
                .await
        }
        None => {
            let listener = tls::PlainListener {
                listener,
                files: None,
            };
            axum::serve(listener, service)
                .with_graceful_shutdown(until)
                .await
        }
    }
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// What the listener is for, such as `admin` or `frontend www`.
    pub what: String,
    /// The OS error (`Address already in use`...).
    pub source: std::io::Error,
}
