//! `webfarm lb servers|set-weight|set-state|set-backup` and `webfarm reload`: HTTP calls to the lb
//! nodes' admin addresses (`/lb/servers`, `/lb/servers/{backend}/{server}/weight|state`,
//! `/lb/reload`), found in the farm file. The answers are read as the types of
//! [`webfarm_node::status`] that the lb writes them with.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use webfarm_config::{Node, Role};
use webfarm_node::http::HttpClient;
use webfarm_node::status::{
    BackendStatus, BackupChange, LbErrorAnswer, LbServersAnswer, ReloadAnswer, StateChange,
    WeightChange,
};

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
            let path = path(target, "weight")?;
            post_all(farm, node.as_deref(), &path, body, |w: WeightChange| {
                format!("{} weight {} -> {}", w.server, w.previous, w.weight)
            })
            .await
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
            let path = path(target, "state")?;
            post_all(farm, node.as_deref(), &path, body, |s: StateChange| {
                format!("{} state {} -> {}", s.server, s.previous, s.state)
            })
            .await
        }
        LbCommand::SetBackup {
            target,
            backup,
            node,
            farm,
        } => {
            let body = json!({ "backup": backup }).to_string();
            let path = path(target, "backup")?;
            post_all(farm, node.as_deref(), &path, body, |b: BackupChange| {
                format!("{} backup {} -> {}", b.server, b.previous, b.backup)
            })
            .await
        }
    }
}

/// `webfarm reload`: `POST /lb/reload` on every lb node (or `node`).
///
/// # Errors
///
/// An invalid topology file, no lb node (or no such `--node`).
pub async fn reload(farm: &FarmArgs, node: Option<&str>) -> anyhow::Result<ExitCode> {
    post_all(farm, node, "/lb/reload", String::new(), describe_reload).await
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
/// The lb nodes to ask (every one, or `only`), and the operator's client.
fn lb_nodes(args: &FarmArgs, only: Option<&str>) -> anyhow::Result<(Vec<Node>, HttpClient)> {
    let farm = farm_file::resolve(args)?.farm;
    let http = farm_file::operator_http(&farm)?;
    let all: Vec<Node> = farm.nodes_with_role(Role::Lb).cloned().collect();
    let nodes = match only {
        None if all.is_empty() => bail!("the farm has no lb node"),
        None => all,
        Some(name) => match all.into_iter().find(|n| n.name == name) {
            Some(n) => vec![n],
            None => bail!("no lb node named {name:?} in the farm"),
        },
    };
    Ok((nodes, http))
}

/// `POST path` with `body` on every lb node (or `only`); prints one line per node: the
/// answer `T` in the words of `describe`, or the refusal.
async fn post_all<T: DeserializeOwned>(
    args: &FarmArgs,
    only: Option<&str>,
    path: &str,
    body: String,
    describe: impl Fn(T) -> String,
) -> anyhow::Result<ExitCode> {
    let (nodes, http) = lb_nodes(args, only)?;
    let mut ok = true;
    for n in &nodes {
        let url = http.url(n.admin_addr(), path);
        match http
            .post(&url, "application/json", Bytes::from(body.clone()), TIMEOUT)
            .await
        {
            Ok(r) if r.status.is_success() => match serde_json::from_slice::<T>(&r.body) {
                Ok(answer) => println!("{}: {}", n.name, describe(answer)),
                Err(_) => println!("{}: {}", n.name, String::from_utf8_lossy(&r.body)),
            },
            Ok(r) => {
                ok = false;
                let why = serde_json::from_slice::<LbErrorAnswer>(&r.body).map_or_else(
                    |_| String::from_utf8_lossy(&r.body).into_owned(),
                    |a| a.error,
                );
                eprintln!("{}: refused ({}): {why}", n.name, r.status);
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

/// One line for an applied reload.
fn describe_reload(r: ReloadAnswer) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    format!(
        "reloaded {} (generation {}); backends added: {}, removed: {}; servers added: {}, \
         removed: {}",
        r.reloaded,
        r.generation,
        list(&r.backends_added),
        list(&r.backends_removed),
        list(&r.servers_added),
        list(&r.servers_removed)
    )
}

/// One lb node's `/lb/servers` answer, as `webfarm lb servers --json` prints it.
#[derive(Serialize)]
struct NodeServers {
    /// The lb node's name.
    name: String,
    /// Its answer, whose keys sit beside `name`.
    #[serde(flatten)]
    answer: LbServersAnswer,
}

/// `webfarm lb servers --json`: `{"nodes": [...]}`.
#[derive(Serialize)]
struct ServersOutput {
    /// One entry per lb node that answered, in the order of the farm file.
    nodes: Vec<NodeServers>,
}

async fn servers(args: &FarmArgs, only: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let (nodes, http) = lb_nodes(args, only)?;
    let mut out = Vec::new();
    let mut ok = true;
    for n in &nodes {
        let url = http.url(n.admin_addr(), "/lb/servers");
        let answer = match http.get(&url, TIMEOUT).await {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<LbServersAnswer>(&r.body)
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
        out.push(NodeServers {
            name: n.name.clone(),
            answer,
        });
    }
    if as_json {
        // Through a `Value`: keys sorted, as the lb writes them.
        let doc = serde_json::to_value(ServersOutput { nodes: out })?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_table(&out);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per server of every node's backends, under a header.
fn print_table(nodes: &[NodeServers]) {
    println!(
        "{:<8} {:>4} {:<20} {:<6} {:>6} {:>5} {:>8} CHECK",
        "NODE", "GEN", "BACKEND/SERVER", "STATE", "WEIGHT", "CONNS", "TOTAL"
    );
    for n in nodes {
        for b in &n.answer.backends {
            print_servers(&n.name, n.answer.generation, b);
        }
    }
}

fn print_servers(node: &str, generation: u64, b: &BackendStatus) {
    for s in &b.servers {
        println!(
            "{:<8} {:>4} {:<20} {:<6} {:>6} {:>5} {:>8} {}",
            node,
            generation,
            format!("{}/{}", b.name, s.name),
            s.state,
            s.weight,
            s.current_conns,
            s.total_requests,
            s.check,
        );
    }
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
