//! Unit tests of [`super::WriteConn`]: storage faults, the pragma policy, `foreign_keys`
//! across batches and restarts, several requests per entry, `/db/load` of a SQLite file.

use super::*;
use crate::types::{Params, SqlStatement};
use openraft::{CommittedLeaderId, Entry};
use webfarm_testkit::TempDir;

/// `sql` as statements without parameters.
fn statements(sql: &[&str]) -> Vec<SqlStatement> {
    sql.iter()
        .map(|s| SqlStatement {
            sql: (*s).to_string(),
            params: Params::None,
        })
        .collect()
}

/// A normal entry at `index` (term 1) with `sql`, one statement each.
pub(crate) fn entry(index: u64, sql: &[&str]) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::sql(
            SqlRequest {
                statements: statements(sql),
                ..SqlRequest::default()
            },
            0,
            1,
        )),
    }
}

/// A write connection on `db.sqlite` in a fresh [`TempDir`].
fn open_writer(what: &str) -> (TempDir, WriteConn) {
    let dir = TempDir::new(what);
    let (w, _) = WriteConn::open(&dir.path().join("db.sqlite")).unwrap();
    (dir, w)
}

/// The single integer `sql` returns.
fn query_int(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Every row `sql` returns, through `row`.
fn query_all<T>(
    c: &Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    c.prepare(sql)
        .unwrap()
        .query_map([], row)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_storage_fault_rolls_the_whole_batch_back() {
    let (_dir, mut w) = open_writer("fault");
    let (r, last) = w
        .apply_entries(&[entry(
            1,
            &["CREATE TABLE t (v TEXT)", "INSERT INTO nope VALUES (1)"],
        )])
        .unwrap();
    assert_eq!(last.map(|l| l.index), Some(1));
    // A statement's own error is its result, and the batch is recorded.
    assert_eq!(
        r[0].results[0][1].result,
        StatementResult::Error("no such table: nope".into())
    );

    // The file may not grow any more, as on a full disk.
    let pages = query_int(w.conn(), "PRAGMA page_count");
    w.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let big = format!("INSERT INTO t VALUES ('{}')", "x".repeat(200_000));
    let e = w
        .apply_entries(&[
            entry(2, &["INSERT INTO t VALUES ('small')"]),
            entry(3, &[&big]),
        ])
        .expect_err("a full disk fails the batch");
    assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull));
    let applied = w.applied().last_log_id;
    assert_eq!(applied.map(|l| l.index), Some(1), "not recorded as applied");
    let n = query_int(w.conn(), "SELECT count(*) FROM t");
    assert_eq!(n, 0, "entry 2 was rolled back with the batch");
    assert!(w.conn().is_autocommit(), "no transaction left open");
}

#[test]
fn user_sql_cannot_fake_a_storage_fault() {
    let (dir, mut w) = open_writer("pragmas");
    let target = dir.path().join("no-such-dir").join("copy.db");
    let vacuum = format!("VACUUM INTO '{}'", target.display());
    let (r, _) = w
        .apply_entries(&[entry(
            1,
            &[
                "PRAGMA max_page_count = 1",
                "PRAGMA hard_heap_limit = 1000",
                "PRAGMA temp_store_directory = '/nonexistent'",
                &vacuum,
                "CREATE TABLE t (v TEXT)",
            ],
        )])
        .expect("only statement errors");
    for out in &r[0].results[0][..4] {
        assert!(
            matches!(out.result, StatementResult::Error(_)),
            "{:?}",
            out.result
        );
    }
    assert!(matches!(
        r[0].results[0][4].result,
        StatementResult::Write { .. }
    ));
}

/// A normal entry at `index` holding `requests` (group commit).
fn entry_of(index: u64, requests: Vec<Request>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command {
            time_ms: 0,
            seed: 1,
            requests,
        }),
    }
}

fn sql_request(sql: &[&str], transaction: bool) -> Request {
    Request::Sql(SqlRequest {
        statements: statements(sql),
        transaction,
        ..SqlRequest::default()
    })
}

fn error_of(o: &Outcome) -> &str {
    match &o.result {
        StatementResult::Error(m) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id))",
    "PRAGMA foreign_keys = ON",
];
const ORPHAN: &str = "INSERT INTO child (parent) VALUES (42)";

