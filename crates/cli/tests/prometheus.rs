//! The shipped monitoring/prometheus.yml and monitoring/alerts.yml with a real Prometheus
//! (Debian's `prometheus`, which ships promtool): `promtool check config` and `check rules`
//! pass, and Prometheus, scraping a running farm over internal TLS with the operator's
//! certificate, fires `ServerDown` for a killed web node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TempDir, TestFarm};
use webfarm_testkit::{eventually_blocking, which, KillOnDrop};

const NET: u8 = 76;

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring")
}

/// `promtool ARGS`: success and output.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(which(
        "promtool",
        "prometheus",
        "checks the shipped rules and config",
    ))
    .args(args)
    .output()
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The shipped configuration, pointed at this test's farm: its addresses and CA files.
fn configure(dir: &Path, ca: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(monitoring().join("prometheus.yml")).unwrap();
    let ours = shipped
        .replace("127.0.1.", &format!("127.0.{NET}."))
        .replace("../farm-data/ca", &ca.display().to_string());
    assert_ne!(ours, shipped, "the shipped file names the built-in farm");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, ours).unwrap();
    std::fs::copy(monitoring().join("alerts.yml"), dir.join("alerts.yml")).unwrap();
    config
}

#[test]
fn the_shipped_rules_pass_promtool_and_prometheus_fires_server_down() {
    let (ok, text) = promtool(&[
        "check",
        "rules",
        &monitoring().join("alerts.yml").display().to_string(),
    ]);
    assert!(ok && text.contains("SUCCESS: 8 rules found"), "{text}");

    let tmp = TempDir::new("prometheus");
    let config = tmp.path().join("farm.toml");
    let farm_text = common::farm_toml(NET).replace(webfarm_testkit::INTERNAL_TLS_OFF, "")
        + &format!(
            "[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\naddress = \"127.0.{NET}.5\"\n"
        );
    std::fs::write(&config, farm_text).unwrap();
    let farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET);

    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_config = configure(&prom_dir, &tmp.path().join("data/ca"));
    let (ok, text) = promtool(&["check", "config", &prom_config.display().to_string()]);
    assert!(ok && text.contains("SUCCESS"), "{text}");

    let listen = format!("127.0.{NET}.200:9090");
    let log = std::fs::File::create(prom_dir.join("prometheus.log")).unwrap();
    let _prometheus = KillOnDrop(
        Command::new(which(
            "prometheus",
            "prometheus",
            "scrapes the farm and evaluates the rules",
        ))
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap(),
    );
    let api = |path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{listen}{path}")])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let prom_log = || std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default();
    // Every node scraped over TLS with the operator's certificate.
    eventually_blocking(
        Duration::from_secs(60),
        "Prometheus scraping all 8 nodes",
        || {
            let targets = api("/api/v1/targets");
            let active = targets["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            // The test farm has no dns-1, dns-2 or lb-2: the shipped file's 11 targets, 8 up.
            let up = active.iter().filter(|t| t["health"] == "up").count();
            (active.len() == 11 && up == 8).then_some(())
        },
    );
    let kill = farm.webfarm(&["kill", "web-2"]);
    assert!(kill.status.success());
    let fired = eventually_blocking(
        Duration::from_secs(90),
        "ServerDown firing for web-2",
        || {
            let alerts = api("/api/v1/alerts");
            let all = alerts["data"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            all.into_iter().find(|a| {
                a["labels"]["alertname"] == "ServerDown"
                    && a["labels"]["server"] == "web-2"
                    && a["state"] == "firing"
            })
        },
    );
    assert_eq!(fired["labels"]["severity"], "critical", "{fired}");
    let summary = fired["annotations"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains("server web/web-2 is DOWN"),
        "{summary}\n{}",
        prom_log()
    );
}
