//! Applying committed log entries to the user's database: the one write connection, and a
//! plain function of (database, entries) that every replica and recovery runs.
//!
//! Entries are applied in as few SQLite transactions as possible, each of which also records
//! the last applied log id and membership in the `_webfarm_raft` table, so a crash never
//! leaves an entry half-applied, nor applied without its log id. An entry ends the current
//! transaction early when it changes `foreign_keys` (the pragma only takes effect between
//! transactions: it is set right after the commit, so the next entry sees it on every replica
//! whatever the batching), and an entry that loads a SQLite file gets a transaction of its own
//! (see [`crate::sqlite::load`]).
//!
//! A statement's own error (syntax, constraint...) is its result and the batch goes on; a
//! fault of this node's storage (disk full, I/O error, corruption, out of memory, busy...; see
//! [`crate::sqlite::sql::is_statement_error`]) fails the whole batch, which is rolled back and not
//! recorded as applied: openraft then stops the node with a storage error, and after a restart
//! the entries are applied again from the durable log. Recording the fault as the statement's
//! result instead would leave this replica different from the others for good.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use openraft::{EntryPayload, LogId, StoredMembership};
use rusqlite::{Connection, OptionalExtension};

use crate::command::{request_seed, Command, CommandResponse, Request, SqlRequest};
use crate::sqlite::authorizer::Guard;
use crate::sqlite::determinism::Determinism;
use crate::sqlite::sql::{self, RunOpts};
use crate::types::{NodeInfo, Outcome, SqlStatement, StatementResult, TypeConfig};

/// The table, inside the user's database, that records what was applied.
pub(crate) const META_TABLE: &str = "_webfarm_raft";

/// The last applied log id and the last applied membership.
pub(crate) type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, NodeInfo>);

type Entry = openraft::Entry<TypeConfig>;

/// The one connection that writes the user's database, with the deterministic overrides and
/// the authorizer that keeps user SQL inside its statement.
pub(crate) struct WriteConn {
    conn: Connection,
    det: Arc<Determinism>,
    guard: Guard,
    /// Where the files of `/db/load` entries are written while they are applied.
    dir: PathBuf,
}

impl std::fmt::Debug for WriteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteConn").finish_non_exhaustive()
    }
}

/// Whether `entry` holds a `/db/load` request.
fn has_load(entry: &Entry) -> bool {
    matches!(&entry.payload, EntryPayload::Normal(cmd)
        if cmd.requests.iter().any(|r| matches!(r, Request::Load(_))))
}

