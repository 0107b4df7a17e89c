//! `[firewall]`: who may reach each host besides the farm's own traffic: the operators'
//! networks and extra rules. The rules the farm itself needs (frontends from anywhere, a web
//! port only from the lbs, Raft only between db nodes...) are derived from the nodes by
//! `webfarm-firewall`; this table only adds to them.
//!
//! ```toml
//! [firewall]
//! operators = ["192.0.2.0/24", "2001:db8::/48"]
//!
//! [[firewall.rules]]
//! comment = "node_exporter"
//! port = 9100
//! from = ["192.0.2.10", "mon-1"]
//! ```

use ipnet::IpNet;
use serde::Deserialize;

use crate::net::parse_net;
use crate::{Node, Role};

/// The `[firewall]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSettings {
    /// Networks of the operators' hosts (where `webfarm status`, `webfarm sql`, the
    /// supervisor and browsers of the dashboard run): allowed to every admin port, to the db
    /// nodes' SQL API and to the monitor's dashboard. Default none.
    pub operators: Vec<IpNet>,
    /// The hosts' SSH port, open to the operators only, so that applying a ruleset over
    /// SSH leaves the operators a way back in. Default 22; `None` (`ssh_port = 0`): no SSH
    /// rule.
    pub ssh_port: Option<u16>,
    /// Extra allow rules (`[[firewall.rules]]`), in file order, after the farm's own.
    pub rules: Vec<FirewallRule>,
}

impl Default for FirewallSettings {
    fn default() -> FirewallSettings {
        FirewallSettings {
            operators: Vec::new(),
            ssh_port: Some(DEFAULT_SSH_PORT),
            rules: Vec::new(),
        }
    }
}

const DEFAULT_SSH_PORT: u16 = 22;

/// One `[[firewall.rules]]` entry: accept `proto` to `ports` from `from` on the hosts of
/// `nodes`/`roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    /// Shown as the rule's nft comment (at most 64 printable ASCII characters, no quotes);
    /// default `firewall.rules[i]`.
    pub comment: String,
    /// `tcp` (default) or `udp`.
    pub proto: Proto,
    /// The destination port or range (`port = 9100` or `port = "60000-60100"`), both ends
    /// included.
    pub ports: PortRange,
    /// Who may connect; empty: anywhere.
    pub from: Vec<Source>,
    /// The nodes whose hosts get the rule (names). With `roles` empty too: every node.
    pub nodes: Vec<String>,
    /// The roles whose nodes' hosts get the rule.
    pub roles: Vec<Role>,
}

impl FirewallRule {
    /// Whether the rule belongs in the ruleset of `node`'s host.
    pub fn applies_to(&self, node: &Node) -> bool {
        (self.nodes.is_empty() && self.roles.is_empty())
            || self.nodes.contains(&node.name)
            || self.roles.contains(&node.role)
    }
}

/// A transport protocol of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as nft writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Ports `first..=last` (one port when equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port, at least 1.
    pub first: u16,
    /// The last port, at least `first`.
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    /// `9100`, or `60000-60100` (nft's range syntax).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Where a rule's traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An address or network (`from = ["192.0.2.0/24"]`; a bare address is /32 or /128).
    Net(IpNet),
    /// A node of the farm, by name (`from = ["mon-1"]`): its address.
    Node(String),
    /// Every node of a role (`from_roles = ["web"]`).
    Role(Role),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFirewall {
    operators: Option<Vec<String>>,
    ssh_port: Option<u16>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    comment: Option<String>,
    proto: Option<Proto>,
    port: RawPort,
    from: Option<Vec<String>>,
    from_roles: Option<Vec<Role>>,
    nodes: Option<Vec<String>>,
    roles: Option<Vec<Role>>,
}

/// `port = 9100` or `port = "60000-60100"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    One(i64),
    Range(String),
}

/// Stage two of `[firewall]`: every value checked with its key path.
pub(crate) fn resolve_firewall(
    raw: &RawFirewall,
    nodes: &[Node],
    problems: &mut Vec<String>,
) -> FirewallSettings {
    let operators = raw
        .operators
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            parse_net(s)
                .map_err(|why| problems.push(format!("firewall.operators[{i}]: {why}")))
                .ok()
        })
        .collect();
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| resolve_rule(r, &format!("firewall.rules[{i}]"), nodes, problems))
        .collect();
    let ssh_port = match raw.ssh_port.unwrap_or(DEFAULT_SSH_PORT) {
        0 => None,
        p => Some(p),
    };
    FirewallSettings {
        operators,
        ssh_port,
        rules,
    }
}

