//! The dns role end to end, with the real `webfarm up` and real DNS clients: `dig` against
//! dns-1 and dns-2 answers the lb addresses that pass the check, drops a killed lb within
//! the check's fall × inter, lists all when all are down, answers SOA and NS, over UDP and
//! TCP; a real secondary (Knot DNS) transfers the zone (AXFR) and picks up a new serial from
//! the NOTIFY that follows a health change. A missing `dig` or `knotd` fails the test with
//! the reason.
//!
//! Addresses: the first test's farm on 127.0.77.x; the second's on 127.0.78.x, with the
//! secondary on 127.0.78.53.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TempDir, TestFarm};
use webfarm_testkit::{eventually_blocking, which, KillOnDrop};

/// The addresses of one test's farm on `127.0.<net>.x`.
struct Net {
    net: u8,
    dns1: &'static str,
    dns2: &'static str,
    lb1: &'static str,
    lb2: &'static str,
}

impl Net {
    fn new(net: u8) -> Net {
        // Leaked: a few bytes per test, so the addresses compare as `&str`.
        let at = |host: u8| -> &'static str { format!("127.0.{net}.{host}").leak() };
        Net {
            net,
            dns1: at(2),
            dns2: at(3),
            lb1: at(10),
            lb2: at(11),
        }
    }
}

/// The secondary (knotd), beside the second test's farm.
const KNOT: &str = "127.0.78.53";
const KNOT_PORT: u16 = 5300;

/// Two lbs, two dns nodes and a monitor; the lbs' backend is an HTTP stub at
/// 127.0.N.99:8000 so they are ready without web or db nodes. The dns nodes check every
/// 200 ms, fall 2, rise 2: a TCP connect on 127.0.77.x, an HTTP GET on 127.0.78.x.
fn farm_toml(n: &Net, secondaries: &str) -> String {
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    for (name, role, addr) in [
        ("dns-1", "dns", n.dns1),
        ("dns-2", "dns", n.dns2),
        ("lb-1", "lb", n.lb1),
        ("lb-2", "lb", n.lb2),
        ("mon-1", "monitor", &format!("127.0.{}.5", n.net)),
    ] {
        s += &format!("[[nodes]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{addr}\"\n");
    }
    s += "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n";
    s += "[[backends]]\nname = \"web\"\n[backends.check]\ntype = \"tcp\"\ninter = \"300ms\"\n";
    s += &format!(
        "[[backends.servers]]\naddress = \"127.0.{}.99:8000\"\n",
        n.net
    );
    s += webfarm_testkit::INTERNAL_TLS_OFF;
    s += "[dns]\nttl = \"5s\"\nrecords = [\"mail 300 IN MX 10 mx.foobar.com.\"]\n";
    // The second test's farm checks over HTTP (GET / through the lb answers 200).
    let kind = if n.net == 78 { "http" } else { "tcp" };
    s += &format!("check = {{ type = \"{kind}\", inter = \"200ms\", rise = 2, fall = 2 }}\n");
    s += &format!("secondaries = [{secondaries}]\n");
    s
}

/// The lbs' only server: answers `200 ok` to whatever it reads (the lbs' TCP checks send
/// nothing and are answered all the same), then closes.
fn backend_stub(n: &Net) {
    let listener =
        TcpListener::bind(format!("127.0.{}.99:8000", n.net)).expect("bind the backend stub");
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.read(&mut [0u8; 4096]);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            });
        }
    });
}

fn start_farm(tmp: &TempDir, n: &Net, secondaries: &str, internal_tls: bool) -> TestFarm {
    backend_stub(n);
    let config = tmp.path().join("farm.toml");
    let mut text = farm_toml(n, secondaries);
    if internal_tls {
        text = text.replace(webfarm_testkit::INTERNAL_TLS_OFF, "");
    }
    std::fs::write(&config, text).unwrap();
    TestFarm::start_in(tmp.path().to_path_buf(), config, n.net)
}

