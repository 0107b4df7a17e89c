//! `webfarm firewall NODE [--apply | --check]`: the nftables ruleset of a node's host,
//! derived from the farm file (crates/firewall).

use std::process::ExitCode;

use std::net::IpAddr;

use webfarm_config::{Farm, Node};
use webfarm_firewall::{From, Nft, Ruleset, Service, TABLE};

use crate::args::FarmArgs;
use crate::farm_file;

/// What `webfarm firewall` does with the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print the nft script on standard output.
    Print,
    /// Load it on this host (`nft -f`, one transaction); unless `force`, refused when it
    /// would not accept a new SSH connection from this session's client.
    Apply {
        /// Load even so.
        force: bool,
    },
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
    let rules = webfarm_firewall::ruleset(&resolved.farm, node);
    let script = webfarm_firewall::render(&rules, &source);
    match action {
        Action::Print => {
            print!("{script}");
            for note in notes(&resolved.farm, node) {
                eprintln!("webfarm firewall: note: {note}");
            }
        }
        Action::Apply { force } => {
            this_host_has(node)?;
            // Before loading: what the operator should know, and whether this SSH session
            // could come back in.
            for note in notes(&resolved.farm, node) {
                eprintln!("webfarm firewall: note: {note}");
            }
            let ssh = std::env::var("SSH_CONNECTION").ok();
            if let Some(why) = ssh_lockout(&rules, resolved.farm.firewall.ssh_port, ssh.as_deref())
            {
                anyhow::ensure!(force, "{why}; nothing was loaded (--force loads it anyway)");
                eprintln!("webfarm firewall: warning: {why}; loading anyway (--force)");
            }
            webfarm_firewall::apply(&Nft::here(), &script)?;
            println!(
                "loaded table {TABLE} for {} ({} rules after the common ones); every other \
                 table is as it was",
                node.name,
                rules.allows.len()
            );
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
    anyhow::ensure!(
        webfarm_vrrp::netif::interface_of(node.address).is_ok(),
        "{}'s address {} is not an address of this host: these are the rules of {}'s host, \
         and here they would close what this host serves; run it there (or load the \
         printed script with nft -f on purpose)",
        node.name,
        node.address,
        node.name
    );
    Ok(())
}

/// Why loading `rules` would lock this SSH session's operator out, or `None`.
/// `ssh_connection` is `SSH_CONNECTION` (`client port server port`); without it (not over
/// SSH, or not parsable) there is nothing to protect. The session itself survives (`ct
/// state established` accepts it), but a new connection from the same client to the same
/// address and port must be accepted by a rule of `rules`, or the operator cannot come back.
fn ssh_lockout(
    rules: &Ruleset,
    ssh_port: Option<u16>,
    ssh_connection: Option<&str>,
) -> Option<String> {
    let mut f = ssh_connection?.split_whitespace();
    let client = f.next()?.parse::<IpAddr>().ok()?.to_canonical();
    let _ = f.next()?;
    let server = f.next()?.parse::<IpAddr>().ok()?.to_canonical();
    let port = f.next()?.parse::<u16>().ok()?;
    if client.is_loopback() {
        return None; // over lo, which every host accepts
    }
    let accepted = rules.allows.iter().any(|a| {
        a.service == Service::Tcp
            && a.ports.iter().any(|p| (p.first..=p.last).contains(&port))
            && (a.to.is_empty() || a.to.contains(&server))
            && match &a.from {
                From::Anywhere => true,
                From::Nets(nets) => nets.iter().any(|n| n.contains(&client)),
            }
    });
    if accepted {
        return None;
    }
    let ssh = match ssh_port {
        Some(p) if p == port => format!("SSH (port {p})"),
        Some(p) => format!("port {port} (this session's; [firewall] ssh_port is {p})"),
        None => format!("port {port} (this session's; [firewall] ssh_port is off)"),
    };
    Some(format!(
        "this SSH session comes from {client}, and {}'s new rules would not accept a new \
         connection from it to {ssh}: once this session ends, you could not log in again; \
         add {client} (or its network) to [firewall] operators",
        rules.node
    ))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use webfarm_config::Farm;

    use super::ssh_lockout;

    fn farm(operators: &str) -> Farm {
        let text = format!(
            "[[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"10.0.0.21\"\n\
             [firewall]\noperators = [{operators}]\n"
        );
        Farm::parse(&text, None, Path::new(".")).unwrap()
    }

    fn decide(operators: &str, ssh: Option<&str>) -> Option<String> {
        let farm = farm(operators);
        let rules = webfarm_firewall::ruleset(&farm, farm.node("db-1").unwrap());
        ssh_lockout(&rules, farm.firewall.ssh_port, ssh)
    }

    #[test]
    fn ssh_lockout_is_refused_naming_the_address() {
        let from_ops = Some("192.0.2.7 50000 10.0.0.21 22");
        // The client is an operator: accepted.
        assert_eq!(decide("\"192.0.2.0/24\"", from_ops), None);
        // IPv4-mapped client addresses count as IPv4.
        let mapped = Some("::ffff:192.0.2.7 50000 ::ffff:10.0.0.21 22");
        assert_eq!(decide("\"192.0.2.0/24\"", mapped), None);
        // No operators at all: no SSH rule.
        let why = decide("", from_ops).expect("locked out");
        assert!(why.contains("192.0.2.7"), "{why}");
        assert!(why.contains("[firewall] operators"), "{why}");
        // An operator list that does not hold the client.
        let why = decide("\"198.51.100.0/24\"", from_ops).expect("locked out");
        assert!(
            why.contains("192.0.2.7") && why.contains("port 22"),
            "{why}"
        );
        // sshd on another port than ssh_port: that port is closed.
        let other = Some("192.0.2.7 50000 10.0.0.21 2222");
        assert!(decide("\"192.0.2.0/24\"", other).is_some());
        // Not over SSH, unparsable, or from loopback: nothing to protect.
        assert_eq!(decide("", None), None);
        assert_eq!(decide("", Some("garbage")), None);
        assert_eq!(decide("", Some("127.0.0.1 50000 127.0.0.1 22")), None);
    }
}
