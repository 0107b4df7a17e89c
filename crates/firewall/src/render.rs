//! A [`Ruleset`] as an nft script: what `nft -f` loads and what `webfarm firewall NODE`
//! prints.

use std::fmt::Write;

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
    // A DHCPv6 client asks ff02::1:2 (multicast) and the server answers from its link-local
    // address to the client's: conntrack never pairs the unicast reply with the multicast
    // request, so `established` does not accept it and a host configured by DHCPv6 would
    // lose its address when the lease runs out.
    "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment \"DHCPv6 replies\"",
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

/// The nft rules of one allow: one for both families when it is open to any source on any
/// address, else one per family it can match (a rule matches `ip` or `ip6` addresses, not
/// both).
fn lines(a: &Allow) -> Vec<String> {
    if a.from == From::Anywhere && a.to.is_empty() {
        return vec![format!(
            "{}accept comment \"{}\"",
            service(a, "meta l4proto"),
            a.why
        )];
    }
    [true, false]
        .into_iter()
        .filter_map(|v4| family_line(a, v4))
        .collect()
}

/// The rule of `a` for IPv4 (`v4`) or IPv6, if it has sources or destinations there.
fn family_line(a: &Allow, v4: bool) -> Option<String> {
    let (ip, l4) = if v4 {
        ("ip", "ip protocol")
    } else {
        ("ip6", "meta l4proto")
    };
    let mut m = String::new();
    if let From::Nets(nets) = &a.from {
        let nets: Vec<String> = nets
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .map(show_net)
            .collect();
        if nets.is_empty() {
            return None;
        }
        let _ = write!(m, "{ip} saddr {} ", set(nets.into_iter()));
    }
    if !a.to.is_empty() {
        let to: Vec<String> =
            a.to.iter()
                .filter(|t| t.is_ipv4() == v4)
                .map(ToString::to_string)
                .collect();
        if to.is_empty() {
            return None;
        }
        let _ = write!(m, "{ip} daddr {} ", set(to.into_iter()));
    }
    Some(format!("{m}{}accept comment \"{}\"", service(a, l4), a.why))
}

/// `tcp dport { 80, 443 } `, or `<l4> vrrp ` for VRRP.
fn service(a: &Allow, l4: &str) -> String {
    let ports = || set(a.ports.iter().map(ToString::to_string));
    match a.service {
        Service::Vrrp => format!("{l4} vrrp "),
        Service::Tcp => format!("tcp dport {} ", ports()),
        Service::Udp => format!("udp dport {} ", ports()),
    }
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
