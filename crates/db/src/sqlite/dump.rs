//! SQL text dumps (`/db/backup?fmt=sql`), reading them back (`/db/load` of a dump), and
//! checking an uploaded SQLite file (`/db/load` of a file).
//!
//! The dump has the shape of the `sqlite3` shell's `.dump`: `PRAGMA foreign_keys=OFF;`,
//! `BEGIN TRANSACTION;`, each table's `CREATE` and one `INSERT` per row, `sqlite_sequence`,
//! then indexes, views and triggers, and `COMMIT;`. webfarm's `_webfarm_raft` is left out.
//!
//! A dump is split into statements by SQLite itself: each statement is prepared in turn on a
//! scratch in-memory database where the schema statements are also run (so the next
//! statement that names a new table prepares), which both validates the dump before anything
//! is proposed and finds the exact statement boundaries, triggers' `BEGIN ... END` included.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, OpenFlags};

use crate::sqlite::applied::RECORD_TABLE;
use crate::sqlite::load::ident;

/// The first 16 bytes of every SQLite database file.
pub(crate) const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether `bytes` start like a SQLite database file.
pub(crate) fn is_sqlite(bytes: &[u8]) -> bool {
    bytes.starts_with(SQLITE_HEADER)
}

/// A SQL literal of `v`, as `sqlite3 .dump` writes it.
fn literal(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.is_nan() => "NULL".into(),
        ValueRef::Real(f) if f.is_infinite() => if f > 0.0 { "1e999" } else { "-1e999" }.into(),
        // Debug keeps a '.' or an exponent, and round-trips exactly.
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
        ValueRef::Blob(b) => {
            let mut s = String::with_capacity(3 + 2 * b.len());
            s.push_str("X'");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s.push('\'');
            s
        }
    }
}

fn keep(name: &str, tables: Option<&[String]>) -> bool {
    if name.eq_ignore_ascii_case(RECORD_TABLE) || name.to_ascii_lowercase().starts_with("sqlite_") {
        return false;
    }
    tables.is_none_or(|t| t.iter().any(|x| x == name))
}

/// The SQL text dump of the database open on `conn`; with `tables`, only those tables
/// (and their indexes and triggers). Runs in one read transaction, so it is consistent.
///
/// # Errors
///
/// SQLite's error.
pub(crate) fn dump_sql(conn: &Connection, tables: Option<&[String]>) -> rusqlite::Result<String> {
    conn.execute_batch("BEGIN")?;
    let out = dump_inner(conn, tables);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn dump_inner(conn: &Connection, tables: Option<&[String]>) -> rusqlite::Result<String> {
    let mut out = String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    let objects: Vec<(String, String, String, Option<String>)> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name, _, sql) in &objects {
        let (Some(sql), true) = (sql, kind == "table" && keep(name, tables)) else {
            continue;
        };
        out.push_str(sql);
        out.push_str(";\n");
        let mut stmt = conn.prepare(&format!("SELECT * FROM {}", ident(name)))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let values: Vec<String> = (0..n)
                .map(|i| row.get_ref(i).map(literal))
                .collect::<rusqlite::Result<_>>()?;
            out.push_str(&format!(
                "INSERT INTO {} VALUES({});\n",
                ident(name),
                values.join(",")
            ));
        }
    }
    if objects.iter().any(|o| o.1 == "sqlite_sequence") {
        out.push_str("DELETE FROM sqlite_sequence;\n");
        let mut stmt = conn.prepare("SELECT name, seq FROM sqlite_sequence")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if keep(&name, tables) {
                out.push_str(&format!(
                    "INSERT INTO sqlite_sequence VALUES({},{});\n",
                    literal(ValueRef::Text(name.as_bytes())),
                    literal(row.get_ref(1)?)
                ));
            }
        }
    }
    for (kind, name, table, sql) in &objects {
        let later = matches!(kind.as_str(), "index" | "trigger" | "view");
        let wanted = if kind == "view" {
            keep(name, tables)
        } else {
            keep(table, tables)
        };
        if let (true, true, Some(sql)) = (later, wanted, sql) {
            out.push_str(sql);
            out.push_str(";\n");
        }
    }
    out.push_str("COMMIT;\n");
    Ok(out)
}

