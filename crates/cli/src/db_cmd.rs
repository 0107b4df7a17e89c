//! `webfarm db ...`: membership of the db cluster at run time, through any db node's SQL API
//! (the node forwards to the leader): `nodes`, `add`, `remove`, `promote`, `step-down`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};
use webfarm_config::{Farm, Node, Replica, Role};
use webfarm_node::http::HttpClient;

use crate::args::FarmArgs;
use crate::farm_file;

/// How long a membership change may take (adding waits for the node to catch up).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long listing the members may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// `webfarm db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// List the cluster's members: voter or learner, leader, reachable, replication lag.
    Nodes {
        /// The JSON of `GET /cluster/nodes` instead of a table.
        #[arg(long)]
        json: bool,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Add a db node of the farm file to the running cluster: it joins as a learner, catches
    /// up (from a snapshot if it is far behind), then is promoted if it is a voter.
    Add {
        /// The node's name in the farm file.
        node: String,
        /// Add it as a learner (read-only replica), whatever the farm file says.
        #[arg(long, conflicts_with = "voter")]
        learner: bool,
        /// Add it as a voter, whatever the farm file says.
        #[arg(long)]
        voter: bool,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Remove a node from the cluster (a voter or a learner); the leader hands its leadership
    /// over first when it removes itself.
    Remove {
        /// The node's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Make a learner a voter, once it has caught up.
    Promote {
        /// The learner's name.
        node: String,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
    /// Hand leadership over to another voter (planned maintenance, no election timeout).
    StepDown {
        /// The voter to hand leadership to (default: the most up-to-date voter).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// File and data directory.
        #[command(flatten)]
        farm: FarmArgs,
    },
}

/// Runs one `webfarm db` command. Exit code 0 when the change was made.
///
/// # Errors
///
/// An invalid farm file, no db node answering, or the cluster refusing the change (with the
/// leader's reason).
pub async fn run(command: &DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Nodes { json, farm } => nodes(farm, *json).await,
        DbCommand::Add {
            node,
            learner,
            voter,
            farm,
        } => {
            let farm = farm_file::resolve(farm)?.farm;
            let n = db_node(&farm, node)?;
            let voter = match (learner, voter) {
                (true, _) => false,
                (_, true) => true,
                _ => n.replica == Replica::Voter,
            };
            let body = json!({
                "id": n.name,
                "addr": n.raft_addr().to_string(),
                "api_addr": n.main_addr().to_string(),
                "voter": voter,
            });
            let v = change(&farm, Method::POST, "/join", &body).await?;
            let kind = v["replica"].as_str().unwrap_or("member");
            if v["changed"] == json!(false) {
                println!("{node} is already a {kind}");
            } else {
                println!("{node} added as a {kind}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Remove { node, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            change(&farm, Method::DELETE, "/remove", &json!({"id": node})).await?;
            println!("{node} removed from the cluster; stop it before wiping or reusing its data");
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Promote { node, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            let v = change(
                &farm,
                Method::POST,
                "/cluster/promote",
                &json!({"id": node}),
            )
            .await?;
            if v["changed"] == json!(false) {
                println!("{node} is already a voter");
            } else {
                println!("{node} promoted to voter");
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::StepDown { to, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            let body = match to {
                Some(t) => json!({"to": t}),
                None => json!({}),
            };
            let v = change(&farm, Method::POST, "/cluster/step-down", &body).await?;
            println!(
                "leadership handed over from {} to {} in {} ms",
                v["from"].as_str().unwrap_or("?"),
                v["leader"].as_str().unwrap_or("?"),
                v["took_ms"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The db node named `name` in the farm file.
fn db_node<'a>(farm: &'a Farm, name: &str) -> anyhow::Result<&'a Node> {
    match farm.node(name) {
        Some(n) if n.role == Role::Db => Ok(n),
        Some(n) => bail!("{name} is a {} node, not a db node", n.role.as_str()),
        None => bail!(
            "no db node named {name:?} in the farm file; add it to the file (role = \"db\") \
             first, so that every node knows its addresses"
        ),
    }
}

/// Sends `method path` with `body` to the first db node of the farm that answers; its JSON
/// answer when it is a success.
async fn call(
    farm: &Farm,
    method: Method,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let http = HttpClient::new();
    let mut unreachable = Vec::new();
    for n in farm.nodes_with_role(Role::Db) {
        let url = format!("http://{}{path}", n.main_addr());
        let (content_type, bytes) = match body {
            Value::Null => (None, Bytes::new()),
            b => (Some("application/json"), Bytes::from(b.to_string())),
        };
        let sent = http
            .send(method.clone(), &url, content_type, bytes, timeout)
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                unreachable.push(format!("{}: {e}", n.name));
                continue;
            }
            Err(e) => return Err(anyhow!(e)).context(format!("{method} {path} on {}", n.name)),
        };
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).trim().to_string()));
        if r.status.is_success() {
            return Ok(v);
        }
        let reason = v["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string());
        bail!("{} answered {}: {reason}", n.name, r.status);
    }
    if unreachable.is_empty() {
        bail!("the farm file has no db node");
    }
    bail!(
        "no db node of the farm answers ({}); is the farm running (`webfarm up`)?",
        unreachable.join("; ")
    )
}

async fn change(farm: &Farm, method: Method, path: &str, body: &Value) -> anyhow::Result<Value> {
    call(farm, method, path, body, CHANGE_TIMEOUT).await
}

async fn nodes(args: &FarmArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let farm = farm_file::resolve(args)?.farm;
    let v = call(
        &farm,
        Method::GET,
        "/cluster/nodes",
        &Value::Null,
        LIST_TIMEOUT,
    )
    .await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let members = v["nodes"].as_array().cloned().unwrap_or_default();
    let mut rows = vec![[
        "NODE",
        "REPLICA",
        "STATE",
        "LEADER",
        "REACHABLE",
        "APPLIED",
        "LAG",
        "API",
        "RAFT",
    ]
    .map(String::from)];
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for m in &members {
        rows.push([
            text(&m["name"]),
            text(&m["replica"]),
            text(&m["raft_state"]).to_lowercase(),
            if m["leader"] == json!(true) { "*" } else { "" }.to_string(),
            if m["reachable"] == json!(true) {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            text(&m["applied_index"]),
            text(&m["lag"]),
            text(&m["api_addr"]),
            text(&m["raft_addr"]),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!(
        "leader {}, term {}, membership at log index {}{}",
        text(&v["leader"]),
        text(&v["term"]),
        text(&v["membership_index"]),
        if v["joint"] == json!(true) {
            " (changing: joint consensus)"
        } else {
            ""
        }
    );
    let outside: Vec<&str> = farm
        .nodes_with_role(Role::Db)
        .map(|n| n.name.as_str())
        .filter(|name| !members.iter().any(|m| m["name"] == *name))
        .collect();
    if !outside.is_empty() {
        println!(
            "in the farm file but not members: {} (add with `webfarm db add NODE`)",
            outside.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
