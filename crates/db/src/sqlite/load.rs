//! Restoring a SQLite file into the user's database, inside the applier's transaction
//! (`/db/load` of a SQLite file, replicated as a [`crate::command::LoadRequest`]).
//!
//! Every replica writes the same bytes to a file, attaches it, and copies it logically: the
//! user's tables, views, indexes and triggers are dropped, the file's are created in their
//! `sqlite_master` order, rows are copied with their rowids, and `sqlite_sequence` follows.
//! Triggers and indexes are created after the rows, so no trigger fires during the copy. The
//! same operations on the same bytes give the same database everywhere, and the copy commits
//! in the same transaction as the entry's log id, so a crash never leaves half a load.
//!
//! The file's own `_webfarm_raft` table (a webfarm snapshot file has one) and SQLite's internal
//! tables are skipped. Virtual tables are refused. With `foreign_keys` on, the applier turns
//! enforcement off around the load and the result is checked with `foreign_key_check`: a file
//! whose rows violate a foreign key is refused and nothing changes.

use rusqlite::Connection;

use crate::sqlite::applied::RECORD_TABLE;
use crate::sqlite::authorizer::Guard;
use crate::sqlite::sql::is_statement_error;

/// `"name"`, quoted for SQL.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One object of a schema, from `sqlite_master`.
struct Object {
    kind: String,
    name: String,
    table: String,
    sql: Option<String>,
}

fn is_internal(name: &str) -> bool {
    name.eq_ignore_ascii_case(RECORD_TABLE) || name.to_ascii_lowercase().starts_with("sqlite_")
}

