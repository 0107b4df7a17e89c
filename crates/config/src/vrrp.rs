//! `[[vrrp]]`: the load balancers' virtual routers (VRRP version 3, RFC 5798), in
//! keepalived's words (`vrrp_instance`): each instance has a virtual router id, one or more
//! virtual IPs (VIPs), and a priority per lb node; the lb with the highest priority that is
//! alive is master and serves the VIPs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::{Node, Role};

/// One virtual router (keepalived's `vrrp_instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Its name, such as `VI_1` (logs, `/status`, metrics).
    pub name: String,
    /// Virtual Router Identifier, 1..=255 (RFC 5798 §5.2.3); unique in the farm.
    pub vrid: u8,
    /// The virtual IPs, all of one family: bound (loopback) or added to the interface by the
    /// master.
    pub vips: Vec<IpAddr>,
    /// Each participating lb node's priority, 1..=255 (255: the address owner).
    pub priority: BTreeMap<String, u8>,
    /// Advertisement interval (centisecond resolution, 10ms..=40.95s). Default 1s.
    pub advert_int: Duration,
    /// Preempt mode: a higher-priority backup takes over from a lower-priority master.
    /// Default true.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after startup, wait this long before preempting.
    pub preempt_delay: Option<Duration>,
    /// The interface of the advertisements and VIPs; default: the one holding the node's
    /// address (real interfaces only).
    pub interface: Option<String>,
    /// Advertisements unicast to the other lb nodes of the instance (keepalived's
    /// `unicast_peer`) instead of multicast to 224.0.0.18 / ff02::12. Default false. On
    /// loopback advertisements are always unicast (UDP).
    pub unicast: bool,
}

impl VrrpInstance {
    /// Advertisement interval in centiseconds (the packets' unit).
    pub fn advert_centis(&self) -> u16 {
        (self.advert_int.as_millis() / 10) as u16
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    name: String,
    vrid: i64,
    vip: RawVips,
    priority: BTreeMap<String, i64>,
    #[serde(default, with = "humantime_serde")]
    advert_int: Option<Duration>,
    preempt: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    preempt_delay: Option<Duration>,
    interface: Option<String>,
    unicast: Option<bool>,
}

/// `vip = "10.0.0.100"` or `vip = ["10.0.0.100", "10.0.0.101"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawVips {
    One(String),
    Many(Vec<String>),
}

const MIN_ADVERT: Duration = Duration::from_millis(10);
const MAX_ADVERT: Duration = Duration::from_millis(40_950);

/// Stage two of `[[vrrp]]`: defaults, and every rule checked with its key.
pub(crate) fn resolve_vrrp(
    raw: &[RawVrrp],
    nodes: &[Node],
    problems: &mut Vec<String>,
) -> Vec<VrrpInstance> {
    let mut out: Vec<VrrpInstance> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("vrrp[{i}]");
        let inst = VrrpInstance {
            name: r.name.clone(),
            vrid: check_vrid(r.vrid, &key, problems),
            vips: check_vips(&r.vip, &key, problems),
            priority: check_priorities(&r.priority, nodes, &key, problems),
            advert_int: check_advert_int(r.advert_int, &key, problems),
            preempt: r.preempt.unwrap_or(true),
            preempt_delay: r.preempt_delay,
            interface: r.interface.clone(),
            unicast: r.unicast.unwrap_or(false),
        };
        check_against_others(&inst, &out, nodes, &key, problems);
        out.push(inst);
    }
    out
}

fn check_vrid(vrid: i64, key: &str, problems: &mut Vec<String>) -> u8 {
    match u8::try_from(vrid) {
        Ok(v) if v >= 1 => v,
        _ => {
            problems.push(format!(
                "{key}.vrid: {vrid} is not a virtual router id; use 1..=255"
            ));
            0
        }
    }
}

fn check_vips(raw: &RawVips, key: &str, problems: &mut Vec<String>) -> Vec<IpAddr> {
    let texts = match raw {
        RawVips::One(s) => std::slice::from_ref(s),
        RawVips::Many(v) => v.as_slice(),
    };
    if texts.is_empty() {
        problems.push(format!("{key}.vip: give at least one virtual IP address"));
    }
    let mut vips = Vec::new();
    for t in texts {
        match t.parse::<IpAddr>() {
            Ok(a) if !vips.contains(&a) => vips.push(a),
            Ok(a) => problems.push(format!("{key}.vip: {a} is listed twice")),
            Err(_) => problems.push(format!(
                "{key}.vip: {t:?} is not an IP address; expected e.g. \"10.0.0.100\""
            )),
        }
    }
    if vips.windows(2).any(|w| w[0].is_ipv4() != w[1].is_ipv4()) {
        problems.push(format!(
            "{key}.vip: mixes IPv4 and IPv6; one virtual router carries one family (RFC 5798 \
             §5.2.9), use two instances"
        ));
    }
    vips
}

