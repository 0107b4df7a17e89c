//! Scraping: every node's `/status` on its admin port, all at once, each within the scrape
//! timeout (Prometheus's `scrape_timeout`); a node that does not answer in time, or answers
//! something else than a [`NodeStatus`], is read as unreachable with the reason.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;
use webfarm_config::{Farm, Role};
use webfarm_node::http::HttpClient;
use webfarm_node::NodeStatus;

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
        let (http, url) = (http.clone(), http.url(t.admin, "/status"));
        set.spawn(async move { (i, read(&http, &url, timeout).await) });
    }
    let mut found: Vec<Option<Result<NodeStatus, String>>> = vec![None; targets.len()];
    while let Some(done) = set.join_next().await {
        if let Ok((i, status)) = done {
            found[i] = Some(status);
        }
    }
    targets
        .iter()
        .zip(found)
        .map(|(t, status)| Reading {
            name: t.name.clone(),
            role: t.role,
            status: status.unwrap_or_else(|| Err("the scrape task failed".into())),
        })
        .collect()
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