fn resolve_rule(
    raw: &RawRule,
    key: &str,
    nodes: &[Node],
    problems: &mut Vec<String>,
) -> FirewallRule {
    let comment = raw.comment.clone().unwrap_or_else(|| key.to_string());
    let printable = comment.bytes().all(|b| (b' '..=b'~').contains(&b));
    if comment.is_empty() || comment.len() > 64 || !printable || comment.contains(['"', '\\']) {
        problems.push(format!(
            "{key}.comment: {comment:?} must be 1 to 64 printable ASCII characters without \
             quotes or backslashes (it becomes the nft rule's comment)"
        ));
    }
    let ports = parse_ports(&raw.port).unwrap_or_else(|why| {
        problems.push(format!("{key}.port: {why}"));
        PortRange { first: 1, last: 1 }
    });
    let rule = FirewallRule {
        comment,
        proto: raw.proto.unwrap_or_default(),
        ports,
        from: resolve_sources(raw, key, nodes, problems),
        nodes: raw.nodes.clone().unwrap_or_default(),
        roles: raw.roles.clone().unwrap_or_default(),
    };
    let unknown: Vec<_> = (rule.nodes.iter().enumerate())
        .filter(|(_, name)| !nodes.iter().any(|n| &n.name == *name))
        .collect();
    for (j, name) in &unknown {
        problems.push(format!("{key}.nodes[{j}]: no node named {name:?}"));
    }
    let targeted = !rule.nodes.is_empty() || !rule.roles.is_empty();
    if targeted && unknown.is_empty() && !nodes.iter().any(|n| rule.applies_to(n)) {
        problems.push(format!(
            "{key}.roles: the rule applies to no node of the farm (no node has those roles)"
        ));
    }
    rule
}

/// `from` (addresses, networks, node names) and `from_roles`.
fn resolve_sources(
    raw: &RawRule,
    key: &str,
    nodes: &[Node],
    problems: &mut Vec<String>,
) -> Vec<Source> {
    if raw.from.as_ref().is_some_and(Vec::is_empty)
        || raw.from_roles.as_ref().is_some_and(Vec::is_empty)
    {
        problems.push(format!(
            "{key}.from: an empty list allows no one; leave `from` and `from_roles` out to \
             allow any source"
        ));
    }
    let mut from = Vec::new();
    for (j, s) in raw.from.iter().flatten().enumerate() {
        if nodes.iter().any(|n| &n.name == s) {
            from.push(Source::Node(s.clone()));
            continue;
        }
        match parse_net(s) {
            Ok(net) => from.push(Source::Net(net)),
            Err(why) => problems.push(format!(
                "{key}.from[{j}]: {why}, nor the name of a node of the farm"
            )),
        }
    }
    from.extend(raw.from_roles.iter().flatten().map(|r| Source::Role(*r)));
    from
}

