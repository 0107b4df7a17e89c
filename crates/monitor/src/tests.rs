//! The view, its rates, the timeline and the history, from scrapes made up in JSON as the
//! nodes' `/status` writes it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use webfarm_config::{Farm, Role};
use webfarm_node::NodeStatus;

use crate::events::Timeline;
use crate::history::History;
use crate::scrape::{self, Reading};
use crate::view::{self, Rates, View};

fn farm() -> Farm {
    let text = r#"
[[nodes]]
name = "mon-1"
role = "monitor"
address = "127.0.9.5"
[[nodes]]
name = "lb-1"
role = "lb"
address = "127.0.9.10"
[[nodes]]
name = "web-1"
role = "web"
address = "127.0.9.21"
[[nodes]]
name = "db-1"
role = "db"
address = "127.0.9.31"
[[nodes]]
name = "db-2"
role = "db"
address = "127.0.9.32"
[[frontends]]
name = "www"
port = 8080
default_backend = "web"
[[backends]]
name = "web"
[[backends.servers]]
name = "web-1"
"#;
    Farm::parse(
        text,
        None,
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .as_path(),
    )
    .unwrap()
}

fn status(name: &str, role: &str, details: serde_json::Value) -> Result<NodeStatus, String> {
    let v = json!({ "name": name, "role": role, "state": "ready", "details": details });
    Ok(serde_json::from_value(v).unwrap())
}

fn lb(state: &str, total: u64) -> Result<NodeStatus, String> {
    let server = json!({
        "name": "web-1", "addr": "127.0.9.21:8000", "state": state, "health": state,
        "admin": "ready", "weight": 1, "effective_weight": 1, "backup": false, "maxconn": 0,
        "check": if state == "UP" { "Layer7 check passed" } else { "Layer4 connection problem" },
        "current_conns": 2, "total_requests": total, "consecutive_failures": 0, "idle_conns": 0,
    });
    let backend = json!({
        "name": "web", "mode": "http", "balance": "roundrobin", "hash_type": "map-based",
        "retries": 1, "redispatch": true, "queued": 0, "servers": [server],
    });
    status(
        "lb-1",
        "lb",
        json!({
            "frontends": [], "backends": [backend], "conns": 5, "threads": 1,
            "vrrp": [{ "name": "VI_1", "vrid": 51, "state": "master", "priority": 200,
                       "vips": ["127.0.9.8"], "held": ["127.0.9.8"] }],
        }),
    )
}

fn db(name: &str, leader: Option<&str>, term: u64, lag: u64) -> Result<NodeStatus, String> {
    let state = if leader == Some(name) {
        "Leader"
    } else {
        "Follower"
    };
    let replication = if state == "Leader" {
        json!({ "db-2": { "replica": "voter", "matched_index": 10 - lag, "replicated": true, "lag": lag } })
    } else {
        json!({})
    };
    status(
        name,
        "db",
        json!({
            "node_id": "1", "raft_state": state, "replica": "voter", "term": term,
            "leader": leader, "commit_index": 10, "applied_index": 10, "last_log_index": 10,
            "snapshot_index": null, "purged_index": null, "membership_index": 1,
            "voters": ["db-1", "db-2"], "learners": [], "replication": replication,
            "has_data": true,
        }),
    )
}

fn web(requests: u64) -> Result<NodeStatus, String> {
    status(
        "web-1",
        "web",
        json!({ "http": "127.0.9.21:8000", "root": "site", "db_nodes": [], "read_from": "",
                "requests": requests, "database": "reachable" }),
    )
}

fn readings(statuses: Vec<(&str, Role, Result<NodeStatus, String>)>) -> Vec<Reading> {
    statuses
        .into_iter()
        .map(|(name, role, status)| Reading {
            name: name.into(),
            role,
            status,
            metrics: None,
        })
        .collect()
}

/// Builds the views of successive scrapes one second apart, as the monitor does.
struct Scrapes {
    farm: Farm,
    rates: Rates,
    start: Instant,
    n: u64,
    timeline: Timeline,
    last: Option<View>,
}

impl Scrapes {
    fn new() -> Scrapes {
        Scrapes {
            farm: farm(),
            rates: Rates::default(),
            start: Instant::now(),
            n: 0,
            timeline: Timeline::default(),
            last: None,
        }
    }

