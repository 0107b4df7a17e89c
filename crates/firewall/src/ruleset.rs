//! What a node's host must accept, derived from the farm alone (a pure function).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use webfarm_config::{Farm, Node, PortRange, Proto, Role, Source};

/// What an [`Allow`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// TCP to the allow's ports.
    Tcp,
    /// UDP to the allow's ports.
    Udp,
    /// VRRP (IP protocol 112, RFC 5798): no ports.
    Vrrp,
}

/// Who an [`Allow`] accepts traffic from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// Any source address.
    Anywhere,
    /// Only these addresses and networks (never empty: an allow with no source is left
    /// out of the ruleset).
    Nets(Vec<IpNet>),
}

/// One accept rule of a host's input chain: `service` to `ports`, from `from`, to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// Why the host accepts it, such as `frontends www, www-https`: the nft rule's comment.
    pub why: String,
    /// TCP, UDP or VRRP.
    pub service: Service,
    /// Destination ports (empty for VRRP).
    pub ports: Vec<PortRange>,
    /// Sources.
    pub from: From,
    /// Destination addresses the rule is limited to (an lb's address and its VIPs); empty:
    /// any address of the host.
    pub to: Vec<IpAddr>,
}

/// The input rules of one node's host, beyond what every host accepts (loopback, replies,
/// the ICMP a host needs; see [`crate::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The node's name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Its address.
    pub address: IpAddr,
    /// The accept rules, in the order they are written.
    pub allows: Vec<Allow>,
}

/// The ruleset of `node`'s host in `farm`:
///
/// - lb: every frontend's port from anywhere, on its address and the VIPs of its virtual
///   routers; VRRP from the other lbs of those routers (over IPv6, VRRP comes from
///   link-local addresses: `fe80::/10`);
/// - web: its HTTP port from the lbs and their VIPs (the proxied requests and the health
///   checks; a master lb may connect from a VIP);
/// - db: the SQL API port from web and the other db nodes (queries, writes forwarded to the
///   leader, joins) and the operators; Raft from the other db nodes;
/// - dns: its port from anywhere, UDP and TCP;
/// - monitor: the dashboard from the operators;
/// - any port of the node that a backend lists as a server, from the lbs and their VIPs;
/// - every node: SSH (`[firewall] ssh_port`, default 22) from the operators; the admin port
///   from the monitor nodes and the operators;
/// - then `[[firewall.rules]]` that apply to the node.
pub fn ruleset(farm: &Farm, node: &Node) -> Ruleset {
    let operators = &farm.firewall.operators;
    let mut allows = role_allows(farm, node);
    server_allows(farm, node, &lbs(farm, node), &mut allows);
    if let Some(port) = farm.firewall.ssh_port {
        allows.push(tcp("SSH from operators", port, operators.clone()));
    }
    let mut admin = others(farm, Role::Monitor, node);
    admin.extend(operators.iter().copied());
    let why = "admin from monitor and operators";
    allows.push(tcp(why, node.admin_port, admin));
    allows.extend(extra_allows(farm, node));
    allows.retain(|a| a.from != From::Nets(Vec::new()));
    for a in &mut allows {
        bound(&mut a.why);
    }
    Ruleset {
        node: node.name.clone(),
        role: node.role,
        address: node.address,
        allows,
    }
}

/// The longest comment nft accepts on a rule (`NFTNL_UDATA_COMMENT_MAXLEN`): past it, nft
/// refuses the whole script.
pub const COMMENT_MAX: usize = 128;

/// Cuts `why` to [`COMMENT_MAX`] bytes, on a character boundary, ending in `...` when cut
/// (a farm with many frontends, or a long backend name, would otherwise make the derived
/// comment too long for nft).
fn bound(why: &mut String) {
    if why.len() <= COMMENT_MAX {
        return;
    }
    let mut end = COMMENT_MAX - 3;
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why.truncate(end);
    why.push_str("...");
}

#[cfg(test)]
pub(crate) fn bound_for_tests(why: &mut String) {
    bound(why);
}

/// The addresses of every node of `role` but `me` (which reaches itself over `lo`).
fn others(farm: &Farm, role: Role, me: &Node) -> Vec<IpNet> {
    farm.nodes_with_role(role)
        .filter(|n| n.name != me.name)
        .map(|n| IpNet::from(n.address))
        .collect()
}

/// The addresses the lbs connect from (proxied requests, health checks): every lb's address
/// but `me`'s, and the VIPs of the virtual routers of those lbs. The master holds its VIPs
/// on the interface, and Linux may pick one as the source of its own connections (over
/// IPv6, RFC 6724's longest matching prefix can prefer a /128 VIP to the node's address).
fn lbs(farm: &Farm, me: &Node) -> Vec<IpNet> {
    let mut nets = others(farm, Role::Lb, me);
    for v in &farm.vrrp {
        let other_lb = v
            .priority
            .keys()
            .any(|n| *n != me.name && farm.node(n).is_some_and(|n| n.role == Role::Lb));
        if other_lb {
            nets.extend(v.vips.iter().copied().map(IpNet::from));
        }
    }
    nets
}

