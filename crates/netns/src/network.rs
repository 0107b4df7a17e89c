//! The bridge, the namespaces and their veths: creating, using and removing them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::ip::{self, ip};
use crate::{Block, NetnsError};

/// The names of a network: prefix and address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Names every namespace (`<prefix>-<host>`), veth (`<prefix>-<octet>`) and the bridge
    /// (`<prefix>-br0`): 1 to 8 lowercase letters and digits, so two networks with
    /// different prefixes never share a name.
    pub prefix: String,
    /// The hosts' addresses; the bridge has `.1`.
    pub block: Block,
}

impl Spec {
    /// A spec, checking the prefix.
    ///
    /// # Errors
    ///
    /// [`NetnsError::Invalid`] for a prefix that is empty, longer than 8 characters (link
    /// names have at most 15) or not lowercase letters and digits.
    pub fn new(prefix: &str, block: Block) -> Result<Spec, NetnsError> {
        let ok = (1..=8).contains(&prefix.len())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(NetnsError::Invalid(format!(
                "netns prefix {prefix:?}: expected 1 to 8 lowercase letters and digits"
            )));
        }
        Ok(Spec {
            prefix: prefix.to_string(),
            block,
        })
    }

    /// `<prefix>-br0`.
    pub fn bridge(&self) -> String {
        format!("{}-br0", self.prefix)
    }

    /// `<prefix>-<host>`: the namespace of host `host`.
    pub fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `<prefix>-<last octet>`: the bridge's end of the veth of the host with address `addr`.
    pub fn veth(&self, addr: Ipv4Addr) -> String {
        format!("{}-{}", self.prefix, addr.octets()[3])
    }

    fn is_our_veth(&self, link: &str) -> bool {
        link.strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// A host: a name (its namespace is `<prefix>-<name>`) and its address in the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name, e.g. a node's name (`db-1`).
    pub name: String,
    /// Its address on `eth0`.
    pub addr: Ipv4Addr,
}

impl Host {
    /// Host `name` with address `addr`.
    pub fn new(name: &str, addr: Ipv4Addr) -> Host {
        Host {
            name: name.to_string(),
            addr,
        }
    }
}

/// A bridge and its hosts, removed again by [`Network::remove`] or on drop.
#[derive(Debug)]
pub struct Network {
    spec: Spec,
    hosts: Vec<Host>,
    bridge_made: bool,
}

impl Network {
    /// Removes leftovers of the same prefix ([`cleanup`]), then creates the bridge and one
    /// namespace per host. On failure, what was created is removed again.
    ///
    /// # Errors
    ///
    /// Missing privileges, an invalid host (address outside the block, two hosts with one
    /// name or address), a namespace of the prefix still in use, or a failed `ip` command.
    pub fn create(spec: Spec, hosts: Vec<Host>) -> Result<Network, NetnsError> {
        ip::check_privileges()?;
        check_hosts(&spec, &hosts)?;
        cleanup(&spec)?;
        let mut net = Network {
            spec,
            hosts: Vec::new(),
            bridge_made: false,
        };
        net.add_bridge()?;
        for h in hosts {
            net.add_host(h)?;
        }
        Ok(net)
    }

