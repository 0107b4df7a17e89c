//! Applying committed log entries to the user's database: the one write connection, and a
//! plain function of (database, entries) that every replica and recovery runs.
//!
//! Entries are applied in as few SQLite transactions as possible; the connection's
//! [`Applied`] state (last applied log id, membership, `foreign_keys`) moves only when one
//! commits, so it always describes what the file holds (see [`crate::sqlite::applied`] for how it
//! survives a restart without a table in the user's schema). An entry ends the current
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
use rusqlite::Connection;

use crate::command::{request_seed, Command, CommandResponse, Request, SqlRequest};
use crate::sqlite::applied::{take_record, Applied};
use crate::sqlite::authorizer::Guard;
use crate::sqlite::determinism::Determinism;
use crate::sqlite::sql::{self, RunOpts};
use crate::types::{NodeInfo, Outcome, SqlStatement, StatementResult, TypeConfig};

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
    /// What the database holds: moves when a transaction of entries commits.
    applied: Applied,
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
    /// deterministic functions, the authorizer, and the `foreign_keys` setting. A file that
    /// carries its own record (a restored snapshot, a database of an older version) is at
    /// that state: the record is moved out of the file and returned, and the connection
    /// starts from it; otherwise from nothing applied, until [`WriteConn::set_applied`].
    ///
    /// # Errors
    ///
    /// SQLite's error: not a database, corrupted, not writable...
    pub(crate) fn open(path: &Path) -> rusqlite::Result<(WriteConn, Option<Applied>)> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The Raft log is the durable record: a lost tail of db.sqlite is re-applied from it.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let record = take_record(&conn)?;
        let det = Determinism::install(&conn)?;
        let guard = Guard::default();
        guard.install(&conn);
        let mut w = WriteConn {
            conn,
            det,
            guard,
            dir: path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
            applied: Applied::default(),
        };
        w.set_applied(record.clone().unwrap_or_default())?;
        Ok((w, record))
    }

    /// What the database holds.
    pub(crate) fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Declares what the database holds (known from elsewhere: a clean close), and sets the
    /// connection's `foreign_keys` accordingly.
    ///
    /// # Errors
    ///
    /// SQLite's error when the pragma cannot be set.
    pub(crate) fn set_applied(&mut self, applied: Applied) -> rusqlite::Result<()> {
        self.applied = applied;
        self.sync_foreign_keys()
    }

    /// The raw connection (checkpoints, snapshot copies).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Whether foreign keys are enforced now (as recorded in the database).
    pub(crate) fn foreign_keys(&self) -> rusqlite::Result<bool> {
        self.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))
    }

    /// Sets the connection's `foreign_keys` to the value the applied entries set.
    fn sync_foreign_keys(&self) -> rusqlite::Result<()> {
        let want = self.applied.foreign_keys;
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
    pub(crate) fn apply_entries(
        &mut self,
        entries: &[Entry],
    ) -> rusqlite::Result<(Vec<CommandResponse>, Option<LogId<u64>>)> {
        if entries.is_empty() {
            return Ok((Vec::new(), None));
        }
        let mut responses = Vec::with_capacity(entries.len());
        let mut start = 0;
        while start < entries.len() {
            start += self.apply_chunk(&entries[start..], &mut responses)?;
        }
        Ok((responses, entries.last().map(|e| e.log_id)))
    }

    /// Applies a prefix of `entries` in one transaction; returns its length.
    fn apply_chunk(
        &mut self,
        entries: &[Entry],
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
        let result = self.in_transaction(entries, load, check_fk, &refused);
        let synced = self.sync_foreign_keys();
        let detached = self.detach_loads(&attached);
        let (n, chunk) = result?;
        synced?;
        detached?;
        responses.extend(chunk);
        Ok(n)
    }

    /// Applies a prefix of `entries` in one transaction; `self.applied` moves to its last
    /// entry only once the transaction committed.
    fn in_transaction(
        &mut self,
        entries: &[Entry],
        load: bool,
        check_fk: bool,
        refused: &[(usize, String)],
    ) -> rusqlite::Result<(usize, Vec<CommandResponse>)> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut next = self.applied.clone();
        let result = (|| {
            let mut chunk = Vec::new();
            for entry in entries {
                if !chunk.is_empty() && (load || has_load(entry)) {
                    break;
                }
                let (response, fk_set) = match &entry.payload {
                    EntryPayload::Blank => (CommandResponse::default(), None),
                    EntryPayload::Normal(cmd) => {
                        self.apply_command(entry.log_id.index, cmd, check_fk, refused)?
                    }
                    EntryPayload::Membership(m) => {
                        next.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        (CommandResponse::default(), None)
                    }
                };
                chunk.push(response);
                if let Some(fk) = fk_set {
                    next.foreign_keys = fk;
                    break;
                }
            }
            next.last_log_id = Some(entries[chunk.len() - 1].log_id);
            Ok(chunk)
        })();
        match result {
            Ok(chunk) => {
                self.conn.execute_batch("COMMIT")?;
                self.applied = next;
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

    /// Applies the requests of one entry; also gives the `foreign_keys` value one of them
    /// set, if any.
    fn apply_command(
        &self,
        index: u64,
        cmd: &Command,
        check_fk: bool,
        refused: &[(usize, String)],
    ) -> rusqlite::Result<(CommandResponse, Option<bool>)> {
        let mut results = Vec::with_capacity(cmd.requests.len());
        let mut fk_set = None;
        for (r, request) in cmd.requests.iter().enumerate() {
            match request {
                Request::Sql(req) => {
                    let seed = request_seed(cmd.seed, r);
                    let (outcomes, fk) = apply(self, req, cmd.time_ms, seed)?;
                    fk_set = fk.or(fk_set);
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
        Ok((CommandResponse { results }, fk_set))
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

    /// Runs statement `index` of a request as user SQL. Returns its outcome, and the
    /// `foreign_keys` value it set, if it ran a `PRAGMA foreign_keys = v` successfully.
    fn run_user(
        &self,
        st: &SqlStatement,
        index: usize,
        opts: RunOpts,
        time_ms: i64,
        seed: u64,
    ) -> rusqlite::Result<(Outcome, Option<bool>)> {
        self.det.begin_statement(time_ms, seed, index);
        self.guard.clear();
        self.guard.set_user(true);
        let out = sql::run(&self.conn, st, opts);
        self.guard.set_user(false);
        let mut out = out?;
        let mut fk = None;
        match &mut out.result {
            StatementResult::Error(m) => {
                *m = crate::sqlite::authorizer::explain(std::mem::take(m), &self.guard)
            }
            _ => fk = self.guard.take_foreign_keys(),
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

/// Applies one SQL request inside the caller's open transaction; also gives the
/// `foreign_keys` value it set, if a statement that stayed applied set one.
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
) -> rusqlite::Result<(Vec<Outcome>, Option<bool>)> {
    let conn = &w.conn;
    let opts = RunOpts {
        want_rows: req.want_rows,
        read_only: req.read_only,
        blob_array: req.blob_array,
        cached: false,
    };
    let mut out = Vec::with_capacity(req.statements.len());
    let mut fk_set = None;
    if req.transaction {
        conn.execute_batch("SAVEPOINT webfarm_tx")?;
        for (i, st) in req.statements.iter().enumerate() {
            let (r, fk) = w.run_user(st, i, opts, time_ms, seed)?;
            fk_set = fk.or(fk_set);
            let failed = matches!(r.result, StatementResult::Error(_));
            out.push(r);
            if failed {
                conn.execute_batch("ROLLBACK TO webfarm_tx")?;
                // Nothing of the request stays, its pragma neither.
                fk_set = None;
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
                fk_set = fk.or(fk_set);
            }
            conn.execute_batch("RELEASE webfarm_st")?;
            out.push(r);
        }
    }
    Ok((out, fk_set))
}

#[cfg(test)]
#[path = "apply_tests.rs"]
pub(crate) mod tests;
