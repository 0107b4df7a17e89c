//! The timeline: what changed between two scrapes, in words — a node lost or back, a
//! server DOWN or UP with its check's reason (as HAProxy logs `Server web/web-2 is DOWN,
//! reason: ...`), an lb's reload applied or refused, a new db leader and how long the
//! cluster had none — plus alerts and the operator's actions from the dashboard. The last [`KEEP`] events are kept.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::view::{NodeView, View};

/// How many events the timeline keeps.
pub const KEEP: usize = 500;

/// One entry of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `node`, `server`, `reload`, `leader`, `alert`, `action`.
    pub kind: &'static str,
    /// `info`, `warning` or `critical`.
    pub severity: &'static str,
    /// What happened, in words.
    pub text: String,
}

/// The timeline and what it needs to remember between scrapes.
#[derive(Debug, Default)]
pub struct Timeline {
    events: VecDeque<Event>,
    /// Since when (ms) the db cluster has had no known leader.
    leaderless_since: Option<u64>,
    /// Events added since the last [`Timeline::take_new`].
    fresh: Vec<Event>,
}

impl Timeline {
    /// Records `event`.
    pub fn push(&mut self, event: Event) {
        tracing::info!(kind = event.kind, "{}", event.text);
        if self.events.len() == KEEP {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        self.fresh.push(event);
    }

    /// Every event kept, oldest first.
    pub fn all(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }

    /// The events recorded since the last call.
    pub fn take_new(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.fresh)
    }

    /// Records alerts that started firing or were resolved at `at_ms`.
    pub fn alerts(&mut self, changes: &[crate::alerts::Alert], at_ms: u64) {
        for a in changes {
            self.push(Event {
                at_ms,
                kind: "alert",
                severity: if a.state == "firing" {
                    "critical"
                } else {
                    "info"
                },
                text: format!("alert {} {}: {}", a.name(), a.state, a.summary),
            });
        }
    }

    /// Records what changed from `before` to `now` (no events for the first view).
    pub fn compare(&mut self, before: Option<&View>, now: &View) {
        let Some(before) = before else {
            if now.db.leader.is_none() {
                self.leaderless_since = Some(now.at_ms);
            }
            return;
        };
        self.nodes(&before.nodes, now);
        self.servers(before, now);
        self.reloads(before, now);
        self.leader(before, now);
    }

    fn reloads(&mut self, before: &View, now: &View) {
        for lb in &now.lbs {
            let Some(old) = before.lbs.iter().find(|o| o.name == lb.name) else {
                continue;
            };
            if lb.generation > old.generation {
                self.push(Event {
                    at_ms: now.at_ms,
                    kind: "reload",
                    severity: "info",
                    text: format!(
                        "{} reloaded its configuration (generation {})",
                        lb.name, lb.generation
                    ),
                });
            }
            if lb.reloads_refused > old.reloads_refused {
                self.push(Event {
                    at_ms: now.at_ms,
                    kind: "reload",
                    severity: "warning",
                    text: format!(
                        "{} refused a reload and kept its configuration (see its log)",
                        lb.name
                    ),
                });
            }
        }
    }

    fn nodes(&mut self, before: &[NodeView], now: &View) {
        for (old, new) in before.iter().zip(&now.nodes) {
            if old.state == new.state {
                continue;
            }
            let (severity, text) = match new.state {
                "up" => ("info", format!("{} is up ({} before)", new.name, old.state)),
                "down" => (
                    "critical",
                    format!("{} is unreachable: {}", new.name, reason(new)),
                ),
                _ => (
                    "warning",
                    format!("{} is not ready: {}", new.name, reason(new)),
                ),
            };
            self.push(Event {
                at_ms: now.at_ms,
                kind: "node",
                severity,
                text,
            });
        }
    }

    fn servers(&mut self, before: &View, now: &View) {
        let mut old = HashMap::new();
        for lb in &before.lbs {
            for b in &lb.backends {
                for s in &b.servers {
                    old.insert((lb.name.as_str(), b.name.as_str(), s.name.as_str()), s);
                }
            }
        }
        let mut found = Vec::new();
        for lb in &now.lbs {
            for b in &lb.backends {
                for s in &b.servers {
                    let key = (lb.name.as_str(), b.name.as_str(), s.name.as_str());
                    match old.get(&key) {
                        Some(o) if o.state != s.state => found.push(Event {
                            at_ms: now.at_ms,
                            kind: "server",
                            severity: if s.state == "DOWN" {
                                "critical"
                            } else {
                                "info"
                            },
                            text: format!(
                                "{}: server {}/{} is {} (was {}), check: {}",
                                lb.name, b.name, s.name, s.state, o.state, s.check
                            ),
                        }),
                        _ => {}
                    }
                }
            }
        }
        for e in found {
            self.push(e);
        }
    }

    fn leader(&mut self, before: &View, now: &View) {
        if before.db.leader == now.db.leader {
            return;
        }
        match (&before.db.leader, &now.db.leader) {
            (Some(old), None) => {
                self.leaderless_since = Some(now.at_ms);
                self.push(Event {
                    at_ms: now.at_ms,
                    kind: "leader",
                    severity: "critical",
                    text: format!("the db cluster lost its leader ({old})"),
                });
            }
            (old, Some(new)) => {
                let since = self.leaderless_since.take().unwrap_or(before.at_ms);
                let was = old
                    .as_deref()
                    .map_or(String::new(), |o| format!(", was {o}"));
                self.push(Event {
                    at_ms: now.at_ms,
                    kind: "leader",
                    severity: "info",
                    text: format!(
                        "{new} elected db leader (term {}{was}); no leader seen for {:.1}s \
                         (to within one scrape interval)",
                        now.db.term,
                        now.at_ms.saturating_sub(since) as f64 / 1000.0
                    ),
                });
            }
            (None, None) => {}
        }
    }
}

fn reason(n: &NodeView) -> &str {
    n.reason.as_deref().unwrap_or("no reason given")
}
