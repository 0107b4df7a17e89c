//! `webfarm up --netns`: every node in its own network namespace, as on separate hosts.
//!
//! The farm file is derived first: every loopback address `127.x.y.N` written in it (node
//! addresses, server addresses, virtual IPs: any string value) becomes `N` of the netns
//! block (`10.77.0.N` by default), `base_dir` keeps relative paths resolving where they did,
//! and `data_dir` is made absolute. The result, `<data_dir>/netns-farm.toml`, is what every
//! node runs with and what `webfarm status --config` reads. Then the network is made
//! ([`webfarm_netns::Network`]: bridge `<prefix>-br0` holding `.1`, one namespace
//! `<prefix>-<node>` per node) and each node is started as `ip netns exec <namespace>
//! webfarm run --node NAME ...`: `ip` enters the namespace and execs the binary, so the
//! node's pid is the child's and the supervisor signals it as any other.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use webfarm_config::{Farm, DEFAULT_FARM_TOML};
use webfarm_netns::{Block, Host, Network, Spec};

use crate::args::{FarmArgs, NetnsArgs};
use crate::farm_file;
use crate::supervisor::{say, Preflight};

/// The derived farm and the network it needs, not created yet.
pub struct Prepared {
    /// `--config <data_dir>/netns-farm.toml`.
    pub args: FarmArgs,
    spec: Spec,
    hosts: Vec<Host>,
    /// Each node and its host firewall's nft script; empty with `--no-firewall`.
    firewalls: Vec<(String, String)>,
}

impl Prepared {
    /// Creates the network (removing the leftovers of a crashed run first).
    ///
    /// # Errors
    ///
    /// A [`Preflight`] error (exit code 2): a namespace of the prefix is in use, or `ip`
    /// failed (what was made is removed again).
    pub fn create(self) -> anyhow::Result<Network> {
        let removed = webfarm_netns::cleanup(&self.spec).map_err(preflight)?;
        if !removed.is_empty() {
            say(&format!(
                "removed leftovers of an earlier run: {}",
                removed.join(", ")
            ));
        }
        let net = Network::create(self.spec, self.hosts).map_err(preflight)?;
        let spec = net.spec();
        for (node, script) in &self.firewalls {
            let nft = webfarm_firewall::Nft::in_netns(&spec.namespace(node));
            webfarm_firewall::apply(&nft, script).map_err(|e| {
                Preflight(format!("webfarm up --netns: the firewall of {node}: {e}"))
            })?;
        }
        if !self.firewalls.is_empty() {
            say(&format!(
                "netns: each namespace runs its node's firewall (`webfarm firewall NODE`, table \
                 {}); this host ({}) is an operator; --no-firewall leaves them open",
                webfarm_firewall::TABLE,
                spec.block.gateway()
            ));
        }
        say(&format!(
            "netns: {} namespaces {}-<node> on bridge {} ({}/24 is this host); nodes run with \
             {}",
            net.hosts().len(),
            spec.prefix,
            spec.bridge(),
            spec.block.gateway(),
            self.args
                .config
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        ));
        Ok(net)
    }
}

/// Without `--netns`, `None`; with it: checks the privileges, derives the farm file and
/// writes it into the data directory. Nothing of the network exists yet.
///
/// # Errors
///
/// A [`Preflight`] error (exit code 2): not root, no `ip`, no `nft` (unless
/// `--no-firewall`), a bad prefix or block, two addresses that map to one; or an invalid
/// farm file.
pub fn prepare(args: &FarmArgs, opts: &NetnsArgs) -> anyhow::Result<Option<Prepared>> {
    if !opts.netns {
        return Ok(None);
    }
    webfarm_netns::check_privileges().map_err(|e| Preflight(format!("webfarm up --netns: {e}")))?;
    if !opts.no_firewall {
        let nft = std::process::Command::new("nft").arg("--version").output();
        if !nft.is_ok_and(|o| o.status.success()) {
            return Err(Preflight(
                "webfarm up --netns loads each node's firewall with nft, which is not \
                 installed: apt-get install nftables, or pass --no-firewall"
                    .into(),
            )
            .into());
        }
    }
    let block: Block = opts.netns_net.parse().map_err(preflight)?;
    let spec = Spec::new(&opts.netns_prefix, block).map_err(preflight)?;
    let original = farm_file::resolve(args)?;
    let (text, base) = match &original.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        ),
        None => (DEFAULT_FARM_TOML.to_string(), std::env::current_dir()?),
    };
    let data_dir = &original.farm.data_dir;
    let derived = derive(&text, &base, data_dir, block).map_err(Preflight)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = derived_path(data_dir);
    std::fs::write(&path, derived).with_context(|| format!("cannot write {}", path.display()))?;
    let farm = Farm::load(&path)?;
    let hosts = hosts(&farm).map_err(Preflight)?;
    let source = path.display().to_string();
    let firewalls = match opts.no_firewall {
        true => Vec::new(),
        false => farm
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    crate::firewall_cmd::script(&farm, n, &source),
                )
            })
            .collect(),
    };
    Ok(Some(Prepared {
        args: FarmArgs {
            config: Some(path),
            data_dir: None,
        },
        spec,
        hosts,
        firewalls,
    }))
}

