//! The lb's side of VRRP (`[[vrrp]]`, crates/vrrp): which virtual routers this node is in,
//! and what taking or releasing a VIP means for it: every frontend bound on the VIP as
//! well, or those listeners closed (the connections they accepted go on). The node's own
//! address keeps its listeners whatever the VRRP state.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use webfarm_config::{Farm, Node};
use webfarm_node::metrics::Scrape;
use webfarm_node::status::VrrpStatus;
use webfarm_node::{Shutdown, ShutdownTrigger};
use webfarm_vrrp::{InstanceSpec, NodeSpec, Params, State, StatusView, VipHolder};

use crate::control::live::LiveConfig;

/// The virtual routers `node` takes part in, or `None` when it is in none.
pub(crate) fn spec(farm: &Farm, node: &Node) -> Option<NodeSpec> {
    let instances: Vec<InstanceSpec> = farm
        .vrrp
        .iter()
        .filter_map(|v| {
            let priority = *v.priority.get(&node.name)?;
            let peers = v.priority.keys().filter(|n| **n != node.name);
            Some(InstanceSpec {
                name: v.name.clone(),
                vrid: v.vrid,
                vips: v.vips.clone(),
                params: Params {
                    priority,
                    advert_int: v.advert_centis(),
                    preempt: v.preempt,
                    preempt_delay: v.preempt_delay,
                    primary: node.address,
                },
                peers: peers
                    .filter_map(|n| farm.node(n))
                    .map(|n| n.address)
                    .collect(),
                unicast: v.unicast,
            })
        })
        .collect();
    let interface = farm.vrrp.iter().find_map(|v| v.interface.clone());
    (!instances.is_empty()).then_some(NodeSpec {
        address: node.address,
        interface,
        instances,
    })
}

/// Binds and closes the frontends on VIPs for the node's routers.
pub(crate) struct LbVips {
    live: Arc<LiveConfig>,
    shutdown: Shutdown,
    grace: Duration,
    runtime: tokio::runtime::Handle,
    /// The node's own address, where the frontends always listen.
    own: IpAddr,
    /// Per instance held: the trigger that closes its VIP listeners.
    held: Mutex<HashMap<String, ShutdownTrigger>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for LbVips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LbVips").finish_non_exhaustive()
    }
}

impl LbVips {
    pub(crate) fn new(
        live: Arc<LiveConfig>,
        own: IpAddr,
        shutdown: Shutdown,
        grace: Duration,
    ) -> LbVips {
        LbVips {
            own,
            live,
            shutdown,
            grace,
            runtime: tokio::runtime::Handle::current(),
            held: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The VIP listeners' tasks, to wait for at shutdown.
    pub(crate) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn bind(&self, vip: IpAddr, release: &Shutdown) -> Result<(), String> {
        let snap = self.live.snapshot();
        if vip == self.own {
            // An address owner (priority 255): its frontends listen there already.
            return Ok(());
        }
        for (index, f) in snap.frontends.iter().enumerate() {
            let addr = SocketAddr::new(vip, f.config.port);
            let name = &f.config.name;
            let listener = webfarm_vrrp::listen::bind_vip(addr)
                .and_then(|l| {
                    let _rt = self.runtime.enter();
                    TcpListener::from_std(l)
                })
                .map_err(|e| format!("frontend {name} cannot listen on {addr}: {e}"))?;
            tracing::info!("frontend {name} listening on VIP {addr}");
            let task = self.runtime.spawn(crate::frontend::serve_until(
                listener,
                self.live.clone(),
                index,
                self.shutdown.clone(),
                release.clone(),
                self.grace,
            ));
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            // Listeners of earlier terms ended when released: forget them.
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
        Ok(())
    }
}

impl VipHolder for LbVips {
    fn take(&self, instance: &str, vips: &[IpAddr]) -> Result<(), String> {
        let (trigger, release) = Shutdown::new();
        for vip in vips {
            // On an error the trigger is dropped, which closes what was bound.
            self.bind(*vip, &release)?;
        }
        let old = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(instance.to_string(), trigger);
        if let Some(old) = old {
            old.trigger();
        }
        Ok(())
    }

    fn release(&self, instance: &str, vips: &[IpAddr]) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(instance);
        if let Some(trigger) = held {
            trigger.trigger();
            let vips: Vec<String> = vips.iter().map(IpAddr::to_string).collect();
            tracing::info!(
                "VRRP_Instance({instance}) released {}: listeners closed",
                vips.join(", ")
            );
        }
    }
}

/// `/status`'s view of the instances.
pub(crate) fn status(view: &StatusView) -> Vec<VrrpStatus> {
    view.get()
        .into_iter()
        .map(|s| VrrpStatus {
            held: match s.holding {
                true => s.vips.iter().map(IpAddr::to_string).collect(),
                false => Vec::new(),
            },
            name: s.name,
            vrid: s.vrid,
            state: s.state.as_str().to_string(),
            priority: s.priority,
            master: s.master.map(|m| m.to_string()),
            vips: s.vips.iter().map(IpAddr::to_string).collect(),
        })
        .collect()
}

/// `webfarm_vrrp_state{instance,state}` (1 for the current state, keepalived's exporter
/// shape) and `webfarm_vrrp_transitions_total{instance,state}` (entries into each state).
pub(crate) fn metrics(view: &StatusView, s: &mut Scrape<'_>) -> fmt::Result {
    let all = view.get();
    let states = all.iter().flat_map(|i| {
        State::ALL.iter().map(move |st| {
            let labels = vec![
                ("instance", i.name.clone()),
                ("state", st.as_str().to_string()),
            ];
            (labels, i64::from(i.state == *st))
        })
    });
    s.gauges(
        "webfarm_vrrp_state",
        "VRRP state of each instance on this node: 1 for the current state.",
        states,
    )?;
    let transitions = all.iter().flat_map(|i| {
        State::ALL.iter().zip(i.transitions).map(move |(st, n)| {
            let labels = vec![
                ("instance", i.name.clone()),
                ("state", st.as_str().to_string()),
            ];
            (labels, n)
        })
    });
    s.counters(
        "webfarm_vrrp_transitions_total",
        "VRRP state transitions of each instance, by the state entered.",
        transitions,
    )
}
