//! Alerting, as Prometheus evaluates rules: each scrape, every rule of `[monitor.alerts]`
//! yields the conditions that hold now (one per server, backend, node...); a condition is
//! `pending` until it has held for the rule's `for`, then `firing`; when it no longer holds
//! a firing alert is `resolved`. Firing and resolved alerts go to the log, the timeline, the
//! dashboard and every webhook ([`webhook`]). The same rules ship for Prometheus in
//! `monitoring/alerts.yml`, under the same names.

pub mod webhook;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use webfarm_config::{AlertSettings, Role};
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
}

/// An alert the monitor tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Its labels (see [`Condition::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Its summary, as of the last scrape where it held.
    pub summary: String,
    /// `pending` or `firing`; `resolved` in a [`Change`].
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
    pub fn update(
        &mut self,
        settings: &AlertSettings,
        conditions: Vec<Condition>,
        now_ms: u64,
    ) -> Vec<Alert> {
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for c in conditions {
            let key = key(&c.labels);
            let for_ms = hold(
                settings,
                c.labels.get("alertname").map_or("", String::as_str),
            );
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
            seen.push(key);
        }
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|k| !seen.contains(k))
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

/// The `for` of rule `alertname`, in ms.
fn hold(s: &AlertSettings, alertname: &str) -> u64 {
    let rule = match alertname {
        "ServerDown" => s.server_down,
        "BackendFewServersUp" => s.backend_servers_up,
        "DbNoLeader" => s.no_db_leader,
        "DbReplicationLag" => s.replication_lag,
        "HighErrorRate" => s.error_rate,
        "HighLatencyP99" => s.latency_p99,
        "CertificateExpiringSoon" => s.certificate_expiry,
        _ => s.disk_free,
    };
    u64::try_from(rule.for_.as_millis()).unwrap_or(u64::MAX)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
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
    for lb in &view.lbs {
        for b in &lb.backends {
            for s in b.servers.iter().filter(|s| s.state == "DOWN") {
                if settings.server_down.enabled {
                    out.push(Condition {
                        labels: labels(&[
                            ("alertname", "ServerDown"),
                            ("severity", "critical"),
                            ("lb", &lb.name),
                            ("backend", &b.name),
                            ("server", &s.name),
                        ]),
                        summary: format!(
                            "{}: server {}/{} is DOWN: {}",
                            lb.name, b.name, s.name, s.check
                        ),
                    });
                }
            }
            let up = b
                .servers
                .iter()
                .filter(|s| s.state.starts_with("UP"))
                .count();
            let rule = settings.backend_servers_up;
            if rule.enabled && (up as f64) < rule.threshold {
                out.push(Condition {
                    labels: labels(&[
                        ("alertname", "BackendFewServersUp"),
                        ("severity", "warning"),
                        ("lb", &lb.name),
                        ("backend", &b.name),
                    ]),
                    summary: format!(
                        "{}: backend {} has {up} of {} servers up",
                        lb.name,
                        b.name,
                        b.servers.len()
                    ),
                });
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
    let (errors, slow) = (settings.error_rate, settings.latency_p99);
    for lb in &view.lbs {
        for b in &lb.backends {
            if let Some(rate) = b
                .stats
                .error_rate
                .filter(|r| errors.enabled && *r > errors.threshold)
            {
                out.push(Condition {
                    labels: labels(&[
                        ("alertname", "HighErrorRate"),
                        ("severity", "warning"),
                        ("lb", &lb.name),
                        ("backend", &b.name),
                    ]),
                    summary: format!(
                        "{}: {:.1} % of backend {}'s answers are 5xx",
                        lb.name,
                        rate * 100.0,
                        b.name
                    ),
                });
            }
            if let Some(p99) = b.stats.p99.filter(|p| slow.enabled && *p > slow.threshold) {
                out.push(Condition {
                    labels: labels(&[
                        ("alertname", "HighLatencyP99"),
                        ("severity", "warning"),
                        ("lb", &lb.name),
                        ("backend", &b.name),
                    ]),
                    summary: format!("{}: backend {}'s p99 is {:.3} s", lb.name, b.name, p99),
                });
            }
        }
    }
    let disk = settings.disk_free;
    for n in &view.nodes {
        if let Some(free) = n.disk_free.filter(|f| disk.enabled && *f < disk.threshold) {
            out.push(Condition {
                labels: labels(&[
                    ("alertname", "DiskSpaceLow"),
                    ("severity", "warning"),
                    ("node", &n.name),
                ]),
                summary: format!(
                    "{}: {:.1} % of its data directory's disk is free",
                    n.name,
                    free * 100.0
                ),
            });
        }
    }
}

fn db_conditions(settings: &AlertSettings, view: &View, out: &mut Vec<Condition>) {
    if view.db.nodes.is_empty() {
        return;
    }
    if settings.no_db_leader.enabled && view.db.leader.is_none() {
        out.push(Condition {
            labels: labels(&[("alertname", "DbNoLeader"), ("severity", "critical")]),
            summary: format!("no db node reports a leader (term {})", view.db.term),
        });
    }
    let rule = settings.replication_lag;
    for d in &view.db.nodes {
        if let Some(lag) = d.lag.filter(|l| rule.enabled && *l as f64 > rule.threshold) {
            out.push(Condition {
                labels: labels(&[
                    ("alertname", "DbReplicationLag"),
                    ("severity", "warning"),
                    ("node", &d.name),
                ]),
                summary: format!("{} is {lag} log entries behind the leader", d.name),
            });
        }
    }
}

fn certificate_conditions(
    settings: &AlertSettings,
    readings: &[Reading],
    now: SystemTime,
    out: &mut Vec<Condition>,
) {
    let rule = settings.certificate_expiry;
    if !rule.enabled {
        return;
    }
    let within = Duration::from_secs_f64(rule.threshold * 86_400.0);
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
                    let days = format!("{:.1}", left.as_secs_f64() / 86_400.0);
                    out.push(Condition {
                        labels: labels(&[
                            ("alertname", "CertificateExpiringSoon"),
                            ("severity", "warning"),
                            ("lb", &r.name),
                            ("frontend", &f.name),
                            ("file", &c.file),
                        ]),
                        summary: format!(
                            "{}: frontend {}'s certificate {} expires in {days} days ({})",
                            r.name, f.name, c.file, c.not_after
                        ),
                    });
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
