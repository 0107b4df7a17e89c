//! `webfarm status`: every node's `/status`, as a table or one JSON object.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use webfarm_config::{Node, Role};
use webfarm_node::http::HttpClient;

use crate::args::FarmArgs;
use crate::farm_file;

/// Prints the status of every node of the farm. Exit code 0 when every node is ready,
/// 1 otherwise.
///
/// JSON shape: `{"nodes":[{"name","role","addr","healthy","state","reason"?,"details"}]}`;
/// `details` is the node's own `/status` details (for db nodes: `raft_state`, `term`,
/// `leader`, `commit_index`, `applied_index`...).
///
/// # Errors
///
/// An invalid topology file.
pub async fn status(args: &FarmArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let farm = farm_file::resolve(args)?.farm;
    let http = HttpClient::new();
    let nodes = join_all(farm.nodes.iter().map(|n| node_status(&http, n))).await;
    let all_healthy = nodes.iter().all(|n| n["healthy"] == json!(true));
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "nodes": nodes }))?
        );
    } else {
        println!(
            "{:<10} {:<5} {:<22} {:<10} DETAILS",
            "NODE", "ROLE", "ADMIN", "STATE"
        );
        for n in &nodes {
            println!(
                "{:<10} {:<5} {:<22} {:<10} {}",
                n["name"].as_str().unwrap_or(""),
                n["role"].as_str().unwrap_or(""),
                n["addr"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                summary(n)
            );
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn node_status(http: &HttpClient, node: &Node) -> Value {
    let url = format!("http://{}/status", node.admin_addr());
    let mut out = json!({
        "name": node.name,
        "role": node.role.as_str(),
        "addr": node.admin_addr().to_string(),
        "healthy": false,
    });
    match http.get(&url, Duration::from_secs(2)).await {
        Ok(r) if r.status.is_success() => match serde_json::from_slice::<Value>(&r.body) {
            Ok(s) => {
                out["healthy"] = json!(s["state"] == "ready");
                out["state"] = s["state"].clone();
                if let Some(reason) = s.get("reason") {
                    out["reason"] = reason.clone();
                }
                out["details"] = s["details"].clone();
            }
            Err(e) => {
                out["state"] = json!("bad answer");
                out["reason"] = json!(e.to_string());
            }
        },
        Ok(r) => {
            out["state"] = json!("bad answer");
            out["reason"] = json!(format!("HTTP {}", r.status));
        }
        Err(e) => {
            out["state"] = json!("down");
            out["reason"] = json!(e.to_string());
        }
    }
    out
}

/// One line of role details for the table.
fn summary(n: &Value) -> String {
    let d = &n["details"];
    if n["state"] != "ready" && n.get("reason").is_some() {
        return n["reason"].as_str().unwrap_or("").to_string();
    }
    match n["role"].as_str() {
        Some(r) if r == Role::Db.as_str() => {
            let mut s = format!(
                "{} term {} commit {} applied {}",
                d["raft_state"].as_str().unwrap_or("?").to_lowercase(),
                d["term"],
                d["commit_index"],
                d["applied_index"],
            );
            if let Some(rep) = d["replication"].as_object() {
                let lags: Vec<String> = rep
                    .iter()
                    .map(|(name, r)| match r["replica"].as_str() {
                        Some("learner") => format!("{name} (learner) lag {}", r["lag"]),
                        _ => format!("{name} lag {}", r["lag"]),
                    })
                    .collect();
                if !lags.is_empty() {
                    s.push_str(&format!(" ({})", lags.join(", ")));
                }
            }
            s
        }
        Some(r) if r == Role::Lb.as_str() => d["backends"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .map(|b| {
                        let servers = b["servers"].as_array().cloned().unwrap_or_default();
                        let up = servers.iter().filter(|s| s["state"] == "UP").count();
                        format!(
                            "backend {}: {up}/{} servers up",
                            b["name"].as_str().unwrap_or("?"),
                            servers.len()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        _ => d["http"]
            .as_str()
            .map_or(String::new(), |a| format!("http {a}")),
    }
}
