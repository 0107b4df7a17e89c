//! `webfarm systemd NODE`: the unit passes `systemd-analyze verify`, names only the
//! capabilities the role needs, and a node run as systemd runs it (`NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`) says READY=1 once it serves, feeds the watchdog, and says STOPPING=1 on
//! SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, TempDir, DEADLINE};
use webfarm_testkit::{eventually_blocking, free_port, loopback_ip, which};

fn webfarm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run webfarm");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn units_verify_and_ask_only_for_the_capabilities_a_role_needs() {
    let analyze = which(
        "systemd-analyze",
        "systemd",
        "it checks the printed units as systemd would load them",
    );
    let tmp = TempDir::new("systemd-units");
    let exec = Path::new(bin()).canonicalize().unwrap();
    let exec = exec.to_str().unwrap();
    for (node, reload) in [("lb-1", true), ("web-1", false), ("db-1", false)] {
        let (ok, unit, err) = webfarm(&["systemd", node, "--exec", exec, "--user", "root"]);
        assert!(ok, "webfarm systemd {node}: {err}");
        for line in [
            "Type=notify",
            &format!("ExecStart={exec} run --node {node} --config /etc/webfarm/farm.toml"),
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.contains(line), "{node}: no {line:?} in\n{unit}");
        }
        assert_eq!(unit.contains("ExecReload="), reload, "{node}:\n{unit}");
        // The built-in farm's ports are all above 1024: no capability at all.
        assert!(
            unit.contains("\nCapabilityBoundingSet=\n"),
            "{node}:\n{unit}"
        );
        let file = tmp.path().join(format!("webfarm-{node}.service"));
        std::fs::write(&file, &unit).unwrap();
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !said.contains(&format!("webfarm-{node}.service")),
            "systemd-analyze verify {node}: {said}\n{unit}"
        );
        let exposure = exposure(&analyze, &file);
        assert!(
            exposure <= 2.0,
            "{node}: exposure {exposure} above 2.0\n{unit}"
        );
    }
    // A privileged port earns CAP_NET_BIND_SERVICE, and nothing else.
    let file = tmp.path().join("farm.toml");
    std::fs::write(&file, farm_toml("127.0.0.1", 80)).unwrap();
    let (ok, unit, err) = webfarm(&["systemd", "web-1", "-c", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        unit.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n")
            && unit.contains("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"),
        "{unit}"
    );
    // An lb that is a VRRP router on a real interface adds VIPs and sends raw packets; its
    // peer on loopback would not. (Only printed: nothing is sent to these documentation
    // addresses.)
    let vrrp = tmp.path().join("vrrp.toml");
    std::fs::write(&vrrp, vrrp_farm_toml("192.0.2")).unwrap();
    let (ok, unit, err) = webfarm(&["systemd", "lb-1", "-c", vrrp.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        unit.contains("\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n")
            && unit.contains("AF_NETLINK AF_PACKET"),
        "{unit}"
    );
    std::fs::write(&vrrp, vrrp_farm_toml("127.0.0")).unwrap();
    let (ok, unit, err) = webfarm(&["systemd", "lb-1", "-c", vrrp.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        unit.contains("\nCapabilityBoundingSet=\n") && !unit.contains("AF_PACKET"),
        "{unit}"
    );
    let (ok, _, err) = webfarm(&["systemd", "web-9", "-c", file.to_str().unwrap()]);
    assert!(!ok && err.contains("no node named \"web-9\""), "{err}");
}

/// `systemd-analyze security`'s overall exposure of the unit in `file` (0 = most locked
/// down, 10 = not at all).
fn exposure(analyze: &Path, file: &Path) -> f64 {
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    let value = line.rsplit(": ").next().and_then(|v| v.split(' ').next());
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

/// Two lbs sharing VIP `<net>.8` by VRRP, one web node, one db node on `<net>.x`.
fn vrrp_farm_toml(net: &str) -> String {
    let mut s = String::from("site = \"www.foobar.com\"\n");
    for (name, role, n) in [("lb-1", "lb", 10), ("lb-2", "lb", 11), ("web-1", "web", 21)]
        .into_iter()
        .chain([("db-1", "db", 31)])
    {
        s += &format!("[[nodes]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{net}.{n}\"\n");
    }
    s + &format!(
        "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n\
         [[backends]]\nname = \"web\"\n[[backends.servers]]\nname = \"web-1\"\n\
         [[vrrp]]\nname = \"VI_1\"\nvrid = 51\nvip = [\"{net}.8\"]\n\
         priority = {{ \"lb-1\" = 200, \"lb-2\" = 100 }}\n{}",
        webfarm_testkit::INTERNAL_TLS_OFF
    )
}

/// One web node and one db node, internal TLS off (no CA needed for one process).
fn farm_toml(ip: &str, web_port: u16) -> String {
    let db_ip = loopback_ip();
    format!(
        "site = \"www.foobar.com\"\n\
         [[nodes]]\nname = \"web-1\"\nrole = \"web\"\naddress = \"{ip}\"\nport = {web_port}\n\
         admin_port = {admin}\n\
         [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"{db_ip}\"\n\
         [web]\nroot = {root:?}\n{tls}",
        root = common::site_dir().display().to_string(),
        admin = free_port(ip.parse().unwrap()),
        tls = webfarm_testkit::INTERNAL_TLS_OFF,
    )
}

#[test]
fn a_node_tells_systemd_it_is_ready_feeds_the_watchdog_and_says_it_stops() {
    let tmp = TempDir::new("systemd-notify");
    let ip = loopback_ip();
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, farm_toml(&ip.to_string(), free_port(ip))).unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    common::make_secrets(&tmp.path().join("data"));
    let mut node = Command::new(bin())
        .args(["run", "--node", "web-1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    // Waits until `times` messages said `what`.
    let mut receive = |what: &str, times: usize| {
        eventually_blocking(DEADLINE, what, || {
            let mut buf = [0u8; 512];
            if let Ok(n) = socket.recv(&mut buf) {
                said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            (said.iter().filter(|m| m.contains(what)).count() >= times).then_some(())
        });
    };
    receive("READY=1", 1);
    let farm = webfarm_config::Farm::load(&config).unwrap();
    let admin = farm.node("web-1").unwrap().admin_addr();
    // READY=1 came once the node serves: its admin port answers now.
    assert!(
        std::net::TcpStream::connect(admin).is_ok(),
        "READY=1 before {admin} was served"
    );
    // WATCHDOG_USEC 200 ms: fed every 100 ms, as long as the node lives.
    receive("WATCHDOG=1", 3);
    receive("STATUS=", 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    receive("STOPPING=1", 1);
    let status = node.wait().unwrap();
    assert!(status.success(), "exit {status}");
}