    fn next(&mut self, r: Vec<Reading>) -> View {
        let at = self.start + Duration::from_secs(self.n);
        let view = view::build(
            &self.farm,
            "mon-1",
            &r,
            &mut self.rates,
            (at, 1_000 * self.n),
        );
        self.rates.keep_metrics(r);
        self.n += 1;
        self.timeline.compare(self.last.as_ref(), &view);
        self.last = Some(view.clone());
        view
    }
}

#[test]
fn targets_are_every_node_but_the_monitor() {
    let names: Vec<String> = scrape::targets(&farm(), "mon-1")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["lb-1", "web-1", "db-1", "db-2"]);
}

#[test]
fn rates_come_from_counters_between_scrapes_and_a_restart_is_not_negative() {
    let mut s = Scrapes::new();
    let scrape = |lb_total, web_requests| {
        readings(vec![
            ("lb-1", Role::Lb, lb("UP", lb_total)),
            ("web-1", Role::Web, web(web_requests)),
            ("db-1", Role::Db, db("db-1", Some("db-1"), 3, 2)),
            ("db-2", Role::Db, db("db-2", Some("db-1"), 3, 0)),
        ])
    };
    let first = s.next(scrape(100, 50));
    assert_eq!(
        first.lbs[0].backends[0].servers[0].rps, 0.0,
        "no rate on the first scrape"
    );
    assert_eq!(first.webs[0].rps, None);
    let second = s.next(scrape(160, 80));
    assert_eq!(second.lbs[0].backends[0].servers[0].rps, 60.0);
    // The VIPs an lb serves as VRRP master: the diagram's DNS edge to it is live.
    assert_eq!(second.lbs[0].vips_held, ["127.0.9.8"]);
    assert_eq!(second.lbs[0].backends[0].rps, 60.0);
    assert_eq!(second.webs[0].rps, Some(30.0));
    // web-1 restarted: its counter went down; the rate is 0, not negative.
    let third = s.next(scrape(220, 5));
    assert_eq!(third.webs[0].rps, Some(0.0));
    assert_eq!(third.db.leader.as_deref(), Some("db-1"));
    let lags: Vec<Option<u64>> = third.db.nodes.iter().map(|d| d.lag).collect();
    assert_eq!(lags, [Some(0), Some(2)]);
    assert_eq!(third.nodes[0].state, "up", "the monitor itself");
}

#[test]
fn the_timeline_tells_a_server_down_a_node_lost_and_a_failover_with_its_length() {
    let mut s = Scrapes::new();
    let healthy = || {
        readings(vec![
            ("lb-1", Role::Lb, lb("UP", 0)),
            ("web-1", Role::Web, web(0)),
            ("db-1", Role::Db, db("db-1", Some("db-1"), 3, 0)),
            ("db-2", Role::Db, db("db-2", Some("db-1"), 3, 0)),
        ])
    };
    s.next(healthy());
    assert!(s.timeline.take_new().is_empty(), "nothing happened yet");
    // web-1 dies and db-1 (the leader) dies: the lb marks web-1 DOWN, db-2 leads nobody yet.
    s.next(readings(vec![
        ("lb-1", Role::Lb, lb("DOWN", 0)),
        ("web-1", Role::Web, Err("connection refused".into())),
        ("db-1", Role::Db, Err("connection refused".into())),
        ("db-2", Role::Db, db("db-2", None, 3, 0)),
    ]));
    let texts: Vec<String> = s.timeline.take_new().into_iter().map(|e| e.text).collect();
    assert!(
        texts
            .iter()
            .any(|t| t == "web-1 is unreachable: connection refused"),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("server web/web-1 is DOWN (was UP), check: Layer4")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("lost its leader (db-1)")),
        "{texts:?}"
    );
    // Two scrapes later db-2 leads in term 4: 2 s without a leader.
    s.next(readings(vec![("db-2", Role::Db, db("db-2", None, 4, 0))]));
    s.next(readings(vec![(
        "db-2",
        Role::Db,
        db("db-2", Some("db-2"), 4, 0),
    )]));
    let texts: Vec<String> = s.timeline.take_new().into_iter().map(|e| e.text).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("db-2 elected db leader (term 4)")
                && t.contains("no leader seen for 2.0s")),
        "{texts:?}"
    );
    // web-1 and db-1 lost, web-1 DOWN, no leader; then lb-1 unscraped, db-2 elected.
    assert_eq!(s.timeline.all().len(), 6, "{:#?}", s.timeline.all());
}

