//! `/metrics` of a whole farm run by the real `webfarm up`, read with `webfarm metrics`:
//! the key series of every role follow the traffic sent and a web node killed, and
//! `promtool check metrics` finds nothing wrong in any role's output, internal TLS on.

mod common;

use common::{eventually, TempDir, TestFarm, DEADLINE};
use serde_json::json;
use webfarm_testkit::metrics::{sample, sum};

const NET_PLAIN: u8 = 67;
const NET_TLS: u8 = 68;

const NODES: [&str; 7] = ["lb-1", "web-1", "web-2", "web-3", "db-1", "db-2", "db-3"];

/// `webfarm metrics NODE`'s output; fails when it fails.
fn metrics(farm: &TestFarm, node: &str) -> String {
    let out = farm.webfarm(&["metrics", node]);
    assert!(
        out.status.success(),
        "webfarm metrics {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// Sends `n` GETs of `/` and posts `posts` messages through the lb.
async fn traffic(farm: &TestFarm, n: usize, posts: usize) {
    for _ in 0..n {
        let r = farm.get(&format!("{}/", farm.lb())).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    for i in 0..posts {
        let r = farm
            .post_json(
                &format!("{}/api/messages", farm.lb()),
                &json!({"author": "ada", "text": format!("metric {i}")}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_what_the_farm_did() {
    let tmp = TempDir::new("metrics-farm");
    let mut farm = TestFarm::start(&tmp, NET_PLAIN);
    traffic(&farm, 20, 2).await;

    let lb = metrics(&farm, "lb-1");
    let www = [("proxy", "www")];
    assert_eq!(
        value(&lb, "haproxy_frontend_http_requests_total", &www),
        22.0
    );
    let ok = [("proxy", "web"), ("code", "2xx")];
    assert_eq!(
        value(&lb, "haproxy_backend_http_responses_total", &ok),
        22.0
    );
    assert_eq!(
        sum(&lb, "haproxy_server_sessions_total", &[("proxy", "web")]),
        22.0
    );
    let total = value(
        &lb,
        "haproxy_backend_total_time_seconds_count",
        &[("proxy", "web")],
    );
    assert_eq!(total, 22.0);
    for web in ["web-1", "web-2", "web-3"] {
        let up = [("server", web), ("state", "UP")];
        assert_eq!(value(&lb, "haproxy_server_status", &up), 1.0, "{web}");
    }

    let webs: Vec<String> = (1..=3)
        .map(|i| metrics(&farm, &format!("web-{i}")))
        .collect();
    let pages: f64 = webs
        .iter()
        .map(|t| sum(t, "webfarm_web_http_requests_total", &[("route", "/")]))
        .sum();
    assert_eq!(pages, 20.0, "every page the lb forwarded, counted once");
    let posted: f64 = webs
        .iter()
        .map(|t| value(t, "webfarm_web_messages_posted_total", &[]))
        .sum();
    assert_eq!(posted, 2.0);

    let leader = farm.db_leader().await;
    for i in 1..=3 {
        let name = format!("db-{i}");
        let db = metrics(&farm, &name);
        assert_eq!(value(&db, "webfarm_db_has_leader", &[]), 1.0, "{name}");
        let is_leader = f64::from(u8::from(name == leader));
        assert_eq!(value(&db, "webfarm_db_is_leader", &[]), is_leader, "{name}");
        assert!(value(&db, "webfarm_db_commit_index", &[]) >= 2.0, "{name}");
    }
    for node in NODES {
        let text = metrics(&farm, node);
        assert!(
            value(&text, "process_resident_memory_bytes", &[]) > 0.0,
            "{node}"
        );
        assert!(value(&text, "process_open_fds", &[]) > 0.0, "{node}");
        let size = value(&text, "webfarm_data_dir_size_bytes", &[]);
        let free = value(&text, "webfarm_data_dir_available_bytes", &[]);
        assert!(
            size > 0.0 && free > 0.0 && free <= size,
            "{node}: {free} of {size}"
        );
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(value(&text, "webfarm_build_info", &version), 1.0, "{node}");
    }
    let everyone = farm.webfarm(&["metrics"]);
    let everyone = String::from_utf8_lossy(&everyone.stdout);
    for node in NODES {
        assert!(everyone.contains(&format!("# node {node} ")), "{everyone}");
    }

    // The db leader dies. web-k sends its writes to db-k first (and db-k forwards them to
    // the leader while it lives): with db-k gone, web-k's next write fails over to another
    // db node, and the survivors see a new leader.
    let k = &leader["db-".len()..];
    let out = farm.webfarm(&["kill", &leader]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web_k: u8 = k.parse().unwrap();
    let r = farm
        .post_json(
            &format!("{}/api/messages", farm.web(web_k)),
            &json!({"author": "ada", "text": "after the failover"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let web = metrics(&farm, &format!("web-{k}"));
    assert!(
        value(&web, "webfarm_web_db_failovers_total", &[]) >= 1.0,
        "{web}"
    );
    for survivor in (1..=3).map(|i| format!("db-{i}")).filter(|n| *n != leader) {
        eventually(DEADLINE, "a new leader seen", || async {
            let db = metrics(&farm, &survivor);
            (value(&db, "webfarm_db_leader_changes_seen_total", &[]) >= 2.0
                && value(&db, "webfarm_db_has_leader", &[]) == 1.0)
                .then_some(())
        })
        .await;
    }

    // A web node dies: the lb's health checks take it DOWN, and its status says so.
    let out = farm.webfarm(&["kill", "web-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `webfarm metrics` says which node did not answer, and fails.
    let out = farm.webfarm(&["metrics", "web-2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("web-2 did not answer"),
        "{err}"
    );
    let out = farm.webfarm(&["metrics", "web-9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no node named \"web-9\""),
        "{err}"
    );
    let web2_up = [("server", "web-2"), ("state", "UP")];
    eventually(DEADLINE, "web-2 DOWN in the lb's metrics", || async {
        let lb = metrics(&farm, "lb-1");
        let down = [("server", "web-2"), ("state", "DOWN")];
        (value(&lb, "haproxy_server_status", &web2_up) == 0.0
            && value(&lb, "haproxy_server_status", &down) == 1.0)
            .then_some(())
    })
    .await;
    let lb = metrics(&farm, "lb-1");
    assert_eq!(
        value(&lb, "haproxy_backend_active_servers", &[("proxy", "web")]),
        2.0
    );

    farm.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_any_role_internal_tls_on() {
    let promtool =
        webfarm_testkit::which("promtool", "prometheus", "checks every role's exposition");
    let tmp = TempDir::new("metrics-tls");
    let config = tmp.path().join("farm.toml");
    let text = common::farm_toml(NET_TLS).replace(webfarm_testkit::INTERNAL_TLS_OFF, "");
    std::fs::write(&config, text).unwrap();
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET_TLS);
    // The operator's certificate is what lets `webfarm metrics` in: a plain client is not.
    let plain = farm
        .http
        .get(
            &format!("http://127.0.{NET_TLS}.10:9000/metrics"),
            std::time::Duration::from_secs(2),
        )
        .await;
    assert!(
        plain.map_or(true, |r| !r.status.is_success()),
        "plain HTTP got metrics"
    );
    traffic_tls(&farm).await;
    for node in NODES {
        let text = metrics(&farm, node);
        assert!(text.contains("webfarm_build_info{"), "{node}: {text}");
        std::fs::write(format!("/tmp/m-{node}.txt"), &text).unwrap();
        let out = webfarm_testkit::metrics::promtool_check(&promtool, &text);
        assert!(
            out.is_empty(),
            "promtool check metrics on {node}: {out}\n{text}"
        );
    }
    farm.stop();
}

/// A few requests through the lb (plain frontend, internal TLS to the web nodes) and one
/// message, so histograms and counters have samples; `webfarm sql` is not needed.
async fn traffic_tls(farm: &TestFarm) {
    traffic(farm, 5, 1).await;
}
