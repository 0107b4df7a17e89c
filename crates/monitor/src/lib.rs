//! The monitor role (`role = "monitor"`, `mon-1` in the built-in farm): it scrapes every
//! node's `/status` each `[monitor] scrape_interval` (1 s), turns the readings into a
//! [`view::View`] of the farm (requests per second per server and web node, each node's
//! state, the db leader, term, indexes and each replica's lag), keeps the last `[monitor]
//! history` of it for charts ([`history`]) and a timeline of what changed ([`events`]), and
//! serves the live dashboard on its `port` (3000): a page drawn like the seed's diagram,
//! updated by server-sent events after every scrape ([`http`]), from which a person can stop,
//! kill and start nodes and change a server's weight or state ([`control`]).
//!
//! Every asset is compiled into the binary: the dashboard works offline.

pub mod alerts;
pub mod control;
pub mod events;
pub mod history;
mod http;
pub mod metrics;
pub mod scrape;
pub mod view;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use webfarm_config::{Farm, Role};
use webfarm_node::http::HttpClient;
use webfarm_node::status::MonitorStatus;
use webfarm_node::{BindError, Health, NodeContext, RoleStatus, Shutdown};

use events::Timeline;
use history::History;
use scrape::Target;
use view::{Rates, View};

/// Why a monitor node cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The node's certificate (internal TLS) cannot be used.
    #[error("internal TLS: {0}")]
    Tls(#[from] webfarm_node::tls::TlsError),
    /// The node is not a monitor node.
    #[error("node {node:?} has role {role}; only a monitor node runs the dashboard")]
    NotAMonitor {
        /// The node.
        node: String,
        /// Its role.
        role: Role,
    },
    /// The dashboard's port cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The dashboard's server failed.
    #[error("monitor {node:?}: the dashboard on {addr} failed: {source}")]
    Serve {
        /// The node.
        node: String,
        /// The dashboard's address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the scraper shares with the dashboard's handlers.
pub(crate) struct Shared {
    farm: Arc<Farm>,
    /// The dashboard's URL (alerts link to it).
    dashboard: String,
    /// Calls to the farm's nodes (scrapes, actions): with the admin token without TLS.
    http: HttpClient,
    /// Calls to the alert webhooks, which are not the farm's nodes: no credentials.
    webhooks: HttpClient,
    /// The farm's admin token: the dashboard's actions ask for it (HTTP Basic), the control
    /// socket takes it; `None` (a monitor started without it, in a test) asks for nothing.
    token: Option<webfarm_node::access::AdminToken>,
    state: Mutex<State>,
    /// The latest frame (`{"view":..., "events":[new ones]}` as JSON), for the live stream.
    frames: watch::Sender<Arc<str>>,
    scrapes: AtomicU64,
    ready_nodes: AtomicUsize,
    /// Ends the open event streams too: a graceful shutdown waits for every response.
    shutdown: Shutdown,
}

struct State {
    view: Option<View>,
    alerts: alerts::Alerts,
    rates: Rates,
    history: History,
    timeline: Timeline,
}

impl Shared {
    /// Turns one scrape into the view, history, timeline and alerts; the frame for the live
    /// stream, and the alerts that started firing or were resolved.
    fn observe(
        &self,
        me: &str,
        readings: Vec<scrape::Reading>,
    ) -> (serde_json::Value, Vec<alerts::Alert>) {
        let mut state = self.state();
        let state = &mut *state;
        let (now, at) = (SystemTime::now(), Instant::now());
        let mut view = view::build(&self.farm, me, &readings, &mut state.rates, (at, ms(now)));
        let settings = &self.farm.monitor.alerts;
        let conditions = alerts::conditions(settings, &view, &readings, now);
        let changes = state.alerts.update(conditions, view.at_ms);
        view.alerts = state.alerts.active();
        state.timeline.compare(state.view.as_ref(), &view);
        state.timeline.alerts(&changes, view.at_ms);
        state.history.record(&view);
        // The next scrape's rates start from these metrics: kept, not copied.
        state.rates.keep_metrics(readings);
        let frame = serde_json::json!({ "view": view, "events": state.timeline.take_new() });
        state.view = Some(view);
        (frame, changes)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an operator's action in the timeline (and the next frame).
    pub(crate) fn action(&self, severity: &'static str, text: String) {
        self.state().timeline.push(events::Event {
            at_ms: ms(SystemTime::now()),
            kind: "action",
            severity,
            text,
        });
    }
}

/// A running monitor node.
#[derive(Debug)]
pub struct MonitorNode {
    name: String,
    addr: SocketAddr,
    health: Arc<MonitorHealth>,
    server: JoinHandle<std::io::Result<()>>,
    scraper: JoinHandle<()>,
}

impl MonitorNode {
    /// Binds the dashboard and starts scraping.
    ///
    /// # Errors
    ///
    /// Not a monitor node, an unusable certificate, or the port cannot be bound.
    pub async fn start(ctx: NodeContext) -> Result<MonitorNode, MonitorError> {
        let node = &ctx.node;
        if node.role != Role::Monitor {
            return Err(MonitorError::NotAMonitor {
                node: node.name.clone(),
                role: node.role,
            });
        }
        let tls = webfarm_node::tls::identity(&ctx.farm, &node.name)?;
        // Without internal TLS the admin routes it calls (/metrics, /lb/...) take the token.
        let http = HttpClient::for_identity(tls.as_ref())
            .with_authorization(ctx.auth.token.as_ref().map(|t| t.bearer()));
        // Alert webhooks are not the farm's: their own client, which sends no credentials.
        let webhooks = HttpClient::for_identity(tls.as_ref());
        let listener = webfarm_node::bind(node.main_addr(), "dashboard").await?;
        let addr = listener.local_addr().unwrap_or_else(|_| node.main_addr());
        let settings = &ctx.farm.monitor;
        let points = settings.history.as_millis() / settings.scrape_interval.as_millis().max(1);
        let shared = Arc::new(Shared {
            farm: ctx.farm.clone(),
            dashboard: format!("http://{addr}/"),
            http,
            webhooks,
            token: ctx.auth.token.clone(),
            state: Mutex::new(State {
                view: None,
                alerts: alerts::Alerts::default(),
                rates: Rates::default(),
                history: History::new(usize::try_from(points).unwrap_or(usize::MAX)),
                timeline: Timeline::default(),
            }),
            frames: watch::channel(Arc::from("{}")).0,
            scrapes: AtomicU64::new(0),
            ready_nodes: AtomicUsize::new(0),
            shutdown: ctx.shutdown.clone(),
        });
        let targets = scrape::targets(&ctx.farm, &node.name);
        let scraper = tokio::spawn(scrape_loop(
            shared.clone(),
            targets.clone(),
            node.name.clone(),
            ctx.shutdown.clone(),
        ));
        let router = http::router(shared.clone());
        let shutdown = ctx.shutdown.clone();
        let server = tokio::spawn(async move {
            let until = async move { shutdown.wait().await };
            // The dashboard is for people's browsers: plain HTTP, no client certificate.
            webfarm_node::serve_router(listener, router, until, None).await
        });
        tracing::info!(node = %node.name, dashboard = %format!("http://{addr}/"), "monitor serving");
        Ok(MonitorNode {
            name: node.name.clone(),
            addr,
            health: Arc::new(MonitorHealth {
                dashboard: format!("http://{addr}/"),
                nodes: targets.len(),
                shared,
            }),
            server,
            scraper,
        })
    }

    /// The node's health, for the admin server.
    pub fn health(&self) -> Arc<dyn Health> {
        self.health.clone()
    }

    /// The dashboard's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the node has shut down.
    ///
    /// # Errors
    ///
    /// The dashboard's server failed.
    pub async fn wait(self) -> Result<(), MonitorError> {
        let served = self.server.await;
        self.scraper.abort();
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(MonitorError::Serve {
                node: self.name,
                addr: self.addr,
                source,
            }),
            Err(e) => Err(MonitorError::Serve {
                node: self.name,
                addr: self.addr,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// Scrapes every `interval` until shutdown; each scrape becomes a view, points of history,
/// events, and a frame for the live stream.
async fn scrape_loop(shared: Arc<Shared>, targets: Vec<Target>, me: String, shutdown: Shutdown) {
    let settings = shared.farm.monitor.clone();
    // One sender, in order: a resolution never overtakes its firing.
    let (notify, mut queue) = tokio::sync::mpsc::channel::<alerts::Alert>(1024);
    let (http, hooks, url) = (
        shared.webhooks.clone(),
        settings.alerts.webhooks.clone(),
        shared.dashboard.clone(),
    );
    tokio::spawn(async move {
        while let Some(alert) = queue.recv().await {
            alerts::webhook::send(&http, &hooks, &alert, &url).await;
        }
    });
    let mut tick = tokio::time::interval(settings.scrape_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let readings = scrape::scrape_all(&shared.http, &targets, settings.scrape_timeout).await;
        let ready = readings
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_ok_and(webfarm_node::NodeStatus::is_ready)
            })
            .count();
        shared.ready_nodes.store(ready, Ordering::Relaxed);
        let (frame, changes) = shared.observe(&me, readings);
        shared.scrapes.fetch_add(1, Ordering::Relaxed);
        shared.frames.send_replace(Arc::from(frame.to_string()));
        for alert in changes {
            if notify.try_send(alert).is_err() {
                tracing::warn!("alert webhooks are behind: an alert was not sent");
            }
        }
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub(crate) fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct MonitorHealth {
    dashboard: String,
    nodes: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MonitorHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHealth")
            .field("dashboard", &self.dashboard)
            .finish_non_exhaustive()
    }
}

impl Health for MonitorHealth {
    fn ready(&self) -> Result<(), String> {
        match self.shared.scrapes.load(Ordering::Relaxed) {
            0 => Err("no scrape done yet".into()),
            _ => Ok(()),
        }
    }

    fn status(&self) -> RoleStatus {
        RoleStatus::Monitor(MonitorStatus {
            dashboard: self.dashboard.clone(),
            nodes: self.nodes,
            nodes_ready: self.shared.ready_nodes.load(Ordering::Relaxed),
            scrapes: self.shared.scrapes.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests;
