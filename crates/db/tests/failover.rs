//! Failover and catch-up: the leader stops, a new one is elected and takes writes, the old one
//! restarts and catches up through a snapshot; the DbClient rides through all of it.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Cluster, DEADLINE};
use serde_json::json;
use webfarm_db::{ClientError, Consistency, DbClient, Statement};

fn insert(v: &str) -> Statement {
    Statement::with_params("INSERT INTO m (v) VALUES (?)", vec![json!(v)])
}

async fn count(client: &DbClient, level: Consistency, min_index: Option<u64>) -> i64 {
    let rows = client
        .query(&Statement::new("SELECT count(*) FROM m"), level, min_index)
        .await
        .expect("count");
    rows.values[0][0].as_i64().expect("an integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_takes_over_and_a_restarted_node_catches_up() {
    // A snapshot every 5 entries: a node that misses 30 entries can only catch up from one.
    let mut c = Cluster::start_all(3, 5).await;
    let old_leader = c.leader().await;
    let client = DbClient::new(c.apis(), 1, Duration::from_secs(20));

    client
        .execute(&[Statement::new(
            "CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        )])
        .await
        .expect("create");
    for i in 0..3 {
        let w = client
            .execute(&[insert(&format!("a{i}"))])
            .await
            .expect("insert");
        assert_eq!(w.results[0].rows_affected, 1);
        assert_eq!(w.results[0].last_insert_id, i + 1);
    }

    // SQL errors come back at once, with the statement's index; a failed batch leaves nothing.
    let e = client
        .execute(&[
            insert("x"),
            Statement::new("INSERT INTO m (v) VALUES (NULL)"),
        ])
        .await
        .expect_err("NOT NULL");
    assert_eq!(
        e,
        ClientError::Statement {
            index: 1,
            message: "NOT NULL constraint failed: m.v".into()
        }
    );
    let e = client
        .query(
            &Statement::new("SELECT * FROM nope"),
            Consistency::Weak,
            None,
        )
        .await
        .expect_err("no table");
    assert!(matches!(e, ClientError::Statement { index: 0, .. }), "{e}");
    assert_eq!(count(&client, Consistency::Linearizable, None).await, 3);

    // The leader goes away: writes go on once a new leader is elected.
    let applied_at_stop = c.status(old_leader)["applied_index"]
        .as_u64()
        .expect("applied");
    c.stop(old_leader).await;
    let w = client
        .execute(&[insert("after")])
        .await
        .expect("write after failover");
    let new_leader = c.leader().await;
    assert_ne!(new_leader, old_leader);
    let mut last = w.raft_index;
    for i in 0..30 {
        last = client
            .execute(&[insert(&format!("b{i}"))])
            .await
            .expect("insert")
            .raft_index;
    }
    assert_eq!(count(&client, Consistency::Weak, Some(last)).await, 34);

    // The leader purges the entries the stopped node misses (openraft postpones a purge while
    // a replication stream uses the entries, so poll).
    let log_path = c.data_dir(new_leader).join("raft-log.db");
    eventually(
        DEADLINE,
        "the leader purges the stopped node's entries",
        || async {
            let log = rusqlite::Connection::open_with_flags(
                &log_path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("open the leader's log");
            let first: i64 = log
                .query_row("SELECT min(idx) FROM log", [], |r| r.get(0))
                .expect("first index");
            (u64::try_from(first).expect("positive") > applied_at_stop + 1).then_some(())
        },
    )
    .await;

    // Restarted, the old leader catches up (through a snapshot) and serves the same data.
    c.start(old_leader).await;
    c.wait_applied(old_leader, last).await;
    let rows = c
        .rows(old_leader, "level=none", "SELECT count(*), max(v) FROM m")
        .await;
    assert_eq!(rows["values"], json!([[34, "b9"]]));
    let current = std::fs::read_to_string(c.data_dir(old_leader).join("snapshot/current.json"))
        .expect("the restarted node has a snapshot");
    let current: serde_json::Value = serde_json::from_str(&current).expect("json");
    let snap_index = current["meta"]["last_log_id"]["index"]
        .as_u64()
        .expect("index");
    assert!(snap_index > applied_at_stop, "{current}");

    // A client that reads from the restarted node, waiting for the last write.
    let reader = DbClient::new(vec![c.api(old_leader)], 0, Duration::from_secs(10));
    assert_eq!(count(&reader, Consistency::None, Some(last)).await, 34);

    // Every node down: the client gives up after retry_for.
    c.stop_all().await;
    let quick = DbClient::new(c.apis(), 0, Duration::from_millis(800));
    let t = Instant::now();
    let e = quick
        .query(&Statement::new("SELECT 1"), Consistency::Weak, None)
        .await
        .expect_err("nothing runs");
    assert!(e.is_unavailable(), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(800));
    let e = quick
        .execute(&[insert("lost")])
        .await
        .expect_err("nothing runs");
    match e {
        ClientError::Unavailable {
            tried_for,
            last_error,
        } => {
            assert!(tried_for >= Duration::from_millis(800));
            assert!(last_error.contains("connect"), "{last_error}");
        }
        other => panic!("expected Unavailable, got {other}"),
    }
}