/// `dig @server -p port ARGS +short`, lines sorted.
fn dig(server: &str, port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("dig")
        .arg(format!("@{server}"))
        .args(["-p", &port.to_string(), "+short", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The full `dig` output (header flags, status) of a query.
fn dig_full(server: &str, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{server}"))
        .args(["-p", "5353", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn site(server: &str) -> Vec<String> {
    dig(server, 5353, &["www.foobar.com", "A"])
}

/// Waits until `server` answers the site with exactly `want`.
fn until_site(server: &str, want: &[&str], what: &str) {
    eventually_blocking(Duration::from_secs(30), what, || {
        (site(server) == want).then_some(())
    });
}

#[test]
fn dig_answers_the_healthy_lbs_and_follows_their_health() {
    which("dig", "dnsutils", "queries the dns nodes");
    let tmp = TempDir::new("dns");
    let n = Net::new(77);
    let (dns1, dns2, lb1, lb2) = (n.dns1, n.dns2, n.lb1, n.lb2);
    let mut farm = start_farm(&tmp, &n, "", false);
    for server in [dns1, dns2] {
        assert_eq!(site(server), [lb1, lb2], "{server}");
    }
    // Authoritative, EDNS0, over UDP and TCP.
    let full = dig_full(dns1, &["www.foobar.com", "A"]);
    assert!(full.contains("flags: qr aa"), "{full}");
    assert!(full.contains("EDNS: version: 0"), "{full}");
    assert_eq!(dig(dns1, 5353, &["+tcp", "www.foobar.com"]), [lb1, lb2]);
    // SOA, NS with glue, the extra record.
    let soa = dig(dns1, 5353, &["foobar.com", "SOA"]);
    assert!(
        soa[0].starts_with("ns1.foobar.com. hostmaster.foobar.com. "),
        "{soa:?}"
    );
    assert_eq!(
        dig(dns2, 5353, &["foobar.com", "NS"]),
        ["ns1.foobar.com.", "ns2.foobar.com."]
    );
    assert_eq!(dig(dns1, 5353, &["ns2.foobar.com"]), [dns2]);
    assert_eq!(
        dig(dns1, 5353, &["mail.foobar.com", "MX"]),
        ["10 mx.foobar.com."]
    );
    // A name of the zone that does not exist, and a name outside it.
    assert!(dig_full(dns1, &["nope.foobar.com"]).contains("status: NXDOMAIN"));
    assert!(dig_full(dns1, &["www.example.org"]).contains("status: REFUSED"));
    // AXFR is refused to anyone but a secondary.
    assert!(dig_full(dns1, &["foobar.com", "AXFR"]).contains("Transfer failed"));

    // /metrics: queries by type and response code; promtool finds nothing wrong.
    let promtool = which("promtool", "prometheus", "checks the dns node's exposition");
    let out = farm.webfarm(&["metrics", "dns-1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for series in [
        "webfarm_dns_queries_total{type=\"A\",rcode=\"NOERROR\"}",
        "webfarm_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"}",
        "webfarm_dns_queries_total{type=\"AXFR\",rcode=\"REFUSED\"}",
        "webfarm_dns_site_address_up{address=\"127.0.77.11\"} 1",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    let problems = webfarm_testkit::metrics::promtool_check(&promtool, &text);
    assert!(problems.is_empty(), "promtool: {problems}\n{text}");

    // lb-2 killed: gone from the answers after fall × inter (2 × 200 ms) and a poll.
    let killed = std::time::Instant::now();
    let kill = farm.webfarm(&["kill", "lb-2"]);
    assert!(kill.status.success(), "{kill:?}");
    until_site(dns1, &[lb1], "dns-1 drops lb-2");
    eprintln!(
        "dns-1 dropped lb-2 {:?} after the kill (fall 2 × inter 200ms)",
        killed.elapsed()
    );
    until_site(dns2, &[lb1], "dns-2 drops lb-2");
    let status = farm.webfarm(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("dns-1") && table.contains("(1/2 up)"),
        "{table}"
    );
    // The monitor's view (the dashboard's DNS box) has both dns nodes answering lb-1 only.
    eventually_blocking(
        Duration::from_secs(30),
        "the monitor sees dns-1 and dns-2",
        || {
            let view = monitor_view(n.net)?;
            let dns = view["dns"].as_array()?;
            let answering: Vec<&serde_json::Value> = dns.iter().map(|d| &d["answering"]).collect();
            let want = serde_json::json!([lb1]);
            (answering == [&want, &want]).then_some(())
        },
    );

    // Both down: every address is listed (Route 53's rule).
    assert!(farm.webfarm(&["kill", "lb-1"]).status.success());
    eventually_blocking(Duration::from_secs(30), "both lbs DOWN on dns-1", || {
        let out = farm.webfarm(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let nodes = json["nodes"].as_array()?;
        let node = nodes.iter().find(|n| n["name"] == "dns-1")?;
        let text = node.to_string();
        (text.matches("\"DOWN\"").count() == 2).then_some(())
    });
    assert_eq!(site(dns1), [lb1, lb2]);

    // Back: lb-1 started again is the only answer once it has risen.
    assert!(farm.webfarm(&["start", "lb-1"]).status.success());
    until_site(dns1, &[lb1], "dns-1 answers lb-1 again");
    farm.stop();
    // Health changes are logged; queries are not (they are counted in /metrics).
    let log = farm.log_text();
    assert!(
        log.contains("site address") && log.contains("DOWN"),
        "{log}"
    );
    assert!(!log.contains("query:www.foobar.com"), "{log}");
}

/// The monitor's view (`GET /api/view` on mon-1's dashboard), parsed.
fn monitor_view(net: u8) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(format!("127.0.{net}.5:3000")).ok()?;
    s.write_all(b"GET /api/view HTTP/1.1\r\nHost: mon\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// Writes knotd's configuration: a secondary of foobar.com with dns-1 as its primary.
fn knot_conf(dir: &Path, primary: &str) -> std::path::PathBuf {
    for sub in ["run", "db", "zones"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let conf = format!(
        "server:\n    rundir: \"{d}/run\"\n    listen: {KNOT}@{KNOT_PORT}\n\
         database:\n    storage: \"{d}/db\"\n\
         log:\n  - target: stderr\n    any: info\n\
         remote:\n  - id: primary\n    address: {primary}@5353\n    via: {KNOT}\n\
         acl:\n  - id: from_primary\n    address: {primary}\n    action: notify\n\
         template:\n  - id: default\n    storage: \"{d}/zones\"\n\
         zone:\n  - domain: foobar.com\n    master: primary\n    acl: from_primary\n",
        d = dir.display()
    );
    let file = dir.join("knot.conf");
    std::fs::write(&file, conf).unwrap();
    file
}

fn serial_of(server: &str, port: u16) -> Option<u64> {
    let soa = dig(server, port, &["foobar.com", "SOA"]);
    soa.first()?.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn knot_transfers_the_zone_and_follows_notify() {
    which("dig", "dnsutils", "queries the dns nodes");
    which("knotd", "knot", "the secondary that transfers the zone");
    let tmp = TempDir::new("dns-knot");
    // The farm first: knotd bootstraps the zone from dns-1 as it starts.
    let n = Net::new(78);
    let (dns1, lb1, lb2) = (n.dns1, n.lb1, n.lb2);
    // Internal TLS on here (the other test has it off): the dns nodes' admin servers serve
    // the farm CA's certificates to `webfarm status` and `kill`.
    let mut farm = start_farm(&tmp, &n, &format!("\"{KNOT}:{KNOT_PORT}\""), true);
    let knot_dir = tmp.path().join("knot");
    let conf = knot_conf(&knot_dir, dns1);
    let log = std::fs::File::create(knot_dir.join("knotd.log")).unwrap();
    // knotd in the foreground; killed when the test ends.
    let knot = KillOnDrop(
        Command::new("knotd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn knotd"),
    );
    let knot_log = || std::fs::read_to_string(knot_dir.join("knotd.log")).unwrap_or_default();
    let primary = serial_of(dns1, 5353).expect("dns-1 answers its SOA");
    // The first transfer (AXFR): the secondary answers the site, with the primary's serial.
    eventually_blocking(Duration::from_secs(30), "knot transfers the zone", || {
        (serial_of(KNOT, KNOT_PORT) == Some(primary)).then_some(())
    });
    assert!(knot_log().contains("AXFR"), "{}", knot_log());
    assert_eq!(
        dig(KNOT, KNOT_PORT, &["www.foobar.com"]),
        [lb1, lb2],
        "{}",
        knot_log()
    );
    assert_eq!(
        dig(KNOT, KNOT_PORT, &["mail.foobar.com", "MX"]),
        ["10 mx.foobar.com."]
    );

    // A health change: a new serial on dns-1, NOTIFY, and the secondary follows.
    assert!(farm.webfarm(&["kill", "lb-2"]).status.success());
    until_site(dns1, &[lb1], "dns-1 drops lb-2");
    let status = farm.webfarm(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("(1/2 up)"), "{table}");
    let newer = serial_of(dns1, 5353).unwrap();
    assert!(newer > primary, "{newer} > {primary}");
    eventually_blocking(Duration::from_secs(30), "knot follows the NOTIFY", || {
        (serial_of(KNOT, KNOT_PORT) == Some(newer)).then_some(())
    });
    assert_eq!(dig(KNOT, KNOT_PORT, &["www.foobar.com"]), [lb1]);
    let log = knot_log();
    assert!(log.contains("notify, incoming"), "{log}");
    assert!(log.contains("AXFR-style IXFR"), "{log}");
    farm.stop();
    // dns-1, knot's primary, was answered; dns-2 was refused (knot takes dns-1's only).
    let ours = farm.log_text();
    let line = |node: &str, what: &str| ours.lines().any(|l| l.contains(node) && l.contains(what));
    assert!(line("dns-1", "NOTIFY answered"), "{ours}");
    assert!(line("dns-2", "NOTIFY refused"), "{ours}");
    drop(knot);
}

#[test]
fn a_bad_record_stops_webfarm_up_before_any_node_starts() {
    let tmp = TempDir::new("dns-bad");
    let n = Net::new(77);
    let text = farm_toml(&n, "").replace(
        "records = [\"mail 300 IN MX 10 mx.foobar.com.\"]",
        "records = [\"mail 300 IN MX ten mx\"]",
    );
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(common::bin())
        .args(["up", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run webfarm up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("dns.records[0]: \"mail 300 IN MX ten mx\""),
        "{err}"
    );
    assert!(!err.contains("starting"), "{err}");
}

#[test]
fn port_53_without_the_privilege_names_the_capability() {
    let tmp = TempDir::new("dns-53");
    // Readable and writable by an unprivileged user (the node writes its data dir).
    let dir = tmp.path().join("open");
    std::fs::create_dir_all(&dir).unwrap();
    Command::new("chmod")
        .args(["-R", "a+rwx"])
        .arg(tmp.path())
        .status()
        .unwrap();
    let text = "site = \"www.foobar.com\"\n\
        [[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"127.0.77.41\"\n\
        [[nodes]]\nname = \"dns-1\"\nrole = \"dns\"\naddress = \"127.0.77.40\"\nport = 53\n\
        admin_port = 9053\n\
        [[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n\
        [[backends]]\nname = \"web\"\n[[backends.servers]]\naddress = \"127.0.77.99:8000\"\n";
    let config = dir.join("farm.toml");
    std::fs::write(
        &config,
        format!("{text}{}", webfarm_testkit::INTERNAL_TLS_OFF),
    )
    .unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if root {
        common::make_secrets_for_nobody(&dir.join("data"));
    } else {
        common::make_secrets(&dir.join("data"));
    }
    // As root, the node runs as `nobody` (setpriv, util-linux); otherwise as the caller.
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(common::bin());
        c
    } else {
        Command::new(common::bin())
    };
    let out = cmd
        .args(["run", "--node", "dns-1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("run the dns node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "cannot listen on 127.0.77.40:53 (dns): ports below 1024 need root or the \
             CAP_NET_BIND_SERVICE capability"
        ),
        "{err}"
    );
}
