//! `webfarm up --netns` end to end (issue 10, item 3): the seed farm (lb-1, web-1..3,
//! db-1..3, internal TLS on) written on `127.0.78.x` runs with every node in its own
//! network namespace `wft-<node>` on bridge `wft-br0`, at `10.78.0.x`. The test reaches the
//! nodes from the root namespace as an operator host would (curl through the lb, a db write
//! and read, `webfarm status` with the derived file), checks each node runs in its own
//! namespace, crashes the supervisor and starts again over its leftovers, then stops it and
//! checks every namespace, veth and the bridge are gone. Needs root and iproute2 (the test
//! fails saying so otherwise); it never uses the default `wf` names or 10.77.0.0/24.

mod common;

use std::process::Command;

use common::netns::{require_root, NetnsUp};
use serde_json::Value;
use webfarm_testkit::{eventually_blocking, TempDir, DEADLINE};

const PREFIX: &str = "wft";
const BLOCK: &str = "10.78.0.0/24";

fn farm_file(tmp: &TempDir) -> std::path::PathBuf {
    // Internal TLS on: node certificates must name the derived addresses.
    let toml = common::farm_toml(78).replace(webfarm_testkit::INTERNAL_TLS_OFF, "");
    let path = tmp.path().join("farm.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lb answers from the root namespace and spreads requests over the three web nodes.
fn through_the_lb(up: &NetnsUp) {
    let url = format!("http://{}:8080/", up.addr(10));
    let mut served = std::collections::BTreeSet::new();
    eventually_blocking(DEADLINE, "the lb to spread over web-1..3", || {
        let o = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-m", "5"])
            .args(["-H", "Host: www.foobar.com", &url])
            .output()
            .expect("curl");
        let head = stdout(&o).to_ascii_lowercase();
        if head.starts_with("http/1.1 200") {
            if let Some(l) = head.lines().find(|l| l.starts_with("x-served-by:")) {
                served.insert(l["x-served-by:".len()..].trim().to_string());
            }
        }
        (served.len() == 3).then_some(())
    });
}

/// `webfarm status --json --config <derived>`: every node healthy at its 10.78 address.
fn status_sees_every_node(up: &NetnsUp) {
    let o = up.webfarm(&["status", "--json"]);
    assert!(
        o.status.success(),
        "status: {}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 7, "{v}");
    for n in nodes {
        assert_eq!(n["healthy"], true, "{n}");
        let addr = n["addr"].as_str().unwrap();
        assert!(addr.starts_with("10.78.0."), "{n}");
    }
}

/// A write and a read through `webfarm sql` from the root namespace.
fn db_write_and_read(up: &NetnsUp) {
    let sql = "CREATE TABLE IF NOT EXISTS hosts (name TEXT); \
               INSERT INTO hosts VALUES ('in-a-namespace'); SELECT name FROM hosts";
    let o = up.webfarm(&["sql", "-c", sql]);
    let out = stdout(&o);
    assert!(
        o.status.success() && out.contains("in-a-namespace"),
        "sql: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Each node runs in its own namespace, with its address on `eth0`, `lo` up and no route
/// out of the block; its certificate names the derived address.
fn nodes_are_separate_hosts(up: &NetnsUp) {
    let names = ["lb-1", "web-1", "web-2", "web-3", "db-1", "db-2", "db-3"];
    let hosts = [10, 21, 22, 23, 31, 32, 33];
    assert_eq!(webfarm_netns::identify(std::process::id()), None);
    let layout = webfarm_tls::ca::Layout::of_data_dir(&up.data_dir);
    for (name, host) in names.into_iter().zip(hosts) {
        let ns = up.spec.namespace(name);
        assert_eq!(
            webfarm_netns::identify(up.pid(name)).as_deref(),
            Some(ns.as_str())
        );
        let ip = |args: &[&str]| {
            let o = Command::new("ip")
                .args(["-n", &ns])
                .args(args)
                .output()
                .unwrap();
            stdout(&o)
        };
        let eth0 = ip(&["-br", "addr", "show", "eth0"]);
        assert!(
            eth0.contains(&format!("{}/24", up.addr(host))),
            "{name}: {eth0}"
        );
        assert!(
            ip(&["-br", "link", "show", "lo"]).contains("UP"),
            "{name}: lo is down"
        );
        let routes = ip(&["route"]);
        assert!(
            !routes.contains("default"),
            "{name} has a default route: {routes}"
        );
        let pair = layout.node(name);
        let cert = webfarm_tls::cert::LoadedCert::load(
            &pair.cert,
            &pair.key,
            &webfarm_tls::server::provider(),
        )
        .unwrap();
        assert!(
            cert.covers(&up.addr(host)),
            "{name}'s certificate lacks {}",
            up.addr(host)
        );
    }
}

/// `webfarm kill` and `webfarm start` through the supervisor: the new process is in the
/// node's namespace again.
fn a_node_started_again_runs_in_its_namespace(up: &NetnsUp) {
    let before = up.pid("web-2");
    for cmd in ["kill", "start"] {
        let o = up.webfarm(&[cmd, "web-2"]);
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let after = up.pid("web-2");
    assert_ne!(before, after);
    assert_eq!(webfarm_netns::identify(after).as_deref(), Some("wft-web-2"));
}

/// Another farm (its own data directory) with the same names exits 2 and leaves the running
/// one alone.
fn a_second_farm_with_the_same_prefix_is_refused(up: &NetnsUp, tmp: &TempDir) {
    let o = Command::new(common::bin())
        .args(["up", "--config"])
        .arg(&up.config)
        .arg("--data-dir")
        .arg(tmp.path().join("other-data"))
        .args(["--netns", "--netns-prefix", PREFIX, "--netns-net", BLOCK])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("holds running processes"), "{err}");
    db_write_and_read(up);
}

#[test]
fn every_node_is_a_host_of_its_own_and_everything_is_removed() {
    require_root("netns");
    let tmp = TempDir::new("netns");
    let mut up = NetnsUp::start(&farm_file(&tmp), PREFIX, BLOCK);
    println!("derived farm file: {}", up.derived().display());
    through_the_lb(&up);
    status_sees_every_node(&up);
    db_write_and_read(&up);
    nodes_are_separate_hosts(&up);
    a_second_farm_with_the_same_prefix_is_refused(&up, &tmp);
    a_node_started_again_runs_in_its_namespace(&up);

    // A crashed supervisor leaves its network behind (its nodes stop: their stdin closed);
    // the next start removes the leftovers first.
    up.signal_and_wait("KILL");
    let db1 = up.pid("db-1");
    eventually_blocking(DEADLINE, "the nodes to stop after the crash", || {
        (!std::path::Path::new(&format!("/proc/{db1}")).exists()).then_some(())
    });
    assert!(
        !webfarm_netns::remains(&up.spec).is_empty(),
        "leftovers expected"
    );
    up.restart();
    assert!(
        up.log_text()
            .contains("removed leftovers of an earlier run"),
        "{}",
        up.log_text()
    );
    db_write_and_read(&up);

    assert_eq!(up.signal_and_wait("INT"), Some(0), "{}", up.log_text());
    let left = webfarm_netns::remains(&up.spec);
    assert!(left.is_empty(), "left behind: {left:?}\n{}", up.log_text());
}

#[test]
fn without_privileges_it_exits_2_and_creates_nothing() {
    let setpriv = webfarm_testkit::which("setpriv", "util-linux", "drops capabilities");
    let tmp = TempDir::new("netns-nopriv");
    let data = tmp.path().join("data");
    let o = Command::new(setpriv)
        .args([
            "--bounding-set=-sys_admin,-net_admin",
            "--inh-caps=-sys_admin,-net_admin",
        ])
        .arg(common::bin())
        .args([
            "up",
            "--netns",
            "--netns-prefix",
            "wfq",
            "--netns-net",
            "10.78.5.0/24",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("need root") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
    assert!(!data.exists(), "nothing may be created");
    let spec = webfarm_netns::Spec::new("wfq", "10.78.5.0/24".parse().unwrap()).unwrap();
    assert!(webfarm_netns::remains(&spec).is_empty());
}

#[test]
fn a_start_interrupted_by_sigterm_removes_the_network() {
    use std::io::{BufRead, BufReader};
    require_root("netns");
    let tmp = TempDir::new("netns-term");
    let (prefix, block) = ("wfs", "10.78.6.0/24");
    let toml = common::farm_toml(79).replace(webfarm_testkit::INTERNAL_TLS_OFF, "");
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, toml).unwrap();
    let mut child = Command::new(common::bin())
        .args(["up", "--config"])
        .arg(&config)
        .args(["--netns", "--netns-prefix", prefix, "--netns-net", block])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The network exists once the first node was started in it.
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("started db-1"));
    assert!(started, "webfarm up --netns ended before starting db-1");
    let spec = webfarm_netns::Spec::new(prefix, block.parse().unwrap()).unwrap();
    assert!(!webfarm_netns::remains(&spec).is_empty());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest:?}");
    let left = webfarm_netns::remains(&spec);
    assert!(left.is_empty(), "left behind: {left:?}\n{rest:?}");
}
