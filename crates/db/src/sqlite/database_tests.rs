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

/// The number of rows of `table` in the database at `path`, and whether `sqlite_master`
/// names webfarm's record table.
fn rows_and_record(path: &std::path::Path, table: &str) -> (i64, bool) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let rows = conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap();
    let record = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = '_webfarm_raft'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    (rows, record > 0)
}

fn applied_index(store: &Database) -> u64 {
    store.applied_state().unwrap().0.map_or(0, |l| l.index)
}

#[test]
fn the_users_database_holds_only_the_users_objects() {
    let dir = TempDir::new("only-user");
    let store = Database::open(dir.path()).unwrap();
    store
        .apply(&[
            entry(1, &["CREATE TABLE t (v)", "INSERT INTO t VALUES (1)"]),
            entry(2, &["PRAGMA foreign_keys = ON"]),
        ])
        .unwrap();
    let (meta, _) = store.build_snapshot().unwrap();
    let names: Vec<String> = {
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master").unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.map(Result::unwrap).collect()
    };
    assert_eq!(names, ["t"]);
    // The snapshot file records its own state, for a restore.
    let (_, path) = store.snapshots.current().unwrap().unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let record = crate::sqlite::applied::read_record(&conn).unwrap().unwrap();
    assert_eq!(record.last_log_id, meta.last_log_id);
    assert_eq!(record.last_log_id.map(|l| l.index), Some(2));
    assert!(record.foreign_keys);
    // User SQL cannot take the record's name.
    let r = store
        .apply(&[entry(3, &["CREATE TABLE _webfarm_raft (x)"])])
        .unwrap();
    assert!(
        matches!(&r[0].results[0][0].result, crate::types::StatementResult::Error(m)
            if m.contains("_webfarm_raft")),
        "{r:?}"
    );
}

#[test]
fn a_data_dir_of_an_older_version_is_migrated() {
    let dir = TempDir::new("legacy");
    {
        // What older versions wrote: the record in the user's database.
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.execute_batch(
            r#"CREATE TABLE t (v);
               INSERT INTO t VALUES (1), (2);
               CREATE TABLE _webfarm_raft (
                   id INTEGER PRIMARY KEY CHECK (id = 1),
                   last_applied TEXT,
                   last_membership TEXT,
                   foreign_keys INTEGER NOT NULL DEFAULT 0
               );
               INSERT INTO _webfarm_raft VALUES (1,
                   '{"leader_id":{"term":3,"node_id":7},"index":41}',
                   '{"log_id":null,"membership":{"configs":[],"nodes":{}}}',
                   1);"#,
        )
        .unwrap();
    }
    let store = Database::open(dir.path()).unwrap();
    assert_eq!(applied_index(&store), 41);
    assert!(store.foreign_keys(), "the recorded foreign_keys setting");
    store
        .apply(&[entry(42, &["INSERT INTO t VALUES (3)"])])
        .unwrap();
    assert_eq!(applied_index(&store), 42);
    assert_eq!(
        rows_and_record(&dir.path().join("db.sqlite"), "t"),
        (3, false),
        "the record moved out of the user's schema"
    );
}

#[test]
fn a_clean_close_is_trusted_and_anything_else_rebuilds_from_the_snapshot() {
    let dir = TempDir::new("restart");
    let db = dir.path().join("db.sqlite");
    let insert = |i: u64| entry(i, &[&format!("INSERT INTO t VALUES ({i})")]);
    let store = Database::open(dir.path()).unwrap();
    store.apply(&[entry(1, &["CREATE TABLE t (v)"])]).unwrap();
    store
        .apply(&(2..=5).map(insert).collect::<Vec<_>>())
        .unwrap();
    store.build_snapshot().unwrap();
    store
        .apply(&(6..=8).map(insert).collect::<Vec<_>>())
        .unwrap();

    // A graceful stop: the next start uses db.sqlite as it is.
    store.close();
    drop(store);
    assert!(dir.path().join("db.closed.json").exists());
    let store = Database::open(dir.path()).unwrap();
    assert!(
        !dir.path().join("db.closed.json").exists(),
        "taken before anything is applied"
    );
    assert_eq!(applied_index(&store), 8);
    assert_eq!(rows_and_record(&db, "t"), (7, false));

    // A crash after more entries: unknown state, rebuilt from the snapshot (index 5); the
    // log after it is applied again, once.
    store
        .apply(&(9..=10).map(insert).collect::<Vec<_>>())
        .unwrap();
    drop(store);
    let store = Database::open(dir.path()).unwrap();
    assert_eq!(applied_index(&store), 5);
    assert_eq!(rows_and_record(&db, "t"), (4, false));
    store
        .apply(&(6..=10).map(insert).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(rows_and_record(&db, "t"), (9, false));

    // A file changed after a clean close is not trusted either.
    store.close();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("INSERT INTO t VALUES ('edited by hand')")
            .unwrap();
    }
    let store = Database::open(dir.path()).unwrap();
    assert_eq!(applied_index(&store), 5);
    assert_eq!(rows_and_record(&db, "t"), (4, false));

    // A storage fault: no clean-close record, whatever the stop.
    store.faulted.store(true, Ordering::Relaxed);
    store.close();
    assert!(!dir.path().join("db.closed.json").exists());
}