/// The command that starts `exe` in node `node`'s namespace (`ip netns exec`), or `exe`
/// itself without a network.
pub fn command(spec: Option<&Spec>, exe: &Path, node: &str) -> tokio::process::Command {
    match spec {
        Some(spec) => {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", &spec.namespace(node)]).arg(exe);
            cmd
        }
        None => tokio::process::Command::new(exe),
    }
}

/// Removes the network, if there is one, and says so (or what could not be removed).
pub fn remove(network: Option<Network>) {
    let Some(net) = network else { return };
    let bridge = net.spec().bridge();
    match net.remove() {
        Ok(()) => say(&format!(
            "netns: removed the namespaces, veths and {bridge}"
        )),
        Err(e) => say(&format!("netns: could not remove everything: {e}")),
    }
}

fn preflight(e: webfarm_netns::NetnsError) -> anyhow::Error {
    Preflight(format!("webfarm up --netns: {e}")).into()
}

/// One host per node, at the node's address.
fn hosts(farm: &Farm) -> Result<Vec<Host>, String> {
    let mut owner: BTreeMap<IpAddr, &str> = BTreeMap::new();
    let mut hosts = Vec::new();
    for n in &farm.nodes {
        let IpAddr::V4(v4) = n.address else {
            return Err(format!(
                "node {}: --netns needs IPv4 node addresses, not {}",
                n.name, n.address
            ));
        };
        if let Some(other) = owner.insert(n.address, &n.name) {
            return Err(format!(
                "nodes {other} and {} share address {}: with --netns each node is a host \
                 of its own and needs its own address",
                n.name, n.address
            ));
        }
        hosts.push(Host::new(&n.name, v4));
    }
    Ok(hosts)
}

/// The farm file `text` with every `127.x.y.N` in a string value moved to `N` of `block`,
/// `base_dir` set to `base` and `data_dir` to `data_dir`.
fn derive(text: &str, base: &Path, data_dir: &Path, block: Block) -> Result<String, String> {
    let mut value: toml::Table = text
        .parse()
        .map_err(|e| format!("the farm file is not TOML: {e}"))?;
    operators_on_the_bridge(&mut value, block)?;
    let mut moved = BTreeMap::new();
    for (_, v) in value.iter_mut() {
        rewrite(v, block, &mut moved);
    }
    let mut seen: BTreeMap<Ipv4Addr, Ipv4Addr> = BTreeMap::new();
    for (from, to) in &moved {
        if let Some(other) = seen.insert(*to, *from) {
            return Err(format!(
                "--netns maps both {other} and {from} to {to} (the last octet is kept): give \
                 them different last octets"
            ));
        }
        block
            .check_host(*to)
            .map_err(|e| format!("{from} maps to {to}: {e}"))?;
    }
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    value.insert("base_dir".into(), path(base));
    value.insert("data_dir".into(), path(data_dir));
    let header = format!(
        "# Derived by `webfarm up --netns` from the farm file (loopback addresses moved to \
         {block}).\n# Rewritten on every start; use it with `webfarm status --config`.\n"
    );
    Ok(header + &toml::to_string(&value).map_err(|e| e.to_string())?)
}

