//! The farm as the dashboard draws it: one [`View`] per scrape, built from the readings and
//! the previous scrape's counters (requests per second are the counters' increase over the
//! time between two scrapes, as Prometheus's `rate()` computes them).

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use webfarm_config::{Farm, Role};
use webfarm_node::status::{DbStatus, LbStatus, RaftState};
use webfarm_node::RoleStatus;

use crate::metrics::{Samples, Window};
use crate::scrape::Reading;

/// The whole farm at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The site's name.
    pub site: String,
    /// Every node, in file order (the monitor itself included, always `up`).
    pub nodes: Vec<NodeView>,
    /// Every load balancer's backends and servers.
    pub lbs: Vec<LbView>,
    /// Every web node.
    pub webs: Vec<WebView>,
    /// The db cluster.
    pub db: DbView,
    /// Every dns node that answered the scrape.
    pub dns: Vec<DnsView>,
    /// Alerts pending or firing ([`crate::alerts`]).
    pub alerts: Vec<crate::alerts::Alert>,
}

/// Errors and latency over the last scrape interval, from the node's `/metrics`; `None`
/// where nothing was answered in the interval or the node has no metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stats {
    /// The share of 5xx answers (0..1).
    pub error_rate: Option<f64>,
    /// The median of the request times, seconds.
    pub p50: Option<f64>,
    /// The 99th percentile, seconds.
    pub p99: Option<f64>,
}

impl Stats {
    /// From a histogram of request times and a counter by status class `code`, both
    /// restricted to `filter`.
    fn of(
        w: Option<Window<'_>>,
        (histogram, counter): (&str, &str),
        filter: &[(&str, &str)],
    ) -> Stats {
        let Some(w) = w else {
            return Stats::default();
        };
        // One pass over the buckets for both quantiles.
        let buckets = w.buckets(histogram, filter);
        let q = |q| {
            buckets
                .as_deref()
                .and_then(|b| crate::metrics::quantile(q, b))
        };
        Stats {
            error_rate: w.share(counter, filter, &[("code", "5xx")]),
            p50: q(0.5),
            p99: q(0.99),
        }
    }
}

/// One node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// `lb`, `web`, `db` or `monitor`.
    pub role: &'static str,
    /// Its address.
    pub address: String,
    /// `up` (ready), `not-ready` (answers, cannot take traffic) or `down` (no answer).
    pub state: &'static str,
    /// Why it is not `up`.
    pub reason: Option<String>,
    /// The share of its data directory's filesystem still available (0..1).
    pub disk_free: Option<f64>,
}

/// One load balancer.
#[derive(Debug, Clone, Serialize)]
pub struct LbView {
    /// Its name.
    pub name: String,
    /// Client connections open now.
    pub conns: usize,
    /// Its reload generation (one more with each applied reload).
    pub generation: u64,
    /// Reloads it refused since it started.
    pub reloads_refused: u64,
    /// The virtual IPs it serves now, as VRRP master (empty without `[[vrrp]]`).
    pub vips_held: Vec<String>,
    /// Its backends.
    pub backends: Vec<BackendView>,
}

/// One backend of a load balancer.
#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    /// Its name.
    pub name: String,
    /// Requests waiting in its queue.
    pub queued: usize,
    /// Requests per second over its servers.
    pub rps: f64,
    /// Its errors and latency (total request time, as the lb measures it).
    #[serde(flatten)]
    pub stats: Stats,
    /// Its servers.
    pub servers: Vec<ServerView>,
}

/// One server of a backend, as HAProxy's stats page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerView {
    /// Its name.
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`...
    pub state: String,
    /// The administrative state: `ready`, `drain` or `maint`.
    pub admin: String,
    /// Its weight.
    pub weight: u32,
    /// Whether it is a backup.
    pub backup: bool,
    /// The last health check's outcome, in words.
    pub check: String,
    /// Requests in flight to it.
    pub conns: u64,
    /// Requests per second sent to it.
    pub rps: f64,
    /// Its errors and latency as the lb saw them.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One dns node, from its `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DnsView {
    /// The node's name.
    pub name: String,
    /// The SOA serial in force.
    pub serial: u32,
    /// The addresses it answers for the site now.
    pub answering: Vec<String>,
}

