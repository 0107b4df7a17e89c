//! What a node's database has applied, and where that is recorded outside the user's schema.
//!
//! [`Applied`] is the last applied log id, the last applied membership and the `foreign_keys`
//! setting. While the node runs it lives in memory, beside the write connection, and moves
//! only when a transaction of applied entries commits. It is written down in two places, each
//! describing a file whose content cannot change afterwards:
//!
//! - **A snapshot file** carries it in its own `_webfarm_raft` table ([`write_record`]). A
//!   database restored from a snapshot (at start, or when the leader sends one) is at exactly
//!   that state; the table is moved out ([`take_record`]) before the database is used, so the
//!   user's database never shows it. A database of an older webfarm, which kept the table in
//!   the user's file and updated it in each applied transaction, is read the same way once
//!   and left without it.
//! - **The clean-close record** (`db.closed.json`, [`write_clean_close`]): at a graceful
//!   stop, once the WAL is folded into `db.sqlite` and the file synced, the state and the
//!   file's size and modification time. The next start takes it ([`take_clean_close`]: read,
//!   then removed durably before anything is applied) and trusts it only when the file is
//!   still the one described.
//!
//! A start that finds neither (the process was killed, the machine lost power, a storage
//! fault stopped the node) cannot know what `db.sqlite` holds, so the store rebuilds it from
//! the current snapshot (or from nothing) and openraft applies the log after it again: no
//! entry is applied twice, none half (see the crate's `DESIGN.md`).

use std::fs;
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use openraft::{LogId, StoredMembership};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::types::NodeInfo;

/// The table that carries [`Applied`] in a snapshot file (and in databases of older
/// versions). User SQL may not create or change a table of this name.
pub(crate) const RECORD_TABLE: &str = "_webfarm_raft";

/// The name of the clean-close record in a node's data directory.
pub(crate) const CLEAN_CLOSE_FILE: &str = "db.closed.json";

/// What a database has applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The last applied log id; `None` before any entry.
    pub(crate) last_log_id: Option<LogId<u64>>,
    /// The last applied membership.
    pub(crate) membership: StoredMembership<u64, NodeInfo>,
    /// Whether foreign keys are enforced (`PRAGMA foreign_keys`, set through the log).
    pub(crate) foreign_keys: bool,
}

fn bad_json(what: &str, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(
        format!("{RECORD_TABLE}.{what} is not valid JSON: {e}").into(),
    )
}

