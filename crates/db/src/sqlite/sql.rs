//! Running one statement on a SQLite connection, and the JSON <-> SQL value mapping of
//! rqlite's API.
//!
//! JSON parameters: integers bind as INTEGER (above `i64::MAX` as REAL), other numbers as
//! REAL, strings as TEXT, booleans as 0/1, null as NULL. Results: INTEGER and REAL as numbers,
//! TEXT as strings, NULL as null, BLOB as a base64 string (standard alphabet, padded), except
//! where the column's declared type changes that as in rqlite (times, booleans:
//! [`crate::sqlite::values`]).
//!
//! Errors come in two kinds ([`is_statement_error`]): those the statement itself causes (a
//! syntax error, a missing table, a constraint, bad parameters) are the statement's result,
//! the same on every replica; any other (disk full, I/O error, corruption, out of memory,
//! busy, locked) is a fault of this node's storage, and [`run`] returns it as an `Err` so the
//! caller can fail the whole batch instead of recording a result that other replicas would
//! not have.

use std::time::Instant;

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{ffi, Connection};
use serde_json::Value;

use crate::sqlite::values;
use crate::types::Rows;
use crate::types::{Outcome, Params, SqlStatement, StatementResult};

/// The message rqlite gives for a write statement sent to `/db/query`.
pub(crate) const NOT_READ_ONLY: &str = "attempt to change database via query operation";

/// The SQL value of JSON parameter `v`: a JSON array of integers 0 to 255 is a BLOB (rqlite's
/// byte-array form).
///
/// # Errors
///
/// [`BadParameter`] when `v` is an object, or an array that is not one of bytes.
pub(crate) fn json_to_sql(v: &Value) -> Result<SqlValue, BadParameter> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            match bytes {
                Some(b) => SqlValue::Blob(b),
                None => return Err(BadParameter::NotBytes(v.clone())),
            }
        }
        Value::Object(_) => return Err(BadParameter::Object(v.clone())),
    })
}

/// A JSON parameter that has no SQL value.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BadParameter {
    /// An array that is not one of bytes.
    #[error(
        "{0} is not a valid parameter; an array parameter is a BLOB and must hold integers \
         from 0 to 255"
    )]
    NotBytes(Value),
    /// An object.
    #[error(
        "{0} is not a valid parameter; expected a string, number, boolean, null or an array \
         of bytes"
    )]
    Object(Value),
}

/// The JSON form of a SQL value: BLOBs as base64 (standard alphabet, padded), or with
/// `blob_array` as an array of byte values (rqlite's `blob_array`).
pub(crate) fn sql_to_json(v: ValueRef<'_>, blob_array: bool) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) if blob_array => {
            Value::Array(b.iter().map(|&x| Value::from(x)).collect())
        }
        ValueRef::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// How [`run`] runs a statement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOpts {
    /// Give the rows of a statement that returns rows (else step through them).
    pub(crate) want_rows: bool,
    /// Refuse a statement that could write.
    pub(crate) read_only: bool,
    /// BLOBs as arrays of bytes instead of base64.
    pub(crate) blob_array: bool,
    /// Use the connection's prepared statement cache (read connections). The write connection
    /// prepares every statement, so that its authorizer sees each one.
    pub(crate) cached: bool,
}

/// Why a statement did not give a result.
#[derive(Debug)]
enum Failure {
    /// Caused by the statement or its parameters: its result on every replica.
    Statement(String),
    /// A fault of this node's storage or of SQLite itself (see [`is_statement_error`]).
    Storage(rusqlite::Error),
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Statement(m)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        if is_statement_error(&e) {
            Failure::Statement(sqlite_message(&e))
        } else {
            Failure::Storage(e)
        }
    }
}