fn parse_ports(raw: &RawPort) -> Result<PortRange, String> {
    let port = |v: i64| match u16::try_from(v) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(format!("{v} is not a port; use 1..=65535")),
    };
    let (first, last) = match raw {
        RawPort::One(p) => (port(*p)?, port(*p)?),
        RawPort::Range(s) => {
            let bad = || format!("{s:?} is not a port or range; write 9100 or \"60000-60100\"");
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a = a.trim().parse::<i64>().map_err(|_| bad())?;
            let b = b.trim().parse::<i64>().map_err(|_| bad())?;
            (port(a)?, port(b)?)
        }
    };
    if first > last {
        return Err(format!("range {first}-{last} ends before it starts"));
    }
    Ok(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Farm;

    const NODES: &str = "[[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"127.0.0.21\"\n\
        [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"127.0.0.31\"\n";

    fn parse(firewall: &str) -> Result<Farm, String> {
        Farm::parse(&format!("{NODES}{firewall}"), None, Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn operators_and_rules_are_read() {
        let farm = parse(
            "[firewall]\noperators = [\"192.0.2.0/24\", \"2001:db8::1\"]\n\
             [[firewall.rules]]\nport = \"60000-60100\"\nproto = \"udp\"\n\
             from = [\"db-1\", \"10.0.0.0/8\"]\nfrom_roles = [\"web\"]\nroles = [\"db\"]\n\
             [[firewall.rules]]\ncomment = \"node_exporter\"\nport = 9100\n",
        )
        .unwrap();
        let fw = &farm.firewall;
        let ops: Vec<String> = fw.operators.iter().map(ToString::to_string).collect();
        assert_eq!(ops, ["192.0.2.0/24", "2001:db8::1/128"]);
        let r = &fw.rules[0];
        assert_eq!(
            (r.proto, r.ports.to_string()),
            (super::Proto::Udp, "60000-60100".into())
        );
        assert_eq!(r.comment, "firewall.rules[0]");
        assert_eq!(
            r.from,
            [
                super::Source::Node("db-1".into()),
                super::Source::Net("10.0.0.0/8".parse().unwrap()),
                super::Source::Role(crate::Role::Web)
            ]
        );
        assert!(r.applies_to(farm.node("db-1").unwrap()));
        assert!(!r.applies_to(farm.node("web-1").unwrap()));
        let r = &fw.rules[1];
        assert_eq!(
            (r.proto, r.ports.first, r.ports.last),
            (super::Proto::Tcp, 9100, 9100)
        );
        assert!(r.from.is_empty() && r.applies_to(farm.node("web-1").unwrap()));
        assert_eq!(
            parse("").unwrap().firewall,
            super::FirewallSettings::default()
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let rows = [
            ("operators = [\"10.0.0.1/8\"]", "firewall.operators[0]: \"10.0.0.1/8\" has host bits set; the network is 10.0.0.0/8"),
            ("operators = [\"nope\"]", "firewall.operators[0]: \"nope\" is not an address"),
            ("[[firewall.rules]]\nport = 0", "firewall.rules[0].port: 0 is not a port"),
            ("[[firewall.rules]]\nport = 70000", "firewall.rules[0].port: 70000 is not a port"),
            ("[[firewall.rules]]\nport = \"9-1\"", "firewall.rules[0].port: range 9-1 ends"),
            ("[[firewall.rules]]\nport = \"x\"", "firewall.rules[0].port: \"x\" is not a port or range"),
            ("[[firewall.rules]]\nport = 1\nfrom = [\"web-9\"]", "firewall.rules[0].from[0]: \"web-9\" is not an address or network; expected e.g. \"192.0.2.0/24\", nor the name"),
            ("[[firewall.rules]]\nport = 1\nfrom = []", "firewall.rules[0].from: an empty list allows no one"),
            ("[[firewall.rules]]\nport = 1\nnodes = [\"lb-1\"]", "firewall.rules[0].nodes[0]: no node named \"lb-1\""),
            ("[[firewall.rules]]\nport = 1\nroles = [\"dns\"]", "firewall.rules[0].roles: the rule applies to no node"),
            ("[[firewall.rules]]\nport = 1\ncomment = \"a\\\"b\"", "firewall.rules[0].comment:"),
            // nft's limit is 128; the rule's own comment stays well under it.
            ("[[firewall.rules]]\nport = 1\ncomment = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", "firewall.rules[0].comment: \"aaaa"),
        ];
        for (table, want) in rows {
            let text = if table.starts_with("[[") {
                table.to_string()
            } else {
                format!("[firewall]\n{table}\n")
            };
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{table}: {e}");
        }
        // Types and unknown keys fail at parse time, with the key path.
        for (table, want) in [
            (
                "[[firewall.rules]]\nport = 1\nproto = \"icmp\"",
                "firewall.rules[0].proto",
            ),
            (
                "[[firewall.rules]]\nport = 1\nroles = [\"router\"]",
                "firewall.rules[0].roles[0]",
            ),
            ("[[firewall.rules]]\nports = 1", "firewall.rules[0]"),
            ("[firewall]\noperator = []", "firewall"),
            ("[firewall]\nssh_port = 70000", "firewall.ssh_port"),
        ] {
            let e = parse(table).unwrap_err();
            assert!(e.contains(want), "{table}: {e}");
        }
    }
}