fn check_priorities(
    raw: &BTreeMap<String, i64>,
    nodes: &[Node],
    key: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, u8> {
    if raw.is_empty() {
        problems.push(format!(
            "{key}.priority: list the lb nodes of the virtual router, e.g. {{ \"lb-1\" = 200, \
             \"lb-2\" = 100 }}"
        ));
    }
    let mut out = BTreeMap::new();
    for (name, &p) in raw {
        match nodes.iter().find(|n| &n.name == name) {
            None => problems.push(format!("{key}.priority: no node named {name:?}")),
            Some(n) if n.role != Role::Lb => problems.push(format!(
                "{key}.priority: node {name:?} has role {}; only lb nodes run VRRP",
                n.role
            )),
            Some(_) => {}
        }
        match u8::try_from(p) {
            Ok(v) if v >= 1 => {
                out.insert(name.clone(), v);
            }
            _ => problems.push(format!(
                "{key}.priority.{name}: {p} is outside 1..=255 (255: the address owner)"
            )),
        }
    }
    out
}

fn check_advert_int(raw: Option<Duration>, key: &str, problems: &mut Vec<String>) -> Duration {
    let d = raw.unwrap_or(Duration::from_secs(1));
    if d < MIN_ADVERT || d > MAX_ADVERT || !d.as_micros().is_multiple_of(10_000) {
        problems.push(format!(
            "{key}.advert_int: {d:?} must be a whole number of centiseconds from 10ms to 40.95s \
             (RFC 5798's 12-bit Max Adver Int)"
        ));
    }
    d
}

/// Rules across instances and nodes: unique name and VRID, VIPs held by one instance and by
/// no node, the owner's priority (255) only for a node whose address is a VIP, the same
/// family everywhere, and loopback VIPs for loopback nodes.
fn check_against_others(
    inst: &VrrpInstance,
    before: &[VrrpInstance],
    nodes: &[Node],
    key: &str,
    problems: &mut Vec<String>,
) {
    if inst.name.is_empty() || before.iter().any(|o| o.name == inst.name) {
        problems.push(format!(
            "{key}.name: {:?} must be a unique, non-empty instance name",
            inst.name
        ));
    }
    if let Some(o) = before
        .iter()
        .find(|o| o.vrid == inst.vrid && inst.vrid != 0)
    {
        problems.push(format!(
            "{key}.vrid: {} is already the vrid of {:?}; each virtual router needs its own",
            inst.vrid, o.name
        ));
    }
    let held: HashMap<IpAddr, &str> = before
        .iter()
        .flat_map(|o| o.vips.iter().map(move |v| (*v, o.name.as_str())))
        .collect();
    for vip in &inst.vips {
        if let Some(o) = held.get(vip) {
            problems.push(format!("{key}.vip: {vip} is already a VIP of {o:?}"));
        }
        let taken = nodes.iter().find(|n| n.address == *vip);
        if let Some(n) = taken.filter(|n| !inst.priority.contains_key(&n.name)) {
            problems.push(format!(
                "{key}.vip: {vip} is the address of node {:?}; choose an address no node has",
                n.name
            ));
        }
    }
    for (name, &p) in &inst.priority {
        let Some(node) = nodes.iter().find(|n| &n.name == name) else {
            continue;
        };
        check_node(inst, node, p, key, problems);
    }
}

fn check_node(inst: &VrrpInstance, node: &Node, p: u8, key: &str, problems: &mut Vec<String>) {
    let owner = inst.vips.contains(&node.address);
    if p == 255 && !owner {
        problems.push(format!(
            "{key}.priority.{}: 255 is reserved for the address owner (a node whose address is \
             a VIP, RFC 5798 §5.2.4); use 1..=254",
            node.name
        ));
    }
    if owner && p != 255 {
        problems.push(format!(
            "{key}.vip: {} is the address of node {:?}; a VIP must not be a node's own address \
             unless that node has priority 255",
            node.address, node.name
        ));
    }
    let Some(vip) = inst.vips.first() else { return };
    if vip.is_ipv4() != node.address.is_ipv4() {
        problems.push(format!(
            "{key}.vip: {vip} and node {:?}'s address {} are of different families",
            node.name, node.address
        ));
    } else if vip.is_loopback() != node.address.is_loopback() {
        problems.push(format!(
            "{key}.vip: {vip} and node {:?}'s address {} must both be loopback addresses or \
             both not (the loopback transport binds the VIP; real interfaces add it)",
            node.name, node.address
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Farm;

    const NODES: &str = "[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"127.0.0.10\"\n\
        [[nodes]]\nname = \"lb-2\"\nrole = \"lb\"\naddress = \"127.0.0.11\"\n\
        [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"127.0.0.31\"\n\
        [[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"b\"\n\
        [[backends]]\nname = \"b\"\n[[backends.servers]]\naddress = \"127.0.0.9:80\"\n";

    fn parse(vrrp: &str) -> Result<Farm, String> {
        Farm::parse(&format!("{NODES}{vrrp}"), None, Path::new(".")).map_err(|e| e.to_string())
    }

    const GOOD: &str = "[[vrrp]]\nname = \"VI_1\"\nvrid = 51\nvip = \"127.0.0.8\"\n\
        priority = { \"lb-1\" = 200, \"lb-2\" = 100 }\n";

    #[test]
    fn defaults_are_keepalived_s() {
        let farm = parse(GOOD).unwrap();
        let v = &farm.vrrp[0];
        assert_eq!((v.name.as_str(), v.vrid), ("VI_1", 51));
        assert_eq!(v.advert_int, std::time::Duration::from_secs(1));
        assert_eq!(v.advert_centis(), 100);
        assert!(v.preempt && !v.unicast && v.preempt_delay.is_none());
        assert_eq!(v.priority["lb-1"], 200);
        assert_eq!(
            farm.vips(),
            vec!["127.0.0.8".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(farm.site_addresses(), farm.vips());
    }

    #[test]
    fn every_rule_names_its_key() {
        let rows = [
            ("vrid = 51", "vrid = 0", "vrrp[0].vrid: 0"),
            ("vrid = 51", "vrid = 256", "vrrp[0].vrid: 256"),
            ("vip = \"127.0.0.8\"", "vip = \"x\"", "vrrp[0].vip: \"x\""),
            (
                "vip = \"127.0.0.8\"",
                "vip = []",
                "vrrp[0].vip: give at least one",
            ),
            (
                "vip = \"127.0.0.8\"",
                "vip = [\"127.0.0.8\", \"::1\"]",
                "mixes IPv4 and IPv6",
            ),
            (
                "vip = \"127.0.0.8\"",
                "vip = \"10.0.0.8\"",
                "both be loopback",
            ),
            (
                "vip = \"127.0.0.8\"",
                "vip = \"127.0.0.10\"",
                "address of node \"lb-1\"",
            ),
            (
                "vip = \"127.0.0.8\"",
                "vip = \"127.0.0.31\"",
                "address of node \"db-1\"; choose",
            ),
            (
                "\"lb-2\" = 100",
                "\"db-1\" = 100",
                "node \"db-1\" has role db",
            ),
            ("\"lb-2\" = 100", "\"lb-9\" = 100", "no node named \"lb-9\""),
            ("\"lb-2\" = 100", "\"lb-2\" = 0", "vrrp[0].priority.lb-2: 0"),
            (
                "\"lb-2\" = 100",
                "\"lb-2\" = 255",
                "255 is reserved for the address owner",
            ),
            (
                "vrid = 51",
                "vrid = 51\nadvert_int = \"5ms\"",
                "vrrp[0].advert_int",
            ),
            (
                "vrid = 51",
                "vrid = 51\nadvert_int = \"41s\"",
                "vrrp[0].advert_int",
            ),
            (
                "vrid = 51",
                "vrid = 51\nadvert_int = \"15ms\"",
                "vrrp[0].advert_int",
            ),
        ];
        for (from, to, want) in rows {
            let e = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.contains(want), "{to}: {e}");
        }
        let e = parse(&format!("{GOOD}{GOOD}")).unwrap_err();
        assert!(e.contains("vrrp[1].name"), "{e}");
        assert!(e.contains("vrrp[1].vrid: 51 is already"), "{e}");
        assert!(e.contains("vrrp[1].vip: 127.0.0.8 is already"), "{e}");
        let e = parse(&GOOD.replace("vrid = 51", "vrid = 51\nadvert = 1")).unwrap_err();
        assert!(e.contains("advert"), "{e}");
    }

    #[test]
    fn without_vrrp_the_site_is_the_lb_addresses() {
        let farm = parse("").unwrap();
        assert!(farm.vips().is_empty());
        let want: Vec<std::net::IpAddr> =
            vec!["127.0.0.10".parse().unwrap(), "127.0.0.11".parse().unwrap()];
        assert_eq!(farm.site_addresses(), want);
    }
}