#[test]
fn history_keeps_the_last_points_of_each_series() {
    let mut s = Scrapes::new();
    let mut history = History::new(3);
    for total in [0, 10, 30, 60, 100] {
        let view = s.next(readings(vec![("lb-1", Role::Lb, lb("UP", total))]));
        history.record(&view);
    }
    let points: Vec<f64> = history.series["rps/lb-1/web/web-1"]
        .iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(points, [20.0, 30.0, 40.0]);
}

#[test]
fn an_alert_is_pending_for_its_for_then_fires_then_resolves_with_alertmanager_json() {
    let mut settings = webfarm_config::AlertSettings::default();
    settings.server_down.for_ = Duration::from_secs(2);
    let mut s = Scrapes::new();
    let mut alerts = crate::alerts::Alerts::default();
    let mut step = |state: &str| {
        let r = readings(vec![
            ("lb-1", Role::Lb, lb(state, 0)),
            ("db-1", Role::Db, db("db-1", Some("db-1"), 3, 0)),
            ("db-2", Role::Db, db("db-2", Some("db-1"), 3, 0)),
        ]);
        let view = s.next(r.clone());
        let now = std::time::UNIX_EPOCH + Duration::from_millis(view.at_ms);
        let c = crate::alerts::conditions(&settings, &view, &r, now);
        let changes = alerts.update(c, view.at_ms);
        let states: Vec<(String, &str)> = alerts
            .active()
            .iter()
            .map(|a| (a.name().to_string(), a.state))
            .collect();
        (changes, states)
    };
    let (changes, _) = step("UP");
    assert!(changes.is_empty());
    // DOWN at t=1s: pending; web-1 was the backend's only server, so fewer than 2 are up.
    let (changes, states) = step("DOWN");
    assert!(changes.is_empty(), "{changes:?}");
    assert!(
        states.contains(&("ServerDown".into(), "pending")),
        "{states:?}"
    );
    let (changes, _) = step("DOWN");
    assert!(changes.is_empty(), "1 s of a 2 s `for`");
    let (changes, states) = step("DOWN");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].name(), changes[0].state),
        ("ServerDown", "firing")
    );
    assert!(states.contains(&("ServerDown".into(), "firing")));
    let json = crate::alerts::webhook::payload(&changes[0], "http://127.0.9.5:3000/");
    assert_eq!(json["version"], "4");
    assert_eq!(json["status"], "firing");
    let alert = &json["alerts"][0];
    assert_eq!(alert["labels"]["server"], "web-1");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(alert["startsAt"]
        .as_str()
        .unwrap()
        .starts_with("1970-01-01T00:00:01"));
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("server web/web-1 is DOWN"));
    // Back UP: resolved, with its end.
    let (changes, states) = step("UP");
    assert_eq!(
        (changes[0].name(), changes[0].state),
        ("ServerDown", "resolved")
    );
    let json = crate::alerts::webhook::payload(&changes[0], "http://x/");
    assert_eq!(json["alerts"][0]["endsAt"], "1970-01-01T00:00:04.000Z");
    assert!(
        states.iter().all(|(n, _)| n == "BackendFewServersUp"),
        "{states:?}"
    );
}

#[test]
fn no_leader_and_lag_and_disabled_rules() {
    let mut settings = webfarm_config::AlertSettings::default();
    settings.replication_lag.threshold = 5.0;
    let mut s = Scrapes::new();
    let r = readings(vec![
        ("db-1", Role::Db, db("db-1", Some("db-1"), 3, 9)),
        ("db-2", Role::Db, db("db-2", Some("db-1"), 3, 0)),
    ]);
    let view = s.next(r.clone());
    let names = |settings: &webfarm_config::AlertSettings, view: &View| {
        crate::alerts::conditions(settings, view, &r, std::time::SystemTime::now())
            .into_iter()
            .map(|c| c.labels["alertname"].clone())
            .collect::<Vec<_>>()
    };
    assert!(names(&settings, &view).contains(&"DbReplicationLag".to_string()));
    settings.replication_lag.enabled = false;
    assert!(!names(&settings, &view).contains(&"DbReplicationLag".to_string()));
    let leaderless = s.next(readings(vec![("db-2", Role::Db, db("db-2", None, 4, 0))]));
    assert!(names(&settings, &leaderless).contains(&"DbNoLeader".to_string()));
}

