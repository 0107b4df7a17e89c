//! Running one statement on a SQLite connection, and the JSON <-> SQL value mapping of
//! rqlite's API.
//!
//! JSON parameters: integers bind as INTEGER (above `i64::MAX` as REAL), other numbers as
//! REAL, strings as TEXT, booleans as 0/1, null as NULL. Results: INTEGER and REAL as numbers,
//! TEXT as strings, NULL as null, BLOB as a base64 string (standard alphabet, padded).

use std::time::Instant;

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::Value;

use crate::client::Rows;
use crate::types::{Outcome, Params, SqlStatement, StatementResult};

/// The message rqlite gives for a write statement sent to `/db/query`.
pub(crate) const NOT_READ_ONLY: &str = "attempt to change database via query operation";

/// The SQL value of JSON parameter `v`.
///
/// # Errors
///
/// A message when `v` is an array or an object.
pub(crate) fn json_to_sql(v: &Value) -> Result<SqlValue, String> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(format!(
                "{v} is not a valid parameter; expected a string, number, boolean or null"
            ))
        }
    })
}

/// The JSON form of a SQL value (BLOBs as base64).
pub(crate) fn sql_to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// Binds `params` to `stmt`.
///
/// # Errors
///
/// A message when the parameters do not match the statement's placeholders.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> Result<(), String> {
    let expected = stmt.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(()),
        Params::None => Err(format!(
            "the statement has {expected} parameter(s) but none was given"
        )),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(format!(
                    "the statement has {expected} parameter(s) but {} were given",
                    values.len()
                ));
            }
            for (i, v) in values.iter().enumerate() {
                let v = json_to_sql(v).map_err(|e| format!("parameter {}: {e}", i + 1))?;
                stmt.raw_bind_parameter(i + 1, v)
                    .map_err(|e| format!("parameter {}: {e}", i + 1))?;
            }
            Ok(())
        }
        Params::Named(map) => {
            for i in 1..=expected {
                let Some(name) = stmt.parameter_name(i).map(str::to_string) else {
                    return Err(format!(
                        "parameter {i} is positional but named parameters were given"
                    ));
                };
                let bare = name.get(1..).unwrap_or_default();
                let v = map
                    .get(bare)
                    .or_else(|| map.get(&name))
                    .ok_or_else(|| format!("missing a value for named parameter {name}"))?;
                let v = json_to_sql(v).map_err(|e| format!("parameter {name}: {e}"))?;
                stmt.raw_bind_parameter(i, v)
                    .map_err(|e| format!("parameter {name}: {e}"))?;
            }
            Ok(())
        }
    }
}

/// The rows of a prepared, bound statement.
fn collect_rows(stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<Rows> {
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let types: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.decl_type().unwrap_or_default().to_lowercase())
        .collect();
    let n = columns.len();
    let mut values = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(sql_to_json(row.get_ref(i)?));
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
/// SQLite's message when the statement does not compile.
pub(crate) fn is_read_only(conn: &Connection, sql: &str) -> Result<bool, String> {
    let stmt = conn.prepare_cached(sql).map_err(|e| e.to_string())?;
    Ok(stmt.readonly())
}

/// Runs one statement. With `want_rows`, a statement that returns rows gives
/// [`StatementResult::Rows`]; otherwise every row is stepped through and the result is a
/// [`StatementResult::Write`]. With `read_only`, a statement that could write is refused.
pub(crate) fn run(
    conn: &Connection,
    statement: &SqlStatement,
    want_rows: bool,
    read_only: bool,
) -> Outcome {
    let start = Instant::now();
    let result =
        run_inner(conn, statement, want_rows, read_only).unwrap_or_else(StatementResult::Error);
    Outcome {
        result,
        time: start.elapsed().as_secs_f64(),
    }
}

fn run_inner(
    conn: &Connection,
    statement: &SqlStatement,
    want_rows: bool,
    read_only: bool,
) -> Result<StatementResult, String> {
    let mut stmt = conn
        .prepare_cached(&statement.sql)
        .map_err(|e| sqlite_message(&e))?;
    if read_only && !stmt.readonly() {
        return Err(NOT_READ_ONLY.to_string());
    }
    bind(&mut stmt, &statement.params)?;
    let result = if want_rows && stmt.column_count() > 0 {
        collect_rows(&mut stmt).map(StatementResult::Rows)
    } else {
        // DDL and no-op writes change no row: report 0 rather than the previous statement's
        // count, which sqlite3_changes() still holds.
        let before = conn.total_changes();
        let mut rows = stmt.raw_query();
        let stepped = loop {
            match rows.next() {
                Ok(Some(_)) => continue,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        stepped.map(|()| {
            let changed = conn.total_changes() != before;
            StatementResult::Write {
                last_insert_id: if changed { conn.last_insert_rowid() } else { 0 },
                rows_affected: if changed { conn.changes() } else { 0 },
            }
        })
    };
    // A cached statement keeps its bindings: clear them so the next use starts clean.
    stmt.clear_bindings();
    result.map_err(|e| sqlite_message(&e))
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
            false,
            false,
        );
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
            false,
            false,
        );
        let rows = run(&conn, &st("SELECT * FROM t", Params::None), true, true);
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
    fn reports_errors_per_statement() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run(&conn, &st("SELECT * FROM nope", Params::None), true, true);
        assert_eq!(
            r.result,
            StatementResult::Error("no such table: nope".into())
        );
        let r = run(&conn, &st("CREATE TABLE x (a)", Params::None), true, true);
        assert_eq!(r.result, StatementResult::Error(NOT_READ_ONLY.into()));
        let r = run(
            &conn,
            &st("SELECT ?", Params::Positional(vec![])),
            true,
            true,
        );
        assert!(matches!(r.result, StatementResult::Error(ref m) if m.contains("1 parameter")));
    }
}