/// One web node.
#[derive(Debug, Clone, Serialize)]
pub struct WebView {
    /// Its name.
    pub name: String,
    /// Requests per second it served (`null` while unreachable).
    pub rps: Option<f64>,
    /// `reachable`, or why it cannot use the database.
    pub database: Option<String>,
    /// Its errors and latency, as it measures them itself.
    #[serde(flatten)]
    pub stats: Stats,
}

/// The db cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbView {
    /// The leader (primary) as the nodes report it; `None` when none is known.
    pub leader: Option<String>,
    /// The highest term reported.
    pub term: u64,
    /// Every db node.
    pub nodes: Vec<DbNodeView>,
}

/// One db node.
#[derive(Debug, Clone, Serialize)]
pub struct DbNodeView {
    /// Its name.
    pub name: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`, or `unreachable`.
    pub raft_state: String,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Entries behind the leader (from the leader's replication report).
    pub lag: Option<u64>,
}

/// Counters and metrics of the previous scrape, for rates.
#[derive(Debug, Default)]
pub struct Rates {
    at: Option<Instant>,
    counters: HashMap<String, u64>,
    samples: HashMap<String, Samples>,
}

impl Rates {
    /// Keeps the metrics of `readings` as the start of the next scrape's windows (after
    /// [`build`] used them).
    pub fn keep_metrics(&mut self, readings: Vec<Reading>) {
        self.samples = readings
            .into_iter()
            .filter_map(|r| Some((r.name, r.metrics?)))
            .collect();
    }

    /// The window from `name`'s previous metrics to these.
    fn window<'a>(&'a self, name: &str, now: Option<&'a Samples>) -> Option<Window<'a>> {
        Some(Window {
            before: self.samples.get(name)?,
            now: now?,
        })
    }
}

impl Rates {
    /// Per-second increase of counter `key` since the last scrape (0 after a restart of
    /// the counting node, when the counter went down); `None` on the first scrape.
    fn rate(
        &self,
        next: &mut HashMap<String, u64>,
        key: String,
        value: u64,
        dt: f64,
    ) -> Option<f64> {
        let before = self.counters.get(&key).copied();
        next.insert(key, value);
        let before = before?;
        (dt > 0.0).then(|| value.saturating_sub(before) as f64 / dt)
    }
}

/// Builds the view of `farm` from `readings` (every node but `me`), taken at `now`.
pub fn build(
    farm: &Farm,
    me: &str,
    readings: &[Reading],
    rates: &mut Rates,
    now: (Instant, u64),
) -> View {
    let dt = rates
        .at
        .map_or(0.0, |at| now.0.duration_since(at).as_secs_f64());
    let mut next = HashMap::new();
    let by_name: HashMap<&str, &Reading> = readings.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut view = View {
        at_ms: now.1,
        site: farm.site.clone(),
        ..View::default()
    };
    for node in &farm.nodes {
        let reading = by_name.get(node.name.as_str());
        view.nodes.push(node_view(node, me, reading.copied()));
        let status = reading.and_then(|r| r.status.as_ref().ok());
        let window = rates.window(&node.name, reading.and_then(|r| r.metrics.as_ref()));
        match (node.role, status.map(|s| &s.details)) {
            (Role::Lb, Some(RoleStatus::Lb(lb))) => {
                view.lbs
                    .push(lb_view(&node.name, lb, (rates, window), &mut next, dt));
            }
            (Role::Dns, Some(RoleStatus::Dns(d))) => view.dns.push(DnsView {
                name: node.name.clone(),
                serial: d.serial,
                answering: d.answering.clone(),
            }),
            (Role::Web, details) => {
                let web = match details {
                    Some(RoleStatus::Web(w)) => Some(w),
                    _ => None,
                };
                let rps = web.and_then(|w| {
                    rates.rate(&mut next, format!("web/{}", node.name), w.requests, dt)
                });
                let names = (
                    "webfarm_web_http_request_duration_seconds",
                    "webfarm_web_http_requests_total",
                );
                view.webs.push(WebView {
                    name: node.name.clone(),
                    rps,
                    database: web.map(|w| w.database.clone()),
                    stats: Stats::of(window, names, &[]),
                });
            }
            _ => {}
        }
    }
    view.db = db_view(farm, &by_name);
    rates.at = Some(now.0);
    rates.counters = next;
    view
}

fn node_view(node: &webfarm_config::Node, me: &str, reading: Option<&Reading>) -> NodeView {
    let (state, reason) = match reading.map(|r| &r.status) {
        _ if node.name == me => ("up", None),
        Some(Ok(s)) if s.is_ready() => ("up", None),
        Some(Ok(s)) => ("not-ready", s.reason.clone()),
        Some(Err(e)) => ("down", Some(e.clone())),
        None => ("down", Some("not scraped yet".into())),
    };
    let disk_free = reading.and_then(|r| r.metrics.as_ref()).and_then(|m| {
        let size = m.sum("webfarm_data_dir_size_bytes", &[])?;
        let free = m.sum("webfarm_data_dir_available_bytes", &[])?;
        (size > 0.0).then(|| free / size)
    });
    NodeView {
        name: node.name.clone(),
        role: node.role.as_str(),
        address: node.address.to_string(),
        state,
        reason,
        disk_free,
    }
}

fn lb_view(
    name: &str,
    lb: &LbStatus,
    (rates, window): (&Rates, Option<Window<'_>>),
    next: &mut HashMap<String, u64>,
    dt: f64,
) -> LbView {
    let server_names = (
        "haproxy_server_total_time_seconds",
        "haproxy_server_http_responses_total",
    );
    let backend_names = (
        "haproxy_backend_total_time_seconds",
        "haproxy_backend_http_responses_total",
    );
    let backends = lb
        .backends
        .iter()
        .map(|b| {
            let servers: Vec<ServerView> = b
                .servers
                .iter()
                .map(|s| {
                    let key = format!("lb/{name}/{}/{}", b.name, s.name);
                    ServerView {
                        name: s.name.clone(),
                        state: s.state.clone(),
                        admin: s.admin.clone(),
                        weight: s.weight,
                        backup: s.backup,
                        check: s.check.clone(),
                        conns: s.current_conns,
                        rps: rates.rate(next, key, s.total_requests, dt).unwrap_or(0.0),
                        stats: Stats::of(
                            window,
                            server_names,
                            &[("proxy", &b.name), ("server", &s.name)],
                        ),
                    }
                })
                .collect();
            BackendView {
                name: b.name.clone(),
                queued: b.queued,
                rps: servers.iter().map(|s| s.rps).sum(),
                stats: Stats::of(window, backend_names, &[("proxy", &b.name)]),
                servers,
            }
        })
        .collect();
    LbView {
        name: name.to_string(),
        conns: lb.conns,
        generation: lb.generation,
        reloads_refused: lb.reloads_refused,
        vips_held: lb.vrrp.iter().flat_map(|v| v.held.clone()).collect(),
        backends,
    }
}

fn db_view(farm: &Farm, by_name: &HashMap<&str, &Reading>) -> DbView {
    let statuses: Vec<(&str, Option<&DbStatus>)> = farm
        .nodes_with_role(Role::Db)
        .map(|n| {
            let db = by_name
                .get(n.name.as_str())
                .and_then(|r| r.status.as_ref().ok())
                .and_then(|s| match &s.details {
                    RoleStatus::Db(d) => Some(d),
                    _ => None,
                });
            (n.name.as_str(), db)
        })
        .collect();
    // The leader is a node that says it leads (the highest term if two do, for a moment).
    let leading = statuses
        .iter()
        .filter_map(|(name, s)| {
            s.filter(|d| d.raft_state == RaftState::Leader)
                .map(|d| (*name, d))
        })
        .max_by_key(|(_, d)| d.term);
    let term = statuses
        .iter()
        .filter_map(|(_, s)| s.map(|d| d.term))
        .max()
        .unwrap_or(0);
    let nodes = statuses
        .iter()
        .map(|(name, s)| DbNodeView {
            name: (*name).to_string(),
            raft_state: s.map_or("unreachable".into(), |d| d.raft_state.as_str().to_string()),
            commit_index: s.map_or(0, |d| d.commit_index),
            applied_index: s.map_or(0, |d| d.applied_index),
            lag: match leading {
                Some((leader, _)) if leader == *name => Some(0),
                Some((_, d)) => d.replication.get(*name).map(|r| r.lag),
                None => None,
            },
        })
        .collect();
    DbView {
        leader: leading.map(|(name, _)| name.to_string()),
        term,
        nodes,
    }
}
