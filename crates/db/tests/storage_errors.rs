//! Corrupted or missing files stop a node with a clear error, never a panic.

mod common;

use std::sync::Arc;

use common::Cluster;
use webfarm_db::{DbError, DbNode};
use webfarm_node::{NodeContext, Shutdown};

async fn start(c: &Cluster) -> Result<DbNode, DbError> {
    let (_trigger, shutdown) = Shutdown::new();
    DbNode::start(NodeContext {
        farm: Arc::clone(&c.farm),
        node: c.farm.nodes[0].clone(),
        data_dir: c.data_dir(0),
        shutdown,
        auth: Default::default(),
    })
    .await
}

#[tokio::test]
async fn a_corrupted_log_is_a_storage_error() {
    let c = Cluster::new(1, 100);
    std::fs::create_dir_all(c.data_dir(0)).expect("dir");
    std::fs::write(c.data_dir(0).join("raft-log.db"), vec![0x42; 8192]).expect("write");
    let e = start(&c).await.expect_err("a corrupted log");
    assert!(matches!(e, DbError::Storage { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("raft-log.db") && text.contains("not a database"),
        "{text}"
    );
}

#[tokio::test]
async fn a_corrupted_database_or_snapshot_is_a_storage_error() {
    let c = Cluster::new(1, 100);
    let dir = c.data_dir(0);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("db.sqlite"), b"this is not sqlite, not at all, no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no")
        .expect("write");
    let e = start(&c).await.expect_err("a corrupted database");
    assert!(e.to_string().contains("db.sqlite"), "{e}");

    std::fs::remove_file(dir.join("db.sqlite")).expect("rm");
    std::fs::create_dir_all(dir.join("snapshot")).expect("dir");
    std::fs::write(dir.join("snapshot/current.json"), b"{").expect("write");
    let e = start(&c).await.expect_err("a corrupted snapshot");
    assert!(e.to_string().contains("current.json"), "{e}");
}