/// Whether `e` was caused by the SQL itself, so that every replica gets the same error from
/// the same statement: `SQLITE_ERROR` (syntax, no such table or column...), `CONSTRAINT`,
/// `MISMATCH`, `RANGE`, `TOOBIG`, `AUTH` (our authorizer), `MISUSE` (bad parameters), and
/// rusqlite's own checks of the input (several statements, a NUL in the SQL, a value it cannot
/// convert). Anything else (`FULL`, `IOERR`, `CORRUPT`, `NOTADB`, `NOMEM`, `BUSY`, `LOCKED`,
/// `READONLY`, `CANTOPEN`, `PERM`, `INTERRUPT`, `ABORT`, `SCHEMA`, `INTERNAL`...) depends on
/// this node, not on the statement.
pub(crate) fn is_statement_error(e: &rusqlite::Error) -> bool {
    match e.sqlite_error() {
        None => true,
        Some(f) => matches!(
            f.extended_code & 0xff,
            ffi::SQLITE_ERROR
                | ffi::SQLITE_CONSTRAINT
                | ffi::SQLITE_MISMATCH
                | ffi::SQLITE_RANGE
                | ffi::SQLITE_TOOBIG
                | ffi::SQLITE_AUTH
                | ffi::SQLITE_MISUSE
        ),
    }
}

/// Binds `params` to `stmt`.
///
/// # Errors
///
/// A statement failure when the parameters do not match the statement's placeholders.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> Result<(), Failure> {
    let expected = stmt.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(()),
        Params::None => Err(Failure::Statement(format!(
            "the statement has {expected} parameter(s) but none was given"
        ))),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(Failure::Statement(format!(
                    "the statement has {expected} parameter(s) but {} were given",
                    values.len()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                let v = json_to_sql(v).map_err(|e| format!("parameter {}: {e}", i + 1))?;
                stmt.raw_bind_parameter(i + 1, v)
                    .map_err(|e| bind_failure(&format!("parameter {}", i + 1), e))?;
            }
            Ok(())
        }
        Params::Named(map) => {
            for i in 1..=expected {
                let Some(name) = stmt.parameter_name(i).map(str::to_string) else {
                    return Err(Failure::Statement(format!(
                        "parameter {i} is positional but named parameters were given"
                    )));
                };
                let bare = name.get(1..).unwrap_or_default();
                let v = map
                    .get(bare)
                    .or_else(|| map.get(&name))
                    .ok_or_else(|| format!("missing a value for named parameter {name}"))?;
                let v = json_to_sql(v).map_err(|e| format!("parameter {name}: {e}"))?;
                stmt.raw_bind_parameter(i, v)
                    .map_err(|e| bind_failure(&format!("parameter {name}"), e))?;
            }
            Ok(())
        }
    }
}

/// A failure to bind parameter `what`, classified.
fn bind_failure(what: &str, e: rusqlite::Error) -> Failure {
    match Failure::from(e) {
        Failure::Statement(m) => Failure::Statement(format!("{what}: {m}")),
        storage => storage,
    }
}

/// The rows of a prepared, bound statement.
fn collect_rows(stmt: &mut rusqlite::Statement<'_>, blob_array: bool) -> rusqlite::Result<Rows> {
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let mut types: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.decl_type().unwrap_or_default().to_lowercase())
        .collect();
    let n = columns.len();
    let mut values = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut out = Vec::with_capacity(n);
        for (i, decl) in types.iter().enumerate() {
            let v = values::to_json(row.get_ref(i)?, decl, blob_array)
                .map_err(|m| rusqlite::Error::UserFunctionError(m.into()))?;
            out.push(v);
        }
        if values.is_empty() {
            // rqlite names an expression's type after its first value.
            for (i, t) in types.iter_mut().enumerate() {
                if t.is_empty() {
                    *t = values::type_of_value(row.get_ref(i)?).to_string();
                }
            }
        }
        values.push(out);
    }
    Ok(Rows {
        columns,
        types,
        values,
    })
}

/// Whether `sql` is read-only (`SELECT`, read-only `PRAGMA`...), judged by preparing it.
///
/// # Errors
///
/// SQLite's error when the statement does not compile.
pub(crate) fn is_read_only(conn: &Connection, sql: &str) -> rusqlite::Result<bool> {
    let stmt = conn.prepare_cached(sql)?;
    Ok(stmt.readonly())
}

