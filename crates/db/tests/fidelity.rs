//! rqlite fidelity, as a client sees it over HTTP: the database holds only the user's
//! objects (a tear-down that drops every table it lists succeeds, on every node, across
//! snapshots and restarts), and values come back in rqlite's form for their declared type.

mod common;

use common::Cluster;
use serde_json::{json, Value};

/// The names and types `sqlite_master` lists on node `i`.
async fn schema(c: &Cluster, i: usize) -> Value {
    c.rows(
        i,
        "level=none",
        "SELECT type, name FROM sqlite_master ORDER BY name",
    )
    .await["values"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_holds_only_the_users_objects() {
    // A snapshot every 5 entries: the nodes build and restore snapshots meanwhile.
    let mut c = Cluster::start_all(3, 5).await;
    let leader = c.leader().await;
    c.execute(
        leader,
        "/db/execute",
        r#"["CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE b (x)",
            "CREATE INDEX b_x ON b (x)",
            "CREATE VIEW av AS SELECT v FROM a"]"#,
    )
    .await;
    let mut last = 0;
    for i in 0..12 {
        let v = c
            .execute(
                leader,
                "/db/execute",
                &format!(r#"["INSERT INTO a (v) VALUES ('{i}')", "INSERT INTO b VALUES ({i})"]"#),
            )
            .await;
        last = v["raft_index"].as_u64().expect("raft_index");
    }
    let users = json!([
        ["view", "av"],
        ["table", "a"],
        ["table", "b"],
        ["index", "b_x"]
    ]);
    let mut users: Vec<Value> = users.as_array().expect("array").clone();
    users.sort_by_key(|v| v[1].as_str().unwrap_or_default().to_string());
    for i in 0..3 {
        c.wait_applied(i, last).await;
        assert_eq!(schema(&c, i).await, Value::Array(users.clone()), "node {i}");
    }

    // A graceful restart keeps it so.
    let follower = c.other_than(leader);
    c.stop(follower).await;
    c.start(follower).await;
    c.wait_applied(follower, last).await;
    assert_eq!(
        schema(&c, follower).await,
        Value::Array(users.clone()),
        "after a restart"
    );

    // A test suite's tear-down: drop every table the database lists.
    let tables = c
        .rows(
            leader,
            "level=strong",
            "SELECT name FROM sqlite_master WHERE type = 'table'",
        )
        .await;
    let drops: Vec<String> = tables["values"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| format!("DROP TABLE {}", r[0].as_str().expect("name")))
        .collect();
    assert_eq!(drops.len(), 2, "{tables}");
    let v = c
        .execute(
            leader,
            "/db/execute",
            &serde_json::to_string(&drops).expect("json"),
        )
        .await;
    for r in v["results"].as_array().expect("results") {
        assert!(r.get("error").is_none(), "{v}");
    }
    c.execute(leader, "/db/execute", r#"["DROP VIEW av"]"#)
        .await;
    let last = c
        .execute(leader, "/db/execute", r#"["CREATE TABLE again (x)"]"#)
        .await["raft_index"]
        .as_u64()
        .expect("raft_index");
    for i in 0..3 {
        c.wait_applied(i, last).await;
        assert_eq!(schema(&c, i).await, json!([["table", "again"]]), "node {i}");
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_in_rqlites_form_for_their_declared_type() {
    let mut c = Cluster::start_all(1, 1000).await;
    let n = c.leader().await;
    c.execute(
        n,
        "/db/execute",
        r#"[
            "CREATE TABLE ev (id INTEGER PRIMARY KEY, at DATETIME, d DATE, ts TIMESTAMP, ok BOOLEAN, b BLOB, t TEXT, r REAL)",
            ["INSERT INTO ev VALUES (1, ?, ?, ?, ?, ?, ?, ?)", "2004-02-14 07:15:00", 1076742900, "2004-02-14T07:15:00.5+01:00", 1, [1, 2, 255], "2004-02-14", 1.5],
            ["INSERT INTO ev VALUES (2, ?, ?, ?, ?, ?, ?, ?)", "not a date", 1076742900123, null, 0, null, null, null]
        ]"#,
    )
    .await;
    let want_types = json!([
        "integer",
        "datetime",
        "date",
        "timestamp",
        "boolean",
        "blob",
        "text",
        "real"
    ]);
    let want_values = json!([
        [
            1,
            "2004-02-14T07:15:00Z",
            "2004-02-14T07:15:00Z",
            "2004-02-14T07:15:00.5+01:00",
            true,
            "AQL/",
            "2004-02-14",
            1.5
        ],
        [
            2,
            "0001-01-01T00:00:00Z",
            "2004-02-14T07:15:00.123Z",
            null,
            false,
            null,
            null,
            null
        ]
    ]);
    // Every read path renders the same way: a local read, a read through the log, and
    // /db/request.
    for level in ["none", "strong"] {
        let rows = c
            .rows(n, &format!("level={level}"), "SELECT * FROM ev ORDER BY id")
            .await;
        assert_eq!(rows["types"], want_types, "level={level}: {rows}");
        assert_eq!(rows["values"], want_values, "level={level}: {rows}");
    }
    let (status, v, _) = c
        .post(
            n,
            "/db/request",
            r#"["SELECT at, ok FROM ev WHERE id = 1"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["results"][0]["values"],
        json!([["2004-02-14T07:15:00Z", true]])
    );
    let (_, v, _) = c
        .post(
            n,
            "/db/query?associative",
            r#"["SELECT at FROM ev WHERE id = 1"]"#,
        )
        .await;
    assert_eq!(
        v["results"][0]["rows"],
        json!([{"at": "2004-02-14T07:15:00Z"}])
    );

    // An expression's type is named after its first value.
    let rows = c
        .rows(n, "level=none", "SELECT 1, 2.5, 'x', x'01', NULL")
        .await;
    assert_eq!(
        rows["types"],
        json!(["integer", "real", "text", "blob", ""])
    );

    // A time that RFC 3339 cannot show fails the statement, as on rqlite.
    c.execute(
        n,
        "/db/execute",
        r#"["INSERT INTO ev (id, at) VALUES (3, 999999999999)"]"#,
    )
    .await;
    let rows = c
        .rows(n, "level=none", "SELECT at FROM ev WHERE id = 3")
        .await;
    assert_eq!(
        rows["error"], "Time.MarshalText: year outside of range [0,9999]",
        "{rows}"
    );
    c.stop_all().await;
}
