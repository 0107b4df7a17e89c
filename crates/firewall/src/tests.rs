//! The derivation, role by role, and its rendering.

use std::path::Path;

use webfarm_config::Farm;

use crate::{render, ruleset, table, Allow, From, Service};

/// One allow as `tcp 8000 from 127.0.1.10,127.0.1.11 to any`.
fn show(a: &Allow) -> String {
    let service = match a.service {
        Service::Tcp => "tcp",
        Service::Udp => "udp",
        Service::Vrrp => "vrrp",
    };
    let ports: Vec<String> = a.ports.iter().map(ToString::to_string).collect();
    let from = match &a.from {
        From::Anywhere => "anywhere".to_string(),
        From::Nets(n) => n
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    let to = match a.to.as_slice() {
        [] => "any".to_string(),
        t => t
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    format!("{service} {} from {from} to {to}", ports.join(",")).replace("  ", " ")
}

fn shown(farm: &Farm, node: &str) -> Vec<String> {
    ruleset(farm, farm.node(node).unwrap())
        .allows
        .iter()
        .map(show)
        .collect()
}

/// The built-in farm, with two operator networks (one IPv6).
fn builtin_with_operators() -> Farm {
    let text = webfarm_config::DEFAULT_FARM_TOML.replace(
        "operators = []",
        "operators = [\"192.0.2.0/24\", \"2001:db8::/48\"]",
    );
    Farm::parse(&text, None, Path::new(".")).unwrap()
}

const OPS: &str = "192.0.2.0/24,2001:db8::/48";
const SSH: &str = "tcp 22 from 192.0.2.0/24,2001:db8::/48 to any";
const ADMIN: &str = "tcp 9000 from 127.0.1.5/32,192.0.2.0/24,2001:db8::/48 to any";

#[test]
fn each_role_accepts_what_the_farm_sends_it() {
    let farm = builtin_with_operators();
    let rows: &[(&str, &[&str])] = &[
        (
            "lb-1",
            &[
                "tcp 8080,8443 from anywhere to 127.0.1.10,127.0.1.8,127.0.1.9",
                "vrrp from 127.0.1.11/32 to any",
                SSH,
                ADMIN,
            ],
        ),
        (
            "web-2",
            &[
                // The lbs, and their VIPs: a master lb may connect from one.
                "tcp 8000 from 127.0.1.10/32,127.0.1.11/32,127.0.1.8/32,127.0.1.9/32 to any",
                SSH,
                ADMIN,
            ],
        ),
        (
            "db-1",
            &[
                &format!(
                    "tcp 4001 from 127.0.1.21/32,127.0.1.22/32,127.0.1.23/32,127.0.1.32/32,\
                     127.0.1.33/32,{OPS} to any"
                ),
                "tcp 4002 from 127.0.1.32/32,127.0.1.33/32 to any",
                SSH,
                ADMIN,
            ],
        ),
        (
            "dns-1",
            &[
                "udp 5353 from anywhere to any",
                "tcp 5353 from anywhere to any",
                SSH,
                ADMIN,
            ],
        ),
        (
            "mon-1",
            &[
                &format!("tcp 3000 from {OPS} to any"),
                SSH,
                // Other monitors and the operators; mon-1 reaches itself over lo.
                &format!("tcp 9000 from {OPS} to any"),
            ],
        ),
    ];
    for (node, want) in rows {
        assert_eq!(shown(&farm, node), *want, "{node}");
    }
}

#[test]
fn without_operators_only_the_farm_gets_in() {
    let farm = Farm::builtin();
    // No operator: the dashboard has no source at all, so no rule opens it.
    assert_eq!(shown(&farm, "mon-1"), Vec::<String>::new());
    assert_eq!(
        shown(&farm, "db-2")[0],
        "tcp 4001 from 127.0.1.21/32,127.0.1.22/32,127.0.1.23/32,127.0.1.31/32,127.0.1.33/32 to any"
    );
    assert_eq!(
        shown(&farm, "web-1")[1],
        "tcp 9000 from 127.0.1.5/32 to any"
    );
}

const SMALL: &str = "[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"2001:db8::10\"\n\
    [[nodes]]\nname = \"lb-2\"\nrole = \"lb\"\naddress = \"2001:db8::11\"\n\
    [[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"10.0.0.21\"\nport = 80\n\
    [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"10.0.0.31\"\nadmin_port = 9100\n\
    [[frontends]]\nname = \"www\"\nport = 80\ndefault_backend = \"web\"\n\
    [[frontends]]\nname = \"sql\"\nport = 4001\nmode = \"tcp\"\ndefault_backend = \"sql\"\n\
    [[backends]]\nname = \"web\"\n[[backends.servers]]\nname = \"web-1\"\n\
    [[backends]]\nname = \"sql\"\nmode = \"tcp\"\n\
    [[backends.servers]]\naddress = \"10.0.0.31:4001\"\n\
    [[vrrp]]\nname = \"VI_6\"\nvrid = 6\nvip = \"2001:db8::80\"\n\
    priority = { \"lb-1\" = 200, \"lb-2\" = 100 }\n";

#[test]
fn servers_vips_and_extra_rules() {
    let text = format!(
        "{SMALL}[firewall]\noperators = [\"192.0.2.7\"]\n\
         [[firewall.rules]]\ncomment = \"node_exporter\"\nport = 9101\nfrom_roles = [\"lb\"]\n\
         from = [\"db-1\"]\nroles = [\"web\", \"db\"]\n\
         [[firewall.rules]]\nport = \"60000-60010\"\nproto = \"udp\"\nnodes = [\"lb-2\"]\n"
    );
    let farm = Farm::parse(&text, None, Path::new(".")).unwrap();
    assert_eq!(
        shown(&farm, "lb-2"),
        [
            "tcp 80,4001 from anywhere to 2001:db8::11,2001:db8::80",
            // VRRP over IPv6 comes from the other lb's link-local address.
            "vrrp from fe80::/10 to any",
            "tcp 22 from 192.0.2.7/32 to any",
            "tcp 9000 from 192.0.2.7/32 to any",
            "udp 60000-60010 from anywhere to any",
        ]
    );
    assert_eq!(
        shown(&farm, "db-1"),
        [
            "tcp 4001 from 10.0.0.21/32,192.0.2.7/32 to any",
            "tcp 4002 from to any",
            // A backend's server: the lbs proxy and check it.
            // IPv6 source selection may pick the master's /128 VIP.
            "tcp 4001 from 2001:db8::10/128,2001:db8::11/128,2001:db8::80/128 to any",
            "tcp 22 from 192.0.2.7/32 to any",
            "tcp 9100 from 192.0.2.7/32 to any",
            "tcp 9101 from 10.0.0.31/32,2001:db8::10/128,2001:db8::11/128 to any",
        ]
        .into_iter()
        .filter(|l| !l.contains("from to")) // one db node: Raft from no one
        .collect::<Vec<_>>()
    );
    assert_eq!(
        shown(&farm, "web-1")[0],
        "tcp 80 from 2001:db8::10/128,2001:db8::11/128,2001:db8::80/128 to any"
    );
    let web = ruleset(&farm, farm.node("web-1").unwrap());
    assert_eq!(web.allows[0].why, "web HTTP from the lbs");
    assert_eq!(web.allows.last().unwrap().why, "node_exporter");
}

#[test]
fn the_script_replaces_only_its_table_and_splits_families() {
    let text = format!("{SMALL}[firewall]\noperators = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n");
    let farm = Farm::parse(&text, None, Path::new(".")).unwrap();
    let lb = ruleset(&farm, farm.node("lb-1").unwrap());
    let script = render(&lb, "farm.toml");
    let head: Vec<&str> = script
        .lines()
        .filter(|l| !l.starts_with('#'))
        .take(3)
        .collect();
    assert_eq!(
        head,
        [
            "add table inet webfarm",
            "delete table inet webfarm",
            "table inet webfarm {"
        ]
    );
    assert!(script.contains("derived from farm.toml"), "{script}");
    let t = table(&lb);
    for want in [
        "type filter hook input priority filter; policy drop;",
        "iif \"lo\" accept",
        "ct state established,related accept",
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 \
         hoplimit 255 accept",
        // One rule per family for the frontends on the lb's address and its IPv6 VIP.
        "ip6 daddr { 2001:db8::10, 2001:db8::80 } tcp dport { 80, 4001 } accept comment \
         \"frontends www, sql\"",
        "ip6 saddr fe80::/10 meta l4proto vrrp accept",
        "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept comment \"DHCPv6 replies\"",
        "ip saddr 192.0.2.0/24 tcp dport 9000 accept",
        "ip6 saddr 2001:db8:1::/48 tcp dport 9000 accept",
        "counter comment \"dropped by the policy\"",
    ] {
        assert!(t.contains(want), "{want} not in\n{t}");
    }
    // A rule open to anywhere with no address limit matches both families at once.
    let dns = Farm::parse(
        "[[nodes]]\nname = \"dns-1\"\nrole = \"dns\"\naddress = \"10.0.0.2\"\nport = 53\n\
         [[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"10.0.0.10\"\n\
         [[frontends]]\nname = \"www\"\nport = 80\ndefault_backend = \"b\"\n\
         [[backends]]\nname = \"b\"\n[[backends.servers]]\naddress = \"10.0.0.9:80\"\n",
        None,
        Path::new("."),
    )
    .unwrap();
    let t = table(&ruleset(&dns, dns.node("dns-1").unwrap()));
    let dns_lines: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("\"DNS\""))
        .map(str::trim)
        .collect();
    assert_eq!(
        dns_lines,
        [
            "udp dport 53 accept comment \"DNS\"",
            "tcp dport 53 accept comment \"DNS\""
        ]
    );
    // No monitor and no operator: the admin port is closed to everyone but the host.
    assert!(!t.contains("dport 9000"), "{t}");
}

#[test]
fn derived_comments_stay_within_nft_limit() {
    // Twelve frontends of 40-character names, and a backend of a 63-character name (the
    // longest a name may be) on a db node's port: the derived comments would be ~500 and
    // 80 characters; nft refuses a script with a comment past 128.
    let mut text = String::from(
        "[[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"10.0.0.10\"\n\
         [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"10.0.0.31\"\n",
    );
    let long_backend = "b".repeat(63);
    for i in 0..12 {
        text.push_str(&format!(
            "[[frontends]]\nname = \"frontend-with-a-rather-long-name-number-{i:02}\"\n\
             port = {}\nmode = \"tcp\"\ndefault_backend = \"{long_backend}\"\n",
            7000 + i
        ));
    }
    text.push_str(&format!(
        "[[backends]]\nname = \"{long_backend}\"\nmode = \"tcp\"\n\
         [[backends.servers]]\naddress = \"10.0.0.31:5000\"\n"
    ));
    let farm = Farm::parse(&text, None, Path::new(".")).unwrap();
    for node in ["lb-1", "db-1"] {
        let rules = ruleset(&farm, farm.node(node).unwrap());
        for a in &rules.allows {
            assert!(
                a.why.len() <= crate::ruleset::COMMENT_MAX,
                "{node}: {}",
                a.why
            );
        }
        for line in table(&rules).lines() {
            if let Some((_, c)) = line.split_once("comment \"") {
                assert!(c.len() - 1 <= 128, "{node}: {line}");
            }
        }
    }
    let lb = ruleset(&farm, farm.node("lb-1").unwrap());
    assert!(lb.allows[0]
        .why
        .starts_with("frontends frontend-with-a-rather-long-name-number-00, "));
    assert!(lb.allows[0].why.ends_with("..."), "{}", lb.allows[0].why);
    let db = ruleset(&farm, farm.node("db-1").unwrap());
    let backend = db
        .allows
        .iter()
        .find(|a| a.why.starts_with("backend "))
        .unwrap();
    assert_eq!(backend.why, format!("backend {long_backend} from the lbs"));
}

#[test]
fn bound_cuts_on_a_char_boundary() {
    let mut s = format!("{}é{}", "a".repeat(124), "z".repeat(10));
    crate::ruleset::bound_for_tests(&mut s);
    assert_eq!(s, format!("{}...", "a".repeat(124)));
    assert!(s.len() <= 128);
}
