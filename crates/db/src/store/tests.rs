//! The store as the HTTP layer uses it, on a real one-node cluster (Raft, log, database),
//! without HTTP: writes, each read level, `min_index` and `freshness` on the leader. The
//! rules for followers and read-only replicas are tested on their own in `read_tests.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::json;
use webfarm_config::Farm;
use webfarm_testkit::{eventually, TempDir, DEADLINE};

use super::*;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachine;
use crate::types::{node_id, Params, SqlStatement, StatementResult};

/// A running one-node store, its leadership won, and the directory it lives in.
async fn one_node() -> (Store, TempDir) {
    let dir = TempDir::new("store-facade");
    let toml = format!(
        "site = \"store-facade\"\ndata_dir = \"{}\"\n{}{}[db]\nheartbeat_interval = \
         \"150ms\"\nelection_timeout = \"1s\"\n",
        dir.path().join("data").display(),
        webfarm_testkit::db_nodes_toml(1),
        webfarm_testkit::INTERNAL_TLS_OFF
    );
    let farm = Arc::new(Farm::parse(&toml, None, dir.path()).expect("the farm is valid"));
    let members = Arc::new(crate::cluster_members(&farm).expect("members"));
    let id = node_id("db-1");
    let config = crate::raft_config(&farm.site, &farm.db).expect("raft config");
    let log = LogStore::open(&dir.path().join("raft-log.db")).expect("log");
    let sm = StateMachine::open(dir.path()).expect("state machine");
    let database = Arc::clone(sm.store());
    let network = Network::new(&farm.site, "db-1", HttpClient::new()).expect("network");
    let raft = Raft::new(id, Arc::new(config), network, log.clone(), sm)
        .await
        .expect("raft starts");
    let me: BTreeMap<u64, NodeInfo> = members.iter().map(|(k, v)| (*k, v.clone())).collect();
    raft.initialize(me).await.expect("initialize");
    let health = DbHealth {
        id,
        members,
        metrics: raft.metrics(),
        log,
        applied: database.applied_index(),
        user_data: database.user_data(),
        transferring_leadership: Arc::new(AtomicBool::new(false)),
        stats: Arc::new(crate::metrics::DbMetrics::new(Arc::default())),
    };
    let store = Store::new(Parts {
        raft,
        health,
        database,
        name: "db-1".into(),
        data_dir: dir.path().to_path_buf(),
        farm,
        http: HttpClient::new(),
    });
    eventually(DEADLINE, "the one node leads", || async {
        (store.leader() == Leader::Me).then_some(())
    })
    .await;
    (store, dir)
}

fn statement(sql: &str) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params: Params::None,
    }
}

fn read(level: Consistency, sql: &str) -> ReadRequest {
    ReadRequest {
        statements: vec![statement(sql)],
        level,
        freshness: None,
        freshness_strict: false,
        min_index: None,
        linearizable_timeout: read::LINEARIZABLE_TIMEOUT,
        transaction: false,
        blob_array: false,
        forwarded: false,
    }
}

/// Writes `sql` (one transaction) through the store; its log index.
async fn write(store: &Store, sql: &[&str]) -> u64 {
    let request = Request::Sql(SqlRequest {
        statements: sql.iter().map(|s| statement(s)).collect(),
        transaction: true,
        ..SqlRequest::default()
    });
    let applied = store.execute(request, WRITE_TIMEOUT).await.expect("write");
    for o in &applied.outcomes {
        assert!(
            !matches!(o.result, StatementResult::Error(_)),
            "{:?}",
            o.result
        );
    }
    applied.index
}

/// The values of the one statement a read gave.
fn values(result: ReadResult) -> serde_json::Value {
    let outcomes = match result {
        ReadResult::Rows(o) => o,
        ReadResult::Applied(a) => a.outcomes,
    };
    match &outcomes[0].result {
        StatementResult::Rows(rows) => json!(rows.values),
        other => panic!("expected rows, got {other:?}"),
    }
}

#[tokio::test]
async fn every_level_reads_what_the_leader_wrote() {
    let (store, _dir) = one_node().await;
    let index = write(&store, &["CREATE TABLE t (v)", "INSERT INTO t VALUES (1)"]).await;
    assert!(index > 0);
    for level in [
        Consistency::None,
        Consistency::Weak,
        Consistency::Linearizable,
        Consistency::Auto,
    ] {
        let rows = store.query(read(level, "SELECT v FROM t")).await;
        match rows {
            Ok(r @ ReadResult::Rows(_)) => assert_eq!(values(r), json!([[1]]), "{level:?}"),
            other => panic!("{level:?}: {other:?}"),
        }
    }
    // A strong read goes through the log: it answers with its own entry's index.
    match store
        .query(read(Consistency::Strong, "SELECT v FROM t"))
        .await
    {
        Ok(ReadResult::Applied(a)) => {
            assert!(a.index > index);
            assert_eq!(values(ReadResult::Applied(a)), json!([[1]]));
        }
        other => panic!("strong: {other:?}"),
    }
}

#[tokio::test]
async fn min_index_reads_its_own_writes_and_refuses_an_index_never_handed_out() {
    let (store, _dir) = one_node().await;
    let index = write(&store, &["CREATE TABLE t (v)", "INSERT INTO t VALUES (7)"]).await;
    let mine = ReadRequest {
        min_index: Some(index),
        ..read(Consistency::None, "SELECT v FROM t")
    };
    assert_eq!(values(store.query(mine).await.expect("read")), json!([[7]]));
    let forged = ReadRequest {
        min_index: Some(index + 1000),
        ..read(Consistency::None, "SELECT v FROM t")
    };
    match store.query(forged).await {
        Err(StoreError::BeyondLog {
            min_index,
            commit_index,
        }) => {
            assert_eq!(min_index, index + 1000);
            assert!(commit_index >= index, "{commit_index} < {index}");
        }
        other => panic!("expected BeyondLog, got {other:?}"),
    }
}

#[tokio::test]
async fn the_leader_serves_a_none_read_whatever_its_freshness() {
    let (store, _dir) = one_node().await;
    write(&store, &["CREATE TABLE t (v)"]).await;
    // The leader never hears from a leader: freshness, even strict, does not apply to it.
    let r = ReadRequest {
        freshness: Some(std::time::Duration::from_nanos(1)),
        freshness_strict: true,
        ..read(Consistency::None, "SELECT count(*) FROM t")
    };
    assert_eq!(values(store.query(r).await.expect("read")), json!([[0]]));
}
