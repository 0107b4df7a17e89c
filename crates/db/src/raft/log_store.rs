//! The Raft log on SQLite (`raft-log.db`): entries, vote, committed log id.
//!
//! One table `log (idx INTEGER PRIMARY KEY, entry TEXT)` holds each entry as JSON; a `meta`
//! key/value table holds the vote, the committed log id and the last purged log id. The file is
//! in WAL mode with `synchronous=FULL`: a commit returns only once it is on disk, so the
//! `LogFlushed` callback and `save_vote` acknowledge durable writes only.
//!
//! The committed log id is *not* written durably on its own: `save_committed` only records it in
//! memory, and the next transaction of `append`, `truncate` or `purge` stores it along with its
//! own rows (no extra fsync, no extra transaction on openraft's commit path). openraft treats a
//! saved committed id as optional (`RaftLogStorage::save_committed`): on restart it re-applies
//! logs up to what was saved, never beyond, and whatever was committed later is learned from the
//! leader again. A stale value is safe because only ids that were already committed are saved,
//! so it can lag behind but never run ahead.
//!
//! The blocking SQLite work runs on tokio's blocking pool; the connection sits behind a
//! `std::sync::Mutex` that is only locked there, never across an `.await`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use webfarm_node::metrics::{Histogram, FSYNC_SECONDS};

use crate::types::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;
type StorageResult<T> = Result<T, StorageError<u64>>;

/// The Raft log store of one node. Cloning shares the same file (the clone is the log reader).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The committed log index last saved (for `/status`); 0 before any.
    committed: AtomicU64,
    /// The committed log id last saved and whether the file lags behind it. Only locked for
    /// short copies, never across an `.await`.
    pending: Mutex<Committed>,
    /// How long each durable log commit (the fsync) took, for `/metrics`.
    fsync: Histogram,
}

/// The committed log id as openraft last saved it.
#[derive(Debug, Default)]
struct Committed {
    id: Option<LogId<u64>>,
    /// `id` is newer than the value in the file.
    dirty: bool,
}

/// Writes `committed` into `meta` within the caller's transaction.
fn store_committed(tx: &rusqlite::Transaction<'_>, text: Option<&str>) -> rusqlite::Result<()> {
    if let Some(text) = text {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('committed', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [text],
        )?;
    }
    Ok(())
}

/// Which kind of I/O failed, to build openraft's error.
#[derive(Clone, Copy)]
enum Io {
    ReadLogs,
    WriteLogs,
    ReadVote,
    WriteVote,
}

fn io_err(kind: Io, e: impl std::fmt::Display) -> StorageError<u64> {
    let e = AnyError::error(e);
    let io = match kind {
        Io::ReadLogs => StorageIOError::read_logs(e),
        Io::WriteLogs => StorageIOError::write_logs(e),
        Io::ReadVote => StorageIOError::read_vote(e),
        Io::WriteVote => StorageIOError::write_vote(e),
    };
    io.into()
}

impl LogStore {
    /// Opens (or creates) the log at `path`.
    ///
    /// # Errors
    ///
    /// SQLite's error, with the path, when the file cannot be opened or is not a log.
    pub fn open(path: &Path) -> Result<LogStore, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let committed: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'committed'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let committed = committed
            .and_then(|s| serde_json::from_str::<Option<LogId<u64>>>(&s).ok())
            .flatten();
        Ok(LogStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                committed: AtomicU64::new(committed.map_or(0, |id| id.index)),
                pending: Mutex::new(Committed {
                    id: committed,
                    dirty: false,
                }),
                fsync: Histogram::seconds(FSYNC_SECONDS),
            }),
        })
    }

    /// The last committed log index saved by openraft (0 before any).
    pub fn committed_index(&self) -> u64 {
        self.inner.committed.load(Ordering::Relaxed)
    }

    /// The committed log id not yet in the file, as JSON, to store with the next transaction;
    /// marks it stored (a failed transaction marks it dirty again with [`Self::unsaved`]).
    fn take_committed(&self) -> Option<(Option<LogId<u64>>, String)> {
        let mut p = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !p.dirty {
            return None;
        }
        let text = serde_json::to_string(&p.id).ok()?;
        p.dirty = false;
        Some((p.id, text))
    }

    /// Marks `id` as not stored after all (its transaction failed), unless a newer one came.
    fn unsaved(&self, id: Option<LogId<u64>>) {
        let mut p = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if p.id == id {
            p.dirty = true;
        }
    }

    /// How long the log's durable commits took (etcd's WAL fsync duration).
    pub(crate) fn fsync_seconds(&self) -> &Histogram {
        &self.inner.fsync
    }

    /// Runs `f` with the connection on the blocking pool.
    /// Runs `f` in one durable log transaction that first stores the committed log id
    /// recorded since the last one (see `save_committed`); if the transaction fails, that id
    /// is marked unsaved again.
    async fn write_logs<F>(&self, f: F) -> StorageResult<()>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let committed = self.take_committed();
        let committed_text = committed.as_ref().map(|(_, t)| t.clone());
        let inner = Arc::clone(&self.inner);
        let res = self
            .blocking(Io::WriteLogs, move |c| {
                let tx = c.transaction()?;
                store_committed(&tx, committed_text.as_deref())?;
                f(&tx)?;
                // synchronous=FULL: the commit is on disk when this returns.
                let start = std::time::Instant::now();
                tx.commit()?;
                inner.fsync.observe(start.elapsed());
                Ok(())
            })
            .await;
        if res.is_err() {
            if let Some((id, _)) = committed {
                self.unsaved(id);
            }
        }
        res
    }

    async fn blocking<T, F>(&self, kind: Io, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn).map_err(|e| format!("{}: {e}", inner.path.display()))
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io_err(kind, e)),
            Err(e) => Err(io_err(kind, format!("storage task failed: {e}"))),
        }
    }

    async fn get_meta<T>(&self, kind: Io, key: &'static str) -> StorageResult<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let text: Option<String> = self
            .blocking(kind, move |c| {
                c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                    .optional()
            })
            .await?;
        match text {
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| io_err(kind, format!("meta {key} is not valid JSON: {e}"))),
            None => Ok(None),
        }
    }

    async fn set_meta<T: Serialize>(
        &self,
        kind: Io,
        key: &'static str,
        v: &T,
    ) -> StorageResult<()> {
        let text = serde_json::to_string(v).map_err(|e| io_err(kind, e))?;
        self.blocking(kind, move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, text.as_str()],
            )
            .map(|_| ())
        })
        .await
    }
}

