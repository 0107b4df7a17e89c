//! Unit tests of [`super::Database`]: snapshots raced against readers, a failed install.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Database;
use webfarm_testkit::TempDir;

use crate::sqlite::apply::tests::entry;

#[test]
fn the_current_snapshot_opens_while_new_ones_are_built() {
    let dir = TempDir::new("snap-race");
    let store = Database::open(dir.path()).unwrap();
    store
        .apply(&[entry(
            1,
            &["CREATE TABLE t (v)", "INSERT INTO t VALUES (1)"],
        )])
        .unwrap();
    store.build_snapshot().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let builder = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            for _ in 0..400 {
                if let Err(e) = store.build_snapshot() {
                    done.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let mut opened = 0u64;
    while !done.load(Ordering::SeqCst) {
        // Each build removes the previous snapshot's file as it commits the new one.
        let current = store.open_current_snapshot();
        assert!(
            matches!(current, Ok(Some(_))),
            "after {opened} opens: {:?}",
            current.map(|c| c.map(|(meta, _)| meta.snapshot_id))
        );
        opened += 1;
    }
    builder.join().unwrap().unwrap();
    assert!(opened > 0);
}

#[tokio::test]
async fn a_failed_install_keeps_the_database_writable() {
    let dir = TempDir::new("install-fail");
    let store = Database::open(dir.path()).unwrap();
    let user_data = store.user_data();
    assert!(!user_data.load(Ordering::Relaxed));
    store.apply(&[entry(1, &["CREATE TABLE t (v)"])]).unwrap();
    assert!(user_data.load(Ordering::Relaxed), "a user table is data");

    let source_dir = TempDir::new("install-source");
    let source = Database::open(source_dir.path()).unwrap();
    source
        .apply(&[
            entry(1, &["CREATE TABLE t (v)"]),
            entry(2, &["INSERT INTO t VALUES (2)"]),
        ])
        .unwrap();
    let (meta, file) = tokio::task::spawn_blocking(move || source.build_snapshot())
        .await
        .unwrap()
        .unwrap();

    // The swap copies the snapshot to db.sqlite.tmp first: a directory there makes it fail.
    std::fs::create_dir_all(dir.path().join("db.sqlite.tmp")).unwrap();
    let mut data = tokio::fs::File::from_std(file);
    let e = store
        .install_snapshot(meta, &mut data)
        .await
        .expect_err("db.sqlite.tmp is a directory");
    assert!(e.to_string().contains("db.sqlite.tmp"), "{e}");

    // The node still has its write connection, on its old database.
    assert_eq!(*store.applied_index().borrow(), 1);
    store
        .apply(&[entry(2, &["INSERT INTO t VALUES ('after')"])])
        .expect("the writer is back");
    let (applied, _) = store.applied_state().unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
}

#[test]
fn writes_go_on_while_a_snapshot_of_a_large_database_is_built() {
    let dir = TempDir::new("snap-large");
    let store = Database::open(dir.path()).unwrap();
    // About 50 MB: 50,000 rows of 1 KB.
    store
        .apply(&[entry(
            1,
            &[
                "CREATE TABLE big (id INTEGER PRIMARY KEY, blob BLOB)",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50000) \
                 INSERT INTO big SELECT x, randomblob(1000) FROM c",
                "CREATE TABLE w (v INTEGER)",
            ],
        )])
        .unwrap();
    let size = std::fs::metadata(dir.path().join("db.sqlite"))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join("db.sqlite-wal")).map_or(0, |m| m.len());
    assert!(size > 45_000_000, "the database holds {size} bytes");

    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let builder = {
        let (store, started, done) = (Arc::clone(&store), Arc::clone(&started), Arc::clone(&done));
        std::thread::spawn(move || {
            started.store(true, Ordering::SeqCst);
            let built = store.build_snapshot();
            done.store(true, Ordering::SeqCst);
            built
        })
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // Write while the copy runs; count the writes that completed before it finished.
    let mut during = 0;
    let mut index = 2;
    while !done.load(Ordering::SeqCst) {
        store
            .apply(&[entry(index, &[&format!("INSERT INTO w VALUES ({index})")])])
            .unwrap();
        if !done.load(Ordering::SeqCst) {
            during += 1;
        }
        index += 1;
    }
    let (meta, _) = builder.join().unwrap().unwrap();
    assert!(
        during >= 3,
        "only {during} writes completed while the snapshot was built: writes were blocked"
    );
    // The snapshot is one consistent state: its log id and its rows agree.
    let snap_index = meta.last_log_id.map_or(0, |l| l.index);
    assert!(snap_index >= 1 && snap_index < index, "{snap_index}");
    let (_, path) = store.snapshots.current().unwrap().unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM w", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows as u64,
        snap_index - 1,
        "rows written up to the snapshot's log id"
    );
    println!("{during} writes completed while a {size}-byte snapshot was built");
}