/// The record a database file carries in its `_webfarm_raft` table; `None` when it has none.
///
/// # Errors
///
/// SQLite's error, or a message when the recorded JSON is unreadable.
pub(crate) fn read_record(conn: &Connection) -> rusqlite::Result<Option<Applied>> {
    let columns: Vec<String> = {
        let mut stmt = conn.prepare(&format!(
            "SELECT name FROM pragma_table_info('{RECORD_TABLE}')"
        ))?;
        let names = stmt.query_map([], |r| r.get(0))?;
        names.collect::<rusqlite::Result<_>>()?
    };
    if columns.is_empty() {
        return Ok(None);
    }
    // The first versions had no `foreign_keys` column.
    let fk = if columns.iter().any(|c| c == "foreign_keys") {
        "foreign_keys"
    } else {
        "0"
    };
    let row: Option<(Option<String>, Option<String>, bool)> = conn
        .query_row(
            &format!("SELECT last_applied, last_membership, {fk} FROM {RECORD_TABLE} WHERE id = 1"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (last, membership, foreign_keys) = row.unwrap_or((None, None, false));
    Ok(Some(Applied {
        last_log_id: match last {
            Some(s) => serde_json::from_str(&s).map_err(|e| bad_json("last_applied", e))?,
            None => None,
        },
        membership: match membership {
            Some(s) => serde_json::from_str(&s).map_err(|e| bad_json("last_membership", e))?,
            None => StoredMembership::default(),
        },
        foreign_keys,
    }))
}

/// Moves the record out of a database: reads it and drops its table, in one transaction.
///
/// # Errors
///
/// SQLite's error, or a message when the recorded JSON is unreadable.
pub(crate) fn take_record(conn: &Connection) -> rusqlite::Result<Option<Applied>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let taken = read_record(conn).and_then(|record| {
        if record.is_some() {
            conn.execute_batch(&format!("DROP TABLE {RECORD_TABLE}"))?;
        }
        Ok(record)
    });
    match taken {
        Ok(record) => {
            conn.execute_batch("COMMIT")?;
            Ok(record)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Writes `applied` into a snapshot file as its `_webfarm_raft` table.
///
/// # Errors
///
/// SQLite's error.
pub(crate) fn write_record(conn: &Connection, applied: &Applied) -> rusqlite::Result<()> {
    let enc = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let last = match &applied.last_log_id {
        Some(id) => Some(serde_json::to_string(id).map_err(enc)?),
        None => None,
    };
    let membership = serde_json::to_string(&applied.membership).map_err(enc)?;
    conn.execute_batch(&format!(
        "CREATE TABLE {RECORD_TABLE} (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             last_applied TEXT,
             last_membership TEXT,
             foreign_keys INTEGER NOT NULL DEFAULT 0
         )"
    ))?;
    conn.execute(
        &format!(
            "INSERT INTO {RECORD_TABLE} (id, last_applied, last_membership, foreign_keys) \
             VALUES (1, ?1, ?2, ?3)"
        ),
        rusqlite::params![last, membership, applied.foreign_keys],
    )?;
    Ok(())
}

/// The clean-close record: the state of a closed `db.sqlite`, and which file that was.
#[derive(Debug, Serialize, Deserialize)]
struct CleanClose {
    applied: Applied,
    /// The file's length in bytes.
    size: u64,
    /// The file's modification time, nanoseconds since the Unix epoch.
    modified_ns: u128,
}

/// The length and modification time of a file.
fn fingerprint(path: &Path) -> io::Result<(u64, u128)> {
    let meta = fs::metadata(path)?;
    let modified = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), modified))
}

/// Records that `db` (closed, its WAL folded in) holds `applied`: syncs the file, then writes
/// `record` (written to a temporary file, synced, renamed, directory synced).
///
/// # Errors
///
/// The I/O error; then no record is left and the next start rebuilds the database.
pub(crate) fn write_clean_close(record: &Path, db: &Path, applied: &Applied) -> io::Result<()> {
    fs::File::open(db)?.sync_all()?;
    let (size, modified_ns) = fingerprint(db)?;
    let json = serde_json::to_vec_pretty(&CleanClose {
        applied: applied.clone(),
        size,
        modified_ns,
    })
    .map_err(io::Error::other)?;
    let mut tmp = record.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    crate::sqlite::snapshot::write_synced(&tmp, &json)?;
    fs::rename(&tmp, record)?;
    if let Some(dir) = record.parent() {
        crate::sqlite::snapshot::sync_dir(dir)?;
    }
    Ok(())
}

/// Takes the clean-close record, if there is one: reads it and removes it durably, so that
/// entries applied from now on can never be mistaken for a cleanly closed state. Returns the
/// recorded state when `db` is still the file it describes (and its WAL is empty).
///
/// # Errors
///
/// The I/O error when the record cannot be read or removed (then the node must not start: a
/// later crash would find a record that no longer describes the file).
pub(crate) fn take_clean_close(record: &Path, db: &Path) -> io::Result<Option<Applied>> {
    let text = match fs::read(record) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    fs::remove_file(record)?;
    if let Some(dir) = record.parent() {
        crate::sqlite::snapshot::sync_dir(dir)?;
    }
    let Ok(clean) = serde_json::from_slice::<CleanClose>(&text) else {
        tracing::warn!(record = %record.display(), "unreadable clean-close record; ignored");
        return Ok(None);
    };
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal_empty = fs::metadata(&wal).map_or(true, |m| m.len() == 0);
    match fingerprint(db) {
        Ok(f) if wal_empty && f == (clean.size, clean.modified_ns) => Ok(Some(clean.applied)),
        _ => {
            tracing::warn!(
                db = %db.display(),
                "the database changed since it was closed; it is rebuilt"
            );
            Ok(None)
        }
    }
}
