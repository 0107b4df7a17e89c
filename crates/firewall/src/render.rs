//! A [`Ruleset`] as an nft script: what `nft -f` loads and what `webfarm firewall NODE`
//! prints.

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ruleset::{Allow, From, Ruleset, Service};
use crate::TABLE;

/// What every host accepts before its role's rules (RFC 4890 §4.4 for ICMPv6; ICMP errors
/// that belong to a connection are `related` already, the ones listed here also reach a
/// host that has no such connection yet, e.g. PMTU errors for a reply in flight).
const BASE: &[&str] = &[
    "iif \"lo\" accept comment \"loopback\"",
    "ct state established,related accept comment \"replies and related ICMP errors\"",
    "ct state invalid drop",
    "icmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request } \
     accept comment \"ICMP: PMTU and other errors, ping\"",
    "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, \
     parameter-problem, echo-request } accept comment \"ICMPv6: PMTU and other errors, ping\"",
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit \
     255 accept comment \"IPv6 neighbour discovery\"",
    "icmpv6 type mld-listener-query ip6 saddr fe80::/10 accept comment \"MLD queries\"",
];

/// The nft script of `rules`: a header comment naming the node and `source` (where the farm
/// was read from), then `add table` + `delete table` + the table itself, so one `nft -f`
/// transaction replaces `table inet webfarm` whole (or creates it) and leaves every other
/// table alone. Input is dropped unless a rule accepts it; output and forwarding are not
/// filtered.
pub fn render(rules: &Ruleset, source: &str) -> String {
    let mut s = format!(
        "#!/usr/sbin/nft -f\n# webfarm firewall of {} (role {}, address {}), derived from {source}.\n\
         # Load it with `nft -f FILE` or `webfarm firewall {} --apply`: one transaction that\n\
         # replaces table {TABLE} and leaves every other table alone.\n",
        rules.node, rules.role, rules.address, rules.node
    );
    let _ = write!(
        s,
        "add table {TABLE}\ndelete table {TABLE}\n{}",
        table(rules)
    );
    s
}

/// `table inet webfarm { chain input { ... } }`, alone: what `nft list table` compares.
pub fn table(rules: &Ruleset) -> String {
    let mut s = format!(
        "table {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority filter; \
         policy drop;\n"
    );
    for line in BASE
        .iter()
        .map(|l| l.to_string())
        .chain(rules.allows.iter().flat_map(lines))
    {
        let _ = writeln!(s, "\t\t{line}");
    }
    s.push_str("\t\tcounter comment \"dropped by the policy\"\n\t}\n}\n");
    s
}

/// One nft rule per address family the allow can match (a rule matches `ip` or `ip6`
/// addresses, not both).
fn lines(a: &Allow) -> Vec<String> {
    let mut out = Vec::new();
    for v4 in [true, false] {
        let to: Vec<IpAddr> = a.to.iter().copied().filter(|t| t.is_ipv4() == v4).collect();
        if !a.to.is_empty() && to.is_empty() {
            continue;
        }
        let (ip, l4) = if v4 {
            ("ip", "ip protocol")
        } else {
            ("ip6", "meta l4proto")
        };
        let mut m = String::new();
        match &a.from {
            From::Anywhere if a.to.is_empty() && v4 => {}
            From::Anywhere if a.to.is_empty() => continue,
            From::Anywhere => {}
            From::Nets(nets) => {
                let nets: Vec<&IpNet> = nets
                    .iter()
                    .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                    .collect();
                if nets.is_empty() {
                    continue;
                }
                let _ = write!(m, "{ip} saddr {} ", set(nets.iter().map(|n| show_net(n))));
            }
        }
        if !to.is_empty() {
            let _ = write!(m, "{ip} daddr {} ", set(to.iter().map(ToString::to_string)));
        }
        match a.service {
            Service::Vrrp => {
                let _ = write!(m, "{l4} vrrp ");
            }
            Service::Tcp | Service::Udp => {
                let proto = if a.service == Service::Tcp {
                    "tcp"
                } else {
                    "udp"
                };
                let _ = write!(
                    m,
                    "{proto} dport {} ",
                    set(a.ports.iter().map(ToString::to_string))
                );
            }
        }
        let _ = write!(m, "accept comment \"{}\"", a.why);
        out.push(m);
    }
    out
}

/// A host as an address (`10.0.0.5`), a network as CIDR.
fn show_net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// `x` alone, or `{ x, y }`.
fn set(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}
