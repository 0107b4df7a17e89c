//! rqlite HTTP API compatibility on a real 3-node cluster: bulk and parameterized statements,
//! BLOBs, `associative`, `pretty`, consistency levels (`strong`, `auto`, `freshness`),
//! `redirect`, queued writes, `/nodes`, `/readyz`, `/status`, backups and loads, the pragma
//! policy.

mod common;

use bytes::Bytes;
use common::{eventually, Cluster, DEADLINE};
use serde_json::{json, Value};

/// GET `path` on node `i`: status, headers, raw body.
async fn raw_get(c: &Cluster, i: usize, path: &str) -> (u16, http::HeaderMap, Bytes) {
    let url = format!("http://{}{path}", c.api(i));
    let r = c
        .http
        .get(&url, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status.as_u16(), r.headers, r.body)
}

/// POST raw `body` to node `i`.
async fn raw_post(c: &Cluster, i: usize, path: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let url = format!("http://{}{path}", c.api(i));
    let r = c
        .http
        .post(&url, ctype, Bytes::from(body), DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rqlite_api_in_full() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let f = c.other_than(leader);

    // Bulk, positional, named, byte-array BLOBs.
    c.execute(
        f,
        "/db/execute",
        r#"["CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT, data BLOB)"]"#,
    )
    .await;
    let v = c
        .execute(
            f,
            "/db/execute?timings",
            r#"[["INSERT INTO foo (name, data) VALUES (?, ?)", "fiona", [0, 1, 255]],
                ["INSERT INTO foo (name) VALUES (:name)", {"name": "declan"}],
                "INSERT INTO foo (name) VALUES ('sinead')"]"#,
        )
        .await;
    assert_eq!(v["results"][2]["last_insert_id"], 3, "{v}");
    assert!(v["time"].is_number() && v["results"][0]["time"].is_number());

    // Associative rows, base64 or array BLOBs, pretty output.
    let rows = c
        .rows(
            f,
            "associative",
            "SELECT id, name, data FROM foo WHERE id = 1",
        )
        .await;
    assert_eq!(
        rows,
        json!({"types": {"id": "integer", "name": "text", "data": "blob"},
               "rows": [{"id": 1, "name": "fiona", "data": "AAH/"}]})
    );
    let rows = c
        .rows(f, "blob_array", "SELECT data FROM foo WHERE id = 1")
        .await;
    assert_eq!(rows["values"], json!([[[0, 1, 255]]]));
    let (_, _, body) = raw_get(&c, f, "/db/query?pretty&q=SELECT%201").await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("{\n    \"results\": ["), "{text}");

    // strong goes through the log (forwarded by a follower), and only reads.
    let (status, v, headers) = c
        .post(
            f,
            "/db/query?level=strong",
            r#"["SELECT count(*) FROM foo"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["values"], json!([[3]]));
    assert!(v["raft_index"].as_u64().is_some() && headers.contains_key("x-raft-index"));
    let rows = c.rows(f, "level=strong", "DELETE FROM foo").await;
    assert_eq!(
        rows["error"],
        "attempt to change database via query operation"
    );
    // auto on a voter is weak; unknown levels are weak.
    let rows = c.rows(f, "level=auto", "SELECT count(*) FROM foo").await;
    assert_eq!(rows["values"], json!([[3]]));

    // freshness: bad values are refused; a follower in contact with its leader serves.
    let (status, _, _) = c
        .post(f, "/db/query?level=none&freshness=soon", r#"["SELECT 1"]"#)
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = c
        .post(
            f,
            "/db/query?level=none&freshness_strict",
            r#"["SELECT 1"]"#,
        )
        .await;
    assert_eq!(status, 400);
    eventually(DEADLINE, "a strict fresh read sees the 3 rows", || async {
        let rows = c
            .rows(
                f,
                "level=none&freshness=1s&freshness_strict",
                "SELECT count(*) FROM foo",
            )
            .await;
        (rows["values"] == json!([[3]])).then_some(())
    })
    .await;

    // redirect: a follower answers 301 with the leader's URL instead of forwarding.
    let (status, headers, _) = raw_get(&c, f, "/db/query?redirect&q=SELECT%201").await;
    assert_eq!(status, 301);
    let location = headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default();
    assert_eq!(
        location,
        format!("http://{}/db/query?redirect&q=SELECT%201", c.api(leader))
    );
    let (status, _, headers) = c
        .post(
            f,
            "/db/execute?redirect",
            r#"["INSERT INTO foo (name) VALUES ('x')"]"#,
        )
        .await;
    assert_eq!(status, 301);
    assert!(headers.contains_key("location"));
    let (status, _, _) = c
        .post(
            leader,
            "/db/execute?redirect",
            r#"["DELETE FROM foo WHERE name = 'x'"]"#,
        )
        .await;
    assert_eq!(status, 200, "the leader serves a redirect request itself");

    // Queued writes: a sequence number at once; wait returns once written.
    let v = c
        .execute(
            f,
            "/db/execute?queue",
            r#"[["INSERT INTO foo (name) VALUES (?)", "q1"]]"#,
        )
        .await;
    assert_eq!(v["results"], json!([]));
    let first = v["sequence_number"].as_u64().expect("sequence_number");
    let v = c
        .execute(
            f,
            "/db/execute?queue&wait&timeout=10s",
            r#"[["INSERT INTO foo (name) VALUES (?)", "q2"]]"#,
        )
        .await;
    let second = v["sequence_number"].as_u64().expect("sequence_number");
    assert!(second > first);
    let rows = c
        .rows(
            f,
            "",
            "SELECT name FROM foo WHERE name LIKE 'q%' ORDER BY id",
        )
        .await;
    assert_eq!(rows["values"], json!([["q1"], ["q2"]]));
    let (_, status) = c.get(f, "/status?key=http.queue._default").await;
    assert!(
        status["sequence_number"].as_u64() >= Some(second),
        "{status}"
    );

    // /nodes in both shapes, /readyz, /status sub-keys.
    let (_, legacy) = c.get(f, "/nodes").await;
    assert_eq!(legacy[c.name(leader)]["leader"], true, "{legacy}");
    assert_eq!(legacy[c.name(f)]["voter"], true);
    let (_, v2) = c.get(f, "/nodes?ver=2&nonvoters").await;
    let nodes = v2["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["reachable"] == true), "{v2}");
    let (status, body) = c.get(f, "/readyz?noleader").await;
    assert_eq!((status, body), (200, json!("[+]node ok\n")));
    let (status, body) = c.get(f, "/readyz?sync&timeout=5s").await;
    assert_eq!(status, 200);
    assert!(
        body.as_str().is_some_and(|b| b.contains("[+]sync ok")),
        "{body}"
    );
    let (_, raft) = c.get(leader, "/status?key=store.raft").await;
    assert_eq!(raft["state"], "Leader", "{raft}");

    // Pragmas: foreign_keys is replicated; per-connection settings are refused with a reason.
    let v = c
        .execute(
            f,
            "/db/execute",
            r#"["CREATE TABLE parent (id INTEGER PRIMARY KEY)",
                "CREATE TABLE child (p INTEGER REFERENCES parent(id))",
                "PRAGMA foreign_keys = ON", "PRAGMA recursive_triggers = ON"]"#,
        )
        .await;
    assert!(
        v["results"][3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be set")),
        "{v}"
    );
    let v = c
        .execute(f, "/db/execute", r#"["INSERT INTO child VALUES (7)"]"#)
        .await;
    assert_eq!(
        v["results"][0]["error"], "FOREIGN KEY constraint failed",
        "{v}"
    );
    c.execute(f, "/db/execute", r#"["PRAGMA foreign_keys = OFF"]"#)
        .await;

    // Backup from a follower (the leader's copy): a SQLite file, a dump, gzip.
    let (status, headers, file) = raw_get(&c, f, "/db/backup").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(|h| h.as_bytes()),
        Some(&b"application/octet-stream"[..])
    );
    assert!(file.starts_with(b"SQLite format 3\0"));
    let path = c.dir().join("backup.sqlite");
    std::fs::write(&path, &file).expect("write the backup");
    {
        let db = rusqlite::Connection::open(&path).expect("the backup opens");
        let n: i64 = db
            .query_row("SELECT count(*) FROM foo", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 5);
        let meta: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = '_webfarm_raft'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(meta, 0, "webfarm's bookkeeping is not in a backup");
    }
    let (status, _, dump) = raw_get(&c, leader, "/db/backup?fmt=sql&noleader").await;
    assert_eq!(status, 200);
    let dump = String::from_utf8(dump.to_vec()).expect("text");
    assert!(
        dump.contains("INSERT INTO \"foo\" VALUES(2,'declan',NULL);"),
        "{dump}"
    );
    let (_, _, gz) = raw_get(&c, f, "/db/backup?compress").await;
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);

    // Load a SQLite file through a follower: every node ends with the file's tables only.
    let src = c.dir().join("load.sqlite");
    {
        let db = rusqlite::Connection::open(&src).expect("create");
        db.execute_batch("CREATE TABLE loaded (v TEXT); INSERT INTO loaded VALUES ('a'), ('b');")
            .expect("fill");
    }
    let (status, v) = raw_post(
        &c,
        f,
        "/db/load",
        "application/octet-stream",
        std::fs::read(&src).expect("read"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let idx = v["raft_index"].as_u64().expect("raft_index");
    for i in 0..3 {
        let q = format!("level=none&min_index={idx}");
        let rows = c
            .rows(
                i,
                &q,
                "SELECT group_concat(name) FROM sqlite_master \
                 WHERE name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'",
            )
            .await;
        assert_eq!(rows["values"], json!([["loaded"]]), "node {i}");
    }
    // A dump runs on top, in one transaction; a broken one is refused before anything runs.
    let (status, v) = raw_post(&c, f, "/db/load", "text/plain", dump.into_bytes()).await;
    assert_eq!(status, 200, "{v}");
    let rows = c.rows(f, "", "SELECT count(*) FROM foo").await;
    assert_eq!(rows["values"], json!([[5]]));
    let (status, v) = raw_post(
        &c,
        f,
        "/db/load",
        "text/plain",
        b"INSERT INTO nowhere VALUES (1);".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = raw_post(
        &c,
        f,
        "/db/load",
        "application/octet-stream",
        b"SQLite format 3\0garbage".to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_cut_off_from_its_leader_refuses_fresh_reads() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let f = c.other_than(leader);
    c.execute(
        leader,
        "/db/execute",
        r#"["CREATE TABLE t (v)", "INSERT INTO t VALUES (1)"]"#,
    )
    .await;
    // The write may have been acknowledged by the other two alone: f applies it first.
    eventually(DEADLINE, "the follower applied the write", || async {
        let rows = c.rows(f, "level=none", "SELECT count(*) FROM t").await;
        (rows["values"] == json!([[1]])).then_some(())
    })
    .await;
    // Only f is left: nobody leads, nobody sends it heartbeats.
    for i in 0..3 {
        if i != f {
            c.stop(i).await;
        }
    }
    eventually(DEADLINE, "the lone follower's read is stale", || async {
        let (status, v, _) = c
            .post(
                f,
                "/db/query?level=none&freshness=300ms",
                r#"["SELECT count(*) FROM t"]"#,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        (v == json!({"error": "stale read"})).then_some(())
    })
    .await;
    // Without freshness, none still reads the local copy.
    let rows = c.rows(f, "level=none", "SELECT count(*) FROM t").await;
    assert_eq!(rows["values"], json!([[1]]));
    c.stop_all().await;
}