fn objects(conn: &Connection, schema: &str) -> rusqlite::Result<Vec<Object>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT type, name, tbl_name, sql FROM {}.sqlite_master ORDER BY rowid",
        ident(schema)
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(Object {
            kind: r.get(0)?,
            name: r.get(1)?,
            table: r.get(2)?,
            sql: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Why a load was refused (the same on every replica), or a fault of this node's storage.
enum Refused {
    Load(String),
    Storage(rusqlite::Error),
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        let code = e.sqlite_error().map(|f| f.extended_code & 0xff);
        // The file is the same on every replica: a damaged one is refused everywhere.
        let about_the_file = matches!(
            code,
            Some(rusqlite::ffi::SQLITE_NOTADB | rusqlite::ffi::SQLITE_CORRUPT)
        );
        if is_statement_error(&e) || about_the_file {
            Refused::Load(crate::sqlite::sql::sqlite_message(&e))
        } else {
            Refused::Storage(e)
        }
    }
}

/// The column list to copy for `table` of `schema`: its stored columns, plus the rowid when
/// the table has one that no column aliases.
fn copy_columns(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name, hidden, pk, type FROM pragma_table_xinfo(?1, ?2)")?;
    let cols: Vec<(String, i64, i64, String)> = stmt
        .query_map([table, schema], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let without_rowid: bool = conn.query_row(
        "SELECT wr FROM pragma_table_list() WHERE name = ?1 AND schema = ?2",
        [table, schema],
        |r| r.get(0),
    )?;
    let pks: Vec<&(String, i64, i64, String)> = cols.iter().filter(|c| c.2 > 0).collect();
    let aliased = matches!(pks.as_slice(), [only] if only.3.eq_ignore_ascii_case("INTEGER"));
    let mut out: Vec<String> = cols
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| ident(&c.0))
        .collect();
    if !without_rowid && !aliased {
        let taken = |n: &str| cols.iter().any(|c| c.0.eq_ignore_ascii_case(n));
        if let Some(r) = ["rowid", "_rowid_", "oid"].into_iter().find(|n| !taken(n)) {
            out.insert(0, r.to_string());
        }
    }
    Ok(out)
}

fn restore_inner(
    conn: &Connection,
    src: &str,
    guard: &Guard,
    check_foreign_keys: bool,
) -> Result<(), Refused> {
    let theirs = objects(conn, src)?;
    if let Some(v) = theirs.iter().find(|o| {
        o.sql.as_deref().is_some_and(|s| {
            s.trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE VIRTUAL")
        })
    }) {
        return Err(Refused::Load(format!(
            "the file holds virtual table {:?}, which /db/load does not restore; load an SQL \
             dump instead",
            v.name
        )));
    }
    for o in objects(conn, "main")? {
        if is_internal(&o.name) {
            continue;
        }
        match o.kind.as_str() {
            "view" => {
                conn.execute_batch(&format!("DROP VIEW IF EXISTS main.{}", ident(&o.name)))?
            }
            "table" => {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS main.{}", ident(&o.name)))?
            }
            _ => {}
        }
    }
    let user = |sql: &str| -> Result<(), Refused> {
        guard.clear();
        guard.set_user(true);
        let r = conn.execute_batch(sql);
        guard.set_user(false);
        r.map_err(|e| match Refused::from(e) {
            Refused::Load(m) => Refused::Load(crate::sqlite::authorizer::explain(m, guard)),
            other => other,
        })
    };
    let tables: Vec<&Object> = theirs
        .iter()
        .filter(|o| o.kind == "table" && !is_internal(&o.name))
        .collect();
    for t in &tables {
        let Some(sql) = &t.sql else { continue };
        user(sql)?;
        let cols = copy_columns(conn, src, &t.name)?.join(", ");
        user(&format!(
            "INSERT INTO main.{name} ({cols}) SELECT {cols} FROM {src}.{name}",
            name = ident(&t.name),
            src = ident(src),
        ))?;
    }
    let has_seq = |schema: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {}.sqlite_master WHERE name = 'sqlite_sequence')",
                ident(schema)
            ),
            [],
            |r| r.get(0),
        )
    };
    if has_seq("main")? {
        user("DELETE FROM main.sqlite_sequence")?;
        if has_seq(src)? {
            user(&format!(
                "INSERT INTO main.sqlite_sequence (name, seq) SELECT name, seq FROM {}.sqlite_sequence",
                ident(src)
            ))?;
        }
    }
    for o in &theirs {
        let later = matches!(o.kind.as_str(), "index" | "view" | "trigger");
        if !later || is_internal(&o.name) || is_internal(&o.table) {
            continue;
        }
        if let Some(sql) = &o.sql {
            user(sql)?;
        }
    }
    if check_foreign_keys {
        let mut stmt = conn.prepare("PRAGMA main.foreign_key_check")?;
        let mut rows = stmt.query([])?;
        if let Some(row) = rows.next()? {
            let table: String = row.get(0)?;
            return Err(Refused::Load(format!(
                "the file's rows violate a foreign key (table {table:?}); with foreign_keys on, \
                 fix the data or run PRAGMA foreign_keys = OFF first"
            )));
        }
    }
    Ok(())
}

/// Restores the database attached as `src` into `main`, inside the caller's transaction.
/// `Ok(None)` when done, `Ok(Some(reason))` when the load is refused (nothing changed; the
/// same on every replica).
///
/// # Errors
///
/// SQLite's error on a fault of this node's storage: the caller fails the whole batch.
pub(crate) fn restore(
    conn: &Connection,
    src: &str,
    guard: &Guard,
    check_foreign_keys: bool,
) -> rusqlite::Result<Option<String>> {
    conn.execute_batch("SAVEPOINT webfarm_load")?;
    match restore_inner(conn, src, guard, check_foreign_keys) {
        Ok(()) => {
            conn.execute_batch("RELEASE webfarm_load")?;
            Ok(None)
        }
        Err(Refused::Load(m)) => {
            conn.execute_batch("ROLLBACK TO webfarm_load; RELEASE webfarm_load")?;
            Ok(Some(format!("load refused: {m}")))
        }
        Err(Refused::Storage(e)) => Err(e),
    }
}