/// Runs one statement. With `want_rows`, a statement that returns rows gives
/// [`StatementResult::Rows`]; otherwise every row is stepped through and the result is a
/// [`StatementResult::Write`]. With `read_only`, a statement that could write is refused. An
/// error the statement causes is its [`StatementResult::Error`].
///
/// # Errors
///
/// SQLite's error when it is not the statement's fault ([`is_statement_error`]): the caller
/// must not record a result for the statement (a write batch is rolled back whole).
pub(crate) fn run(
    conn: &Connection,
    statement: &SqlStatement,
    opts: RunOpts,
) -> rusqlite::Result<Outcome> {
    let start = Instant::now();
    let result = match run_inner(conn, statement, opts) {
        Ok(r) => r,
        Err(Failure::Statement(m)) => StatementResult::Error(m),
        Err(Failure::Storage(e)) => return Err(e),
    };
    Ok(Outcome {
        result,
        time: start.elapsed().as_secs_f64(),
    })
}

fn run_inner(
    conn: &Connection,
    statement: &SqlStatement,
    opts: RunOpts,
) -> Result<StatementResult, Failure> {
    if opts.cached {
        let mut stmt = conn.prepare_cached(&statement.sql)?;
        run_prepared(conn, &mut stmt, statement, opts)
    } else {
        let mut stmt = conn.prepare(&statement.sql)?;
        run_prepared(conn, &mut stmt, statement, opts)
    }
}

fn run_prepared(
    conn: &Connection,
    stmt: &mut rusqlite::Statement<'_>,
    statement: &SqlStatement,
    opts: RunOpts,
) -> Result<StatementResult, Failure> {
    if opts.read_only && !stmt.readonly() {
        return Err(Failure::Statement(NOT_READ_ONLY.to_string()));
    }
    let bound = bind(stmt, &statement.params);
    let result = bound.and_then(|()| step(conn, stmt, opts).map_err(Failure::from));
    // A cached statement keeps its bindings: clear them so the next use starts clean.
    stmt.clear_bindings();
    result
}

/// Steps a prepared, bound statement through: its rows, or what it changed.
fn step(
    conn: &Connection,
    stmt: &mut rusqlite::Statement<'_>,
    opts: RunOpts,
) -> rusqlite::Result<StatementResult> {
    if opts.want_rows && stmt.column_count() > 0 {
        return collect_rows(stmt, opts.blob_array).map(StatementResult::Rows);
    }
    // DDL and no-op writes change no row: report 0 rather than the previous statement's
    // count, which sqlite3_changes() still holds.
    let before = conn.total_changes();
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    let changed = conn.total_changes() != before;
    Ok(StatementResult::Write {
        last_insert_id: if changed { conn.last_insert_rowid() } else { 0 },
        rows_affected: if changed { conn.changes() } else { 0 },
    })
}

