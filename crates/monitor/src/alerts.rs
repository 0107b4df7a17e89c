//! Alerting, as Prometheus evaluates rules: each scrape, every rule of `[monitor.alerts]`
//! yields the conditions that hold now (one per server, backend, node...); a condition is
//! `pending` until it has held for the rule's `for`, then `firing`; when it no longer holds
//! a firing alert is `resolved`. Firing and resolved alerts go to the log, the timeline, the
//! dashboard and every webhook ([`webhook`]). The same rules ship for Prometheus in
//! `monitoring/alerts.yml`, under the same names.

pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use webfarm_config::{AlertSettings, Role, Rule};
use webfarm_node::RoleStatus;

use crate::scrape::Reading;
use crate::view::View;

/// What holds now for one rule and one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Identifying labels: `alertname`, `severity` and the subject's (`lb`, `backend`,
    /// `server`, `node`...).
    pub labels: BTreeMap<String, String>,
    /// One line for people (Alertmanager's `summary` annotation).
    pub summary: String,
    /// How long it must hold before the alert fires (its rule's `for`).
    pub for_: Duration,
}

/// A rule as the conditions name it: its `alertname`, `severity` and settings.
#[derive(Debug, Clone, Copy)]
struct Named {
    alertname: &'static str,
    severity: &'static str,
    rule: Rule,
}

impl Named {
    const fn new(alertname: &'static str, severity: &'static str, rule: Rule) -> Named {
        Named {
            alertname,
            severity,
            rule,
        }
    }

    /// Adds the condition for `subject` (its labels) to `out`, if the rule is enabled.
    fn holds(self, out: &mut Vec<Condition>, subject: &[(&str, &str)], summary: String) {
        if !self.rule.enabled {
            return;
        }
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), self.alertname.to_string()),
            ("severity".to_string(), self.severity.to_string()),
        ]);
        labels.extend(
            subject
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        out.push(Condition {
            labels,
            summary,
            for_: self.rule.for_,
        });
    }
}

/// An alert the monitor tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Its labels (see [`Condition::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Its summary, as of the last scrape where it held.
    pub summary: String,
    /// `pending` or `firing`; `resolved` among the changes [`Alerts::update`] returns.
    pub state: &'static str,
    /// Since when its condition holds (ms since the Unix epoch).
    pub since_ms: u64,
    /// When it was resolved (ms), for a resolved alert.
    pub ended_ms: Option<u64>,
}

impl Alert {
    /// The `alertname` label.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// The alerts being tracked, by their labels.
#[derive(Debug, Default)]
pub struct Alerts {
    active: BTreeMap<String, Alert>,
}

impl Alerts {
    /// Takes the conditions of this scrape (at `now_ms`); returns the alerts that started
    /// firing or were resolved now.
    pub fn update(&mut self, conditions: Vec<Condition>, now_ms: u64) -> Vec<Alert> {
        let mut changes = Vec::new();
        let mut seen = BTreeSet::new();
        for c in conditions {
            let key = key(&c.labels);
            let for_ms = u64::try_from(c.for_.as_millis()).unwrap_or(u64::MAX);
            let alert = self.active.entry(key.clone()).or_insert_with(|| Alert {
                labels: c.labels.clone(),
                summary: c.summary.clone(),
                state: "pending",
                since_ms: now_ms,
                ended_ms: None,
            });
            alert.summary = c.summary;
            if alert.state == "pending" && now_ms.saturating_sub(alert.since_ms) >= for_ms {
                alert.state = "firing";
                changes.push(alert.clone());
            }
            seen.insert(key);
        }
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut alert) = self.active.remove(&k) {
                if alert.state == "firing" {
                    alert.state = "resolved";
                    alert.ended_ms = Some(now_ms);
                    changes.push(alert);
                }
            }
        }
        changes
    }

    /// Every alert pending or firing now.
    pub fn active(&self) -> Vec<Alert> {
        self.active.values().cloned().collect()
    }
}