/// Why a `/db/load` body cannot be loaded (a 400 answer).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// Neither a SQLite file nor UTF-8 text.
    #[error("the body is neither a SQLite database file nor UTF-8 SQL text")]
    NotText,
    /// The scratch database that checks a dump cannot be opened.
    #[error("{0}")]
    Scratch(#[source] rusqlite::Error),
    /// A statement of the dump does not prepare.
    #[error("statement {index} of the dump does not prepare: {message}")]
    DoesNotPrepare {
        /// Its position, from 1.
        index: usize,
        /// SQLite's message.
        message: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement of the dump cannot be read back from SQLite.
    #[error("statement {0} of the dump is too long to read back")]
    TooLong(usize),
    /// A schema statement of the dump fails on the scratch database.
    #[error("statement {index} of the dump fails: {message}")]
    Fails {
        /// Its position, from 1.
        index: usize,
        /// SQLite's message.
        message: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The dump holds nothing to run.
    #[error("the dump holds no statement")]
    Empty,
    /// The uploaded file cannot be written to the scratch file that checks it.
    #[error("{}: {source}", path.display())]
    ScratchFile {
        /// The scratch file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The uploaded file does not open as SQLite.
    #[error("the file does not open as a SQLite database: {0}")]
    NotSqlite(#[source] rusqlite::Error),
    /// The uploaded file opens but cannot be read.
    #[error("the file is not a usable SQLite database: {0}")]
    Unusable(#[source] rusqlite::Error),
    /// `PRAGMA quick_check` finds damage.
    #[error("the SQLite file is damaged (quick_check: {0})")]
    Damaged(String),
    /// The file holds a virtual table, which a file load does not restore.
    #[error(
        "the file holds virtual table {0:?}, which /db/load does not restore from a SQLite \
         file; load an SQL dump instead"
    )]
    VirtualTable(String),
}

/// The statements of an SQL dump, without its transaction control (`BEGIN`, `COMMIT`...;
/// a load runs as one transaction of its own).
///
/// # Errors
///
/// [`LoadError`] naming the first statement that does not prepare, and why.
pub(crate) fn split_dump(text: &str) -> Result<Vec<String>, LoadError> {
    let scratch = Connection::open_in_memory().map_err(LoadError::Scratch)?;
    let schema = Arc::new(AtomicBool::new(false));
    let control = Arc::new(AtomicBool::new(false));
    let (s, c) = (Arc::clone(&schema), Arc::clone(&control));
    scratch.authorizer(Some(move |ctx: AuthContext<'_>| {
        match ctx.action {
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
                c.store(true, Ordering::SeqCst);
            }
            AuthAction::CreateTable { .. }
            | AuthAction::CreateIndex { .. }
            | AuthAction::CreateView { .. }
            | AuthAction::CreateTrigger { .. }
            | AuthAction::DropTable { .. }
            | AuthAction::DropIndex { .. }
            | AuthAction::DropView { .. }
            | AuthAction::DropTrigger { .. }
            | AuthAction::AlterTable { .. } => s.store(true, Ordering::SeqCst),
            _ => {}
        }
        Authorization::Allow
    }));
    let mut batch = Batch::new(&scratch, text);
    let mut out = Vec::new();
    loop {
        schema.store(false, Ordering::SeqCst);
        control.store(false, Ordering::SeqCst);
        let next = batch.next().map_err(|source| LoadError::DoesNotPrepare {
            index: out.len() + 1,
            message: crate::sqlite::sql::sqlite_message(&source),
            source,
        })?;
        let Some(mut stmt) = next else { break };
        if control.load(Ordering::SeqCst) {
            continue;
        }
        let sql = stmt
            .expanded_sql()
            .ok_or(LoadError::TooLong(out.len() + 1))?;
        let sql = sql.trim().trim_end_matches(';').trim_end().to_string();
        if schema.load(Ordering::SeqCst) {
            stmt.raw_execute().map_err(|source| LoadError::Fails {
                index: out.len() + 1,
                message: crate::sqlite::sql::sqlite_message(&source),
                source,
            })?;
        }
        out.push(sql);
    }
    if out.is_empty() {
        return Err(LoadError::Empty);
    }
    Ok(out)
}

/// Checks that `path` is a SQLite database that `/db/load` can restore: it opens, passes
/// `PRAGMA quick_check`, and has no virtual table.
///
/// # Errors
///
/// [`LoadError`]: what is wrong with the file, for a 400 answer.
pub(crate) fn check_sqlite_file(path: &Path) -> Result<(), LoadError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(LoadError::NotSqlite)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(LoadError::Unusable)?;
    if check != "ok" {
        return Err(LoadError::Damaged(check));
    }
    let virtual_table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL%' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(name) = virtual_table {
        return Err(LoadError::VirtualTable(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_reads_back_into_the_same_database() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, s TEXT, r REAL, b BLOB);
             CREATE TABLE _webfarm_raft (id INTEGER);
             CREATE INDEX t_s ON t (s);
             CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
                 UPDATE t SET s = CASE WHEN new.s IS NULL THEN 'none' ELSE new.s END WHERE id = new.id;
             END;
             CREATE VIEW v AS SELECT s FROM t;
             INSERT INTO t (s, r, b) VALUES ('it''s; ok', 1.0, x'00ff'), (NULL, 1e300, NULL);",
        )
        .unwrap();
        let dump = dump_sql(&conn, None).unwrap();
        assert!(
            dump.starts_with("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n"),
            "{dump}"
        );
        assert!(
            dump.contains("INSERT INTO \"t\" VALUES(1,'it''s; ok',1.0,X'00ff');"),
            "{dump}"
        );
        assert!(!dump.contains("_webfarm_raft"));
        let statements = split_dump(&dump).unwrap();
        assert!(statements
            .iter()
            .all(|s| !s.starts_with("BEGIN") && !s.starts_with("COMMIT")));
        assert!(statements
            .iter()
            .any(|s| s.starts_with("CREATE TRIGGER") && s.ends_with("END")));

        let copy = Connection::open_in_memory().unwrap();
        for s in &statements {
            copy.execute_batch(s).unwrap();
        }
        assert_eq!(dump_sql(&copy, None).unwrap(), dump);
        let only = dump_sql(&conn, Some(&["nope".to_string()])).unwrap();
        assert!(!only.contains("CREATE TABLE"), "{only}");
    }

    #[test]
    fn a_bad_dump_names_its_statement() {
        let e = split_dump("CREATE TABLE a (x);\nINSERT INTO b VALUES (1);").unwrap_err();
        assert_eq!(
            e.to_string(),
            "statement 2 of the dump does not prepare: no such table: b"
        );
        assert!(split_dump("  -- nothing\n").is_err());
    }
}
