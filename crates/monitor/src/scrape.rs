//! Scraping: every node's `/status` and `/metrics` on its admin port, all nodes at once,
//! each within the scrape timeout (Prometheus's `scrape_timeout`); a node that does not
//! answer `/status` in time, or answers something else than a [`NodeStatus`], is read as
//! unreachable with the reason. Its metrics are optional: a node without them still shows.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;
use webfarm_config::{Farm, Role};
use webfarm_node::http::HttpClient;
use webfarm_node::NodeStatus;

use crate::metrics::Samples;

/// A node the monitor watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its admin address (`/status`).
    pub admin: SocketAddr,
}

/// What one scrape of one node found.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The node's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its status, or why it could not be read.
    pub status: Result<NodeStatus, String>,
    /// Its metrics, when `/metrics` answered and parsed.
    pub metrics: Option<Samples>,
}

/// Every node of `farm` but `me`, in file order.
pub fn targets(farm: &Farm, me: &str) -> Vec<Target> {
    farm.nodes
        .iter()
        .filter(|n| n.name != me)
        .map(|n| Target {
            name: n.name.clone(),
            role: n.role,
            admin: n.admin_addr(),
        })
        .collect()
}

/// Scrapes every target concurrently; the readings come back in the targets' order.
pub async fn scrape_all(http: &HttpClient, targets: &[Target], timeout: Duration) -> Vec<Reading> {
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (http, admin) = (http.clone(), t.admin);
        set.spawn(async move {
            let status = read(&http, &http.url(admin, "/status"), timeout).await;
            let metrics = match &status {
                Ok(_) => read_metrics(&http, &http.url(admin, "/metrics"), timeout).await,
                Err(_) => None,
            };
            (i, (status, metrics))
        });
    }
    let mut found = vec![None; targets.len()];
    while let Some(done) = set.join_next().await {
        if let Ok((i, reading)) = done {
            found[i] = Some(reading);
        }
    }
    targets
        .iter()
        .zip(found)
        .map(|(t, got)| {
            let (status, metrics) =
                got.unwrap_or_else(|| (Err("the scrape task failed".into()), None));
            Reading {
                name: t.name.clone(),
                role: t.role,
                status,
                metrics,
            }
        })
        .collect()
}

async fn read_metrics(http: &HttpClient, url: &str, timeout: Duration) -> Option<Samples> {
    let resp = http.get(url, timeout).await.ok()?;
    if !resp.status.is_success() {
        return None;
    }
    match Samples::parse(&String::from_utf8_lossy(&resp.body)) {
        Ok(samples) => Some(samples),
        Err(e) => {
            tracing::debug!("{url}: {e}");
            None
        }
    }
}

async fn read(http: &HttpClient, url: &str, timeout: Duration) -> Result<NodeStatus, String> {
    let resp = http
        .get(url, timeout)
        .await
        .map_err(|e| webfarm_node::http::error_chain(&e))?;
    // A node that is not ready answers /status with 200 all the same.
    if !resp.status.is_success() {
        return Err(format!("/status answered {}", resp.status));
    }
    serde_json::from_slice(&resp.body).map_err(|e| format!("/status is not a node status: {e}"))
}
