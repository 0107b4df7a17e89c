//! Host firewalls in the network-namespace farm (issue 11, item 1): the built-in farm
//! (mon-1, dns-1/2, lb-1/2 with two VIPs over VRRP, web-1..3, db-1..3, internal TLS on),
//! written on `127.0.81.x`, runs under `webfarm up --netns` as `wff-<node>` at `10.74.0.x`,
//! every namespace with its node's `webfarm firewall` rules. An outside client namespace
//! (`wffc-out`, 10.74.0.99) joins the bridge; the test's own namespace is the operator's
//! host (the bridge's 10.74.0.1). Every port of every node is probed from every node, the
//! client and the operator (TCP connects, a real DNS query over UDP), and the allow/deny
//! matrix is asserted against what the farm file says and printed. Then `--check` is run in
//! a namespace, finds a rule added by hand, and `--apply` puts the table back; last, the
//! farm runs again with `--no-firewall` and its namespaces are open. Needs root,
//! iproute2 and nftables (fails saying so otherwise).

mod common;
#[path = "firewall/probe.rs"]
mod probe;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use common::netns::{require_root, NetnsUp};
use probe::{Probe, Seen};
use serde_json::Value;
use webfarm_testkit::{eventually_blocking, TempDir, DEADLINE};

const PREFIX: &str = "wff";
const BLOCK: &str = "10.74.0.0/24";
const CLIENT_NS: &str = "wffc-out";
const CLIENT_VETH: &str = "wffc-99";
const CLIENT: u8 = 99;
const OPERATOR: u8 = 1;