/// Set in the child process of [`no_entry_is_applied_twice_or_half_after_kill_9`]: the
/// data directory it applies the log to.
const CRASH_CHILD: &str = "WEBFARM_CRASH_CHILD_DIR";

/// Entry `i` of the crash test's log: the schema, then one row and one increment each.
fn crash_entry(i: u64) -> openraft::Entry<crate::types::TypeConfig> {
    if i == 1 {
        entry(
            1,
            &[
                "CREATE TABLE t (i INTEGER)",
                "CREATE TABLE c (n INTEGER)",
                "INSERT INTO c VALUES (0)",
            ],
        )
    } else {
        entry(
            i,
            &[
                &format!("INSERT INTO t VALUES ({i})"),
                "UPDATE c SET n = n + 1",
            ],
        )
    }
}

/// The child: opens the store and applies the log from where the database is, in batches of
/// 1 to 16 entries, a snapshot now and then, until it is killed (or, when asked, stops
/// gracefully after a while).
fn crash_child(dir: &std::path::Path) {
    let store = Database::open(dir).unwrap();
    let clean_after: Option<u64> = std::env::var("WEBFARM_CRASH_CLEAN_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut next = applied_index(&store) + 1;
    let mut batches = 0u64;
    loop {
        let n = 1 + (next * 7919 + batches) % 16;
        let batch: Vec<_> = (next..next + n).map(crash_entry).collect();
        store.apply(&batch).unwrap();
        next += n;
        batches += 1;
        // Written whole (rename), at most one batch behind what was applied.
        std::fs::write(dir.join("progress.tmp"), (next - 1).to_string()).unwrap();
        std::fs::rename(dir.join("progress.tmp"), dir.join("progress")).unwrap();
        if batches.is_multiple_of(25) {
            store.build_snapshot().unwrap();
        }
        if clean_after.is_some_and(|c| batches >= c) {
            store.close();
            std::process::exit(0);
        }
    }
}

#[test]
fn no_entry_is_applied_twice_or_half_after_kill_9() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD) {
        crash_child(std::path::Path::new(&dir));
        return;
    }
    let dir = TempDir::new("kill-9");
    let exe = std::env::current_exe().unwrap();
    // This test's name as libtest knows it (the module path without the crate's name).
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::no_entry_is_applied_twice_or_half_after_kill_9");
    let mut seed = u64::from(std::process::id()) | 1;
    let mut highest = 0;
    let mut rebuilt = 0;
    for round in 0..16 {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["--exact", &name, "--nocapture", "--test-threads", "1"])
            .env(CRASH_CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if round % 4 == 3 {
            cmd.env("WEBFARM_CRASH_CLEAN_AFTER", "40");
        }
        let mut child = cmd.spawn().unwrap();
        // xorshift: a kill at a random point, 30 to 330 ms into the run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = std::time::Duration::from_millis(30 + seed % 300);
        let graceful = round % 4 == 3;
        if graceful {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "round {round}: the child failed: {status}"
            );
        } else {
            std::thread::sleep(wait);
            child.kill().unwrap();
            child.wait().unwrap();
        }

        // Whatever the moment: the database is exactly its applied index's state.
        let store = Database::open(dir.path()).unwrap();
        let applied = applied_index(&store);
        let counts = |w: &mut crate::sqlite::apply::WriteConn| {
            if applied == 0 {
                // Not even the schema: an empty database.
                return w
                    .conn()
                    .query_row("SELECT count(*), 0, 0 FROM sqlite_master", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
            }
            w.conn().query_row(
                "SELECT (SELECT count(*) FROM t), (SELECT count(DISTINCT i) FROM t), \
                 (SELECT n FROM c)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        };
        let (rows, distinct, counter): (i64, i64, i64) = store.with_writer(counts).unwrap();
        let want = i64::try_from(applied.saturating_sub(1)).unwrap();
        assert_eq!(
            (rows, distinct, counter),
            (want, want, want),
            "round {round}: applied index {applied}"
        );
        let reached: u64 = std::fs::read_to_string(dir.path().join("progress"))
            .map_or(0, |p| p.parse().unwrap_or(0));
        assert!(
            applied <= reached + 16,
            "round {round}: {applied} > {reached}"
        );
        if applied < reached {
            // Entries the child had applied were dropped with the unknown database and
            // are applied again by the next child.
            rebuilt += 1;
        }
        highest = highest.max(applied);
        // Leave it as a crash would (no clean close), or cleanly, in turn.
        if round % 2 == 0 {
            store.close();
        }
    }
    assert!(highest > 100, "the children applied only {highest} entries");
    assert!(
        rebuilt > 0,
        "no round rebuilt the database from an older state: the crash path was not tested"
    );
}
