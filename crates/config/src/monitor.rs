//! `[monitor]`: how the monitor node watches the farm.

use std::time::Duration;

use crate::raw::RawMonitor;

/// Settings of the monitor role (`[monitor]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// How often every node is scraped (its `/status`). Default 1s: the dashboard's refresh
    /// and the finest step of its charts.
    pub scrape_interval: Duration,
    /// How long one scrape may take before the node counts as unreachable. Default: the
    /// interval (at most 1s), as Prometheus defaults `scrape_timeout` to at most its interval.
    pub scrape_timeout: Duration,
    /// How far back the charts go. Default 15m.
    pub history: Duration,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            scrape_interval: Duration::from_secs(1),
            scrape_timeout: Duration::from_secs(1),
            history: Duration::from_secs(15 * 60),
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
    }
}
