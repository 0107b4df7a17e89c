//! A 3-node cluster in-process on real sockets: the rqlite API, forwarding, determinism.

mod common;

use common::{Cluster, DEADLINE};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_serves_the_rqlite_api_from_any_node() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let f = c.other_than(leader);

    // Writes through a follower are forwarded to the leader.
    let v = c
        .execute(
            f,
            "/db/execute",
            r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)"]"#,
        )
        .await;
    assert_eq!(v["results"][0]["rows_affected"], 0, "{v}");
    let (status, v, headers) = c
        .post(
            f,
            "/db/execute",
            r#"[["INSERT INTO t (name, score) VALUES (?, ?)", "ada", 1.5],
                ["INSERT INTO t (name, score) VALUES (:name, :score)", {"name": "bob", "score": 2}],
                ["INSERT INTO t (name, score) VALUES (?, ?)", "cy", null]]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["results"],
        json!([
            {"last_insert_id": 1, "rows_affected": 1},
            {"last_insert_id": 2, "rows_affected": 1},
            {"last_insert_id": 3, "rows_affected": 1},
        ])
    );
    let raft_index = v["raft_index"].as_u64().expect("raft_index");
    assert_eq!(
        headers.get("x-raft-index").and_then(|h| h.to_str().ok()),
        Some(raft_index.to_string().as_str())
    );

    // A weak read on a follower is served by the leader; types are the declared ones.
    let rows = c.rows(f, "level=weak", "SELECT * FROM t ORDER BY id").await;
    assert_eq!(rows["columns"], json!(["id", "name", "score"]));
    assert_eq!(rows["types"], json!(["integer", "text", "real"]));
    assert_eq!(
        rows["values"],
        json!([[1, "ada", 1.5], [2, "bob", 2.0], [3, "cy", null]])
    );
    let rows = c
        .rows(f, "level=linearizable", "SELECT count(*) AS n FROM t")
        .await;
    assert_eq!(rows["values"], json!([[3]]));
    let (status, v) = c
        .get(
            f,
            "/db/query?level=none&min_index=1&q=SELECT%20name%20FROM%20t%20WHERE%20id%3D2",
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["values"], json!([["bob"]]));

    // In a transaction, an error rolls everything back and ends the results.
    let v = c
        .execute(
            f,
            "/db/execute?transaction",
            r#"["INSERT INTO t (name) VALUES ('dan')", "INSERT INTO nope VALUES (1)",
                "INSERT INTO t (name) VALUES ('eve')"]"#,
        )
        .await;
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{v}");
    assert_eq!(results[1]["error"], "no such table: nope");
    // Without one, only the failing statement is skipped.
    let v = c
        .execute(
            leader,
            "/db/execute?timings",
            r#"["INSERT INTO t (name) VALUES ('fay')", "INSERT INTO t (name) VALUES (NULL)",
                "INSERT INTO t (name) VALUES ('gus')"]"#,
        )
        .await;
    assert_eq!(v["results"][0]["rows_affected"], 1, "{v}");
    assert_eq!(
        v["results"][1]["error"],
        "NOT NULL constraint failed: t.name"
    );
    assert_eq!(v["results"][2]["rows_affected"], 1);
    assert!(
        v["results"][0]["time"].is_number() && v["time"].is_number(),
        "{v}"
    );
    let idx = v["raft_index"].as_u64().expect("raft_index");
    for i in 0..3 {
        let q = format!("level=none&min_index={idx}");
        let rows = c.rows(i, &q, "SELECT name FROM t ORDER BY id").await;
        assert_eq!(
            rows["values"],
            json!([["ada"], ["bob"], ["cy"], ["fay"], ["gus"]]),
            "node {i}"
        );
    }

    // Bad input is refused with a reason; a write sent as a query is not run.
    let (status, v, _) = c.post(f, "/db/execute", r#"["SELECT 1", 3]"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "statement 1: expected a string or an array [sql, param...]"
    );
    assert_eq!(v["index"], 1);
    let (status, v, _) = c.post(f, "/db/execute", "not json").await;
    assert_eq!(status, 400, "{v}");
    // As in rqlite, an unknown level is weak.
    let (status, v, _) = c
        .post(f, "/db/query?level=sometimes", r#"["SELECT 1"]"#)
        .await;
    assert_eq!(
        (status, &v["results"][0]["values"]),
        (200, &json!([[1]])),
        "{v}"
    );
    let rows = c.rows(f, "level=none", "DELETE FROM t").await;
    assert_eq!(
        rows["error"],
        "attempt to change database via query operation"
    );
    let rows = c.rows(f, "level=none", "SELECT count(*) FROM t").await;
    assert_eq!(rows["values"], json!([[5]]));
    let rows = c.rows(f, "level=none", "SELECT * FROM missing").await;
    assert_eq!(rows["error"], "no such table: missing");
    // The applier's bookkeeping is out of reach.
    let v = c
        .execute(
            f,
            "/db/execute",
            r#"["DELETE FROM _webfarm_raft", "COMMIT", "ATTACH 'x.db' AS x"]"#,
        )
        .await;
    for r in v["results"].as_array().expect("results") {
        assert!(r["error"].is_string(), "{v}");
    }

    // /db/request: reads stay local, anything else goes through Raft with rows returned.
    let (status, v, _) = c
        .post(f, "/db/request?level=none", r#"["SELECT count(*) FROM t"]"#)
        .await;
    assert_eq!(
        (status, &v["results"][0]["values"]),
        (200, &json!([[5]])),
        "{v}"
    );
    let (status, v, _) = c
        .post(
            f,
            "/db/request",
            r#"["INSERT INTO t (name) VALUES ('hal')", "SELECT count(*) FROM t"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["rows_affected"], 1);
    assert_eq!(v["results"][1]["values"], json!([[6]]));

    // Non-deterministic SQL gives the same values on every replica.
    c.execute(
        f,
        "/db/execute",
        r#"["CREATE TABLE d (id INTEGER PRIMARY KEY, r INTEGER, b BLOB, dt TEXT, ts TEXT, dflt TEXT DEFAULT CURRENT_TIMESTAMP, j REAL)"]"#,
    )
    .await;
    let v = c
        .execute(
            f,
            "/db/execute",
            r#"["INSERT INTO d (r, b, dt, ts, j) VALUES (random(), randomblob(4), datetime('now'), CURRENT_TIMESTAMP, julianday('now'))",
                "INSERT INTO d (r, b, dt, ts, j) VALUES (random(), randomblob(4), datetime('now'), CURRENT_TIMESTAMP, julianday())"]"#,
        )
        .await;
    let idx = v["raft_index"].as_u64().expect("raft_index");
    let mut seen = Vec::new();
    for i in 0..3 {
        let rows = c
            .rows(
                i,
                &format!("level=none&min_index={idx}"),
                "SELECT * FROM d ORDER BY id",
            )
            .await;
        seen.push(rows["values"].clone());
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let first = &seen[0][0];
    assert_ne!(
        seen[0][0][1], seen[0][1][1],
        "each statement has its own random stream"
    );
    assert_eq!(
        first[3], first[4],
        "datetime('now') = CURRENT_TIMESTAMP: {first}"
    );
    assert_eq!(
        first[4], first[5],
        "DEFAULT CURRENT_TIMESTAMP uses the entry's time"
    );

    // /status, /nodes, /readyz.
    let (status, v) = c.get(leader, "/status").await;
    assert_eq!(status, 200);
    assert_eq!(v["raft_state"], "Leader");
    assert_eq!(v["voters"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        v["replication"].as_object().map(|m| m.len()),
        Some(2),
        "{v}"
    );
    for key in [
        "node_id",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_log_index",
    ] {
        assert!(!v[key].is_null(), "{key} in {v}");
    }
    let (status, v) = c.get(f, "/nodes").await;
    assert_eq!(status, 200);
    assert_eq!(v[c.name(leader)]["leader"], true, "{v}");
    assert_eq!(v[c.name(f)]["reachable"], true, "{v}");
    assert_eq!(v.as_object().map(|m| m.len()), Some(3));
    let (status, _) = c.get(f, "/readyz").await;
    assert_eq!(status, 200);

    c.stop_all().await;
}

/// `linearizable_timeout` (rqlite's parameter) bounds how long a linearizable read waits for a
/// quorum: a leader whose followers no longer answer (connections accepted, nothing said, as
/// with a paused process or a dropped network) answers 503 at that bound; one whose followers
/// refuse connections fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_linearizable_read_without_a_quorum_ends_at_its_timeout() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let read = |timeout: &str| {
        format!("/db/query?level=linearizable&linearizable_timeout={timeout}&q=SELECT%201")
    };
    let (status, v) = c.get(leader, &read("soon")).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("linearizable_timeout"), "{v}");
    let (status, v) = c.get(leader, &read("2s")).await;
    assert_eq!(status, 200, "with a quorum: {v}");

    // The followers stop; something that accepts connections and never answers takes their
    // Raft addresses.
    let mut silent = Vec::new();
    for i in 0..3 {
        if i != leader {
            c.stop(i).await;
            let addr = c.farm.nodes[i].raft_addr();
            silent.push(std::net::TcpListener::bind(addr).expect("bind the silent listener"));
        }
    }
    let started = std::time::Instant::now();
    let (status, v) = c.get(leader, &read("50ms")).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "no quorum: {v}");
    assert!(
        v.to_string().contains("within linearizable_timeout (50ms)"),
        "{v} after {took:?}"
    );
    assert!(took < DEADLINE, "answered in {took:?}");

    // Refused connections: openraft knows at once that there is no quorum.
    drop(silent);
    let (status, v) = c.get(leader, &read("10s")).await;
    assert_eq!(status, 503, "no quorum: {v}");
}