/// `[start, end)` of a range of log indexes, clamped to SQLite's INTEGER.
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (i64, i64) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let start = match range.start_bound() {
        Bound::Included(&s) => clamp(s),
        Bound::Excluded(&s) => clamp(s.saturating_add(1)),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => clamp(e.saturating_add(1)),
        Bound::Excluded(&e) => clamp(e),
        Bound::Unbounded => i64::MAX,
    };
    (start, end)
}

fn decode(text: &str) -> rusqlite::Result<Entry> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let (start, end) = index_range(&range);
        self.blocking(Io::ReadLogs, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let rows = stmt.query_map([start, end], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for text in rows {
                out.push(decode(&text?)?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<u64>> =
            self.get_meta(Io::ReadLogs, "last_purged").await?.flatten();
        let last: Option<Entry> = self
            .blocking(Io::ReadLogs, |c| {
                let text: Option<String> = c
                    .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                        r.get(0)
                    })
                    .optional()?;
                text.map(|t| decode(&t)).transpose()
            })
            .await?;
        let last_log_id = last.map(|e| e.log_id).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.set_meta(Io::WriteVote, "vote", vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_meta(Io::ReadVote, "vote").await
    }

    /// Records `committed` in memory only; the next `append`, `truncate` or `purge` stores it
    /// (see the module doc for why losing it is safe).
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        {
            let mut p = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if p.id != committed {
                p.id = committed;
                p.dirty = true;
            }
        }
        self.inner
            .committed
            .store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        let p = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(p.id)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            let idx = i64::try_from(e.log_id.index)
                .map_err(|_| io_err(Io::WriteLogs, "log index out of range"))?;
            let text = serde_json::to_string(&e).map_err(|err| io_err(Io::WriteLogs, err))?;
            rows.push((idx, text));
        }
        let res = self
            .write_logs(move |tx| {
                let mut stmt =
                    tx.prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
                for (idx, text) in &rows {
                    stmt.execute(rusqlite::params![idx, text])?;
                }
                Ok(())
            })
            .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let (start, _) = index_range(&(log_id.index..));
        self.write_logs(move |tx| {
            tx.execute("DELETE FROM log WHERE idx >= ?1", [start])?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let (_, end) = index_range(&(..=log_id.index));
        let text = serde_json::to_string(&Some(log_id)).map_err(|e| io_err(Io::WriteLogs, e))?;
        self.write_logs(move |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('last_purged', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [text.as_str()],
            )?;
            tx.execute("DELETE FROM log WHERE idx < ?1", [end])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webfarm_testkit::TempDir;

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(openraft::CommittedLeaderId::new(term, 0), index)
    }

    #[tokio::test]
    async fn the_committed_id_is_stored_with_the_next_transaction_only() {
        let dir = TempDir::new("log-committed");
        let path = dir.path().join("raft-log.db");
        let mut log = LogStore::open(&path).unwrap();
        log.save_committed(Some(id(1, 5))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(id(1, 5)));
        assert_eq!(log.committed_index(), 5);
        // Not written yet: a restart now finds no committed id (openraft then re-applies less).
        let mut reopened = LogStore::open(&path).unwrap();
        assert_eq!(reopened.read_committed().await.unwrap(), None);
        drop(reopened);
        // The next transaction of the log carries it.
        log.purge(id(1, 2)).await.unwrap();
        let mut reopened = LogStore::open(&path).unwrap();
        assert_eq!(reopened.read_committed().await.unwrap(), Some(id(1, 5)));
        assert_eq!(reopened.committed_index(), 5);
        // Unchanged ids are not rewritten; a newer one is, with the next transaction.
        log.save_committed(Some(id(2, 9))).await.unwrap();
        log.truncate(id(2, 10)).await.unwrap();
        let mut reopened = LogStore::open(&path).unwrap();
        assert_eq!(reopened.read_committed().await.unwrap(), Some(id(2, 9)));
    }
}