const METRICS_BEFORE: &str = r#"# HELP haproxy_backend_http_responses Responses by class.
# TYPE haproxy_backend_http_responses counter
haproxy_backend_http_responses_total{proxy="web",code="2xx"} 100
haproxy_backend_http_responses_total{proxy="web",code="5xx"} 0
# HELP haproxy_backend_total_time_seconds Total time.
# TYPE haproxy_backend_total_time_seconds histogram
haproxy_backend_total_time_seconds_sum{proxy="web"} 1.0
haproxy_backend_total_time_seconds_count{proxy="web"} 100
haproxy_backend_total_time_seconds_bucket{le="0.01",proxy="web"} 100
haproxy_backend_total_time_seconds_bucket{le="0.1",proxy="web"} 100
haproxy_backend_total_time_seconds_bucket{le="1.0",proxy="web"} 100
haproxy_backend_total_time_seconds_bucket{le="+Inf",proxy="web"} 100
# HELP webfarm_data_dir_size_bytes Size.
# TYPE webfarm_data_dir_size_bytes gauge
webfarm_data_dir_size_bytes 1000
# HELP webfarm_data_dir_available_bytes Free.
# TYPE webfarm_data_dir_available_bytes gauge
webfarm_data_dir_available_bytes 50
"#;

#[test]
fn error_share_and_percentiles_come_from_the_window_between_scrapes() {
    use crate::metrics::{quantile, Samples, Window};
    let before = Samples::parse(METRICS_BEFORE).unwrap();
    // 100 more answers, 10 of them 5xx; of the 100, 50 took up to 10 ms, 40 up to 100 ms,
    // 10 up to 1 s.
    let now = Samples::parse(
        &METRICS_BEFORE
            .replace("code=\"2xx\"} 100", "code=\"2xx\"} 190")
            .replace("code=\"5xx\"} 0", "code=\"5xx\"} 10")
            .replace(
                "le=\"0.01\",proxy=\"web\"} 100",
                "le=\"0.01\",proxy=\"web\"} 150",
            )
            .replace(
                "le=\"0.1\",proxy=\"web\"} 100",
                "le=\"0.1\",proxy=\"web\"} 190",
            )
            .replace(
                "le=\"1.0\",proxy=\"web\"} 100",
                "le=\"1.0\",proxy=\"web\"} 200",
            )
            .replace(
                "le=\"+Inf\",proxy=\"web\"} 100",
                "le=\"+Inf\",proxy=\"web\"} 200",
            ),
    )
    .unwrap();
    let w = Window {
        before: &before,
        now: &now,
    };
    let web = [("proxy", "web")];
    let share = w.share(
        "haproxy_backend_http_responses_total",
        &web,
        &[("code", "5xx")],
    );
    assert_eq!(share, Some(0.1));
    let p50 = w
        .quantile(0.5, "haproxy_backend_total_time_seconds", &web)
        .unwrap();
    assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
    let p99 = w
        .quantile(0.99, "haproxy_backend_total_time_seconds", &web)
        .unwrap();
    assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
    // Nothing in the window: no figure, not zero.
    let still = Window {
        before: &now,
        now: &now,
    };
    assert_eq!(
        still.quantile(0.5, "haproxy_backend_total_time_seconds", &web),
        None
    );
    assert_eq!(
        still.share(
            "haproxy_backend_http_responses_total",
            &web,
            &[("code", "5xx")]
        ),
        None
    );
    assert_eq!(
        quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 4.0)]),
        Some(1.0)
    );
    assert_eq!(now.sum("webfarm_data_dir_available_bytes", &[]), Some(50.0));
}

