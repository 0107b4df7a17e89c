//! `/metrics` of db nodes: Raft's state, replication lag per follower, the log's fsyncs,
//! group commit, snapshots, SQL latency by level and forwarded requests, with values that
//! follow what the test did.

mod common;

use common::{Cluster, DEADLINE};
use webfarm_testkit::eventually;
use webfarm_testkit::metrics::sample;

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn db_metrics_follow_writes_reads_and_a_lagging_follower() {
    let mut c = Cluster::start_all(3, 5).await;
    let leader = c.leader().await;
    let f = c.other_than(leader);
    c.execute(
        f,
        "/db/execute",
        r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]"#,
    )
    .await;
    for i in 0..10 {
        let body = format!(r#"[["INSERT INTO t (v) VALUES (?)", "v{i}"]]"#);
        c.execute(f, "/db/execute", &body).await;
    }
    c.rows(leader, "level=linearizable", "SELECT count(*) FROM t")
        .await;
    c.rows(leader, "level=none", "SELECT count(*) FROM t").await;

    let text = c.metrics(leader);
    assert_eq!(value(&text, "webfarm_db_has_leader", &[]), 1.0);
    assert_eq!(value(&text, "webfarm_db_is_leader", &[]), 1.0);
    assert!(value(&text, "webfarm_db_leader_changes_seen_total", &[]) >= 1.0);
    assert!(value(&text, "webfarm_db_term", &[]) >= 1.0);
    assert!(value(&text, "webfarm_db_commit_index", &[]) >= 11.0);
    let n = value(&text, "webfarm_db_sql_execute_duration_seconds_count", &[]);
    assert_eq!(n, 11.0, "every write went through the leader's store once");
    let query = "webfarm_db_sql_query_duration_seconds_count";
    assert_eq!(value(&text, query, &[("level", "linearizable")]), 1.0);
    assert_eq!(value(&text, query, &[("level", "none")]), 1.0);
    assert_eq!(value(&text, query, &[("level", "weak")]), 0.0);
    assert!(value(&text, "webfarm_db_group_commit_requests_count", &[]) >= 1.0);
    assert!(value(&text, "webfarm_db_group_commit_requests_sum", &[]) >= 11.0);
    assert!(
        value(
            &text,
            "webfarm_db_disk_wal_fsync_duration_seconds_count",
            &[]
        ) >= 11.0
    );
    assert!(value(&text, "process_resident_memory_bytes", &[]) > 0.0);

    let text = c.metrics(f);
    assert_eq!(value(&text, "webfarm_db_is_leader", &[]), 0.0);
    assert_eq!(value(&text, "webfarm_db_has_leader", &[]), 1.0);
    assert_eq!(
        value(&text, "webfarm_db_forwarded_requests_total", &[]),
        11.0
    );
    assert!(sample(&text, "webfarm_db_replication_lag_entries", &[]).is_none());

    // Snapshots every 5 entries: some node built one by now.
    eventually(DEADLINE, "a snapshot built", || async {
        let built: f64 = (0..3)
            .map(|i| value(&c.metrics(i), "webfarm_db_snapshots_total", &[]))
            .sum();
        (built >= 1.0).then_some(())
    })
    .await;

    // A follower stops: the leader shows it behind by the writes it missed, for a while.
    let gone = c.other_than(leader);
    let gone_name = c.name(gone);
    c.stop(gone).await;
    for i in 0..3 {
        let body = format!(r#"[["INSERT INTO t (v) VALUES (?)", "late{i}"]]"#);
        c.execute(leader, "/db/execute", &body).await;
    }
    let follower = [("follower", gone_name.as_str())];
    eventually(DEADLINE, "the stopped follower lagging", || async {
        let text = c.metrics(leader);
        let entries = value(&text, "webfarm_db_replication_lag_entries", &follower);
        let seconds = value(&text, "webfarm_db_replication_lag_seconds", &follower);
        (entries >= 3.0 && seconds > 0.0).then_some(())
    })
    .await;
    c.stop_all().await;
}
