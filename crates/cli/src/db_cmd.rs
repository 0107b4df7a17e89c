//! `webfarm db ...`: membership of the db cluster at run time, through any db node's SQL API
//! (the node forwards to the leader): `nodes`, `add`, `remove`, `promote`, `step-down`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use webfarm_config::{Farm, Node, Replica, Role};
use webfarm_db_client::{AdminClient, AdminError, JoinRequest, Target};

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
pub async fn run(command: &DbCommand, user: Option<&str>) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Nodes { json, farm } => nodes(farm, *json, user).await,
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
            let join = JoinRequest {
                id: n.name.clone(),
                addr: Some(n.raft_addr().to_string()),
                api_addr: Some(n.main_addr().to_string()),
                voter: Some(voter),
            };
            let a = finish(admin(&farm, user)?.join(&join, CHANGE_TIMEOUT).await)?;
            if a.changed {
                println!("{node} added as a {}", a.replica.as_str());
            } else {
                println!("{node} is already a {}", a.replica.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Remove { node, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            finish(admin(&farm, user)?.remove(node, CHANGE_TIMEOUT).await)?;
            println!("{node} removed from the cluster; stop it before wiping or reusing its data");
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Promote { node, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            let a = finish(admin(&farm, user)?.promote(node, CHANGE_TIMEOUT).await)?;
            if a.changed {
                println!("{node} promoted to voter");
            } else {
                println!("{node} is already a voter");
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::StepDown { to, farm } => {
            let farm = farm_file::resolve(farm)?.farm;
            let a = finish(
                admin(&farm, user)?
                    .step_down(to.as_deref(), CHANGE_TIMEOUT)
                    .await,
            )?;
            println!(
                "leadership transferred from {} to {} in {} ms",
                a.from, a.leader, a.took_ms
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

/// A client that asks the farm's db nodes in the order of the file (any of them forwards a
/// change to the leader).
fn admin(farm: &Farm, user: Option<&str>) -> anyhow::Result<AdminClient> {
    let targets = farm
        .nodes_with_role(Role::Db)
        .map(|n| Target {
            name: n.name.clone(),
            addr: n.main_addr().to_string(),
        })
        .collect();
    Ok(AdminClient::with_http(
        targets,
        farm_file::operator_http_as(farm, user)?,
    ))
}

/// An admin call's answer, or its failure worded for the farm's operator.
fn finish<T>(r: Result<T, AdminError>) -> anyhow::Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(AdminError::NoNode) => bail!("the farm file has no db node"),
        Err(AdminError::Unreachable { tried }) => bail!(
            "no db node of the farm answers ({}); is the farm running (`webfarm up`)?",
            tried.join("; ")
        ),
        Err(e) => Err(e.into()),
    }
}

async fn nodes(args: &FarmArgs, as_json: bool, user: Option<&str>) -> anyhow::Result<ExitCode> {
    let farm = farm_file::resolve(args)?.farm;
    let v = finish(admin(&farm, user)?.cluster_nodes(LIST_TIMEOUT).await)?;
    if as_json {
        // Through a `Value`, so the keys come out sorted.
        let v = serde_json::to_value(&v)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
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
    let or_dash = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    for m in &v.nodes {
        rows.push([
            m.name.clone(),
            m.replica.map_or("none", Replica::as_str).to_string(),
            m.raft_state
                .map_or_else(|| "-".to_string(), |s| s.as_str().to_lowercase()),
            if m.leader { "*" } else { "" }.to_string(),
            if m.reachable { "yes" } else { "no" }.to_string(),
            or_dash(m.applied_index),
            or_dash(m.lag.flatten()),
            m.api_addr.clone(),
            m.raft_addr.clone(),
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
        v.leader.as_deref().unwrap_or("-"),
        v.term,
        or_dash(v.membership_index),
        if v.joint {
            " (changing: joint consensus)"
        } else {
            ""
        }
    );
    let outside: Vec<&str> = farm
        .nodes_with_role(Role::Db)
        .map(|n| n.name.as_str())
        .filter(|name| !v.nodes.iter().any(|m| m.name == *name))
        .collect();
    if !outside.is_empty() {
        println!(
            "in the farm file but not members: {} (add with `webfarm db add NODE`)",
            outside.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
