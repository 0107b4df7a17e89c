//! Applying log entries to the user's SQLite database (the state machine's data).
//!
//! [`apply`] is a plain function of (write connection, command): recovery replays it, every
//! replica runs it, and it gives the same result everywhere (see [`crate::determinism`]).
//! [`WriteConn::apply_batch`] wraps a batch of entries in one SQLite transaction that also
//! records the last applied log id and membership in the `_webfarm_raft` table, so a crash
//! never leaves an entry half-applied, nor applied without its log id.
//!
//! A statement's own error (syntax, constraint...) is its result and the batch goes on; a
//! fault of this node's storage (disk full, I/O error, corruption, out of memory, busy...; see
//! [`crate::sql::is_statement_error`]) fails the whole batch, which is rolled back and not
//! recorded as applied: openraft then stops the node with a storage error, and after a restart
//! the entries are applied again from the durable log. Recording the fault as the statement's
//! result instead would leave this replica different from the others for good.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::{EntryPayload, LogId, StoredMembership};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OptionalExtension};

use crate::determinism::Determinism;
use crate::sql;
use crate::types::{Command, CommandResponse, NodeInfo, Outcome, StatementResult, TypeConfig};

/// The table, inside the user's database, that records what was applied.
pub(crate) const META_TABLE: &str = "_webfarm_raft";

/// The last applied log id and the last applied membership.
pub(crate) type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, NodeInfo>);

/// The one connection that writes the user's database, with the deterministic overrides and
/// the authorizer that keeps user SQL inside its statement.
pub(crate) struct WriteConn {
    conn: Connection,
    det: Arc<Determinism>,
    /// True while a user statement is prepared or runs: the authorizer is strict then.
    user: Arc<AtomicBool>,
}

impl std::fmt::Debug for WriteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteConn").finish_non_exhaustive()
    }
}

/// Pragmas user SQL may not run on a connection we manage: they would change the journal, let
/// user SQL write the schema, or make later statements fail with errors that look like a
/// storage fault (`max_page_count` gives "database or disk is full", `hard_heap_limit` "out of
/// memory", the directory pragmas "unable to open").
const DENIED_PRAGMAS: [&str; 8] = [
    "journal_mode",
    "locking_mode",
    "writable_schema",
    "query_only",
    "max_page_count",
    "hard_heap_limit",
    "temp_store_directory",
    "data_store_directory",
];

/// Refuses what user SQL must not do on a connection we manage: end or nest our transaction,
/// attach other files, touch the `_webfarm_raft` table, run one of [`DENIED_PRAGMAS`].
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Attach { .. }
        | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
            if table_name.eq_ignore_ascii_case(META_TABLE) =>
        {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. }
            if DENIED_PRAGMAS
                .iter()
                .any(|p| pragma_name.eq_ignore_ascii_case(p)) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Installs [`authorize`] on a read connection (always strict).
pub(crate) fn guard_reader(conn: &Connection) {
    conn.authorizer(Some(authorize));
}

impl WriteConn {
    /// Opens (or creates) the user's database at `path` in WAL mode and prepares it.
    ///
    /// # Errors
    ///
    /// SQLite's error: not a database, corrupted, not writable...
    pub(crate) fn open(path: &Path) -> rusqlite::Result<WriteConn> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The Raft log is the durable record: a lost tail of db.sqlite is re-applied from it.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {META_TABLE} (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 last_applied TEXT,
                 last_membership TEXT
             );
             INSERT OR IGNORE INTO {META_TABLE} (id) VALUES (1);"
        ))?;
        let det = Determinism::install(&conn)?;
        let user = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&user);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if flag.load(Ordering::SeqCst) {
                authorize(ctx)
            } else {
                Authorization::Allow
            }
        }));
        Ok(WriteConn { conn, det, user })
    }

    /// The raw connection (checkpoints, snapshot copies).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Applies `entries` in one transaction and records the last one as applied.
    ///
    /// # Errors
    ///
    /// SQLite's error when the transaction or a statement fails for a reason of this node's
    /// storage (disk full, I/O error...): nothing of the batch is kept. A statement's own
    /// error is part of its [`Outcome`] instead.
    pub(crate) fn apply_batch(
        &mut self,
        entries: &[openraft::Entry<TypeConfig>],
    ) -> rusqlite::Result<(Vec<CommandResponse>, Option<LogId<u64>>)> {
        if entries.is_empty() {
            return Ok((Vec::new(), None));
        }
        let (_, mut membership) = read_applied(&self.conn)?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut responses = Vec::with_capacity(entries.len());
            for entry in entries {
                match &entry.payload {
                    EntryPayload::Blank => responses.push(CommandResponse::default()),
                    EntryPayload::Normal(cmd) => responses.push(CommandResponse {
                        results: apply(self, cmd)?,
                    }),
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        responses.push(CommandResponse::default());
                    }
                }
            }
            let last = entries.last().map(|e| e.log_id);
            write_applied(&self.conn, &last, &membership)?;
            Ok((responses, last))
        })();
        match result {
            Ok(r) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(r)
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    fn run_user(&self, cmd: &Command, index: usize) -> rusqlite::Result<Outcome> {
        let st = &cmd.statements[index];
        self.det.begin_statement(cmd.time_ms, cmd.seed, index);
        self.user.store(true, Ordering::SeqCst);
        let out = sql::run(&self.conn, st, cmd.want_rows, false);
        self.user.store(false, Ordering::SeqCst);
        out
    }
}