/// What the node's role serves, to whom.
fn role_allows(farm: &Farm, node: &Node) -> Vec<Allow> {
    let operators = &farm.firewall.operators;
    let mut allows = Vec::new();
    match node.role {
        Role::Lb => lb_allows(farm, node, &mut allows),
        Role::Web => {
            allows.push(tcp("web HTTP from the lbs", node.port, lbs(farm, node)));
        }
        Role::Db => {
            let mut api = others(farm, Role::Web, node);
            api.extend(others(farm, Role::Db, node));
            api.extend(operators.iter().copied());
            allows.push(tcp("SQL API from web, db and operators", node.port, api));
            let raft = others(farm, Role::Db, node);
            allows.push(tcp("Raft from db", node.raft_port, raft));
        }
        Role::Dns => {
            for service in [Service::Udp, Service::Tcp] {
                allows.push(Allow {
                    why: "DNS".into(),
                    service,
                    ports: vec![one(node.port)],
                    from: From::Anywhere,
                    to: Vec::new(),
                });
            }
        }
        Role::Monitor => {
            let why = "dashboard from operators";
            allows.push(tcp(why, node.port, operators.clone()));
        }
    }
    allows
}

fn one(port: u16) -> PortRange {
    PortRange {
        first: port,
        last: port,
    }
}

fn tcp(why: &str, port: u16, from: Vec<IpNet>) -> Allow {
    Allow {
        why: why.into(),
        service: Service::Tcp,
        ports: vec![one(port)],
        from: From::Nets(dedup(from)),
        to: Vec::new(),
    }
}

fn dedup(nets: Vec<IpNet>) -> Vec<IpNet> {
    let mut seen = BTreeSet::new();
    nets.into_iter().filter(|n| seen.insert(*n)).collect()
}

/// The frontends on the lb's address and its VIPs, and VRRP from its routers' other lbs.
fn lb_allows(farm: &Farm, node: &Node, allows: &mut Vec<Allow>) {
    let routers: Vec<_> = farm
        .vrrp
        .iter()
        .filter(|v| v.priority.contains_key(&node.name))
        .collect();
    let mut to = vec![node.address];
    to.extend(routers.iter().flat_map(|v| v.vips.iter().copied()));
    let mut ports: Vec<u16> = farm.frontends.iter().map(|f| f.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let names: Vec<&str> = farm.frontends.iter().map(|f| f.name.as_str()).collect();
    allows.push(Allow {
        why: format!("frontends {}", names.join(", ")),
        service: Service::Tcp,
        ports: ports.into_iter().map(one).collect(),
        from: From::Anywhere,
        to,
    });
    let mut peers = Vec::new();
    for v in &routers {
        if v.vips.iter().any(IpAddr::is_ipv6) {
            // RFC 5798 §5.1.2.1: IPv6 advertisements come from the sender's link-local
            // address, which the farm file does not know.
            peers.push("fe80::/10".parse().expect("a valid network"));
            continue;
        }
        for name in v.priority.keys().filter(|n| **n != node.name) {
            if let Some(peer) = farm.node(name) {
                peers.push(IpNet::from(peer.address));
            }
        }
    }
    if !routers.is_empty() {
        allows.push(Allow {
            why: "VRRP from the other lbs".into(),
            service: Service::Vrrp,
            ports: Vec::new(),
            from: From::Nets(dedup(peers)),
            to: Vec::new(),
        });
    }
}

/// Ports of `node` that a backend lists as a server (an lb proxies and health-checks them),
/// other than the ones the role's own rules already open to the lbs.
fn server_allows(farm: &Farm, node: &Node, lbs: &[IpNet], allows: &mut Vec<Allow>) {
    let mut ports = BTreeSet::new();
    for b in &farm.backends {
        for s in b.servers.iter().filter(|s| s.addr.ip() == node.address) {
            let own = node.role == Role::Web && s.addr.port() == node.port;
            if !own {
                ports.insert((s.addr.port(), b.name.clone()));
            }
        }
    }
    for (port, backend) in ports {
        allows.push(tcp(
            &format!("backend {backend} from the lbs"),
            port,
            lbs.to_vec(),
        ));
    }
}

/// `[[firewall.rules]]` for `node`, in file order.
fn extra_allows<'f>(farm: &'f Farm, node: &'f Node) -> impl Iterator<Item = Allow> + 'f {
    farm.firewall
        .rules
        .iter()
        .filter(|r| r.applies_to(node))
        .map(|r| Allow {
            why: r.comment.clone(),
            service: match r.proto {
                Proto::Tcp => Service::Tcp,
                Proto::Udp => Service::Udp,
            },
            ports: vec![r.ports],
            from: if r.from.is_empty() {
                From::Anywhere
            } else {
                From::Nets(dedup(
                    r.from.iter().flat_map(|s| sources(farm, s)).collect(),
                ))
            },
            to: Vec::new(),
        })
}

fn sources(farm: &Farm, s: &Source) -> Vec<IpNet> {
    match s {
        Source::Net(n) => vec![*n],
        Source::Node(name) => farm
            .node(name)
            .map(|n| IpNet::from(n.address))
            .into_iter()
            .collect(),
        Source::Role(role) => farm
            .nodes_with_role(*role)
            .map(|n| IpNet::from(n.address))
            .collect(),
    }
}
