//! The user's database of one node (`db.sqlite`) and its snapshots: the write connection the
//! state machine applies entries with, a small pool of read-only connections for queries, and
//! the snapshot directory.
//!
//! A `gate` (tokio `RwLock`) orders the file-level operations: every read and every snapshot
//! build holds it shared for as long as it uses the file; installing a snapshot holds it
//! exclusively while it closes every connection, swaps `db.sqlite` and reopens.
//!
//! `snap_lock` (a plain mutex, only taken on the blocking pool) makes "make a snapshot
//! current" and "open the current snapshot" atomic with respect to each other: a commit
//! removes the previous snapshot's file, so a reader must open its file before the next
//! commit can run. Once open, the file stays readable even after it is removed.

use std::fs;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use tokio::io::AsyncSeekExt;
use tokio::sync::{watch, RwLock};

use crate::sqlite::applied::{self, Applied};
use crate::sqlite::apply::{AppliedState, WriteConn};
use crate::sqlite::authorizer::Guard;
use crate::sqlite::snapshot::{new_snapshot_id, sync_dir, Meta, SnapshotDir};
use crate::sqlite::sql::{self, RunOpts};
use crate::types::{CommandResponse, Outcome, SqlStatement, StatementResult, TypeConfig};

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// A pooled read-only connection and its authorizer.
#[derive(Debug)]
pub(crate) struct Reader {
    conn: Connection,
    guard: Guard,
    /// The `foreign_keys` value last set on it.
    foreign_keys: bool,
}

impl Reader {
    /// Runs `f` on the connection as our own work (not user SQL): the authorizer lets it
    /// open a read transaction, for instance.
    pub(crate) fn internal<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        self.guard.set_user(false);
        let out = f(&self.conn);
        self.guard.set_user(true);
        out
    }
}

/// The user's database and its snapshots.
#[derive(Debug)]
pub(crate) struct Database {
    db_path: PathBuf,
    writer: Mutex<Option<WriteConn>>,
    idle: Mutex<Vec<Reader>>,
    gate: Arc<RwLock<()>>,
    applied: watch::Sender<u64>,
    /// When the applied index last moved (local clock), for `freshness_strict`.
    applied_at: Mutex<Instant>,
    /// The `foreign_keys` setting of the write connection, mirrored on read connections.
    foreign_keys: AtomicBool,
    snapshots: SnapshotDir,
    snap_lock: Mutex<()>,
    /// Whether the database holds a table of the user's (see [`user_tables`]).
    user_data: Arc<AtomicBool>,
    /// Where the clean-close record is written at a graceful stop.
    clean_close: PathBuf,
    /// Whether applying failed: the database is not known to match the applied state, so
    /// the stop writes no clean-close record and the next start rebuilds it.
    faulted: AtomicBool,
    /// The last log index when the node started (see [`Database::startup_log_index`]).
    startup_log: AtomicU64,
}

