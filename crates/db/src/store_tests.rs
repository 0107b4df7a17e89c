//! Unit tests of [`super::Store`]: snapshots raced against readers, a failed install.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Store;
use crate::apply::tests::{entry, temp_dir};

#[test]
fn the_current_snapshot_opens_while_new_ones_are_built() {
    let dir = temp_dir("snap-race");
    let store = Store::open(&dir.0).unwrap();
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
    let dir = temp_dir("install-fail");
    let store = Store::open(&dir.0).unwrap();
    let user_data = store.user_data();
    assert!(!user_data.load(Ordering::Relaxed));
    store.apply(&[entry(1, &["CREATE TABLE t (v)"])]).unwrap();
    assert!(user_data.load(Ordering::Relaxed), "a user table is data");

    let source_dir = temp_dir("install-source");
    let source = Store::open(&source_dir.0).unwrap();
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
    std::fs::create_dir_all(dir.0.join("db.sqlite.tmp")).unwrap();
    let mut data = tokio::fs::File::from_std(file);
    let e = store
        .install_snapshot(meta, &mut data)
        .await
        .expect_err("db.sqlite.tmp is a directory");
    assert!(e.contains("db.sqlite.tmp"), "{e}");

    // The node still has its write connection, on its old database.
    assert_eq!(*store.applied_index().borrow(), 1);
    store
        .apply(&[entry(2, &["INSERT INTO t VALUES ('after')"])])
        .expect("the writer is back");
    let (applied, _) = store.applied_state().unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
}
