//! The load-balancer pair on loopback (VRRPv3 over webfarm's UDP loopback transport): real
//! `webfarm up`, real processes, the VIP bound by whichever lb is master. Addresses
//! 127.0.79.x (active-passive) and 127.0.80.x (active-active).

mod common;

use std::time::Duration;

use common::{eventually, TempDir, TestFarm, DEADLINE};
use webfarm_node::status::VrrpStatus;
use webfarm_node::RoleStatus;
use webfarm_testkit::metrics::sample;

/// Two lbs, two web servers, one db on `127.0.<net>.x`, and `vrrp` appended.
fn pair_toml(net: u8, vrrp: &str) -> String {
    let p = format!("127.0.{net}");
    let mut s = String::from("site = \"www.foobar.com\"\ndata_dir = \"data\"\n");
    for (name, host) in [("lb-1", 10), ("lb-2", 11)] {
        s += &format!("[[nodes]]\nname = \"{name}\"\nrole = \"lb\"\naddress = \"{p}.{host}\"\n");
    }
    for i in 1..=2 {
        s += &format!("[[nodes]]\nname = \"web-{i}\"\nrole = \"web\"\naddress = \"{p}.2{i}\"\n");
    }
    s += &format!("[[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"{p}.31\"\n");
    s += "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n";
    s += "[[backends]]\nname = \"web\"\n[backends.check]\ninter = \"300ms\"\n";
    s += "[[backends.servers]]\nname = \"web-1\"\n[[backends.servers]]\nname = \"web-2\"\n";
    s += webfarm_testkit::INTERNAL_TLS_OFF;
    s += &format!("[web]\nroot = \"{}\"\n", common::site_dir().display());
    s + vrrp
}

fn instance(name: &str, vrid: u8, vip: &str, first: &str, second: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"{name}\"\nvrid = {vrid}\nvip = \"{vip}\"\n\
         priority = {{ \"{first}\" = 200, \"{second}\" = 100 }}\nadvert_int = \"100ms\"\n"
    )
}

fn start(tmp: &TempDir, net: u8, vrrp: &str) -> TestFarm {
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    std::fs::write(&config, pair_toml(net, vrrp)).unwrap();
    TestFarm::start_in(dir, config, net)
}

/// lb `name`'s view of instance `instance`, if it answers.
async fn vrrp_of(farm: &TestFarm, lb: &str, instance: &str) -> Option<VrrpStatus> {
    match farm.status(lb).await?.details {
        RoleStatus::Lb(d) => d.vrrp.into_iter().find(|v| v.name == instance),
        _ => None,
    }
}

/// Waits until `lb` is master of `instance` and holds its VIP, and the other lb (if it
/// answers) is backup.
async fn until_master(farm: &TestFarm, instance: &str, lb: &str, other: &str) {
    let what = format!("{lb} master of {instance}, {other} not");
    eventually(DEADLINE, &what, || async {
        let m = vrrp_of(farm, lb, instance).await?;
        let holds = m.state == "master" && m.held == m.vips;
        let o = vrrp_of(farm, other, instance).await;
        let other_ok = o.is_none_or(|o| o.state != "master" && o.held.is_empty());
        (holds && other_ok).then_some(())
    })
    .await;
}

