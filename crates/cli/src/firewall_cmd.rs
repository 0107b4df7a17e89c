//! `webfarm firewall NODE [--apply | --check]`: the nftables ruleset of a node's host,
//! derived from the farm file (crates/firewall).

use std::process::ExitCode;

use webfarm_config::{Farm, Node};
use webfarm_firewall::{Nft, TABLE};

use crate::args::FarmArgs;
use crate::farm_file;

/// What `webfarm firewall` does with the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print the nft script on standard output.
    Print,
    /// Load it on this host (`nft -f`, one transaction).
    Apply,
    /// Compare this host's live table with it; exit 1 naming the differences.
    Check,
}

/// Runs `webfarm firewall`.
///
/// # Errors
///
/// An invalid farm file (exit code 2); an unknown node, nft missing or refusing the script,
/// or `--check` unable to read the live ruleset (exit code 1).
pub fn run(node: &str, action: Action, args: &FarmArgs) -> anyhow::Result<ExitCode> {
    let resolved = farm_file::resolve(args)?;
    let node = farm_file::node(&resolved.farm, node)?;
    let source = resolved
        .config
        .as_ref()
        .map_or("the built-in farm".to_string(), |p| p.display().to_string());
    let script = script(&resolved.farm, node, &source);
    match action {
        Action::Print => {
            print!("{script}");
            for note in notes(&resolved.farm, node) {
                eprintln!("webfarm firewall: note: {note}");
            }
        }
        Action::Apply => {
            this_host_has(node)?;
            webfarm_firewall::apply(&Nft::here(), &script)?;
            println!(
                "loaded table {TABLE} for {} ({} rules after the common ones); every other \
                 table is as it was",
                node.name,
                webfarm_firewall::ruleset(&resolved.farm, node).allows.len()
            );
            for note in notes(&resolved.farm, node) {
                eprintln!("webfarm firewall: note: {note}");
            }
        }
        Action::Check => {
            let diffs = webfarm_firewall::check(&Nft::here(), &script)?;
            if !diffs.is_empty() {
                eprintln!(
                    "table {TABLE} on this host differs from {}'s rules ({source}):",
                    node.name
                );
                for d in diffs {
                    eprintln!("  {d}");
                }
                eprintln!(
                    "`webfarm firewall {} --apply` loads the expected rules",
                    node.name
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("table {TABLE} matches {}'s rules", node.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to load `node`'s rules on a host that does not hold its address: they would
/// close what this host serves (a loopback address counts as held: `lo` holds 127.0.0.0/8).
fn this_host_has(node: &Node) -> anyhow::Result<()> {
    if node.address.is_loopback() {
        return Ok(());
    }
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| anyhow::anyhow!("cannot list this host's addresses: {e}"))?;
    let held = addrs.filter_map(|a| a.address).any(|sa| {
        let ip = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
            (Some(v4), _) => std::net::IpAddr::V4(v4.ip()),
            (_, Some(v6)) => std::net::IpAddr::V6(v6.ip()),
            _ => return false,
        };
        ip == node.address
    });
    anyhow::ensure!(
        held,
        "{}'s address {} is not an address of this host: these are the rules of {}'s host, \
         and here they would close what this host serves; run it there (or load the \
         printed script with nft -f on purpose)",
        node.name,
        node.address,
        node.name
    );
    Ok(())
}

/// The nft script of `node`'s host.
pub fn script(farm: &Farm, node: &Node, source: &str) -> String {
    webfarm_firewall::render(&webfarm_firewall::ruleset(farm, node), source)
}

/// What a reader of the script should know about the farm's `[firewall]` table.
fn notes(farm: &Farm, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if farm.firewall.operators.is_empty() {
        out.push(
            "[firewall] operators is empty: no operator host reaches the admin ports, the SQL \
             API or the dashboard, only the farm's own nodes do; list the operators' networks"
                .to_string(),
        );
    }
    if node.address.is_loopback() {
        out.push(format!(
            "{} is a loopback address: every packet to it arrives on lo, which the rules \
             accept; they restrict anything only on real interfaces (`webfarm up --netns`, or \
             one node per host)",
            node.address
        ));
    }
    out
}