/// Why the user's database or its snapshots failed on this node: the file, and the cause.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    /// A file could not be opened, read, written or used as SQLite.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed (a SQLite or I/O error, or what was wrong with the file).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The current snapshot cannot be found.
    #[error(transparent)]
    Snapshot(#[from] crate::sqlite::snapshot::CurrentError),
    /// A task of the blocking pool failed (it panicked, or the runtime is shutting down).
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Its failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The error of file `path`, caused by `e`.
pub(crate) fn file_error(
    path: &Path,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> DatabaseError {
    msg(path, e)
}

fn msg(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DatabaseError {
    DatabaseError::File {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// The error of a blocking task that did not finish.
pub(crate) fn task_failed(
    what: &'static str,
) -> impl FnOnce(tokio::task::JoinError) -> DatabaseError {
    move |source| DatabaseError::Task { what, source }
}

impl Database {
    /// Opens `data_dir/db.sqlite` and `data_dir/snapshot/`, knowing what the database
    /// holds (see [`crate::sqlite::applied`]): the record the file carries, else the
    /// clean-close record of a graceful stop. A database whose state is unknown (a crash, a
    /// storage fault), missing, or older than the current snapshot is rebuilt from the current
    /// snapshot, or from nothing when there is none; openraft applies the log after it.
    ///
    /// # Errors
    ///
    /// A message naming the file that cannot be opened and why.
    pub(crate) fn open(data_dir: &Path) -> Result<Arc<Database>, DatabaseError> {
        let db_path = data_dir.join("db.sqlite");
        let clean_close = data_dir.join(applied::CLEAN_CLOSE_FILE);
        let snap_dir = data_dir.join("snapshot");
        let snapshots = SnapshotDir::open(&snap_dir).map_err(|e| msg(&snap_dir, e))?;
        let current = snapshots.current()?;
        let existed = db_path.exists();
        let closed =
            applied::take_clean_close(&clean_close, &db_path).map_err(|e| msg(&clean_close, e))?;
        let (mut writer, record) = WriteConn::open(&db_path).map_err(|e| msg(&db_path, e))?;
        let known = record.or(closed);
        let snapshot_is_newer = |a: &Applied| {
            current
                .as_ref()
                .is_some_and(|(meta, _)| meta.last_log_id > a.last_log_id)
        };
        match known {
            Some(a) if !snapshot_is_newer(&a) => {
                writer.set_applied(a).map_err(|e| msg(&db_path, e))?;
            }
            _ => {
                if existed {
                    tracing::warn!(
                        db = %db_path.display(),
                        snapshot = ?current.as_ref().map(|(m, _)| &m.snapshot_id),
                        "the database was not closed cleanly (or is older than the current \
                         snapshot): rebuilding it from the current snapshot and the log"
                    );
                }
                drop(writer);
                writer = rebuild(&db_path, current.as_ref().map(|(_, file)| file.as_path()))?;
            }
        }
        let applied = writer.applied().last_log_id;
        let user_data = user_tables(writer.conn()).map_err(|e| msg(&db_path, e))?;
        let foreign_keys = writer.foreign_keys().map_err(|e| msg(&db_path, e))?;
        let (tx, _) = watch::channel(applied.map_or(0, |id| id.index));
        Ok(Arc::new(Database {
            db_path,
            writer: Mutex::new(Some(writer)),
            idle: Mutex::new(Vec::new()),
            gate: Arc::new(RwLock::new(())),
            applied: tx,
            applied_at: Mutex::new(Instant::now()),
            foreign_keys: AtomicBool::new(foreign_keys),
            snapshots,
            snap_lock: Mutex::new(()),
            user_data: Arc::new(AtomicBool::new(user_data)),
            clean_close,
            faulted: AtomicBool::new(false),
            startup_log: AtomicU64::new(0),
        }))
    }

    /// Whether the database holds a table of the user's: the cluster has data that a voter
    /// wiped empty would lose (see [`crate::raft::formation`]). Shared, kept up to date.
    pub(crate) fn user_data(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.user_data)
    }

    /// Records the last log index the node had when it started.
    pub(crate) fn set_startup_log_index(&self, index: u64) {
        self.startup_log.store(index, Ordering::Relaxed);
    }

    /// The last log index the node had when it started: a leader serves `weak` and
    /// `linearizable` reads only once it applied that far (see `Store::reach_startup_log`).
    pub(crate) fn startup_log_index(&self) -> u64 {
        self.startup_log.load(Ordering::Relaxed)
    }

    /// A receiver of the applied log index (0 before any).
    pub(crate) fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// When the applied index last moved (this node's clock).
    pub(crate) fn applied_at(&self) -> Instant {
        *self
            .applied_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The path of `db.sqlite`.
    pub(crate) fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Whether foreign keys are enforced (the setting recorded in the database).
    pub(crate) fn foreign_keys(&self) -> bool {
        self.foreign_keys.load(Ordering::Relaxed)
    }

    /// A copy of the database as it is now at `target` (`/db/backup`): a plain SQLite file
    /// in rollback-journal mode. Writes go on meanwhile.
    ///
    /// # Errors
    ///
    /// A message naming the file that could not be read or written.
    pub(crate) async fn backup_to(self: &Arc<Self>, target: PathBuf) -> Result<(), DatabaseError> {
        let guard = Arc::clone(&self.gate).read_owned().await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let _ = fs::remove_file(&target);
            me.copy_to(&target)
        })
        .await
        .map_err(task_failed("backup"))?
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut WriteConn) -> rusqlite::Result<T>,
    ) -> Result<T, DatabaseError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let w = guard
            .as_mut()
            .ok_or_else(|| msg(&self.db_path, "the database is closed"))?;
        f(w).map_err(|e| msg(&self.db_path, e))
    }

    /// What the database has applied: the last log id and membership.
    pub(crate) fn applied_state(&self) -> Result<AppliedState, DatabaseError> {
        self.with_writer(|w| {
            let a = w.applied();
            Ok((a.last_log_id, a.membership.clone()))
        })
    }

    /// Applies entries (blocking): see [`WriteConn::apply_entries`].
    pub(crate) fn apply(
        &self,
        entries: &[openraft::Entry<TypeConfig>],
    ) -> Result<Vec<CommandResponse>, DatabaseError> {
        let known = self.user_data.load(Ordering::Relaxed);
        let applied = self.with_writer(|w| {
            let (responses, last) = w.apply_entries(entries)?;
            // Not knowing yet is harmless: the next batch asks again.
            let has_tables = known || user_tables(w.conn()).unwrap_or(false);
            Ok((responses, last, has_tables, w.foreign_keys()?))
        });
        if applied.is_err() {
            self.faulted.store(true, Ordering::Relaxed);
        }
        let (responses, last, has_tables, fk) = applied?;
        self.user_data.store(has_tables, Ordering::Relaxed);
        self.foreign_keys.store(fk, Ordering::Relaxed);
        if let Some(id) = last {
            *self
                .applied_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
            self.applied.send_replace(id.index);
        }
        Ok(responses)
    }

    fn open_reader(&self) -> rusqlite::Result<Reader> {
        let conn = Connection::open_with_flags(
            &self.db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let guard = Guard::strict();
        guard.install(&conn);
        Ok(Reader {
            conn,
            guard,
            foreign_keys: false,
        })
    }

    /// Runs `f` with a read connection on the blocking pool, the gate held shared.
    pub(crate) async fn with_reader<T, F>(self: &Arc<Self>, f: F) -> Result<T, DatabaseError>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> T + Send + 'static,
    {
        let guard = Arc::clone(&self.gate).read_owned().await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let pooled = me.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut reader = match pooled {
                Some(c) => c,
                None => me.open_reader().map_err(|e| msg(&me.db_path, e))?,
            };
            let fk = me.foreign_keys.load(Ordering::Relaxed);
            if reader.foreign_keys != fk {
                reader.guard.set_user(false);
                let set = reader.conn.pragma_update(None, "foreign_keys", fk);
                reader.guard.set_user(true);
                set.map_err(|e| msg(&me.db_path, e))?;
                reader.foreign_keys = fk;
            }
            let out = f(&reader);
            let mut idle = me.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(reader);
            }
            Ok(out)
        })
        .await
        .map_err(task_failed("read"))?
    }

    /// Runs read-only statements on a read connection; a statement that could write gets
    /// an error result instead. `blob_array` gives BLOBs as arrays of bytes.
    ///
    /// # Errors
    ///
    /// A message when no read connection can be opened, or a statement failed for a reason
    /// of this node's storage (I/O error, corruption, busy...): another replica may answer.
    pub(crate) async fn query(
        self: &Arc<Self>,
        statements: Vec<SqlStatement>,
        blob_array: bool,
    ) -> Result<Vec<Outcome>, DatabaseError> {
        let path = self.db_path.clone();
        let opts = RunOpts {
            want_rows: true,
            read_only: true,
            blob_array,
            cached: true,
        };
        self.with_reader(move |r| {
            let mut out = Vec::with_capacity(statements.len());
            for s in &statements {
                r.guard.clear();
                let mut o = sql::run(&r.conn, s, opts).map_err(|e| msg(&path, e))?;
                if let StatementResult::Error(m) = &mut o.result {
                    *m = crate::sqlite::authorizer::explain(std::mem::take(m), &r.guard);
                }
                out.push(o);
            }
            Ok(out)
        })
        .await?
    }

    /// Whether every statement is read-only (a statement that does not compile counts as a
    /// write: it goes through Raft and gets its error there).
    ///
    /// # Errors
    ///
    /// A message when no read connection can be opened.
    pub(crate) async fn all_read_only(
        self: &Arc<Self>,
        statements: Vec<String>,
    ) -> Result<bool, DatabaseError> {
        self.with_reader(move |r| {
            statements
                .iter()
                .all(|s| sql::is_read_only(&r.conn, s).unwrap_or(false))
        })
        .await
    }

    /// A read-only connection to copy the database from (backups and snapshots).
    fn open_copy_source(&self) -> Result<Connection, DatabaseError> {
        let conn = Connection::open_with_flags(
            &self.db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| msg(&self.db_path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| msg(&self.db_path, e))?;
        Ok(conn)
    }

    /// Copies the database as it is now into `target` with `VACUUM INTO` on a read-only
    /// connection (blocking): a read transaction in WAL mode sees one consistent state and
    /// does not stop the write connection meanwhile.
    ///
    /// # Errors
    ///
    /// A message naming the file that could not be read or written.
    pub(crate) fn copy_to(&self, target: &Path) -> Result<(), DatabaseError> {
        let conn = self.open_copy_source()?;
        conn.execute("VACUUM INTO ?1", [target.to_string_lossy()])
            .map_err(|e| msg(&self.db_path, format!("VACUUM INTO failed: {e}")))?;
        Ok(())
    }

    /// Copies the database into `target` with what it has applied, and records that in the
    /// copy ([`applied::write_record`]) (blocking). A read transaction is started on a
    /// read-only connection while the write connection is held between two batches, so its
    /// view of the file is exactly the applied state taken then; SQLite's backup API then
    /// copies the pages inside that transaction while writes go on.
    fn copy_with_record(&self, target: &Path) -> Result<Applied, DatabaseError> {
        let src = self.open_copy_source()?;
        let applied = self.with_writer(|w| {
            src.execute_batch("BEGIN")?;
            // The first read fixes the transaction's view of the WAL.
            src.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            Ok(w.applied().clone())
        })?;
        let mut dst = Connection::open(target).map_err(|e| msg(target, e))?;
        let copied = rusqlite::backup::Backup::new(&src, &mut dst)
            .and_then(|b| b.step(-1))
            .map_err(|e| msg(target, format!("copy failed: {e}")))?;
        if copied != rusqlite::backup::StepResult::Done {
            return Err(msg(target, format!("copy did not finish: {copied:?}")));
        }
        src.execute_batch("COMMIT")
            .map_err(|e| msg(&self.db_path, e))?;
        dst.pragma_update(None, "journal_mode", "DELETE")
            .and_then(|()| applied::write_record(&dst, &applied))
            .map_err(|e| msg(target, e))?;
        Ok(applied)
    }

    /// Builds a snapshot of the database as it is now, makes it current and opens it
    /// (blocking). The copy is made on a read connection ([`Database::copy_with_record`]),
    /// so writes go on while it is built; it carries its own log id, membership and
    /// `foreign_keys`.
    pub(crate) fn build_snapshot(&self) -> Result<(Meta, fs::File), DatabaseError> {
        let _gate = self.gate.blocking_read();
        let tmp = self.snapshots.tmp_path("building");
        let _ = fs::remove_file(&tmp);
        let applied = self.copy_with_record(&tmp)?;
        let last = applied.last_log_id;
        let meta = Meta {
            last_log_id: last,
            last_membership: applied.membership,
            snapshot_id: new_snapshot_id(last.as_ref()),
        };
        let file = {
            let _snap = self
                .snap_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let path = self
                .snapshots
                .commit(&meta, &tmp)
                .map_err(|e| msg(&tmp, e))?;
            fs::File::open(&path).map_err(|e| msg(&path, e))?
        };
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot built");
        Ok((meta, file))
    }

    /// The current snapshot, if any, opened (blocking): a snapshot made current meanwhile
    /// cannot remove the file between the two steps.
    ///
    /// # Errors
    ///
    /// A message when `current.json` is unreadable or its file cannot be opened.
    pub(crate) fn open_current_snapshot(&self) -> Result<Option<(Meta, fs::File)>, DatabaseError> {
        let _snap = self
            .snap_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.snapshots.current()? {
            Some((meta, path)) => {
                let file = fs::File::open(&path).map_err(|e| msg(&path, e))?;
                Ok(Some((meta, file)))
            }
            None => Ok(None),
        }
    }

    /// Where an incoming snapshot is received.
    pub(crate) fn receiving_path(&self) -> PathBuf {
        self.snapshots.tmp_path("receiving")
    }

    /// Installs the snapshot in `data` with `meta`: it becomes the current snapshot and
    /// replaces the database.
    ///
    /// # Errors
    ///
    /// A message when the data is not a snapshot matching `meta`, or on an I/O error.
    pub(crate) async fn install_snapshot(
        self: &Arc<Self>,
        meta: Meta,
        data: &mut tokio::fs::File,
    ) -> Result<(), DatabaseError> {
        let tmp = self.snapshots.tmp_path("installing");
        data.seek(SeekFrom::Start(0))
            .await
            .map_err(|e| msg(&self.receiving_path(), e))?;
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| msg(&tmp, e))?;
        tokio::io::copy(data, &mut out)
            .await
            .map_err(|e| msg(&tmp, e))?;
        out.sync_all().await.map_err(|e| msg(&tmp, e))?;
        drop(out);
        let guard = Arc::clone(&self.gate).write_owned().await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let (last, _) = read_snapshot_file(&tmp)?;
            if last != meta.last_log_id {
                return Err(msg(
                    &tmp,
                    format!(
                        "the received snapshot {} holds log id {last:?}, not {:?}",
                        meta.snapshot_id, meta.last_log_id
                    ),
                ));
            }
            let path = {
                let _snap = me.snap_lock.lock().unwrap_or_else(PoisonError::into_inner);
                me.snapshots.commit(&meta, &tmp).map_err(|e| msg(&tmp, e))?
            };
            let _ = fs::remove_file(me.receiving_path());
            me.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            let mut writer = me.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let before = match writer.take() {
                Some(w) => {
                    // Fold the WAL into the file so that nothing of the old database survives
                    // outside it.
                    let _ = w
                        .conn()
                        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                    Some(w.applied().clone())
                }
                None => None,
            };
            let replaced = replace_db(&me.db_path, &path);
            // Reopen whatever db.sqlite is now, also when the swap failed, so the node never
            // stays without its write connection: the snapshot's state when it was swapped
            // in (its record), else the old database's.
            let reopened = WriteConn::open(&me.db_path)
                .and_then(|(mut w, record)| {
                    match (record, before) {
                        (Some(_), _) => {}
                        (None, Some(before)) => w.set_applied(before)?,
                        (None, None) => me.faulted.store(true, Ordering::Relaxed),
                    }
                    let tables = user_tables(w.conn())?;
                    let applied = w.applied().last_log_id;
                    Ok((w, applied, tables))
                })
                .map_err(|e| msg(&me.db_path, e));
            match reopened {
                Ok((w, applied, tables)) => {
                    let fk = w.foreign_keys().unwrap_or(false);
                    *writer = Some(w);
                    me.foreign_keys.store(fk, Ordering::Relaxed);
                    *me.applied_at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    me.applied.send_replace(applied.map_or(0, |id| id.index));
                    me.user_data.store(tables, Ordering::Relaxed);
                }
                Err(e) => {
                    replaced?;
                    return Err(e);
                }
            }
            replaced?;
            tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
            Ok(())
        })
        .await
        .map_err(task_failed("snapshot install"))?
    }

    /// Closes every connection (at shutdown). Unless applying failed, the WAL is folded
    /// into `db.sqlite` first and the clean-close record written
    /// ([`applied::write_clean_close`]), so the next start uses the file as it is.
    pub(crate) fn close(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(w) = writer else { return };
        if self.faulted.load(Ordering::Relaxed) {
            return;
        }
        let applied = w.applied().clone();
        let folded: rusqlite::Result<i64> =
            w.conn()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0));
        drop(w);
        let recorded = match folded {
            Ok(0) => applied::write_clean_close(&self.clean_close, &self.db_path, &applied)
                .map_err(|e| msg(&self.clean_close, e)),
            Ok(_) => Err(msg(
                &self.db_path,
                "a reader kept the WAL from being folded in",
            )),
            Err(e) => Err(msg(&self.db_path, e)),
        };
        if let Err(e) = recorded {
            tracing::warn!(
                error = %e,
                "no clean-close record: the next start rebuilds db.sqlite from the snapshot \
                 and the log"
            );
        }
    }
}