/// SQLite's own message, without rusqlite's wrapping.
pub(crate) fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WRITE: RunOpts = RunOpts {
        want_rows: false,
        read_only: false,
        blob_array: false,
        cached: false,
    };
    const READ: RunOpts = RunOpts {
        want_rows: true,
        read_only: true,
        blob_array: false,
        cached: true,
    };

    fn st(sql: &str, params: Params) -> SqlStatement {
        SqlStatement {
            sql: sql.into(),
            params,
        }
    }

    #[test]
    fn binds_positional_and_named_parameters() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b REAL, c TEXT, d BLOB)")
            .unwrap();
        let ins = run(
            &conn,
            &st(
                "INSERT INTO t VALUES (?, ?, ?, ?)",
                Params::Positional(vec![json!(1), json!(2.5), json!("x"), json!(true)]),
            ),
            WRITE,
        )
        .unwrap();
        assert_eq!(
            ins.result,
            StatementResult::Write {
                last_insert_id: 1,
                rows_affected: 1
            }
        );
        let named = Params::Named(
            [("a".to_string(), json!(7)), ("c".to_string(), json!(null))]
                .into_iter()
                .collect(),
        );
        run(
            &conn,
            &st("INSERT INTO t (a, c, d) VALUES (:a, @c, x'00ff')", named),
            WRITE,
        )
        .unwrap();
        let rows = run(&conn, &st("SELECT * FROM t", Params::None), READ).unwrap();
        let StatementResult::Rows(rows) = rows.result else {
            panic!("expected rows, got {rows:?}");
        };
        assert_eq!(rows.columns, ["a", "b", "c", "d"]);
        assert_eq!(rows.types, ["integer", "real", "text", "blob"]);
        assert_eq!(
            rows.values,
            vec![
                vec![json!(1), json!(2.5), json!("x"), json!(1)],
                vec![json!(7), json!(null), json!(null), json!("AP8=")],
            ]
        );
    }

    #[test]
    fn blobs_go_in_as_byte_arrays_and_out_as_base64_or_arrays() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE b (v BLOB)").unwrap();
        let bytes = Params::Positional(vec![json!([0, 1, 255])]);
        run(&conn, &st("INSERT INTO b VALUES (?)", bytes), WRITE).unwrap();
        let typed = run(&conn, &st("SELECT typeof(v), v FROM b", Params::None), READ).unwrap();
        let StatementResult::Rows(rows) = typed.result else {
            panic!("rows: {typed:?}");
        };
        assert_eq!(rows.values, vec![vec![json!("blob"), json!("AAH/")]]);
        let arrays = RunOpts {
            blob_array: true,
            ..READ
        };
        let r = run(&conn, &st("SELECT v FROM b", Params::None), arrays).unwrap();
        let StatementResult::Rows(rows) = r.result else {
            panic!("rows: {r:?}");
        };
        assert_eq!(rows.values, vec![vec![json!([0, 1, 255])]]);
        assert!(json_to_sql(&json!([1, 256])).is_err());
        assert!(json_to_sql(&json!({"a": 1})).is_err());
    }

    #[test]
    fn reports_errors_per_statement() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run(&conn, &st("SELECT * FROM nope", Params::None), READ).unwrap();
        assert_eq!(
            r.result,
            StatementResult::Error("no such table: nope".into())
        );
        let r = run(&conn, &st("CREATE TABLE x (a)", Params::None), READ).unwrap();
        assert_eq!(r.result, StatementResult::Error(NOT_READ_ONLY.into()));
        let r = run(&conn, &st("SELECT ?", Params::Positional(vec![])), READ).unwrap();
        assert!(matches!(r.result, StatementResult::Error(ref m) if m.contains("1 parameter")));
    }

    fn code(c: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(c), None)
    }

    #[test]
    fn only_errors_of_the_sql_itself_are_statement_errors() {
        for c in [
            ffi::SQLITE_ERROR,
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_CONSTRAINT_NOTNULL,
            ffi::SQLITE_CONSTRAINT_UNIQUE,
            ffi::SQLITE_MISMATCH,
            ffi::SQLITE_RANGE,
            ffi::SQLITE_TOOBIG,
            ffi::SQLITE_AUTH,
            ffi::SQLITE_MISUSE,
        ] {
            assert!(is_statement_error(&code(c)), "code {c}");
        }
        for c in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_NOMEM,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_PERM,
            ffi::SQLITE_INTERRUPT,
            ffi::SQLITE_ABORT,
            ffi::SQLITE_SCHEMA,
            ffi::SQLITE_INTERNAL,
            ffi::SQLITE_PROTOCOL,
            ffi::SQLITE_NOLFS,
        ] {
            assert!(!is_statement_error(&code(c)), "code {c}");
        }
        // rusqlite's own checks of the input.
        assert!(is_statement_error(&rusqlite::Error::MultipleStatement));
        assert!(is_statement_error(&rusqlite::Error::InvalidParameterCount(
            1, 2
        )));
    }

    #[test]
    fn a_storage_fault_is_an_error_not_a_result() {
        let dir = webfarm_testkit::TempDir::new("sql-full");
        let conn = Connection::open(dir.path().join("full.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        // The file may not grow: as a full disk would refuse it.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let big = st(
            "INSERT INTO t VALUES (?)",
            Params::Positional(vec![json!("x".repeat(100_000))]),
        );
        let e = run(&conn, &big, WRITE).expect_err("the database is full");
        assert!(!is_statement_error(&e), "{e}");
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull));
        // The statement's own mistakes stay results.
        let r = run(
            &conn,
            &st("INSERT INTO nope VALUES (1)", Params::None),
            WRITE,
        )
        .unwrap();
        assert_eq!(
            r.result,
            StatementResult::Error("no such table: nope".into())
        );
        drop(conn);
    }
}
