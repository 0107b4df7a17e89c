//! Group commit: concurrent writes share log entries, each keeping its own results and errors.

mod common;

use std::collections::BTreeSet;

use common::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_keep_their_own_results() {
    let c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    c.execute(
        leader,
        "/db/execute",
        r#"["CREATE TABLE w (id INTEGER PRIMARY KEY, who INTEGER NOT NULL UNIQUE)"]"#,
    )
    .await;
    let (_, before) = c.get(leader, "/status").await;
    let last_before = before["last_log_index"].as_u64().expect("last_log_index");

    const WRITERS: usize = 64;
    let c = std::sync::Arc::new(c);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let c = std::sync::Arc::clone(&c);
        // Every fourth writer also sends a statement that fails (a duplicate of its own row),
        // in a transaction: only its own request is rolled back.
        let body = if w % 4 == 0 {
            json!([
                ["INSERT INTO w (who) VALUES (?)", w],
                ["INSERT INTO w (who) VALUES (?)", w]
            ])
        } else {
            json!([["INSERT INTO w (who) VALUES (?)", w]])
        };
        // Some through followers, which forward to the leader.
        let node = w % 3;
        tasks.spawn(async move {
            let (status, v, _) = c
                .post(node, "/db/execute?transaction", &body.to_string())
                .await;
            (w, status, v)
        });
    }
    let mut ids = BTreeSet::new();
    let mut indexes = BTreeSet::new();
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        let (w, status, v) = joined.expect("writer task");
        assert_eq!(status, 200, "writer {w}: {v}");
        indexes.insert(v["raft_index"].as_u64().expect("raft_index"));
        if w % 4 == 0 {
            assert_eq!(
                v["results"][1]["error"], "UNIQUE constraint failed: w.who",
                "writer {w}: {v}"
            );
        } else {
            assert_eq!(v["results"][0]["rows_affected"], 1, "writer {w}: {v}");
            let id = v["results"][0]["last_insert_id"].as_i64().expect("id");
            assert!(ids.insert(id), "writer {w} got id {id} twice: {v}");
            ok += 1;
        }
    }
    assert_eq!(ok, WRITERS - WRITERS / 4);

    // The table holds exactly the successful writers, with the ids they were told.
    let rows = c.rows(leader, "", "SELECT id FROM w ORDER BY id").await;
    let stored: BTreeSet<i64> = rows["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|r| r[0].as_i64().expect("id"))
        .collect();
    assert_eq!(stored, ids);

    // Fewer log entries than writes.
    let (_, after) = c.get(leader, "/status").await;
    let entries = after["last_log_index"].as_u64().expect("last_log_index") - last_before;
    assert!(
        (entries as usize) < WRITERS && indexes.len() < WRITERS,
        "{WRITERS} writes took {entries} log entries ({} distinct indexes)",
        indexes.len()
    );
    println!(
        "{WRITERS} concurrent writes: {entries} log entries, {} distinct raft indexes",
        indexes.len()
    );
    if let Ok(mut c) = std::sync::Arc::try_unwrap(c) {
        c.stop_all().await;
    }
}
