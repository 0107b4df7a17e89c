//! End-to-end tests of the whole farm: the real `webfarm up`, real processes on loopback.
//!
//! Each test runs its own farm on its own `127.0.N.x` addresses and temp dir.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{cookie, eventually, served_by, TempDir, TestFarm, DEADLINE};
use serde_json::{json, Value};

/// One row of the messages table: id, author, text, created_at, served_by.
type MessageRow = (i64, String, String, String, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_then_post_and_read_back_everywhere() {
    let tmp = TempDir::new("rr");
    let farm = TestFarm::start(&tmp, 51);

    // 30 requests through the load balancer reach each web server exactly 10 times.
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        let r = farm.get(&format!("{}/", farm.lb())).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        *counts.entry(served_by(&r)).or_default() += 1;
    }
    let expected: HashMap<String, u32> = (1..=3).map(|i| (format!("web-{i}"), 10)).collect();
    assert_eq!(counts, expected);

    // A message posted through the load balancer is read back through every web server,
    // at once: the wf_index cookie makes each replica wait until it applied the write.
    let posted = farm
        .post_json(
            &format!("{}/api/messages", farm.lb()),
            &json!({"author": "ada", "text": "hello from the test"}),
        )
        .await;
    assert_eq!(
        posted.status,
        201,
        "{}",
        String::from_utf8_lossy(&posted.body)
    );
    let msg: Value = serde_json::from_slice(&posted.body).unwrap();
    let jar = cookie(&posted);
    assert!(
        jar.starts_with("wf_index="),
        "no read-your-writes cookie: {jar:?}"
    );
    for i in 1..=3 {
        let r = farm
            .get_with_cookie(&format!("{}/api/messages", farm.web(i)), &jar)
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(served_by(&r), format!("web-{i}"));
        let list: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        assert!(
            list.iter()
                .any(|m| m["id"] == msg["id"] && m["text"] == "hello from the test"),
            "web-{i} does not show the message: {list:?}"
        );
    }

    // The HTML page names the server that generated it and shows the message.
    let page = farm
        .get_with_cookie(&format!("{}/", farm.web(2)), &jar)
        .await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("web-2") && html.contains("hello from the test"),
        "{html}"
    );

    // `webfarm status --json` sees seven ready nodes and one db leader.
    let out = farm.webfarm(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 7);
    assert!(nodes.iter().all(|n| n["healthy"] == true), "{status:#}");
    let leaders = nodes
        .iter()
        .filter(|n| n["details"]["raft_state"] == "Leader")
        .count();
    assert_eq!(leaders, 1, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_web_server_costs_no_request_and_comes_back() {
    let tmp = TempDir::new("webkill");
    let farm = TestFarm::start(&tmp, 52);
    let out = farm.webfarm(&["kill", "web-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for n in 0..200 {
        let r = farm.get(&format!("{}/", farm.lb())).await;
        assert_eq!(r.status, 200, "request {n} failed after web-2 was killed");
        assert_ne!(
            served_by(&r),
            "web-2",
            "request {n} went to the killed server"
        );
    }

    let out = farm.webfarm(&["start", "web-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Back in rotation after rise (2) x inter (300ms) plus scheduling slack.
    eventually(DEADLINE, "web-2 gets traffic again", || async {
        let r = farm.get(&format!("{}/healthz", farm.lb())).await;
        (served_by(&r) == "web-2").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_leader_failover_loses_no_acknowledged_write() {
    let tmp = TempDir::new("dbkill");
    let mut farm = TestFarm::start(&tmp, 53);
    let post = |text: String| {
        let farm = &farm;
        async move {
            let r = farm
                .post_json(
                    &format!("{}/api/messages", farm.lb()),
                    &json!({"author": "failover", "text": text}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        }
    };
    for i in 0..10 {
        post(format!("before {i}")).await;
    }
    let leader = farm.db_leader().await;
    let out = farm.webfarm(&["kill", &leader]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The web tier retries through the election (db_timeout 10s), so this write is
    // acknowledged within 10s or the test fails with a 503.
    post("right after the kill".into()).await;
    // Enough writes for the survivors to snapshot (threshold 20) and compact their logs,
    // so the old leader may have to catch up from a snapshot.
    for i in 0..30 {
        post(format!("after {i}")).await;
    }
    let r = farm
        .get(&format!("{}/api/messages?limit=500", farm.lb()))
        .await;
    let list: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list.len(), 41, "acknowledged writes are missing: {list:?}");

    let out = farm.webfarm(&["start", &leader]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i: u8 = leader.trim_start_matches("db-").parse().unwrap();
    let url = format!("{}/db/query?level=none", farm.db(i));
    eventually(DEADLINE, "the old leader catches up", || async {
        let r = farm
            .http
            .post(
                &url,
                "application/json",
                r#"["SELECT COUNT(*) FROM messages"]"#.into(),
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (v["results"][0]["values"][0][0] == 41).then_some(())
    })
    .await;
    farm.stop();

    // The three SQLite files hold the same rows, byte for byte the same values (including
    // created_at, a CURRENT_TIMESTAMP default evaluated once by the leader).
    let rows: Vec<Vec<MessageRow>> = (1..=3)
        .map(|i| {
            let path = farm.dir.join(format!("data/db-{i}/db.sqlite"));
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare("SELECT id, author, text, created_at, served_by FROM messages ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        })
        .collect();
    assert_eq!(rows[0].len(), 41);
    assert_eq!(rows[0], rows[1]);
    assert_eq!(rows[0], rows[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_stop_and_up_again() {
    let tmp = TempDir::new("restart");
    let mut farm = TestFarm::start(&tmp, 54);
    let r = farm
        .post_json(
            &format!("{}/api/messages", farm.lb()),
            &json!({"author": "persist", "text": "still here after a restart"}),
        )
        .await;
    assert_eq!(r.status, 201);
    farm.stop();

    let (dir, config) = (farm.dir.clone(), farm.config.clone());
    drop(farm);
    let farm = TestFarm::start_in(dir, config, 54);
    let r = farm
        .get(&format!("{}/api/messages?limit=500", farm.lb()))
        .await;
    let list: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    assert!(
        list.iter()
            .any(|m| m["text"] == "still here after a restart"),
        "{list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_start_stops_the_farm_with_its_error() {
    // Something else holds web-1's port.
    let _squatter = std::net::TcpListener::bind("127.0.55.21:8000").unwrap();
    let tmp = TempDir::new("portinuse");
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    std::fs::write(&config, common::farm_toml(55)).unwrap();
    let mut farm = TestFarm {
        dir,
        config,
        net: 55,
        child: None,
        log: Default::default(),
        readers: Vec::new(),
        http: Default::default(),
    };
    let (up, _) = farm.spawn_up();
    assert!(!up, "the farm came up although web-1's port is taken");
    let code = farm.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1));
    let log = farm.log_text();
    assert!(log.contains("node web-1 failed to start"), "{log}");
    assert!(log.contains("127.0.55.21:8000"), "{log}");
    // Everything it had started was stopped: the db nodes' ports are free again.
    eventually(DEADLINE, "db-1's port is released", || async {
        std::net::TcpListener::bind("127.0.55.31:4001")
            .ok()
            .map(|_| ())
    })
    .await;
}
