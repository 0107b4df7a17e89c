//! Membership at run time with real nodes on real sockets: learners, add (with a snapshot),
//! promote, remove, leadership transfer, persistence across restarts, and the procedure for a
//! node whose data directory was wiped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Cluster;
use http::Method;
use serde_json::{json, Value};
use webfarm_config::Replica;
use webfarm_db::DbError;
use webfarm_testkit::{eventually, DEADLINE};

/// A cluster of `n` nodes whose nodes `learners` are declared learners in the farm file.
fn with_learners(n: usize, snapshot_threshold: u64, learners: &[usize]) -> Cluster {
    let mut c = Cluster::new(n, snapshot_threshold);
    let mut farm = (*c.farm).clone();
    for &i in learners {
        farm.nodes[i].replica = Replica::Learner;
    }
    c.farm = Arc::new(farm);
    c
}

/// Sends `method path` with a JSON body to node `i`; the status and the JSON answer.
async fn call(c: &Cluster, i: usize, method: Method, path: &str, body: Value) -> (u16, Value) {
    let url = format!("http://{}{path}", c.api(i));
    let r = c
        .http
        .send(
            method,
            &url,
            Some("application/json"),
            Bytes::from(body.to_string()),
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("{path} on node {i}: {e}"));
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    (r.status.as_u16(), v)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Inserts `n` rows through node `i`; the last write's Raft index.
async fn insert_rows(c: &Cluster, i: usize, from: usize, n: usize) -> u64 {
    let mut idx = 0;
    for k in from..from + n {
        let v = c
            .execute(
                i,
                "/db/execute",
                &json!([["INSERT INTO t (v) VALUES (?)", format!("row {k}")]]).to_string(),
            )
            .await;
        idx = v["raft_index"].as_u64().expect("raft_index");
    }
    idx
}

async fn count_rows(c: &Cluster, i: usize, min_index: u64) -> Value {
    c.rows(
        i,
        &format!("level=none&min_index={min_index}"),
        "SELECT count(*) FROM t",
    )
    .await["values"]
        .clone()
}

/// Starts nodes `0..n`; the leader's index.
async fn start_first(c: &mut Cluster, n: usize) -> usize {
    for i in 0..n {
        c.start(i).await;
    }
    c.leader().await
}

/// Creates table `t` through node `i` and inserts `n` rows; the last write's Raft index.
async fn create_and_fill(c: &Cluster, i: usize, n: usize) -> u64 {
    c.execute(i, "/db/execute", r#"["CREATE TABLE t (v TEXT)"]"#)
        .await;
    insert_rows(c, i, 0, n).await
}

/// Asks node `i` to promote the learner `id` to voter.
async fn promote(c: &Cluster, i: usize, id: &str) -> (u16, Value) {
    call(c, i, Method::POST, "/cluster/promote", json!({"id": id})).await
}

/// Asks node `i` to have the leader hand leadership to `to`.
async fn step_down_to(c: &Cluster, i: usize, to: &str) -> (u16, Value) {
    call(c, i, Method::POST, "/cluster/step-down", json!({"to": to})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_replicates_serves_reads_and_never_counts_for_the_quorum() {
    // Two voters and a learner: if the learner counted, one voter and the learner would make
    // a majority of three.
    let mut c = with_learners(3, 1000, &[2]);
    let leader = start_first(&mut c, 3).await;
    assert_ne!(leader, 2, "a learner never leads");
    // The learner of a forming cluster asked to be added.
    eventually(DEADLINE, "db-3 is a learner of the cluster", || async {
        let learner = c.status(2)["replica"] == "learner";
        (learner && c.status(leader)["learners"] == json!(["db-3"])).then_some(())
    })
    .await;
    let s = c.status(leader);
    assert_eq!(s["voters"], json!(["db-1", "db-2"]), "{s}");
    assert_eq!(s["replication"]["db-3"]["replica"], "learner", "{s}");
    assert_eq!(c.status(2)["raft_state"], "Learner");

    // It receives the log and serves reads at level none; writes through it are forwarded.
    let idx = create_and_fill(&c, 2, 3).await;
    assert_eq!(count_rows(&c, 2, idx).await, json!([[3]]));
    let (status, _) = c.get(2, "/readyz").await;
    assert_eq!(status, 200);

    // Without the other voter there is no quorum, whatever the learner does.
    let other = 1 - leader;
    c.stop(other).await;
    let (status, v, _) = c
        .post(
            leader,
            "/db/execute",
            r#"["INSERT INTO t (v) VALUES ('lost?')"]"#,
        )
        .await;
    assert_eq!(
        status, 504,
        "a write without a quorum is not committed: {v}"
    );
    let (status, v, _) = c
        .post(leader, "/db/query?level=linearizable", r#"["SELECT 1"]"#)
        .await;
    assert_ne!(status, 200, "no linearizable read without a quorum: {v}");
    assert_eq!(c.status(2)["raft_state"], "Learner");
    // Back with its voter, the cluster commits again (the pending write included).
    c.start(other).await;
    c.leader().await;
    let idx = insert_rows(&c, leader, 3, 1).await;
    assert_eq!(count_rows(&c, 2, idx).await, json!([[5]]));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_at_run_time_and_persists_across_restarts() {
    // db-4 is a learner of the farm file, started only once the cluster holds data, with a
    // compacted log: it waits to be added and catches up from a snapshot.
    let mut c = with_learners(4, 20, &[3]);
    let leader = start_first(&mut c, 3).await;
    let idx = create_and_fill(&c, leader, 60).await;
    eventually(DEADLINE, "the leader compacted its log", || async {
        (c.status(leader)["purged_index"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    c.start(3).await;
    let s = c.status(3);
    assert_eq!(s["replica"], "none", "not added by itself: {s}");
    let (status, reason) = c.get(3, "/readyz").await;
    assert_eq!(status, 503, "not ready before it is added: {reason}");

    // Errors are clear and change nothing.
    let f = c.other_than(leader);
    let (status, v) = promote(&c, f, "db-4").await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = call(&c, f, Method::DELETE, "/remove", json!({"id": "db-9"})).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = call(&c, f, Method::POST, "/join", json!({"id": "db-9"})).await;
    assert_eq!(status, 400, "not in the farm file and no address: {v}");
    let (status, v) = call(&c, f, Method::POST, "/join", json!({"nope": 1})).await;
    assert_eq!(status, 400, "{v}");

    // Add it (through a follower: forwarded to the leader) as the farm file says: a learner.
    let (status, v) = call(&c, f, Method::POST, "/join", json!({"id": "db-4"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["replica"], "learner", "{v}");
    assert_eq!(count_rows(&c, 3, idx).await, json!([[60]]));
    eventually(
        DEADLINE,
        "db-4 is a learner that installed a snapshot",
        || async {
            let s = c.status(3);
            (s["replica"] == "learner" && s["snapshot_index"].as_u64().is_some()).then_some(())
        },
    )
    .await;
    assert_eq!(c.status(3)["raft_state"], "Learner");
    let (status, v) = step_down_to(&c, f, "db-4").await;
    assert_eq!(status, 409, "a learner cannot lead: {v}");

    // Promote it, then hand leadership to it.
    let (status, v) = promote(&c, f, "db-4").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(c.status(leader)["voters"].as_array().map(Vec::len), Some(4));
    let before = c.status(leader)["term"].as_u64().expect("term");
    let (status, v) = step_down_to(&c, f, "db-4").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["leader"], "db-4", "{v}");
    assert_eq!(c.leader().await, 3);
    assert!(c.status(3)["term"].as_u64() > Some(before));
    let idx = insert_rows(&c, f, 60, 1).await;

    // /cluster/nodes, from any node, shows the leader's view.
    let (status, v) = call(&c, leader, Method::GET, "/cluster/nodes", json!(null)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["leader"], "db-4", "{v}");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(4), "{v}");
    for n in v["nodes"].as_array().expect("nodes") {
        assert_eq!(n["replica"], "voter", "{n}");
        assert_eq!(n["reachable"], true, "{n}");
        assert!(n["lag"].is_u64(), "{n}");
    }

    // Remove a follower voter, then the leader itself (it hands over first).
    let (status, v) = call(&c, 0, Method::DELETE, "/remove", json!({"id": "db-2"})).await;
    assert_eq!(status, 200, "{v}");
    c.stop(1).await;
    let (status, v) = call(&c, 0, Method::DELETE, "/remove", json!({"id": "db-4"})).await;
    assert_eq!(status, 200, "{v}");
    c.stop(3).await;
    let leader = c.leader().await;
    assert!(leader == 0 || leader == 2, "{leader}");
    assert_eq!(c.status(leader)["voters"], json!(["db-1", "db-3"]));
    let idx = idx.max(insert_rows(&c, leader, 61, 1).await);

    // Restarted with the farm file (db-1..3 voters, db-4 learner), the nodes keep the
    // membership of their log.
    c.stop_all().await;
    c.start(0).await;
    c.start(2).await;
    let leader = c.leader().await;
    let s = c.status(leader);
    assert_eq!(s["voters"], json!(["db-1", "db-3"]), "{s}");
    assert_eq!(names(&s["learners"]), Vec::<String>::new(), "{s}");
    assert_eq!(count_rows(&c, leader, idx).await, json!([[62]]));
    // The removed db-2, restarted with its old data, does not disturb them.
    c.start(1).await;
    let idx = insert_rows(&c, leader, 62, 3).await;
    assert_eq!(count_rows(&c, 0, idx).await, json!([[65]]));
    assert_eq!(c.status(leader)["voters"], json!(["db-1", "db-3"]));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_voter_is_removed_then_added_back() {
    let mut c = Cluster::start_all(3, 20).await;
    let leader = c.leader().await;
    let idx = create_and_fill(&c, leader, 40).await;
    let wiped = c.other_than(leader);
    c.wait_applied(wiped, idx).await;
    c.stop(wiped).await;
    std::fs::remove_dir_all(c.data_dir(wiped)).expect("wipe");
    let name = c.name(wiped);

    // Refused while the cluster still counts it as a voter.
    let e = c.try_start(wiped).await.expect_err("a wiped voter");
    assert!(matches!(e, DbError::DataLost { .. }), "{e:?}");
    assert!(e.to_string().contains("webfarm db remove"), "{e}");

    // 1. Remove it, from the running majority.
    let (status, v) = call(&c, leader, Method::DELETE, "/remove", json!({"id": name})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(c.status(leader)["voters"].as_array().map(Vec::len), Some(2));
    // 2. Start it with its empty directory: it waits to be added.
    c.start(wiped).await;
    assert_eq!(c.status(wiped)["replica"], "none");
    let idx = insert_rows(&c, leader, 40, 5).await;
    // 3. Add it: a learner first, caught up (from a snapshot), then a voter.
    let (status, v) = call(&c, leader, Method::POST, "/join", json!({"id": name})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["replica"], "voter", "{v}");
    assert_eq!(count_rows(&c, wiped, idx).await, json!([[45]]));
    eventually(DEADLINE, "the node is a voter again", || async {
        let s = c.status(wiped);
        (s["replica"] == "voter" && s["raft_state"] == "Follower").then_some(())
    })
    .await;
    // It counts for the quorum again: with the third node down, it and the leader commit.
    let third = (0..3).find(|&i| i != leader && i != wiped).expect("third");
    c.stop(third).await;
    let idx = insert_rows(&c, leader, 45, 1).await;
    assert_eq!(count_rows(&c, wiped, idx).await, json!([[46]]));
    c.stop_all().await;
}
