//! `webfarm status`: every node's `/status`, as a table or one JSON object.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use webfarm_config::{Node, Replica};
use webfarm_node::http::HttpClient;
use webfarm_node::status::{NodeStatus, RoleStatus};

use crate::args::FarmArgs;
use crate::farm_file;

/// What `webfarm status` says of one node.
#[derive(Debug, Serialize)]
pub(crate) struct NodeReport {
    name: String,
    role: String,
    /// The admin address.
    addr: String,
    /// Whether the node answered that it is ready.
    healthy: bool,
    /// `ready`, `not ready`, `down` (no answer) or `bad answer`.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The node's own `/status` details, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<RoleStatus>,
}

/// `webfarm status --json`.
#[derive(Debug, Serialize)]
struct Report {
    nodes: Vec<NodeReport>,
    /// Each VIP of `[[vrrp]]` and its master; absent without.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vips: Vec<VipReport>,
}

/// One VIP and the lb node that is master of its instance now.
#[derive(Debug, Serialize)]
pub(crate) struct VipReport {
    vip: String,
    pub(crate) instance: String,
    /// The lb that says it is master (`null` when none does: every lb down or electing).
    pub(crate) master: Option<String>,
}

/// Each VIP's master, from the lbs' own `/status`: the one that says `master` and holds it.
pub(crate) fn vip_masters(farm: &webfarm_config::Farm, nodes: &[NodeReport]) -> Vec<VipReport> {
    let mut out = Vec::new();
    for v in &farm.vrrp {
        let master = nodes.iter().find_map(|n| match &n.details {
            Some(RoleStatus::Lb(d)) => d
                .vrrp
                .iter()
                .any(|i| i.name == v.name && i.state == "master")
                .then(|| n.name.clone()),
            _ => None,
        });
        for vip in &v.vips {
            out.push(VipReport {
                vip: vip.to_string(),
                instance: v.name.clone(),
                master: master.clone(),
            });
        }
    }
    out
}

/// Prints the status of every node of the farm. Exit code 0 when every node is ready,
/// 1 otherwise.
///
/// JSON shape: `{"nodes":[{"name","role","addr","healthy","state","reason"?,"details"?}]}`;
/// `details` is the node's own `/status` details ([`RoleStatus`]; for db nodes:
/// `raft_state`, `term`, `leader`, `commit_index`, `applied_index`...).
///
/// # Errors
///
/// An invalid topology file.
pub async fn status(args: &FarmArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let farm = farm_file::resolve(args)?.farm;
    let http = farm_file::operator_http(&farm)?;
    let nodes = join_all(farm.nodes.iter().map(|n| node_status(&http, n))).await;
    let all_healthy = nodes.iter().all(|n| n.healthy);
    let vips = vip_masters(&farm, &nodes);
    if as_json {
        // Through a `Value`, so the keys come out sorted.
        let report = serde_json::to_value(Report { nodes, vips })?;
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<10} {:<5} {:<22} {:<10} DETAILS",
            "NODE", "ROLE", "ADMIN", "STATE"
        );
        for n in &nodes {
            println!(
                "{:<10} {:<5} {:<22} {:<10} {}",
                n.name,
                n.role,
                n.addr,
                n.state,
                summary(n)
            );
        }
        for v in &vips {
            let master = v.master.as_deref().unwrap_or("none (no lb is master)");
            println!("VIP {:<16} {:<8} master {master}", v.vip, v.instance);
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn node_status(http: &HttpClient, node: &Node) -> NodeReport {
    let url = http.url(node.admin_addr(), "/status");
    let mut out = NodeReport {
        name: node.name.clone(),
        role: node.role.as_str().to_string(),
        addr: node.admin_addr().to_string(),
        healthy: false,
        state: String::new(),
        reason: None,
        details: None,
    };
    match http.get(&url, Duration::from_secs(2)).await {
        Ok(r) if r.status.is_success() => match serde_json::from_slice::<NodeStatus>(&r.body) {
            Ok(s) => {
                out.healthy = s.is_ready();
                out.state = s.state;
                out.reason = s.reason;
                out.details = Some(s.details);
            }
            Err(e) => {
                out.state = "bad answer".into();
                out.reason = Some(e.to_string());
            }
        },
        Ok(r) => {
            out.state = "bad answer".into();
            out.reason = Some(format!("HTTP {}", r.status));
        }
        Err(e) => {
            out.state = "down".into();
            out.reason = Some(e.to_string());
        }
    }
    out
}

/// One line of role details for the table.
fn summary(n: &NodeReport) -> String {
    if n.state != "ready" {
        if let Some(reason) = &n.reason {
            return reason.clone();
        }
    }
    match &n.details {
        Some(RoleStatus::Db(d)) => {
            let mut s = format!(
                "{} term {} commit {} applied {}",
                d.raft_state.as_str().to_lowercase(),
                d.term,
                d.commit_index,
                d.applied_index,
            );
            let lags: Vec<String> = d
                .replication
                .iter()
                .map(|(name, r)| match r.replica {
                    Some(Replica::Learner) => format!("{name} (learner) lag {}", r.lag),
                    _ => format!("{name} lag {}", r.lag),
                })
                .collect();
            if !lags.is_empty() {
                s.push_str(&format!(" ({})", lags.join(", ")));
            }
            s
        }
        Some(RoleStatus::Lb(d)) => {
            let backends = d.backends.iter().map(|b| {
                let up = b.servers.iter().filter(|s| s.state == "UP").count();
                format!("backend {}: {up}/{} servers up", b.name, b.servers.len())
            });
            // Certificates only when something needs the operator's eye.
            let expired = d.frontends.iter().flat_map(|f| {
                let certs = f.tls.iter().flat_map(|t| &t.certificates);
                certs.filter(|c| c.expired).map(move |c| {
                    format!(
                        "frontend {}: certificate {} EXPIRED {}",
                        f.name, c.file, c.not_after
                    )
                })
            });
            let vrrp = d.vrrp.iter().map(|v| {
                let master = v.master.as_deref().unwrap_or("unknown");
                format!(
                    "{} {} {}: master {master}",
                    v.name,
                    v.vips.join(","),
                    v.state
                )
            });
            backends
                .chain(expired)
                .chain(vrrp)
                .collect::<Vec<_>>()
                .join("; ")
        }
        Some(RoleStatus::Web(d)) => format!("http {}", d.http),
        Some(RoleStatus::Monitor(d)) => format!(
            "dashboard {} ({}/{} nodes ready)",
            d.dashboard, d.nodes_ready, d.nodes
        ),
        Some(RoleStatus::Dns(d)) => {
            let up = d.addresses.iter().filter(|a| a.health == "UP").count();
            format!(
                "zone {} serial {}: {} -> {} ({up}/{} up)",
                d.zone,
                d.serial,
                d.site,
                d.answering.join(" "),
                d.addresses.len()
            )
        }
        None => String::new(),
    }
}