#[test]
fn foreign_keys_apply_from_the_next_entry_whatever_the_batching() {
    // The same log, applied in one batch on one replica and entry by entry on another.
    let dir = TempDir::new("fk");
    let (mut one, _) = WriteConn::open(&dir.path().join("one.sqlite")).unwrap();
    let (mut two, _) = WriteConn::open(&dir.path().join("two.sqlite")).unwrap();
    let log = [entry(1, SCHEMA), entry(2, &[ORPHAN])];
    let (batched, last) = one.apply_entries(&log).unwrap();
    assert_eq!(last.map(|l| l.index), Some(2));
    let mut single = Vec::new();
    for e in &log {
        single.extend(two.apply_entries(std::slice::from_ref(e)).unwrap().0);
    }
    let results = |r: &[CommandResponse]| -> Vec<Vec<StatementResult>> {
        r.iter()
            .flat_map(|c| c.results.iter())
            .map(|req| req.iter().map(|o| o.result.clone()).collect())
            .collect()
    };
    assert_eq!(
        results(&batched),
        results(&single),
        "the same results whatever the batching"
    );
    assert_eq!(
        error_of(&batched[1].results[0][0]),
        "FOREIGN KEY constraint failed"
    );
    assert!(one.foreign_keys().unwrap());

    assert!(one.applied().foreign_keys);

    // A replica restarted from a file that records its state (a snapshot) sets it again
    // from that record, and the record leaves the user's schema.
    let state = one.applied().clone();
    crate::sqlite::applied::write_record(one.conn(), &state).unwrap();
    drop(one);
    let (mut again, record) = WriteConn::open(&dir.path().join("one.sqlite")).unwrap();
    assert_eq!(record.as_ref(), Some(&state));
    assert!(again.foreign_keys().unwrap(), "recorded in the snapshot");
    let internal = query_int(
        again.conn(),
        "SELECT count(*) FROM sqlite_master WHERE name = '_webfarm_raft'",
    );
    assert_eq!(internal, 0);
    let (r, _) = again
        .apply_entries(&[
            entry(3, &[ORPHAN, "PRAGMA foreign_keys = off"]),
            entry(4, &[ORPHAN]),
        ])
        .unwrap();
    assert_eq!(
        error_of(&r[0].results[0][0]),
        "FOREIGN KEY constraint failed"
    );
    assert!(matches!(
        r[1].results[0][0].result,
        StatementResult::Write { .. }
    ));
    assert!(!again.foreign_keys().unwrap());
}

#[test]
fn connection_settings_cannot_be_changed_by_user_sql() {
    let (_dir, mut w) = open_writer("pragma-policy");
    let (r, _) = w
        .apply_entries(&[entry(
            1,
            &[
                "PRAGMA recursive_triggers = ON",
                "PRAGMA synchronous = OFF",
                "PRAGMA case_sensitive_like = 1",
                "PRAGMA user_version = 7",
                "PRAGMA optimize",
                "CREATE TABLE t (a)",
            ],
        )])
        .unwrap();
    let out = &r[0].results[0];
    assert!(
        error_of(&out[0]).contains("PRAGMA recursive_triggers cannot be set"),
        "{out:?}"
    );
    assert!(error_of(&out[1]).contains("replicas would differ"));
    assert!(error_of(&out[2]).contains("cannot be set"));
    assert!(matches!(out[3].result, StatementResult::Write { .. }));
    assert!(error_of(&out[4]).contains("PRAGMA optimize is not allowed"));
    assert!(matches!(out[5].result, StatementResult::Write { .. }));
    let v = query_int(w.conn(), "PRAGMA user_version");
    assert_eq!(v, 7, "a setting kept in the file replicates like a write");
    let rt = query_int(w.conn(), "PRAGMA recursive_triggers");
    assert_eq!(rt, 0);
}

