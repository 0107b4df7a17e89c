//! `webfarm lb servers|set-weight|set-state` and `webfarm reload`: HTTP calls to the lb
//! nodes' admin addresses (`/lb/servers`, `/lb/servers/{backend}/{server}/weight|state`,
//! `/lb/reload`), found in the farm file.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use webfarm_config::{Node, Role};
use webfarm_node::http::HttpClient;

use crate::args::{FarmArgs, LbCommand};
use crate::farm_file;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one `webfarm lb` command. Exit code 0 when every lb node answered yes, 1 otherwise.
///
/// # Errors
///
/// An invalid topology file, no lb node (or no such `--node`), a malformed target.
pub async fn run(cmd: &LbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LbCommand::Servers { node, json, farm } => servers(farm, node.as_deref(), *json).await,
        LbCommand::SetWeight {
            target,
            weight,
            node,
            farm,
        } => {
            let body = json!({ "weight": weight }).to_string();
            post_all(farm, node.as_deref(), &path(target, "weight")?, body).await
        }
        LbCommand::SetState {
            target,
            state,
            node,
            farm,
        } => {
            if !matches!(state.as_str(), "ready" | "drain" | "maint") {
                bail!("state {state:?} is not one of ready, drain, maint");
            }
            let body = json!({ "state": state }).to_string();
            post_all(farm, node.as_deref(), &path(target, "state")?, body).await
        }
    }
}

/// `webfarm reload`: `POST /lb/reload` on every lb node (or `node`).
///
/// # Errors
///
/// An invalid topology file, no lb node (or no such `--node`).
pub async fn reload(farm: &FarmArgs, node: Option<&str>) -> anyhow::Result<ExitCode> {
    post_all(farm, node, "/lb/reload", String::new()).await
}

/// `/lb/servers/{backend}/{server}/{what}` from `BACKEND/SERVER`.
fn path(target: &str, what: &str) -> anyhow::Result<String> {
    match target.split_once('/') {
        Some((b, s)) if !b.is_empty() && !s.is_empty() && !s.contains('/') => {
            Ok(format!("/lb/servers/{b}/{s}/{what}"))
        }
        _ => bail!("{target:?} is not BACKEND/SERVER, e.g. web/web-2"),
    }
}

/// The lb nodes a command talks to.
fn lb_nodes(args: &FarmArgs, only: Option<&str>) -> anyhow::Result<Vec<Node>> {
    let farm = farm_file::resolve(args)?.farm;
    let all: Vec<Node> = farm.nodes_with_role(Role::Lb).cloned().collect();
    match only {
        None if all.is_empty() => bail!("the farm has no lb node"),
        None => Ok(all),
        Some(name) => match all.into_iter().find(|n| n.name == name) {
            Some(n) => Ok(vec![n]),
            None => bail!("no lb node named {name:?} in the farm"),
        },
    }
}

async fn post_all(
    args: &FarmArgs,
    only: Option<&str>,
    path: &str,
    body: String,
) -> anyhow::Result<ExitCode> {
    let nodes = lb_nodes(args, only)?;
    let http = HttpClient::new();
    let mut ok = true;
    for n in &nodes {
        let url = format!("http://{}{path}", n.admin_addr());
        match http
            .post(&url, "application/json", Bytes::from(body.clone()), TIMEOUT)
            .await
        {
            Ok(r) => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                if r.status.is_success() {
                    println!("{}: {}", n.name, describe(&v));
                } else {
                    ok = false;
                    let why = v["error"].as_str().map_or_else(
                        || String::from_utf8_lossy(&r.body).into_owned(),
                        str::to_string,
                    );
                    eprintln!("{}: refused ({}): {why}", n.name, r.status);
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", n.name);
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line for an admin answer.
fn describe(v: &Value) -> String {
    if let Some(file) = v["reloaded"].as_str() {
        let list = |k: &str| {
            let items: Vec<&str> = v[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        return format!(
            "reloaded {file} (generation {}); backends added: {}, removed: {}; servers added: \
             {}, removed: {}",
            v["generation"],
            list("backends_added"),
            list("backends_removed"),
            list("servers_added"),
            list("servers_removed")
        );
    }
    let server = v["server"].as_str().unwrap_or("?");
    match (v.get("weight"), v.get("state")) {
        (Some(w), _) => format!("{server} weight {} -> {w}", v["previous"]),
        (_, Some(s)) => format!(
            "{server} state {} -> {}",
            v["previous"].as_str().unwrap_or("?"),
            s.as_str().unwrap_or("?")
        ),
        _ => v.to_string(),
    }
}

async fn servers(args: &FarmArgs, only: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let nodes = lb_nodes(args, only)?;
    let http = HttpClient::new();
    let mut out = Vec::new();
    let mut ok = true;
    for n in &nodes {
        let url = format!("http://{}/lb/servers", n.admin_addr());
        let answer = http.get(&url, TIMEOUT).await;
        let v = match answer {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<Value>(&r.body)
                .with_context(|| format!("{}: bad answer from {url}", n.name))?,
            Ok(r) => {
                ok = false;
                eprintln!("{}: HTTP {} from {url}", n.name, r.status);
                continue;
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", n.name);
                continue;
            }
        };
        out.push(json!({
            "name": n.name,
            "generation": v["generation"],
            "reloads_refused": v["reloads_refused"],
            "backends": v["backends"],
        }));
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "nodes": out }))?
        );
    } else {
        println!(
            "{:<8} {:>4} {:<20} {:<6} {:>6} {:>5} {:>8} CHECK",
            "NODE", "GEN", "BACKEND/SERVER", "STATE", "WEIGHT", "CONNS", "TOTAL"
        );
        for n in &out {
            for b in n["backends"].as_array().into_iter().flatten() {
                for s in b["servers"].as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:>4} {:<20} {:<6} {:>6} {:>5} {:>8} {}",
                        n["name"].as_str().unwrap_or(""),
                        n["generation"],
                        format!(
                            "{}/{}",
                            b["name"].as_str().unwrap_or(""),
                            s["name"].as_str().unwrap_or("")
                        ),
                        s["state"].as_str().unwrap_or(""),
                        s["weight"],
                        s["current_conns"],
                        s["total_requests"],
                        s["check"].as_str().unwrap_or(""),
                    );
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_backend_slash_server() {
        assert_eq!(
            path("web/web-2", "weight").unwrap(),
            "/lb/servers/web/web-2/weight"
        );
        for bad in ["web", "/x", "web/", "a/b/c"] {
            assert!(path(bad, "state").is_err(), "{bad}");
        }
    }
}
