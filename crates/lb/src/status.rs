//! What the load balancer tells the admin server: readiness and `/status` details.

use std::sync::Arc;

use serde_json::{json, Value};
use webfarm_config::{Balance, Frontend};
use webfarm_node::Health;

use crate::backend::BackendState;

/// Readiness and status of a load balancer node, read from the live server state.
#[derive(Debug)]
pub(crate) struct LbHealth {
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Arc<BackendState>>,
}

impl Health for LbHealth {
    /// Ready when the backend of every frontend has at least one server up.
    fn ready(&self) -> Result<(), String> {
        let mut empty: Vec<&str> = Vec::new();
        for f in &self.frontends {
            let Some(b) = self.backends.get(f.default_backend) else {
                continue;
            };
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

    /// `{"frontends":[{"name","port","backend"}],"backends":[{"name","balance","servers":[..]}]}`.
    fn status(&self) -> Value {
        let frontends: Vec<Value> = self
            .frontends
            .iter()
            .map(|f| {
                json!({
                    "name": f.name,
                    "port": f.port,
                    "backend": self.backends.get(f.default_backend).map(|b| b.name()),
                })
            })
            .collect();
        let backends: Vec<Value> = self.backends.iter().map(|b| backend_status(b)).collect();
        json!({ "frontends": frontends, "backends": backends })
    }
}

fn backend_status(b: &BackendState) -> Value {
    let servers: Vec<Value> = b
        .members
        .iter()
        .map(|m| {
            let s = m.state.snapshot();
            json!({
                "name": m.state.name,
                "addr": m.state.addr.to_string(),
                "weight": m.state.weight,
                "state": if s.up { "UP" } else { "DOWN" },
                "check": s.last_check,
                "current_conns": s.current_conns,
                "total_requests": s.total_requests,
                "consecutive_failures": s.consecutive_failures,
                "idle_conns": m.pool.idle_count(),
            })
        })
        .collect();
    json!({
        "name": b.name(),
        "balance": match b.config.balance {
            Balance::Roundrobin => "roundrobin",
        },
        "retries": b.config.retries,
        "servers": servers,
    })
}