#[test]
fn each_request_of_an_entry_keeps_its_own_results_and_transaction() {
    let (_dir, mut w) = open_writer("requests");
    w.apply_entries(&[entry(
        1,
        &["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"],
    )])
    .unwrap();
    let (r, _) = w
        .apply_entries(&[entry_of(
            2,
            vec![
                sql_request(&["INSERT INTO t (v) VALUES ('a')"], false),
                sql_request(
                    &[
                        "INSERT INTO t (v) VALUES ('b')",
                        "INSERT INTO t (v) VALUES (NULL)",
                    ],
                    true,
                ),
                sql_request(&["INSERT INTO t (v) VALUES ('c')"], false),
            ],
        )])
        .unwrap();
    let results = &r[0].results;
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0][0].result,
        StatementResult::Write {
            last_insert_id: 1,
            rows_affected: 1
        }
    );
    assert_eq!(results[1].len(), 2, "the transaction ends at its error");
    assert_eq!(error_of(&results[1][1]), "NOT NULL constraint failed: t.v");
    assert_eq!(
        results[2][0].result,
        StatementResult::Write {
            last_insert_id: 2,
            rows_affected: 1
        },
        "the failed transaction left nothing behind"
    );
}

#[test]
fn a_load_replaces_the_user_tables_with_the_files() {
    let dir = TempDir::new("load");
    let src = dir.path().join("src.sqlite");
    {
        let c = Connection::open(&src).unwrap();
        c.execute_batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
             CREATE TABLE b (x TEXT, y BLOB);
             CREATE INDEX b_x ON b (x);
             CREATE VIEW av AS SELECT v FROM a;
             CREATE TRIGGER a_log AFTER INSERT ON a BEGIN INSERT INTO b VALUES ('t', NULL); END;
             INSERT INTO a (v) VALUES ('one'), ('two');
             DELETE FROM a WHERE id = 1;
             INSERT INTO b (rowid, x, y) VALUES (10, 'ten', x'00ff');",
        )
        .unwrap();
    }
    let bytes = std::fs::read(&src).unwrap();
    let (mut w, _) = WriteConn::open(&dir.path().join("db.sqlite")).unwrap();
    w.apply_entries(&[entry(
        1,
        &["CREATE TABLE old (v)", "INSERT INTO old VALUES (1)"],
    )])
    .unwrap();
    let load = Request::Load(crate::command::LoadRequest {
        sqlite: base64::engine::general_purpose::STANDARD.encode(&bytes),
    });
    let (r, last) = w
        .apply_entries(&[
            entry_of(2, vec![load]),
            entry(3, &["INSERT INTO a (v) VALUES ('three')"]),
        ])
        .unwrap();
    assert_eq!(last.map(|l| l.index), Some(3));
    assert!(r[0].results[0].is_empty(), "{:?}", r[0]);
    let c = w.conn();
    let names: Vec<String> = query_all(
        c,
        "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite%' ORDER BY name",
        |r| r.get(0),
    );
    assert_eq!(names, ["a", "a_log", "av", "b", "b_x"]);
    let a: Vec<(i64, String)> = query_all(c, "SELECT id, v FROM a ORDER BY id", |r| {
        Ok((r.get(0)?, r.get(1)?))
    });
    assert_eq!(
        a,
        [(2, "two".into()), (3, "three".into())],
        "AUTOINCREMENT continues"
    );
    let b: Vec<(i64, String)> = query_all(c, "SELECT rowid, x FROM b ORDER BY rowid", |r| {
        Ok((r.get(0)?, r.get(1)?))
    });
    // The file's rows as they are (its trigger had fired there), rowids kept; the trigger
    // fires again only for writes after the load.
    let want: Vec<(i64, String)> = vec![
        (1, "t".into()),
        (2, "t".into()),
        (10, "ten".into()),
        (11, "t".into()),
    ];
    assert_eq!(b, want);
    assert_eq!(w.applied().last_log_id.map(|l| l.index), Some(3));

    // Not a database: refused, nothing changes.
    let junk = Request::Load(crate::command::LoadRequest {
        sqlite: base64::engine::general_purpose::STANDARD
            .encode(b"SQLite format 3\0 but not really, just some text that goes on"),
    });
    let (r, _) = w.apply_entries(&[entry_of(4, vec![junk])]).unwrap();
    assert!(
        error_of(&r[0].results[0][0]).starts_with("load refused"),
        "{:?}",
        r[0]
    );
    let n = query_int(w.conn(), "SELECT count(*) FROM a");
    assert_eq!(n, 2);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}