#[test]
fn an_applied_and_a_refused_reload_are_in_the_timeline() {
    let with = |generation: u64, refused: u64| {
        let mut status = lb("UP", 0).unwrap();
        if let webfarm_node::RoleStatus::Lb(l) = &mut status.details {
            l.generation = generation;
            l.reloads_refused = refused;
        }
        readings(vec![("lb-1", Role::Lb, Ok(status))])
    };
    let mut s = Scrapes::new();
    s.next(with(0, 0));
    s.next(with(1, 0));
    s.next(with(1, 1));
    let texts: Vec<String> = s.timeline.all().into_iter().map(|e| e.text).collect();
    assert!(
        texts.contains(&"lb-1 reloaded its configuration (generation 1)".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("lb-1 refused a reload")),
        "{texts:?}"
    );
}

#[test]
fn a_dns_node_brings_its_serial_and_answers_into_the_view() {
    let mut farm = farm();
    let mut dns = farm.node("lb-1").unwrap().clone();
    (dns.name, dns.role, dns.address, dns.port) = (
        "dns-1".into(),
        Role::Dns,
        "127.0.9.2".parse().unwrap(),
        5353,
    );
    farm.nodes.push(dns);
    let details = json!({
        "listen": "127.0.9.2:5353", "zone": "foobar.com", "serial": 42,
        "site": "www.foobar.com", "answering": ["127.0.9.10"], "queries": 3,
        "addresses": [{ "addr": "127.0.9.10", "health": "UP", "check": "connected" }],
    });
    let r = readings(vec![("dns-1", Role::Dns, status("dns-1", "dns", details))]);
    let v = view::build(
        &farm,
        "mon-1",
        &r,
        &mut Rates::default(),
        (Instant::now(), 0),
    );
    assert_eq!(v.dns.len(), 1);
    assert_eq!((v.dns[0].name.as_str(), v.dns[0].serial), ("dns-1", 42));
    assert_eq!(v.dns[0].answering, ["127.0.9.10"]);
    let node = v.nodes.iter().find(|n| n.name == "dns-1").unwrap();
    assert_eq!((node.role, node.state), ("dns", "up"));
}

/// The admin token goes to the farm's nodes only: an alert webhook receiver sees no
/// `Authorization` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_gets_no_credentials() {
    use tokio::io::AsyncWriteExt;
    let dir = webfarm_testkit::TempDir::new("monitor-webhook");
    let hook = tokio::net::TcpListener::bind(webfarm_testkit::free_addr())
        .await
        .unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let mon = webfarm_testkit::loopback_ip();
    let text = format!(
        "data_dir = '{data}'\n[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\n\
         address = \"{mon}\"\nport = {port}\n[[nodes]]\nname = \"db-1\"\nrole = \"db\"\n\
         address = \"{db}\"\n{tls}[monitor.alerts]\nno_db_leader = {{ for = \"0s\" }}\n\
         webhooks = [\"http://{hook_addr}/hook\"]\n",
        data = dir.path().join("data").display(),
        port = webfarm_testkit::free_port(mon),
        db = webfarm_testkit::loopback_ip(),
        tls = webfarm_testkit::INTERNAL_TLS_OFF,
    );
    let farm = std::sync::Arc::new(Farm::parse(&text, None, dir.path()).unwrap());
    let (trigger, shutdown) = webfarm_node::Shutdown::new();
    let node = crate::MonitorNode::start(webfarm_node::NodeContext {
        node: farm.node("mon-1").unwrap().clone(),
        farm: farm.clone(),
        data_dir: dir.path().join("mon-1"),
        shutdown,
        auth: webfarm_node::access::NodeAuth {
            token: Some(webfarm_node::access::AdminToken::new("the-admin-token")),
            ..Default::default()
        },
    })
    .await
    .unwrap();
    // DbNoLeader fires at once (db-1 is not running): its POST is the first to arrive.
    let (mut conn, _) = tokio::time::timeout(webfarm_testkit::DEADLINE, hook.accept())
        .await
        .expect("the webhook is called")
        .unwrap();
    let head = webfarm_testkit::read_request_head(&mut conn).await;
    assert!(head.starts_with("post /hook "), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains("the-admin-token"), "{head}");
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    drop(trigger);
    node.wait().await.unwrap();
}