/// `[firewall] operators` of the derived file: the bridge's address (this host, where the
/// supervisor and `webfarm status` run) added, loopback entries (meaningless between
/// namespaces) removed.
fn operators_on_the_bridge(value: &mut toml::Table, block: Block) -> Result<(), String> {
    let firewall = value
        .entry("firewall")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(firewall) = firewall else {
        return Err("firewall: expected a table ([firewall])".into());
    };
    let operators = firewall
        .entry("operators")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(list) = operators else {
        return Err("firewall.operators: expected a list of networks".into());
    };
    list.retain(|v| {
        let text = v.as_str().unwrap_or_default();
        let addr = text.split('/').next().unwrap_or_default();
        !addr.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
    });
    list.push(toml::Value::String(block.gateway().to_string()));
    Ok(())
}

fn rewrite(v: &mut toml::Value, block: Block, moved: &mut BTreeMap<Ipv4Addr, Ipv4Addr>) {
    match v {
        toml::Value::String(s) => *s = rewrite_str(s, block, moved),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, block, moved)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| rewrite(x, block, moved)),
        _ => {}
    }
}

/// `s` with each run of digits and dots that is a `127.x.y.N` address replaced.
fn rewrite_str(s: &str, block: Block, moved: &mut BTreeMap<Ipv4Addr, Ipv4Addr>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let mut flush = |run: &mut String, out: &mut String| {
        match run.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_loopback() => {
                let to = block.addr(ip.octets()[3]);
                moved.insert(ip, to);
                out.push_str(&to.to_string());
            }
            _ => out.push_str(run),
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Where the derived file of a farm with data directory `data_dir` is.
pub fn derived_path(data_dir: &Path) -> PathBuf {
    data_dir.join("netns-farm.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_move_to_the_block_and_paths_stay() {
        let block: Block = "10.77.0.0/24".parse().unwrap();
        let text = "data_dir = \"data\"\n[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\n\
                    address = \"127.0.1.10\"\n[[x]]\nvip = \"127.0.1.100/24\"\n\
                    other = \"192.0.2.1:80\"\nn = 127\n";
        let out = derive(text, Path::new("/etc/wf"), Path::new("/var/wf"), block).unwrap();
        assert!(out.contains("address = \"10.77.0.10\""), "{out}");
        assert!(out.contains("vip = \"10.77.0.100/24\""), "{out}");
        assert!(out.contains("other = \"192.0.2.1:80\""), "{out}");
        assert!(out.contains("base_dir = \"/etc/wf\""), "{out}");
        assert!(out.contains("data_dir = \"/var/wf\""), "{out}");
        // The bridge (this host) is the netns farm's operator.
        assert!(out.contains("operators = [\"10.77.0.1\"]"), "{out}");
        let text = "[firewall]\noperators = [\"127.0.0.1\", \"::1\", \"192.0.2.0/24\"]\n";
        let out = derive(text, Path::new("/"), Path::new("/d"), block).unwrap();
        assert!(
            out.contains("operators = [\"192.0.2.0/24\", \"10.77.0.1\"]"),
            "{out}"
        );
    }

    #[test]
    fn two_addresses_with_one_last_octet_are_refused() {
        let block: Block = "10.77.0.0/24".parse().unwrap();
        let text = "a = \"127.0.1.10\"\nb = \"127.0.2.10\"\n";
        let e = derive(text, Path::new("/"), Path::new("/d"), block).unwrap_err();
        assert!(e.contains("127.0.1.10 and 127.0.2.10 to 10.77.0.10"), "{e}");
        let e = derive("a = \"127.0.0.1\"", Path::new("/"), Path::new("/d"), block).unwrap_err();
        assert!(e.contains("bridge"), "{e}");
    }

    #[test]
    fn the_builtin_farm_derives_to_a_valid_farm() {
        let block: Block = "10.77.0.0/24".parse().unwrap();
        let out = derive(
            DEFAULT_FARM_TOML,
            Path::new("/repo"),
            Path::new("/d"),
            block,
        )
        .unwrap();
        let farm = Farm::parse(&out, None, Path::new("/elsewhere")).unwrap();
        assert_eq!(farm.node("db-1").unwrap().address.to_string(), "10.77.0.31");
        assert_eq!(farm.web.root, Path::new("/repo/site"));
        assert_eq!(farm.data_dir, Path::new("/d"));
        assert_eq!(hosts(&farm).unwrap().len(), farm.nodes.len());
    }
}