/// Applies one command inside the caller's open transaction.
///
/// With `transaction`, the statements run in one savepoint: the first error rolls back all of
/// them, and the results end with that error (as rqlite does). Without it, each statement runs
/// in its own savepoint: a failing one leaves no trace and gets its error in its slot, the
/// others apply.
///
/// # Errors
///
/// SQLite's error when a savepoint cannot be set or released, or a statement failed for a
/// reason of this node's storage (the caller rolls back the whole batch).
pub(crate) fn apply(w: &WriteConn, cmd: &Command) -> rusqlite::Result<Vec<Outcome>> {
    let conn = &w.conn;
    let mut out = Vec::with_capacity(cmd.statements.len());
    if cmd.transaction {
        conn.execute_batch("SAVEPOINT webfarm_tx")?;
        for i in 0..cmd.statements.len() {
            let r = w.run_user(cmd, i)?;
            let failed = matches!(r.result, StatementResult::Error(_));
            out.push(r);
            if failed {
                conn.execute_batch("ROLLBACK TO webfarm_tx")?;
                break;
            }
        }
        conn.execute_batch("RELEASE webfarm_tx")?;
    } else {
        for i in 0..cmd.statements.len() {
            conn.execute_batch("SAVEPOINT webfarm_st")?;
            let r = w.run_user(cmd, i)?;
            if matches!(r.result, StatementResult::Error(_)) {
                conn.execute_batch("ROLLBACK TO webfarm_st")?;
            }
            conn.execute_batch("RELEASE webfarm_st")?;
            out.push(r);
        }
    }
    Ok(out)
}

/// Reads the applied state recorded in a database.
///
/// # Errors
///
/// SQLite's error, or a message when the recorded JSON is unreadable.
pub(crate) fn read_applied(conn: &Connection) -> rusqlite::Result<AppliedState> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .query_row(
            &format!("SELECT last_applied, last_membership FROM {META_TABLE} WHERE id = 1"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (applied, membership) = row.unwrap_or((None, None));
    let bad = |what: &str, e: serde_json::Error| {
        rusqlite::Error::ToSqlConversionFailure(
            format!("{META_TABLE}.{what} is not valid JSON: {e}").into(),
        )
    };
    let applied = match applied {
        Some(s) => serde_json::from_str(&s).map_err(|e| bad("last_applied", e))?,
        None => None,
    };
    let membership = match membership {
        Some(s) => serde_json::from_str(&s).map_err(|e| bad("last_membership", e))?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn write_applied(
    conn: &Connection,
    applied: &Option<LogId<u64>>,
    membership: &StoredMembership<u64, NodeInfo>,
) -> rusqlite::Result<()> {
    let enc = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let applied = match applied {
        Some(id) => Some(serde_json::to_string(id).map_err(enc)?),
        None => None,
    };
    let membership = serde_json::to_string(membership).map_err(enc)?;
    conn.execute(
        &format!("UPDATE {META_TABLE} SET last_applied = ?1, last_membership = ?2 WHERE id = 1"),
        rusqlite::params![applied, membership],
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{Params, SqlStatement};
    use openraft::{CommittedLeaderId, Entry};

    /// A normal entry at `index` (term 1) with `sql`, one statement each.
    pub(crate) fn entry(index: u64, sql: &[&str]) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                statements: sql
                    .iter()
                    .map(|s| SqlStatement {
                        sql: (*s).to_string(),
                        params: Params::None,
                    })
                    .collect(),
                transaction: false,
                time_ms: 0,
                seed: 1,
                want_rows: false,
            }),
        }
    }

    /// A directory of its own under the system temp dir, removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn temp_dir(what: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("webfarm-db-unit-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    #[test]
    fn a_storage_fault_rolls_the_whole_batch_back() {
        let dir = temp_dir("fault");
        let mut w = WriteConn::open(&dir.0.join("db.sqlite")).unwrap();
        let (r, last) = w
            .apply_batch(&[entry(
                1,
                &["CREATE TABLE t (v TEXT)", "INSERT INTO nope VALUES (1)"],
            )])
            .unwrap();
        assert_eq!(last.map(|l| l.index), Some(1));
        // A statement's own error is its result, and the batch is recorded.
        assert_eq!(
            r[0].results[1].result,
            StatementResult::Error("no such table: nope".into())
        );

        // The file may not grow any more, as on a full disk.
        let pages: i64 = w
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        w.conn()
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let big = format!("INSERT INTO t VALUES ('{}')", "x".repeat(200_000));
        let e = w
            .apply_batch(&[
                entry(2, &["INSERT INTO t VALUES ('small')"]),
                entry(3, &[&big]),
            ])
            .expect_err("a full disk fails the batch");
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull));
        let (applied, _) = read_applied(w.conn()).unwrap();
        assert_eq!(applied.map(|l| l.index), Some(1), "not recorded as applied");
        let n: i64 = w
            .conn()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "entry 2 was rolled back with the batch");
        assert!(w.conn().is_autocommit(), "no transaction left open");
    }

    #[test]
    fn user_sql_cannot_fake_a_storage_fault() {
        let dir = temp_dir("pragmas");
        let mut w = WriteConn::open(&dir.0.join("db.sqlite")).unwrap();
        let target = dir.0.join("no-such-dir").join("copy.db");
        let vacuum = format!("VACUUM INTO '{}'", target.display());
        let (r, _) = w
            .apply_batch(&[entry(
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
        for out in &r[0].results[..4] {
            assert!(
                matches!(out.result, StatementResult::Error(_)),
                "{:?}",
                out.result
            );
        }
        assert!(matches!(
            r[0].results[4].result,
            StatementResult::Write { .. }
        ));
    }
}
