//! testssl.sh (Debian's `testssl.sh`) against an HTTPS frontend serving a certificate of
//! the farm CA: no finding of severity MEDIUM or above (any fails the test with its text),
//! and the certificate's CRL distribution point is the one the farm publishes.

mod common;

use std::process::Command;

use common::{Checks, Extra};
use webfarm_testkit::TempDir;
use webfarm_tls::ca::{FarmCa, Layout, Leaf, Usage};
use webfarm_tls::revoke::crl_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_of_medium_severity_or_above() {
    let testssl = ["testssl", "testssl.sh"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("testssl.sh is not installed (Debian package testssl.sh); .ci/run installs it");
    let dir = TempDir::new("testssl");
    let layout = Layout::of_data_dir(dir.path());
    let ca = FarmCa::create(&layout, "www.foobar.com").unwrap();
    let leaf = Leaf {
        common_name: "www.foobar.com".into(),
        names: vec!["www.foobar.com".into()],
        usage: Usage::Server,
        crl_url: Some(crl_url("www.foobar.com", 80)),
    };
    ca.issue(&leaf).unwrap().write(&layout.site()).unwrap();
    let site = layout.site();
    let [server] = common::servers::<1>().await;
    let tls = format!(
        "tls = {{ certs = [{{ cert = '{}', key = '{}' }}] }}",
        site.cert.display(),
        site.key.display()
    );
    let extra = Extra {
        frontend: tls,
        ..Extra::default()
    };
    let lb = common::start_lb_extra(&[&server], &[1], Checks::default(), &extra).await;
    let json = dir.path().join("testssl.json");
    let url = format!("https://www.foobar.com:{}/", lb.addr.port());
    let out = tokio::process::Command::new(testssl)
        // Every finding, OK ones too: the test filters by severity itself.
        .args(["--quiet", "--color", "0", "--warnings", "off"])
        .arg("--jsonfile")
        .arg(&json)
        .arg("--add-ca")
        .arg(&layout.ca().cert)
        .args(["--ip", &lb.addr.ip().to_string(), &url])
        .output()
        .await
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(bad.is_empty(), "testssl findings:\n{}", bad.join("\n"));
    // It did scan: the protocols it found are TLS 1.2 and 1.3 only.
    let offered = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert_eq!(offered("TLS1_3"), "offered with final", "{text}");
    assert_eq!(offered("TLS1_2"), "offered", "{text}");
    assert_eq!(offered("TLS1_1"), "not offered", "{text}");
    assert_eq!(
        offered("cert_crlDistributionPoints"),
        "http://www.foobar.com/.well-known/webfarm/ca.crl",
        "{text}"
    );
    lb.stop().await;
}