    /// The names and block.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The hosts created so far.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    fn add_bridge(&mut self) -> Result<(), NetnsError> {
        let br = self.spec.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        self.bridge_made = true;
        let gw = format!("{}/24", self.spec.block.gateway());
        ip(&["addr", "add", &gw, "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        Ok(())
    }

    /// Adds one more host: its namespace with `lo` up, and `eth0` with its address on the
    /// bridge.
    ///
    /// # Errors
    ///
    /// An invalid host or a failed `ip` command (the host's namespace is removed again with
    /// the network).
    pub fn add_host(&mut self, host: Host) -> Result<(), NetnsError> {
        let mut all = self.hosts.clone();
        all.push(host.clone());
        check_hosts(&self.spec, &all)?;
        let ns = self.spec.namespace(&host.name);
        let veth = self.spec.veth(host.addr);
        ip(&["netns", "add", &ns])?;
        self.hosts.push(host.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.spec.bridge(), "up"])?;
        let addr = format!("{}/24", host.addr);
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace of host `name`.
    ///
    /// # Panics
    ///
    /// When the network has no such host (a bug of the caller).
    pub fn namespace(&self, name: &str) -> String {
        assert!(
            self.hosts.iter().any(|h| h.name == name),
            "no host {name:?} in the network"
        );
        self.spec.namespace(name)
    }

    /// `ip netns exec <namespace of host> program`: a command to complete (arguments, stdio)
    /// and spawn; the program runs with the host's network, exactly as on a separate host
    /// (`ip` execs it: its pid is the child's).
    ///
    /// # Panics
    ///
    /// As [`Network::namespace`].
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(host)])
            .arg(program);
        cmd
    }

    /// Runs `args` in host `host`'s namespace and waits for it; its stdout.
    ///
    /// # Errors
    ///
    /// The command could not run or exited with a failure (its stderr in the error).
    pub fn run(&self, host: &str, args: &[&str]) -> Result<String, NetnsError> {
        let ns = self.namespace(host);
        let mut all = vec!["netns", "exec", &ns];
        all.extend_from_slice(args);
        ip::run(Command::new("ip").args(&all), &all)
    }

    /// Removes every host's veth and namespace, then the bridge.
    ///
    /// # Errors
    ///
    /// The first `ip` command that failed; the others were still tried.
    pub fn remove(mut self) -> Result<(), NetnsError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), NetnsError> {
        let mut first = None;
        let mut note = |r: Result<String, NetnsError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let links: HashSet<String> = ip::links().into_iter().collect();
        let namespaces: HashSet<String> = ip::namespaces().into_iter().collect();
        for h in self.hosts.drain(..) {
            let veth = self.spec.veth(h.addr);
            if links.contains(&veth) {
                note(ip(&["link", "del", &veth]));
            }
            let ns = self.spec.namespace(&h.name);
            if namespaces.contains(&ns) {
                note(ip(&["netns", "del", &ns]));
            }
        }
        if std::mem::take(&mut self.bridge_made) {
            note(ip(&["link", "del", &self.spec.bridge()]));
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn check_hosts(spec: &Spec, hosts: &[Host]) -> Result<(), NetnsError> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for h in hosts {
        spec.block.check_host(h.addr)?;
        if h.name.is_empty() || h.name.contains(['/', ' ']) {
            return Err(NetnsError::Invalid(format!("host name {:?}", h.name)));
        }
        if !names.insert(&h.name) {
            return Err(NetnsError::Invalid(format!("two hosts named {:?}", h.name)));
        }
        if !addrs.insert(h.addr) {
            return Err(NetnsError::Invalid(format!(
                "two hosts with address {} ({} is one): each host needs its own",
                h.addr, h.name
            )));
        }
    }
    Ok(())
}

/// What exists of `spec`'s names: namespaces `<prefix>-*`, veths `<prefix>-<n>` and the
/// bridge (empty once a network was removed).
pub fn remains(spec: &Spec) -> Vec<String> {
    let ns_prefix = format!("{}-", spec.prefix);
    let mut left: Vec<String> = ip::namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&ns_prefix))
        .map(|n| format!("namespace {n}"))
        .collect();
    for l in ip::links() {
        if l == spec.bridge() || spec.is_our_veth(&l) {
            left.push(format!("link {l}"));
        }
    }
    left
}

/// Removes the leftovers of a network of the same prefix (a crashed run): every namespace
/// `<prefix>-*`, veth `<prefix>-<n>` and the bridge. Returns what it removed.
///
/// # Errors
///
/// [`NetnsError::InUse`] when such a namespace still holds processes (nothing is removed
/// then), or a failed `ip` command.
pub fn cleanup(spec: &Spec) -> Result<Vec<String>, NetnsError> {
    let ns_prefix = format!("{}-", spec.prefix);
    let ours: Vec<String> = ip::namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&ns_prefix))
        .collect();
    for ns in &ours {
        let pids = ip::pids(ns);
        if !pids.is_empty() {
            return Err(NetnsError::InUse {
                namespace: ns.clone(),
                pids: pids.join(" "),
            });
        }
    }
    let mut removed = Vec::new();
    for l in ip::links() {
        if l == spec.bridge() || spec.is_our_veth(&l) {
            ip(&["link", "del", &l])?;
            removed.push(format!("link {l}"));
        }
    }
    for ns in ours {
        ip(&["netns", "del", &ns])?;
        removed.push(format!("namespace {ns}"));
    }
    Ok(removed)
}