/// The built-in farm on 127.0.81.x, plus an extra rule: port 9100 of the web nodes (nothing
/// listens there) from the monitor only.
fn farm_file(tmp: &TempDir) -> std::path::PathBuf {
    let toml = webfarm_config::DEFAULT_FARM_TOML
        .replace("127.0.1.", "127.0.81.")
        .replace("data_dir = \"farm-data\"", "data_dir = \"data\"")
        .replace(
            "root = \"site\"",
            &format!("root = \"{}\"", common::site_dir().display()),
        )
        + "\n[[firewall.rules]]\ncomment = \"node_exporter\"\nport = 9100\n\
           from_roles = [\"monitor\"]\nroles = [\"web\"]\n";
    let path = tmp.path().join("farm.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// A probe's source: a node, the outside client or the operator's host.
struct Src {
    name: &'static str,
    host: u8,
    netns: Option<String>,
}

/// What a destination port is, for the expected verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Frontend,
    Dns,
    WebHttp,
    SqlApi,
    Raft,
    Admin,
    Dashboard,
    NodeExporter,
    Ssh,
}

struct Dst {
    label: String,
    host: u8,
    port: u16,
    udp: bool,
    kind: Kind,
}

const NODES: [(&str, u8); 11] = [
    ("mon-1", 5),
    ("dns-1", 2),
    ("dns-2", 3),
    ("lb-1", 10),
    ("lb-2", 11),
    ("web-1", 21),
    ("web-2", 22),
    ("web-3", 23),
    ("db-1", 31),
    ("db-2", 32),
    ("db-3", 33),
];

fn sources() -> Vec<Src> {
    let mut s: Vec<Src> = NODES
        .iter()
        .map(|&(name, host)| Src {
            name,
            host,
            netns: Some(format!("{PREFIX}-{name}")),
        })
        .collect();
    s.push(Src {
        name: "outside",
        host: CLIENT,
        netns: Some(CLIENT_NS.into()),
    });
    s.push(Src {
        name: "operator",
        host: OPERATOR,
        netns: None,
    });
    s
}

fn destinations() -> Vec<Dst> {
    let dst = |label: String, host, port, udp, kind| Dst {
        label,
        host,
        port,
        udp,
        kind,
    };
    let mut d = Vec::new();
    for &(name, host) in &NODES {
        let at = |port: u16, proto: &str| format!("{name}:{port}{proto}");
        match name.split('-').next().unwrap() {
            "mon" => d.push(dst(at(3000, ""), host, 3000, false, Kind::Dashboard)),
            "dns" => {
                d.push(dst(at(5353, "/udp"), host, 5353, true, Kind::Dns));
                d.push(dst(at(5353, "/tcp"), host, 5353, false, Kind::Dns));
            }
            "lb" => {
                for p in [8080, 8443] {
                    d.push(dst(at(p, ""), host, p, false, Kind::Frontend));
                }
            }
            "web" => {
                d.push(dst(at(8000, ""), host, 8000, false, Kind::WebHttp));
                if name == "web-1" {
                    d.push(dst(at(9100, ""), host, 9100, false, Kind::NodeExporter));
                    d.push(dst(at(22, ""), host, 22, false, Kind::Ssh));
                }
            }
            _ => {
                d.push(dst(at(4001, ""), host, 4001, false, Kind::SqlApi));
                d.push(dst(at(4002, ""), host, 4002, false, Kind::Raft));
            }
        }
        d.push(dst(at(9000, ""), host, 9000, false, Kind::Admin));
    }
    for vip in [8, 9] {
        for p in [8080, 8443] {
            d.push(dst(
                format!("VIP .{vip}:{p}"),
                vip,
                p,
                false,
                Kind::Frontend,
            ));
        }
    }
    d
}

/// What the farm file says `src` may do at `dst`. A node reaching its own address goes
/// through `lo`, which every host accepts.
fn expected(src: &Src, dst: &Dst) -> Seen {
    let role = src.name.split('-').next().unwrap();
    let own = src.host == dst.host;
    let allowed = own
        || match dst.kind {
            Kind::Frontend | Kind::Dns => true,
            Kind::WebHttp => role == "lb",
            Kind::SqlApi => matches!(role, "web" | "db" | "operator"),
            Kind::Raft => role == "db",
            Kind::Admin => matches!(role, "mon" | "operator"),
            Kind::Dashboard => role == "operator",
            Kind::NodeExporter => role == "mon",
            Kind::Ssh => role == "operator",
        };
    match (allowed, dst.kind) {
        (false, _) => Seen::Dropped,
        (true, Kind::NodeExporter | Kind::Ssh) => Seen::Closed,
        (true, _) => Seen::Open,
    }
}

/// The outside client: a namespace of the test's own on the farm's bridge.
struct Client;

impl Client {
    fn add(up: &NetnsUp) -> Client {
        let _ = Client::remove();
        let bridge = up.spec.bridge();
        let addr = format!("{}/24", up.addr(CLIENT));
        for args in [
            vec!["netns", "add", CLIENT_NS],
            vec![
                "link",
                "add",
                CLIENT_VETH,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                CLIENT_NS,
            ],
            vec!["link", "set", CLIENT_VETH, "master", &bridge, "up"],
            vec!["-n", CLIENT_NS, "addr", "add", &addr, "dev", "eth0"],
            vec!["-n", CLIENT_NS, "link", "set", "eth0", "up"],
            vec!["-n", CLIENT_NS, "link", "set", "lo", "up"],
        ] {
            let o = Command::new("ip").args(&args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", text(&o.stderr));
        }
        Client
    }

    fn remove() -> bool {
        let a = Command::new("ip")
            .args(["link", "del", CLIENT_VETH])
            .output();
        let b = Command::new("ip")
            .args(["netns", "del", CLIENT_NS])
            .output();
        a.is_ok_and(|o| o.status.success()) && b.is_ok_and(|o| o.status.success())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        Client::remove();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The farm works through its firewalls: every node healthy for the operator, each VIP
/// with exactly one master (VRRP passes between the lbs), a page through a VIP.
fn the_farm_works(up: &NetnsUp) {
    eventually_blocking(
        DEADLINE,
        "every node healthy and one master per VIP",
        || {
            let o = up.webfarm(&["status", "--json"]);
            let v: Value = serde_json::from_slice(&o.stdout).ok()?;
            let nodes = v["nodes"].as_array()?;
            let healthy = nodes.len() == 11 && nodes.iter().all(|n| n["healthy"] == true);
            let mut states: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for n in nodes.iter().filter(|n| n["role"] == "lb") {
                for inst in find_vrrp(&n["details"]) {
                    let name = inst["name"].as_str()?.to_string();
                    states
                        .entry(name)
                        .or_default()
                        .push(inst["state"].as_str()?.to_string());
                }
            }
            let pairs_ok = states.len() == 2
                && states.values().all(|s| {
                    let mut s = s.clone();
                    s.sort();
                    s == ["backup", "master"]
                });
            (healthy && pairs_ok).then_some(())
        },
    );
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10"])
        .args(["-H", "Host: www.foobar.com"])
        .arg(format!("http://{}:8080/", up.addr(8)))
        .output()
        .expect("curl");
    assert_eq!(
        text(&o.stdout),
        "308",
        "the VIP's plain frontend redirects to HTTPS"
    );
}

/// Every `vrrp` instance report anywhere under `v`.
fn find_vrrp(v: &Value) -> Vec<Value> {
    match v {
        Value::Object(m) => match m.get("vrrp").and_then(Value::as_array) {
            Some(list) => list.clone(),
            None => m.values().flat_map(find_vrrp).collect(),
        },
        _ => Vec::new(),
    }
}

/// Probes the whole matrix; a cell that differs from the expectation is probed again with
/// a longer timeout (a loaded machine may answer late, never the other way round).
fn probe_matrix(up: &NetnsUp) -> (Vec<Src>, Vec<Dst>, Vec<Vec<Seen>>) {
    let (srcs, dsts) = (sources(), destinations());
    let addr =
        |host: u8, port| SocketAddr::new(up.addr(host).parse::<Ipv4Addr>().unwrap().into(), port);
    let mut probes = Vec::new();
    for d in &dsts {
        for s in &srcs {
            probes.push(Probe {
                netns: s.netns.clone(),
                to: addr(d.host, d.port),
                udp: d.udp,
            });
        }
    }
    let mut seen = probe::run_all(&probes, Duration::from_secs(2));
    let again: Vec<usize> = (0..probes.len())
        .filter(|&i| seen[i] != expected(&srcs[i % srcs.len()], &dsts[i / srcs.len()]))
        .collect();
    let retried = probe::run_all(
        &again.iter().map(|&i| probes[i].clone()).collect::<Vec<_>>(),
        Duration::from_secs(6),
    );
    for (i, s) in again.into_iter().zip(retried) {
        seen[i] = s;
    }
    let rows = seen.chunks(srcs.len()).map(<[Seen]>::to_vec).collect();
    (srcs, dsts, rows)
}

/// The matrix as a table (destination:port × source); a cell that is not as expected is
/// marked `!`. Returns the table and the mismatches.
fn table(srcs: &[Src], dsts: &[Dst], rows: &[Vec<Seen>]) -> (String, Vec<String>) {
    let mut out = format!("{:<16}", "to \\ from");
    for s in srcs {
        out += &format!(" {:>8}", s.name);
    }
    out.push('\n');
    let mut wrong = Vec::new();
    for (d, row) in dsts.iter().zip(rows) {
        out += &format!("{:<16}", d.label);
        for (s, seen) in srcs.iter().zip(row) {
            let want = expected(s, d);
            let mark = if *seen == want { "" } else { "!" };
            if *seen != want {
                wrong.push(format!(
                    "{} -> {}: saw {seen:?}, expected {want:?}",
                    s.name, d.label
                ));
            }
            out += &format!(" {:>8}", format!("{mark}{}", seen.cell()));
        }
        out.push('\n');
    }
    (out, wrong)
}

fn in_netns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

/// `webfarm firewall NODE --check` inside the node's namespace: clean, then a rule added by
/// hand is named, then `--apply` restores the table.
fn check_and_apply_in_a_namespace(up: &NetnsUp) {
    let derived = up.derived();
    let derived = derived.to_str().unwrap();
    let ns = up.spec.namespace("web-2");
    let firewall = |flag: &str| {
        in_netns(
            &ns,
            &[
                common::bin(),
                "firewall",
                "web-2",
                flag,
                "--config",
                derived,
            ],
        )
    };
    let o = firewall("--check");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("matches web-2's rules"));
    let o = in_netns(
        &ns,
        &["nft", "insert rule inet webfarm input tcp dport 22 accept"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = firewall("--check");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("unexpected: tcp dport 22 accept"),
        "{}",
        text(&o.stderr)
    );
    let o = firewall("--apply");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = firewall("--check");
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Another node's rules are refused on this host, and nothing changes.
    let o = in_netns(
        &ns,
        &[
            common::bin(),
            "firewall",
            "lb-1",
            "--apply",
            "--config",
            derived,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("is not an address of this host"),
        "{}",
        text(&o.stderr)
    );
    let o = firewall("--check");
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn every_port_of_every_node_answers_only_whom_the_farm_file_allows() {
    require_root("firewall");
    webfarm_testkit::which("nft", "nftables", "the nodes' firewalls");
    let tmp = TempDir::new("firewall");
    let up = NetnsUp::start(&farm_file(&tmp), PREFIX, BLOCK);
    assert!(
        up.log_text()
            .contains("each namespace runs its node's firewall"),
        "{}",
        up.log_text()
    );
    let _client = Client::add(&up);
    the_farm_works(&up);

    let (srcs, dsts, rows) = probe_matrix(&up);
    let (shown, wrong) = table(&srcs, &dsts, &rows);
    println!(
        "open: connected (UDP: a DNS answer); rst: refused (passed the firewall, nothing \
         listens); .: dropped; !: not as the farm file says\n{shown}"
    );
    assert!(wrong.is_empty(), "{}\n{shown}", wrong.join("\n"));

    check_and_apply_in_a_namespace(&up);
    drop(up);

    // --no-firewall: the same farm with open namespaces.
    let up = NetnsUp::start_with(&farm_file(&tmp), PREFIX, BLOCK, &["--no-firewall"]);
    let o = in_netns(&up.spec.namespace("web-1"), &["nft", "list", "tables"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("webfarm"), "{}", text(&o.stdout));
    let web = Probe {
        netns: None,
        to: SocketAddr::new(up.addr(21).parse::<Ipv4Addr>().unwrap().into(), 8000),
        udp: false,
    };
    assert_eq!(probe::run_all(&[web], Duration::from_secs(6)), [Seen::Open]);
}

#[test]
fn apply_without_privileges_fails_naming_the_capability() {
    let setpriv = webfarm_testkit::which("setpriv", "util-linux", "drops capabilities");
    webfarm_testkit::which("nft", "nftables", "webfarm firewall --apply");
    let o = Command::new(setpriv)
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin"])
        .arg(common::bin())
        .args(["firewall", "lb-1", "--apply"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nft -f -") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}