/// Whether the database has a table other than SQLite's.
fn user_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\')",
        [],
        |r| r.get(0),
    )
}

/// The applied state recorded in a snapshot file.
fn read_snapshot_file(path: &Path) -> Result<AppliedState, DatabaseError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| msg(path, e))?;
    match applied::read_record(&conn) {
        Ok(Some(a)) => Ok((a.last_log_id, a.membership)),
        Ok(None) => Err(msg(
            path,
            "not a webfarm snapshot: it has no record of its log id",
        )),
        Err(e) => Err(msg(path, format!("not a webfarm snapshot: {e}"))),
    }
}

/// Rebuilds the database at `db` from `snapshot` (a copy of it), or empty when there is
/// none, and opens it at the state the snapshot records.
fn rebuild(db: &Path, snapshot: Option<&Path>) -> Result<WriteConn, DatabaseError> {
    match snapshot {
        Some(file) => replace_db(db, file)?,
        None => {
            // The WAL first: a WAL left beside a new empty file would be replayed onto it.
            for suffix in ["-wal", "-shm", ""] {
                let mut p = db.as_os_str().to_owned();
                p.push(suffix);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(msg(Path::new(&p), e)),
                }
            }
        }
    }
    let (w, record) = WriteConn::open(db).map_err(|e| msg(db, e))?;
    if snapshot.is_some() && record.is_none() {
        return Err(msg(
            db,
            "the snapshot it was restored from has no record of its log id",
        ));
    }
    Ok(w)
}

/// Replaces the database at `db` by a copy of `src`. Every connection to `db` must be closed.
fn replace_db(db: &Path, src: &Path) -> Result<(), DatabaseError> {
    let side = |suffix: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let (wal, shm, tmp) = (side("-wal"), side("-shm"), side(".tmp"));
    if wal.exists() {
        // A WAL left by the old database must not be replayed onto the new one: fold it in.
        let conn = Connection::open(db).map_err(|e| msg(db, e))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| msg(db, e))?;
        drop(conn);
    }
    for p in [&wal, &shm] {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(msg(p, e)),
        }
    }
    fs::copy(src, &tmp).map_err(|e| msg(&tmp, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| msg(&tmp, e))?;
    fs::rename(&tmp, db).map_err(|e| msg(db, e))?;
    if let Some(dir) = db.parent() {
        sync_dir(dir).map_err(|e| msg(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
