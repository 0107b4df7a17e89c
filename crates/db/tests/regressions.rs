//! Regressions: a storage fault while running, a wiped voter, a forged `min_index`, a table
//! that only some nodes have.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;
use webfarm_db::{ClientError, Consistency, DbClient, DbError, Statement};
use webfarm_testkit::{eventually, DEADLINE};

/// Runs `body` through node `via` and waits until node `on` applied it; its Raft index.
async fn write_applied(c: &Cluster, via: usize, body: &str, on: usize) -> u64 {
    let v = c.execute(via, "/db/execute", body).await;
    let idx = v["raft_index"].as_u64().expect("raft_index");
    c.wait_applied(on, idx).await;
    idx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_fault_while_running_stops_the_node_with_an_error() {
    let mut c = Cluster::start_all(1, 1000).await;
    c.leader().await;
    c.execute(0, "/db/execute", r#"["CREATE TABLE t (v TEXT)"]"#)
        .await;

    // Someone holds db.sqlite's write lock under the running node: the applier cannot begin
    // its transaction (SQLITE_BUSY once its busy timeout runs out), a fault of this node's
    // storage, not of the statement.
    let db = rusqlite::Connection::open(c.data_dir(0).join("db.sqlite")).expect("open");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");

    let (status, v, _) = c
        .post(0, "/db/execute", r#"["INSERT INTO t VALUES ('x')"]"#)
        .await;
    assert_ne!(status, 200, "a write the node could not apply: {v}");

    let (_trigger, node) = c.take(0);
    let health = node.health();
    eventually(DEADLINE, "the fatal error in /status", || async {
        health.status().to_json()["fatal"].is_string().then_some(())
    })
    .await;
    let reason = health.ready().expect_err("a failed node is not ready");
    assert!(reason.contains("raft failed"), "{reason}");
    assert!(
        health.status().to_json()["fatal"]
            .as_str()
            .is_some_and(|f| f.contains("database is locked")),
        "{}",
        health.status().to_json()
    );

    // wait() returns by itself (shutdown never fired), with the error.
    let e = tokio::time::timeout(DEADLINE, node.wait())
        .await
        .expect("wait returns after a fatal error")
        .expect_err("the node failed");
    assert!(matches!(e, DbError::Raft { .. }), "{e:?}");
    assert!(e.to_string().contains("Restart it"), "{e}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_voter_refuses_to_rejoin_empty() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let wiped = c.other_than(leader);
    write_applied(
        &c,
        leader,
        r#"["CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('kept')"]"#,
        wiped,
    )
    .await;
    c.stop(wiped).await;
    std::fs::remove_dir_all(c.data_dir(wiped)).expect("wipe");

    for attempt in 0..2 {
        let e = c
            .try_start(wiped)
            .await
            .expect_err("a pristine node of a cluster with data");
        assert!(matches!(e, DbError::DataLost { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("data is gone") && text.contains("backup"),
            "attempt {attempt}: {text}"
        );
        assert!(!text.contains("move the data directory"), "{text}");
    }
    // The others go on.
    let rows = c.rows(leader, "level=weak", "SELECT v FROM t").await;
    assert_eq!(rows["values"], json!([["kept"]]));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_joins_a_cluster_that_holds_no_data_yet() {
    // Two nodes elect a leader, which appends its blank entry; the third starts only then.
    let mut c = Cluster::new(3, 1000);
    c.start(0).await;
    c.start(1).await;
    c.leader().await;
    c.start(2).await;
    c.leader().await;
    write_applied(&c, 2, r#"["CREATE TABLE t (v TEXT)"]"#, 2).await;
    assert_eq!(c.status(2)["has_data"], true, "{}", c.status(2));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_min_index_beyond_the_log_is_answered_at_once() {
    let mut c = Cluster::start_all(3, 1000).await;
    let leader = c.leader().await;
    let f = c.other_than(leader);
    let idx = write_applied(
        &c,
        leader,
        r#"["CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('a')"]"#,
        f,
    )
    .await;

    let forged = u64::MAX;
    for node in [leader, f] {
        let (status, v, _) = c
            .post(
                node,
                &format!("/db/query?level=none&min_index={forged}"),
                r#"["SELECT v FROM t"]"#,
            )
            .await;
        assert_eq!(status, 400, "node {node}: {v}");
        assert_eq!(v["beyond_log"], true, "{v}");
        assert!(v["commit_index"].as_u64() >= Some(idx), "{v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("beyond the log")),
            "{v}"
        );
    }

    // The client reads at the commit index instead, and says so.
    let client = DbClient::new(c.apis(), f, Duration::from_secs(20));
    let r = client
        .query_full(
            &Statement::new("SELECT v FROM t"),
            Consistency::None,
            Some(forged),
        )
        .await
        .expect("a read despite the forged index");
    assert_eq!(r.rows.values, vec![vec![json!("a")]]);
    assert!(r.min_index_reset >= Some(idx), "{r:?}");
    let r = client
        .query_full(
            &Statement::new("SELECT v FROM t"),
            Consistency::None,
            Some(idx),
        )
        .await
        .expect("a read at a real index");
    assert_eq!(r.min_index_reset, None);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_table_is_final_only_when_every_node_says_so() {
    // Two separate one-node clusters: the table exists on one only, as on a replica that has
    // not applied its creation yet.
    let mut with = Cluster::start_all(1, 1000).await;
    let mut without = Cluster::start_all(1, 1000).await;
    with.leader().await;
    without.leader().await;
    with.execute(
        0,
        "/db/execute",
        r#"["CREATE TABLE m (v TEXT)", "INSERT INTO m VALUES ('here')"]"#,
    )
    .await;

    let client = DbClient::new(
        vec![without.api(0), with.api(0)],
        0,
        Duration::from_secs(20),
    );
    let rows = client
        .query(&Statement::new("SELECT v FROM m"), Consistency::None, None)
        .await
        .expect("the next node has the table");
    assert_eq!(rows.values, vec![vec![json!("here")]]);

    let started = Instant::now();
    let e = client
        .query(
            &Statement::new("SELECT * FROM nowhere"),
            Consistency::None,
            None,
        )
        .await
        .expect_err("no node has it");
    assert_eq!(
        e,
        ClientError::Statement {
            index: 0,
            message: "no such table: nowhere".into()
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "final after one round, not after retry_for: {:?}",
        started.elapsed()
    );
    with.stop_all().await;
    without.stop_all().await;
}

/// A Raft request meant for another farm's node of the same name (an address reused, a
/// test's port taken by another test) is refused with 421 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_request_meant_for_another_farm_is_refused() {
    let c = Cluster::start_all(1, 1000).await;
    c.leader().await;
    let term = c.status(0)["term"].as_u64().expect("a term");
    let url = format!("http://{}/raft/vote", c.farm.nodes[0].raft_addr());
    // A vote with a far higher term: accepted, it would depose the leader.
    let vote = json!({
        "vote": {"leader_id": {"term": term + 100, "node_id": 7}, "committed": false},
        "last_log_id": null,
    });
    let send = |site: &str, node: &str, body: String| {
        let req = http::Request::post(url.as_str())
            .header("content-type", "application/json")
            .header("x-webfarm-site", site)
            .header("x-webfarm-node", node)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("a request");
        c.http.request(req, DEADLINE)
    };

    let a = send("another-farm", "db-1", vote.to_string())
        .await
        .expect("an answer");
    assert_eq!(a.status, 421, "{:?}", a.body);
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains("this is node db-1 of farm") && text.contains("\"another-farm\""),
        "{text}"
    );
    let a = send(&c.farm.site, "db-2", vote.to_string())
        .await
        .expect("an answer");
    assert_eq!(a.status, 421, "another node's request: {:?}", a.body);
    assert_eq!(
        c.status(0)["term"].as_u64(),
        Some(term),
        "the vote was not seen"
    );

    // The right farm and node get through to Raft (here, to the request decoder).
    let a = send(&c.farm.site, "db-1", "{".into())
        .await
        .expect("an answer");
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert!(String::from_utf8_lossy(&a.body).contains("invalid vote request"));
}
