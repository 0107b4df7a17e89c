//! `[monitor]`: how the monitor node watches the farm.

use std::time::Duration;

use crate::raw::{RawAlerts, RawMonitor, RawRule};

/// Settings of the monitor role (`[monitor]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// How often every node is scraped (its `/status`). Default 1s: the dashboard's refresh
    /// and the finest step of its charts.
    pub scrape_interval: Duration,
    /// How long one scrape may take before the node counts as unreachable. Default: the
    /// interval (at most 1s), as Prometheus defaults `scrape_timeout` to at most its interval.
    pub scrape_timeout: Duration,
    /// How far back the charts go. Default 15m.
    pub history: Duration,
    /// The alerting rules the monitor evaluates (`[monitor.alerts]`).
    pub alerts: AlertSettings,
}

/// One alerting rule: fires when its condition has held for `for_` (Prometheus's `for`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Whether the rule is evaluated (`enabled = false` turns it off).
    pub enabled: bool,
    /// The rule's threshold, in the rule's unit (see [`AlertSettings`]).
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
}

impl Rule {
    const fn new(threshold: f64, for_secs: u64) -> Rule {
        Rule {
            enabled: true,
            threshold,
            for_: Duration::from_secs(for_secs),
        }
    }
}

/// `[monitor.alerts]`: each rule's threshold (its unit below) and `for` duration, and where
/// alerts are sent besides the log and the dashboard. The same rules ship as Prometheus
/// rules in `monitoring/alerts.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// `ServerDown`: an lb marks a server DOWN (threshold unused). Default for 10s.
    pub server_down: Rule,
    /// `BackendFewServersUp`: fewer than `threshold` servers UP in a backend. Default 2, 10s.
    pub backend_servers_up: Rule,
    /// `DbNoLeader`: no db node reports a leader (threshold unused). Default for 5s.
    pub no_db_leader: Rule,
    /// `DbReplicationLag`: a member more than `threshold` log entries behind the leader.
    /// Default 1000, 30s.
    pub replication_lag: Rule,
    /// `HighErrorRate`: the share of 5xx answers of a backend above `threshold` (0..1).
    /// Default 0.05, 1m.
    pub error_rate: Rule,
    /// `HighLatencyP99`: a backend's 99th percentile of total request time above `threshold`
    /// seconds. Default 1, 1m.
    pub latency_p99: Rule,
    /// `CertificateExpiringSoon`: a served certificate expires within `threshold` days.
    /// Default 14, 0s.
    pub certificate_expiry: Rule,
    /// `DiskSpaceLow`: a node's data directory's filesystem has less than `threshold` (0..1)
    /// of its space free. Default 0.1, 5m.
    pub disk_free: Rule,
    /// Where firing and resolved alerts are POSTed, in Alertmanager's webhook JSON
    /// (`version` 4); `http://` URLs: a local Alertmanager or bridge, which forwards to the
    /// outside over HTTPS with the trust store it is configured with.
    pub webhooks: Vec<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            server_down: Rule::new(0.0, 10),
            backend_servers_up: Rule::new(2.0, 10),
            no_db_leader: Rule::new(0.0, 5),
            replication_lag: Rule::new(1000.0, 30),
            error_rate: Rule::new(0.05, 60),
            latency_p99: Rule::new(1.0, 60),
            certificate_expiry: Rule::new(14.0, 0),
            disk_free: Rule::new(0.1, 300),
            webhooks: Vec::new(),
        }
    }
}

/// `[monitor.alerts]` with defaults applied; a problem for each bad value.
fn resolve_alerts(raw: &RawAlerts, problems: &mut Vec<String>) -> AlertSettings {
    let d = AlertSettings::default();
    let mut rule = |name: &str, raw: Option<&RawRule>, default: Rule, max: Option<f64>| {
        let Some(raw) = raw else { return default };
        let r = Rule {
            enabled: raw.enabled.unwrap_or(true),
            threshold: raw.threshold.unwrap_or(default.threshold),
            for_: raw.for_.unwrap_or(default.for_),
        };
        let bad = !r.threshold.is_finite() || r.threshold < 0.0;
        if bad || max.is_some_and(|m| r.threshold > m) {
            let range = max.map_or("0 or more".to_string(), |m| format!("0 to {m}"));
            problems.push(format!(
                "monitor.alerts.{name}.threshold: {} must be {range}",
                r.threshold
            ));
        }
        r
    };
    let alerts = AlertSettings {
        server_down: rule("server_down", raw.server_down.as_ref(), d.server_down, None),
        backend_servers_up: rule(
            "backend_servers_up",
            raw.backend_servers_up.as_ref(),
            d.backend_servers_up,
            None,
        ),
        no_db_leader: rule(
            "no_db_leader",
            raw.no_db_leader.as_ref(),
            d.no_db_leader,
            None,
        ),
        replication_lag: rule(
            "replication_lag",
            raw.replication_lag.as_ref(),
            d.replication_lag,
            None,
        ),
        error_rate: rule(
            "error_rate",
            raw.error_rate.as_ref(),
            d.error_rate,
            Some(1.0),
        ),
        latency_p99: rule("latency_p99", raw.latency_p99.as_ref(), d.latency_p99, None),
        certificate_expiry: rule(
            "certificate_expiry",
            raw.certificate_expiry.as_ref(),
            d.certificate_expiry,
            None,
        ),
        disk_free: rule("disk_free", raw.disk_free.as_ref(), d.disk_free, Some(1.0)),
        webhooks: raw.webhooks.clone().unwrap_or_default(),
    };
    for (i, url) in alerts.webhooks.iter().enumerate() {
        let rest = url.strip_prefix("http://");
        let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(' '));
        if !ok {
            problems.push(format!(
                "monitor.alerts.webhooks[{i}]: {url:?} is not an http:// URL (a local \
                 Alertmanager or bridge, which forwards over HTTPS)"
            ));
        }
    }
    alerts
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            scrape_interval: Duration::from_secs(1),
            scrape_timeout: Duration::from_secs(1),
            history: Duration::from_secs(15 * 60),
            alerts: AlertSettings::default(),
        }
    }
}

/// The `[monitor]` table with defaults applied; a problem for each bad value.
pub(crate) fn resolve_monitor(raw: &RawMonitor, problems: &mut Vec<String>) -> MonitorSettings {
    let d = MonitorSettings::default();
    let scrape_interval = raw.scrape_interval.unwrap_or(d.scrape_interval);
    let scrape_timeout = raw
        .scrape_timeout
        .unwrap_or_else(|| scrape_interval.min(d.scrape_timeout));
    let history = raw.history.unwrap_or(d.history);
    if scrape_interval < Duration::from_millis(100) || scrape_interval > Duration::from_secs(60) {
        problems.push(format!(
            "monitor.scrape_interval: {scrape_interval:?} is outside 100ms..=60s"
        ));
    }
    if scrape_timeout.is_zero() || scrape_timeout > scrape_interval {
        problems.push(format!(
            "monitor.scrape_timeout: {scrape_timeout:?} must be greater than 0 and at most \
             monitor.scrape_interval ({scrape_interval:?})"
        ));
    }
    if history < scrape_interval || history > Duration::from_secs(24 * 3600) {
        problems.push(format!(
            "monitor.history: {history:?} must be at least monitor.scrape_interval and at most \
             24h"
        ));
    }
    MonitorSettings {
        scrape_interval,
        scrape_timeout,
        history,
        alerts: resolve_alerts(&raw.alerts, problems),
    }
}