/// Waits until `GET http://VIP:8080/` answers 200.
async fn until_vip_answers(farm: &TestFarm, vip: &str) {
    let url = format!("http://{vip}:8080/");
    eventually(DEADLINE, &format!("{url} answers 200"), || async {
        let r = farm.http.get(&url, Duration::from_secs(2)).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}

fn run(farm: &TestFarm, args: &[&str]) {
    let out = farm.webfarm(args);
    assert!(
        out.status.success(),
        "webfarm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn signal(farm: &TestFarm, node: &str, sig: &str) {
    let pid = std::fs::read_to_string(farm.dir.join(format!("data/run/{node}.pid"))).unwrap();
    let ok = std::process::Command::new("kill")
        .args([sig, pid.trim()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {node}");
}

/// `webfarm status` names the VIP's master.
/// `webfarm status --json` names a master for every VIP.
fn every_vip_has_a_master(farm: &TestFarm) {
    let out = farm.webfarm(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let vips = v["vips"].as_array().cloned().unwrap_or_default();
    assert!(
        vips.len() == 2 && vips.iter().all(|x| x["master"].is_string()),
        "{v}"
    );
}

fn status_names_master(farm: &TestFarm, vip: &str, master: &str) {
    let out = farm.webfarm(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with(&format!("VIP {vip} ")));
    let line = line.unwrap_or_else(|| panic!("no VIP line for {vip}:\n{text}"));
    assert!(
        line.ends_with(&format!("master {master}")),
        "{line}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_passive_vip_fails_over_and_preempts_back() {
    let tmp = TempDir::new("vrrp-ap");
    let vip = "127.0.79.8";
    let mut farm = start(&tmp, 79, &instance("VI_1", 79, vip, "lb-1", "lb-2"));
    // `webfarm up` gives the VIP as the site's address.
    let log = farm.log_text();
    assert!(log.contains("VIP 127.0.79.8 (VRRP VI_1, vrid 79)"), "{log}");
    assert!(
        log.contains("try: curl -H 'Host: www.foobar.com' http://127.0.79.8:8080/"),
        "{log}"
    );
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_vip_answers(&farm, vip).await;
    status_names_master(&farm, vip, "lb-1");

    // kill -9: lb-2 stops hearing advertisements and takes the VIP.
    run(&farm, &["kill", "lb-1"]);
    until_master(&farm, "VI_1", "lb-2", "lb-1").await;
    until_vip_answers(&farm, vip).await;
    status_names_master(&farm, vip, "lb-2");

    // Back with a higher priority: preemption moves the VIP back.
    run(&farm, &["start", "lb-1"]);
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_vip_answers(&farm, vip).await;

    // SIGSTOP: a frozen master still holds its socket; the backup takes the VIP anyway.
    signal(&farm, "lb-1", "-STOP");
    eventually(DEADLINE, "lb-2 master while lb-1 is stopped", || async {
        let s = vrrp_of(&farm, "lb-2", "VI_1").await?;
        (s.state == "master" && s.held == s.vips).then_some(())
    })
    .await;
    until_vip_answers(&farm, vip).await;
    signal(&farm, "lb-1", "-CONT");
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_vip_answers(&farm, vip).await;

    // A graceful stop advertises priority 0: lb-2 takes over after its skew time alone.
    run(&farm, &["stop", "lb-1"]);
    until_master(&farm, "VI_1", "lb-2", "lb-1").await;
    until_vip_answers(&farm, vip).await;
    let log = farm.log_text();
    assert!(
        log.lines().any(|l| l.contains("lb-2")
            && l.contains("Entering MASTER STATE")
            && l.contains("the master left (priority 0 advertisement)")),
        "lb-2 did not take over on lb-1's priority-0 advertisement:\n{log}"
    );
    run(&farm, &["start", "lb-1"]);
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    farm.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_each_lb_holds_one_vip_and_the_survivor_both() {
    let tmp = TempDir::new("vrrp-aa");
    let (vip1, vip2) = ("127.0.80.8", "127.0.80.9");
    let vrrp =
        instance("VI_1", 80, vip1, "lb-1", "lb-2") + &instance("VI_2", 81, vip2, "lb-2", "lb-1");
    let mut farm = start(&tmp, 80, &vrrp);
    // `webfarm up` says the farm is up once every instance has a master: no polling here.
    every_vip_has_a_master(&farm);
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_master(&farm, "VI_2", "lb-2", "lb-1").await;
    until_vip_answers(&farm, vip1).await;
    until_vip_answers(&farm, vip2).await;
    status_names_master(&farm, vip1, "lb-1");
    status_names_master(&farm, vip2, "lb-2");

    // lb-1 may have been VI_2's master once already, if it started a master down interval
    // before lb-2: count from here.
    let masters_before = lb1_metrics(&farm).1;
    run(&farm, &["kill", "lb-2"]);
    until_master(&farm, "VI_2", "lb-1", "lb-2").await;
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_vip_answers(&farm, vip1).await;
    until_vip_answers(&farm, vip2).await;
    status_names_master(&farm, vip2, "lb-1");

    run(&farm, &["start", "lb-2"]);
    until_master(&farm, "VI_2", "lb-2", "lb-1").await;
    until_master(&farm, "VI_1", "lb-1", "lb-2").await;
    until_vip_answers(&farm, vip2).await;
    status_names_master(&farm, vip2, "lb-2");
    check_metrics(&farm, masters_before);
    farm.stop();
}

/// lb-1's metrics (Prometheus text) and how often it entered master of VI_2.
fn lb1_metrics(farm: &TestFarm) -> (String, f64) {
    let out = farm.webfarm(&["metrics", "lb-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let labels = [("instance", "VI_2"), ("state", "master")];
    let masters = sample(&text, "webfarm_vrrp_transitions_total", &labels)
        .unwrap_or_else(|| panic!("no VI_2 master transitions in\n{text}"));
    (text, masters)
}

/// lb-1's VRRP series: master of VI_1, backup of VI_2, which it entered master once more
/// since `masters_before` (when lb-2 was killed) and left; promtool finds nothing wrong.
fn check_metrics(farm: &TestFarm, masters_before: f64) {
    let promtool = webfarm_testkit::which("promtool", "prometheus", "checks the exposition");
    let (text, masters) = lb1_metrics(farm);
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let state = "webfarm_vrrp_state";
    assert_eq!(
        value(state, &[("instance", "VI_1"), ("state", "master")]),
        1.0
    );
    assert_eq!(
        value(state, &[("instance", "VI_2"), ("state", "backup")]),
        1.0
    );
    assert_eq!(
        value(state, &[("instance", "VI_2"), ("state", "master")]),
        0.0
    );
    assert_eq!(masters, masters_before + 1.0);
    let moves = "webfarm_vrrp_transitions_total";
    assert!(value(moves, &[("instance", "VI_2"), ("state", "backup")]) >= 2.0);
    let problems = webfarm_testkit::metrics::promtool_check(&promtool, &text);
    assert!(problems.is_empty(), "promtool: {problems}");
}