impl WriteConn {
    /// Opens (or creates) the user's database at `path` in WAL mode and prepares it: the
    /// `_webfarm_raft` table, the deterministic functions, the authorizer, and the
    /// `foreign_keys` setting recorded in the database.
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
                 last_membership TEXT,
                 foreign_keys INTEGER NOT NULL DEFAULT 0
             );
             INSERT OR IGNORE INTO {META_TABLE} (id) VALUES (1);"
        ))?;
        let has_fk: bool = conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('{META_TABLE}') \
                 WHERE name = 'foreign_keys')"
            ),
            [],
            |r| r.get(0),
        )?;
        if !has_fk {
            conn.execute_batch(&format!(
                "ALTER TABLE {META_TABLE} ADD COLUMN foreign_keys INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
        let det = Determinism::install(&conn)?;
        let guard = Guard::default();
        guard.install(&conn);
        let w = WriteConn {
            conn,
            det,
            guard,
            dir: path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        };
        w.sync_foreign_keys()?;
        Ok(w)
    }

    /// The raw connection (checkpoints, snapshot copies).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Whether foreign keys are enforced now (as recorded in the database).
    pub(crate) fn foreign_keys(&self) -> rusqlite::Result<bool> {
        self.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))
    }

    /// Sets the connection's `foreign_keys` to the value recorded in the database.
    fn sync_foreign_keys(&self) -> rusqlite::Result<()> {
        let want = recorded_foreign_keys(&self.conn)?;
        if self.foreign_keys()? != want {
            self.conn.pragma_update(None, "foreign_keys", want)?;
        }
        Ok(())
    }

    /// Applies `entries` and records the last one as applied.
    ///
    /// # Errors
    ///
    /// SQLite's error when a transaction or a statement fails for a reason of this node's
    /// storage (disk full, I/O error...): the transaction in progress is rolled back (earlier
    /// ones of the batch stay, with their log id). A statement's own error is part of its
    /// [`Outcome`] instead.
    pub(crate) fn apply_batch(
        &mut self,
        entries: &[Entry],
    ) -> rusqlite::Result<(Vec<CommandResponse>, Option<LogId<u64>>)> {
        if entries.is_empty() {
            return Ok((Vec::new(), None));
        }
        let (_, mut membership) = read_applied(&self.conn)?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut start = 0;
        while start < entries.len() {
            start += self.apply_chunk(&entries[start..], &mut membership, &mut responses)?;
        }
        Ok((responses, entries.last().map(|e| e.log_id)))
    }

    /// Applies a prefix of `entries` in one transaction; returns its length.
    fn apply_chunk(
        &mut self,
        entries: &[Entry],
        membership: &mut StoredMembership<u64, NodeInfo>,
        responses: &mut Vec<CommandResponse>,
    ) -> rusqlite::Result<usize> {
        let load = entries.first().is_some_and(has_load);
        let (attached, refused) = if load {
            self.attach_loads(&entries[0])?
        } else {
            (Vec::new(), Vec::new())
        };
        let check_fk = load && self.foreign_keys()?;
        if check_fk {
            self.conn.pragma_update(None, "foreign_keys", false)?;
        }
        let result = self.in_transaction(entries, load, check_fk, &refused, membership);
        let synced = self.sync_foreign_keys();
        let detached = self.detach_loads(&attached);
        let (n, chunk) = result?;
        synced?;
        detached?;
        responses.extend(chunk);
        Ok(n)
    }

    fn in_transaction(
        &mut self,
        entries: &[Entry],
        load: bool,
        check_fk: bool,
        refused: &[(usize, String)],
        membership: &mut StoredMembership<u64, NodeInfo>,
    ) -> rusqlite::Result<(usize, Vec<CommandResponse>)> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut chunk = Vec::new();
            for entry in entries {
                if !chunk.is_empty() && (load || has_load(entry)) {
                    break;
                }
                let (response, fk_changed) = match &entry.payload {
                    EntryPayload::Blank => (CommandResponse::default(), false),
                    EntryPayload::Normal(cmd) => {
                        self.apply_command(entry.log_id.index, cmd, check_fk, refused)?
                    }
                    EntryPayload::Membership(m) => {
                        *membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        (CommandResponse::default(), false)
                    }
                };
                chunk.push(response);
                if fk_changed {
                    break;
                }
            }
            let last = entries[chunk.len() - 1].log_id;
            write_applied(&self.conn, &Some(last), membership)?;
            Ok(chunk)
        })();
        match result {
            Ok(chunk) => {
                self.conn.execute_batch("COMMIT")?;
                Ok((chunk.len(), chunk))
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    /// Applies the requests of one entry; also says whether one of them set `foreign_keys`.
    fn apply_command(
        &self,
        index: u64,
        cmd: &Command,
        check_fk: bool,
        refused: &[(usize, String)],
    ) -> rusqlite::Result<(CommandResponse, bool)> {
        let mut results = Vec::with_capacity(cmd.requests.len());
        let mut fk_changed = false;
        for (r, request) in cmd.requests.iter().enumerate() {
            match request {
                Request::Sql(req) => {
                    let seed = request_seed(cmd.seed, r);
                    let (outcomes, fk) = apply(self, req, cmd.time_ms, seed)?;
                    fk_changed |= fk;
                    results.push(outcomes);
                }
                Request::Load(_) => {
                    let schema = load_schema(index, r);
                    let refused = match refused.iter().find(|(i, _)| *i == r) {
                        Some((_, why)) => Some(format!("load refused: {why}")),
                        None => crate::sqlite::load::restore(
                            &self.conn,
                            &schema,
                            &self.guard,
                            check_fk,
                        )?,
                    };
                    results.push(
                        refused
                            .map(|m| Outcome {
                                result: StatementResult::Error(m),
                                time: 0.0,
                            })
                            .into_iter()
                            .collect(),
                    );
                }
            }
        }
        Ok((CommandResponse { results }, fk_changed))
    }

    /// Writes the files of the load requests of `entry` and attaches them (outside any
    /// transaction); returns what to detach, and the requests refused because their data is
    /// not base64 or not a database (the same on every replica).
    fn attach_loads(&self, entry: &Entry) -> rusqlite::Result<Attached> {
        let EntryPayload::Normal(cmd) = &entry.payload else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut attached = Vec::new();
        let mut refused = Vec::new();
        for (r, request) in cmd.requests.iter().enumerate() {
            let Request::Load(l) = request else { continue };
            let bytes = match base64::engine::general_purpose::STANDARD.decode(&l.sqlite) {
                Ok(b) => b,
                Err(e) => {
                    refused.push((r, format!("the data is not base64: {e}")));
                    continue;
                }
            };
            let path = self
                .dir
                .join(format!("load-{}-{r}.sqlite.tmp", entry.log_id.index));
            std::fs::write(&path, &bytes).map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                    Some(format!("cannot write {}: {e}", path.display())),
                )
            })?;
            let schema = load_schema(entry.log_id.index, r);
            let attach = self.conn.execute(
                &format!(
                    "ATTACH DATABASE ?1 AS {}",
                    crate::sqlite::load::ident(&schema)
                ),
                [path.to_string_lossy()],
            );
            match attach {
                Ok(_) => attached.push((schema, path)),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    let code = e.sqlite_error().map(|f| f.extended_code & 0xff);
                    let about_the_file = matches!(
                        code,
                        Some(rusqlite::ffi::SQLITE_NOTADB | rusqlite::ffi::SQLITE_CORRUPT)
                    );
                    if !(about_the_file || sql::is_statement_error(&e)) {
                        self.detach_loads(&attached)?;
                        return Err(e);
                    }
                    refused.push((r, sql::sqlite_message(&e)));
                }
            }
        }
        Ok((attached, refused))
    }

    fn detach_loads(&self, attached: &[(String, PathBuf)]) -> rusqlite::Result<()> {
        for (schema, path) in attached {
            self.conn.execute_batch(&format!(
                "DETACH DATABASE {}",
                crate::sqlite::load::ident(schema)
            ))?;
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// Runs statement `index` of a request as user SQL. Returns its outcome, and whether it
    /// set `foreign_keys` (then recorded in `_webfarm_raft`).
    fn run_user(
        &self,
        st: &SqlStatement,
        index: usize,
        opts: RunOpts,
        time_ms: i64,
        seed: u64,
    ) -> rusqlite::Result<(Outcome, bool)> {
        self.det.begin_statement(time_ms, seed, index);
        self.guard.clear();
        self.guard.set_user(true);
        let out = sql::run(&self.conn, st, opts);
        self.guard.set_user(false);
        let mut out = out?;
        let mut fk = false;
        match &mut out.result {
            StatementResult::Error(m) => {
                *m = crate::sqlite::authorizer::explain(std::mem::take(m), &self.guard)
            }
            _ => {
                if let Some(v) = self.guard.take_foreign_keys() {
                    self.conn.execute(
                        &format!("UPDATE {META_TABLE} SET foreign_keys = ?1 WHERE id = 1"),
                        [v],
                    )?;
                    fk = true;
                }
            }
        }
        Ok((out, fk))
    }
}

/// The files attached for an entry's loads, and the loads refused before attaching.
type Attached = (Vec<(String, PathBuf)>, Vec<(usize, String)>);

/// The schema name a load request is attached as.
fn load_schema(index: u64, request: usize) -> String {
    format!("webfarm_load_{index}_{request}")
}

/// Applies one SQL request inside the caller's open transaction; also says whether it set
/// `foreign_keys`.
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
pub(crate) fn apply(
    w: &WriteConn,
    req: &SqlRequest,
    time_ms: i64,
    seed: u64,
) -> rusqlite::Result<(Vec<Outcome>, bool)> {
    let conn = &w.conn;
    let opts = RunOpts {
        want_rows: req.want_rows,
        read_only: req.read_only,
        blob_array: req.blob_array,
        cached: false,
    };
    let mut out = Vec::with_capacity(req.statements.len());
    let mut fk_changed = false;
    if req.transaction {
        conn.execute_batch("SAVEPOINT webfarm_tx")?;
        for (i, st) in req.statements.iter().enumerate() {
            let (r, fk) = w.run_user(st, i, opts, time_ms, seed)?;
            fk_changed |= fk;
            let failed = matches!(r.result, StatementResult::Error(_));
            out.push(r);
            if failed {
                conn.execute_batch("ROLLBACK TO webfarm_tx")?;
                break;
            }
        }
        conn.execute_batch("RELEASE webfarm_tx")?;
    } else {
        for (i, st) in req.statements.iter().enumerate() {
            conn.execute_batch("SAVEPOINT webfarm_st")?;
            let (r, fk) = w.run_user(st, i, opts, time_ms, seed)?;
            if matches!(r.result, StatementResult::Error(_)) {
                conn.execute_batch("ROLLBACK TO webfarm_st")?;
            } else {
                fk_changed |= fk;
            }
            conn.execute_batch("RELEASE webfarm_st")?;
            out.push(r);
        }
    }
    Ok((out, fk_changed))
}

/// The `foreign_keys` setting recorded in a database.
///
/// # Errors
///
/// SQLite's error.
pub(crate) fn recorded_foreign_keys(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        &format!("SELECT foreign_keys FROM {META_TABLE} WHERE id = 1"),
        [],
        |r| r.get(0),
    )
    .optional()
    .map(|v| v.unwrap_or(false))
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
#[path = "apply_tests.rs"]
pub(crate) mod tests;
