//! What the load balancer tells the admin server: readiness, `/status` details, and the
//! server list of `GET /lb/servers`.

use std::sync::Arc;

use webfarm_config::HashType;
use webfarm_node::metrics::Scrape;
use webfarm_node::status::{BackendStatus, FrontendStatus, LbStatus, RoleStatus, ServerStatus};
use webfarm_node::Health;

use crate::backend::BackendState;
use crate::control::live::LiveConfig;

/// Readiness and status of a load balancer node, read from the live configuration.
#[derive(Debug)]
pub(crate) struct LbHealth {
    pub live: Arc<LiveConfig>,
    /// The node's VRRP instances, when it is in any.
    pub vrrp: Option<webfarm_vrrp::StatusView>,
}

impl Health for LbHealth {
    /// Ready when the backend of every frontend has at least one server up.
    fn ready(&self) -> Result<(), String> {
        let snap = self.live.snapshot();
        let mut empty: Vec<&str> = Vec::new();
        for f in &snap.frontends {
            let b = &f.backend;
            if b.up_count() == 0 && !empty.contains(&b.name()) {
                empty.push(b.name());
            }
        }
        match empty.as_slice() {
            [] => Ok(()),
            names => Err(format!(
                "no server is up in backend {}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The `haproxy_*` families ([`crate::metrics`]), read from the live configuration.
    fn metrics(&self, scrape: &mut Scrape<'_>) -> std::fmt::Result {
        crate::metrics::write(&self.live, scrape)?;
        match &self.vrrp {
            Some(view) => crate::vips::metrics(view, scrape),
            None => Ok(()),
        }
    }

    /// The frontends, the backends with their servers, and the open connections.
    fn status(&self) -> RoleStatus {
        let snap = self.live.snapshot();
        let frontends = snap
            .frontends
            .iter()
            .enumerate()
            .map(|(i, f)| FrontendStatus {
                name: f.config.name.clone(),
                port: f.config.port,
                mode: f.config.mode.as_str().to_string(),
                backend: f.backend.name().to_string(),
                tls: self
                    .live
                    .tls
                    .by_index
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|t| t.status()),
            })
            .collect();
        RoleStatus::Lb(LbStatus {
            frontends,
            backends: backends_status(&snap.backends),
            conns: self.live.conns.load(std::sync::atomic::Ordering::Relaxed),
            threads: self.live.limits().shards,
            generation: snap.generation,
            reloads_refused: self
                .live
                .reloads_refused
                .load(std::sync::atomic::Ordering::Acquire),
            vrrp: self
                .vrrp
                .as_ref()
                .map(crate::vips::status)
                .unwrap_or_default(),
        })
    }
}

/// Every backend with its servers, as `/status` and `GET /lb/servers` show them.
pub(crate) fn backends_status(backends: &[Arc<BackendState>]) -> Vec<BackendStatus> {
    backends.iter().map(|b| backend_status(b)).collect()
}

fn backend_status(b: &BackendState) -> BackendStatus {
    let servers = b
        .servers
        .iter()
        .map(|m| {
            let s = m.state.snapshot();
            ServerStatus {
                name: m.state.name().to_string(),
                addr: m.state.addr().to_string(),
                state: s.state_word().to_string(),
                health: if s.up { "UP" } else { "DOWN" }.to_string(),
                admin: s.admin.as_str().to_string(),
                weight: s.weight,
                effective_weight: s.effective_weight,
                backup: m.state.is_backup(),
                maxconn: m.state.config.maxconn,
                check: s.last_check,
                current_conns: s.current_conns,
                total_requests: s.total_requests,
                consecutive_failures: s.consecutive_failures,
                idle_conns: m.pool.idle_count(),
            }
        })
        .collect();
    BackendStatus {
        name: b.name().to_string(),
        mode: b.config.mode.as_str().to_string(),
        balance: b.config.balance.to_string(),
        hash_type: match b.config.hash_type {
            HashType::MapBased => "map-based",
            HashType::Consistent => "consistent",
        }
        .to_string(),
        retries: b.config.retries,
        redispatch: b.config.redispatch,
        queued: b.queued(),
        servers,
    }
}