fn key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The conditions that hold in `view` (and the raw `readings`, for certificates) under
/// `settings`' enabled rules.
pub fn conditions(
    settings: &AlertSettings,
    view: &View,
    readings: &[Reading],
    now: SystemTime,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let down = Named::new("ServerDown", "critical", settings.server_down);
    let few = Named::new(
        "BackendFewServersUp",
        "warning",
        settings.backend_servers_up,
    );
    for lb in &view.lbs {
        for b in &lb.backends {
            for s in b.servers.iter().filter(|s| s.state == "DOWN") {
                let subject = [
                    ("lb", lb.name.as_str()),
                    ("backend", &b.name),
                    ("server", &s.name),
                ];
                let summary = format!(
                    "{}: server {}/{} is DOWN: {}",
                    lb.name, b.name, s.name, s.check
                );
                down.holds(&mut out, &subject, summary);
            }
            let up = b
                .servers
                .iter()
                .filter(|s| s.state.starts_with("UP"))
                .count();
            if (up as f64) < few.rule.threshold {
                let summary = format!(
                    "{}: backend {} has {up} of {} servers up",
                    lb.name,
                    b.name,
                    b.servers.len()
                );
                few.holds(&mut out, &[("lb", &lb.name), ("backend", &b.name)], summary);
            }
        }
    }
    traffic_conditions(settings, view, &mut out);
    db_conditions(settings, view, &mut out);
    certificate_conditions(settings, readings, now, &mut out);
    out
}

/// `HighErrorRate` and `HighLatencyP99` per backend, over the last scrape interval (the
/// `for` makes them hold over longer); `DiskSpaceLow` per node.
fn traffic_conditions(settings: &AlertSettings, view: &View, out: &mut Vec<Condition>) {
    let errors = Named::new("HighErrorRate", "warning", settings.error_rate);
    let slow = Named::new("HighLatencyP99", "warning", settings.latency_p99);
    for lb in &view.lbs {
        for b in &lb.backends {
            let subject = [("lb", lb.name.as_str()), ("backend", &b.name)];
            if let Some(rate) = b.stats.error_rate.filter(|r| *r > errors.rule.threshold) {
                let summary = format!(
                    "{}: {:.1} % of backend {}'s answers are 5xx",
                    lb.name,
                    rate * 100.0,
                    b.name
                );
                errors.holds(out, &subject, summary);
            }
            if let Some(p99) = b.stats.p99.filter(|p| *p > slow.rule.threshold) {
                let summary = format!("{}: backend {}'s p99 is {:.3} s", lb.name, b.name, p99);
                slow.holds(out, &subject, summary);
            }
        }
    }
    let disk = Named::new("DiskSpaceLow", "warning", settings.disk_free);
    for n in &view.nodes {
        if let Some(free) = n.disk_free.filter(|f| *f < disk.rule.threshold) {
            let summary = format!(
                "{}: {:.1} % of its data directory's disk is free",
                n.name,
                free * 100.0
            );
            disk.holds(out, &[("node", &n.name)], summary);
        }
    }
}

fn db_conditions(settings: &AlertSettings, view: &View, out: &mut Vec<Condition>) {
    if view.db.nodes.is_empty() {
        return;
    }
    if view.db.leader.is_none() {
        let summary = format!("no db node reports a leader (term {})", view.db.term);
        Named::new("DbNoLeader", "critical", settings.no_db_leader).holds(out, &[], summary);
    }
    let lagging = Named::new("DbReplicationLag", "warning", settings.replication_lag);
    for d in &view.db.nodes {
        if let Some(lag) = d.lag.filter(|l| *l as f64 > lagging.rule.threshold) {
            let summary = format!("{} is {lag} log entries behind the leader", d.name);
            lagging.holds(out, &[("node", &d.name)], summary);
        }
    }
}

fn certificate_conditions(
    settings: &AlertSettings,
    readings: &[Reading],
    now: SystemTime,
    out: &mut Vec<Condition>,
) {
    let expiring = Named::new(
        "CertificateExpiringSoon",
        "warning",
        settings.certificate_expiry,
    );
    let within = Duration::from_secs_f64(expiring.rule.threshold * 86_400.0);
    for r in readings.iter().filter(|r| r.role == Role::Lb) {
        let Ok(RoleStatus::Lb(lb)) = r.status.as_ref().map(|s| &s.details) else {
            continue;
        };
        for f in &lb.frontends {
            for c in f.tls.iter().flat_map(|t| &t.certificates) {
                let Ok(not_after) = humantime::parse_rfc3339(&c.not_after) else {
                    continue;
                };
                let left = not_after.duration_since(now).unwrap_or_default();
                if left < within {
                    let summary = format!(
                        "{}: frontend {}'s certificate {} expires in {:.1} days ({})",
                        r.name,
                        f.name,
                        c.file,
                        left.as_secs_f64() / 86_400.0,
                        c.not_after
                    );
                    let subject = [
                        ("lb", r.name.as_str()),
                        ("frontend", &f.name),
                        ("file", &c.file),
                    ];
                    expiring.holds(out, &subject, summary);
                }
            }
        }
    }
}
