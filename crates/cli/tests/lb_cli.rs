//! `webfarm lb servers|set-weight|set-state|set-backup`, `webfarm reload` and SIGHUP, against a real
//! `webfarm run --node lb-1` process.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use webfarm_testkit::{eventually_blocking, KillOnDrop, TempDir, DEADLINE};

/// An lb-only farm in front of `servers` (name, port, weight), checked over TCP.
fn farm(ip: Ipv4Addr, admin: u16, port: u16, servers: &[(&str, u16, u32)]) -> String {
    let mut s = format!(
        "site = \"www.foobar.com\"\ndata_dir = \"data\"\n\
         [[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"{ip}\"\nadmin_port = {admin}\n\
         [[frontends]]\nname = \"www\"\nport = {port}\ndefault_backend = \"web\"\n\
         [[backends]]\nname = \"web\"\n[backends.check]\ntype = \"tcp\"\ninter = \"100ms\"\n"
    );
    for (name, p, w) in servers {
        s += &format!(
            "[[backends.servers]]\nname = \"{name}\"\naddress = \"127.0.0.1:{p}\"\nweight = {w}\n"
        );
    }
    s + webfarm_testkit::INTERNAL_TLS_OFF
}

fn webfarm(config: &Path, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run webfarm")
}

fn servers_json(config: &Path) -> Option<Value> {
    let out = webfarm(config, &["lb", "servers", "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn server<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"][0]["backends"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name} in {v}"))
}

/// The lb node's reload counters: (generation, reloads refused).
fn reloads(v: &Value) -> (u64, u64) {
    let node = &v["nodes"][0];
    let count = |k: &str| node[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (count("generation"), count("reloads_refused"))
}

#[test]
fn lb_commands_and_reload() {
    let dir = TempDir::new("lb-cli");
    let dir = dir.path();
    let config = dir.join("farm.toml");
    // Servers that accept connections (TCP checks pass) and are never sent a request.
    let backends: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = backends
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    // The lb node on a loopback address of its own: no other test takes its ports.
    let ip = webfarm_testkit::loopback_ip();
    let (admin, port) = (9000, 8080);
    let write_farm = |servers: &[(&str, u16, u32)]| {
        std::fs::write(&config, farm(ip, admin, port, servers)).unwrap();
    };
    write_farm(&[("s1", ports[0], 1), ("s2", ports[1], 1)]);
    common::make_secrets(&common::data_dir_of(&config));
    let lb = KillOnDrop(
        Command::new(common::bin())
            .args(["run", "--node", "lb-1", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let v = eventually_blocking(DEADLINE, "the lb answers", || servers_json(&config));
    assert_eq!(reloads(&v), (0, 0));

    let out = webfarm(&config, &["lb", "servers"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("lb-1") && table.contains("web/s1"),
        "{table}"
    );

    let out = webfarm(&config, &["lb", "set-weight", "web/s1", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "lb-1: web/s1 weight 1 -> 5"
    );
    let out = webfarm(
        &config,
        &["lb", "set-state", "web/s2", "drain", "--node", "lb-1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = webfarm(&config, &["lb", "set-backup", "web/s1", "true"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "lb-1: web/s1 backup false -> true"
    );
    let v = servers_json(&config).unwrap();
    assert_eq!(server(&v, "s1")["weight"], 5);
    assert_eq!(server(&v, "s1")["backup"], true);
    assert_eq!(server(&v, "s2")["admin"], "drain");

    let out = webfarm(&config, &["lb", "set-weight", "web/s9", "5"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server \"s9\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = webfarm(&config, &["lb", "set-state", "web/s1", "asleep"]);
    assert!(!out.status.success());

    // `webfarm reload`: a new server.
    write_farm(&[
        ("s1", ports[0], 1),
        ("s2", ports[1], 1),
        ("s3", ports[2], 1),
    ]);
    let out = webfarm(&config, &["reload"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("servers added: web/s3"), "{text}");
    assert!(text.contains("(generation 1)"), "{text}");
    let v = servers_json(&config).unwrap();
    assert_eq!(reloads(&v), (1, 0));
    assert_eq!(server(&v, "s3")["name"], "s3");
    assert_eq!(server(&v, "s2")["admin"], "drain", "run-time state kept");

    // SIGHUP: s2's weight from the file.
    write_farm(&[
        ("s1", ports[0], 1),
        ("s2", ports[1], 7),
        ("s3", ports[2], 1),
    ]);
    let pid = lb.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let v = eventually_blocking(DEADLINE, "SIGHUP applies the new weight", || {
        servers_json(&config).filter(|v| server(v, "s2")["weight"] == 7)
    });
    assert_eq!(reloads(&v), (2, 0));

    // An invalid file: the CLI refuses it (exit code 2) and so does the lb on SIGHUP,
    // which keeps running as it was.
    let valid = dir.join("valid.toml");
    std::fs::copy(&config, &valid).unwrap();
    write_farm(&[("s1", ports[0], 999)]);
    let out = webfarm(&config, &["reload"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weight: 999 is out of range"), "{err}");
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    // The refused reload was processed (a positive signal, not a wait): then nothing changed.
    let v = eventually_blocking(DEADLINE, "the lb refuses the invalid file", || {
        servers_json(&valid).filter(|v| reloads(v).1 == 1)
    });
    assert_eq!(reloads(&v).0, 2, "no new generation");
    assert_eq!(
        server(&v, "s2")["weight"],
        7,
        "the running configuration is kept"
    );
    assert_eq!(server(&v, "s3")["name"], "s3");
    drop(lb);
}
