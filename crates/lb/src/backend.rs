//! A backend at run time: its servers' state, their connection pools, its balancer, and the
//! HAProxy-style log lines of server state changes.

use std::sync::Arc;

use webfarm_config::Backend;

use crate::balance::{self, Balancer};
use crate::pool::{Pool, PoolLimits};
use crate::server::{ServerState, Transition};

/// One server of a backend with its pool of upstream connections.
#[derive(Debug)]
pub(crate) struct Member {
    /// Up/down and counters.
    pub state: Arc<ServerState>,
    /// Idle upstream connections.
    pub pool: Arc<Pool>,
}

/// A backend: configuration, servers, balancer.
#[derive(Debug)]
pub(crate) struct BackendState {
    /// The configuration (name, retries, check, servers).
    pub config: Backend,
    /// The servers, in configuration order.
    pub members: Vec<Member>,
    balancer: Box<dyn Balancer>,
}

impl BackendState {
    /// The run-time state of `config`; every server starts UP.
    pub fn new(config: &Backend, limits: PoolLimits) -> BackendState {
        let members = config
            .servers
            .iter()
            .map(|s| {
                let state = Arc::new(ServerState::new(&config.name, s));
                let pool = Arc::new(Pool::new(state.id.clone(), s.addr, limits));
                Member { state, pool }
            })
            .collect();
        let weights: Vec<u32> = config.servers.iter().map(|s| s.weight).collect();
        BackendState {
            config: config.clone(),
            members,
            balancer: balance::build(config.balance, &weights),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Picks an up server that is not in `tried`. When every up server was tried already,
    /// picks among all up servers (a fresh connection to the same server may work).
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let up = |i: usize| self.members[i].state.is_up();
        self.balancer
            .select(&|i| up(i) && !tried.contains(&i))
            .or_else(|| self.balancer.select(&up))
    }

    /// How many servers are up.
    pub fn up_count(&self) -> usize {
        self.members.iter().filter(|m| m.state.is_up()).count()
    }

    /// Logs a server's state change the way HAProxy does, `detail` being
    /// `reason: ..., info: "...", check duration: Nms`.
    pub fn log_transition(&self, server: &ServerState, transition: Transition, detail: &str) {
        let left = self.up_count();
        match transition {
            Transition::WentUp => tracing::info!(
                "Server {} is UP, {detail}. {left} active and 0 backup servers online.",
                server.id
            ),
            Transition::WentDown => {
                tracing::warn!(
                    "Server {} is DOWN, {detail}. {left} active and 0 backup servers left.",
                    server.id
                );
                if left == 0 {
                    tracing::error!("backend '{}' has no server available!", self.name());
                }
            }
        }
    }

    /// Closes idle connections that expired, in every pool.
    pub fn reap_idle(&self) {
        for m in &self.members {
            m.pool.reap();
        }
    }

    /// Closes every idle connection, in every pool.
    pub fn close_idle(&self) {
        for m in &self.members {
            m.pool.clear();
        }
    }
}
