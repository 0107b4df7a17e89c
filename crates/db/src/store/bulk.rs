//! Whole-database operations: backups (a SQLite copy or an SQL dump of this node's database)
//! and loads (`/db/load`: a SQLite file or an SQL dump, replicated through the log).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;

use super::{Applied, Store, StoreError, WRITE_TIMEOUT};
use crate::command::{LoadRequest, Request, SqlRequest};
use crate::sqlite::database::task_failed;
use crate::sqlite::dump::{check_sqlite_file, dump_sql, is_sqlite, split_dump, LoadError};
use crate::types::{Params, SqlStatement};

/// How long the leader waits for the load of a SQLite file to be committed and applied.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What `/db/load` loaded, once applied on the leader.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// A SQLite file replaced the user's tables; a failed restore is the entry's one
    /// statement error.
    File(Applied),
    /// The statements of an SQL dump ran as one transaction.
    Dump(Applied),
}

/// A file name in the data directory that nothing else uses.
fn scratch_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{what}-{nanos}.tmp")
}

impl Store {
    /// A copy of this node's database as a plain SQLite file (rollback-journal mode, without
    /// webfarm's own table): `VACUUM INTO` a scratch file on a read connection, so writes go
    /// on meanwhile.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] naming the file that could not be read or written.
    pub(crate) async fn backup(&self) -> Result<Vec<u8>, StoreError> {
        let tmp = self.data_dir.join(scratch_name("backup"));
        let copied = self.database.backup_to(tmp.clone()).await;
        let read = copied.and_then(|()| {
            std::fs::read(&tmp).map_err(|e| crate::sqlite::database::file_error(&tmp, e))
        });
        let _ = std::fs::remove_file(&tmp);
        Ok(read?)
    }

    /// This node's database as SQL text (like `sqlite3 .dump`), only `tables` if given.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when no read connection can be opened,
    /// [`StoreError::Dump`] when the database cannot be read.
    pub(crate) async fn dump(&self, tables: Option<Vec<String>>) -> Result<String, StoreError> {
        let dumped = self
            .database
            .with_reader(move |reader| reader.internal(|conn| dump_sql(conn, tables.as_deref())))
            .await?;
        dumped.map_err(StoreError::Dump)
    }

    /// Loads `body` (this node leads): a SQLite file (it starts with SQLite's header) is
    /// checked, then replicated as one entry that replaces the user's tables on every node; a
    /// dump is split into statements, validated on a scratch database, and written as one
    /// transaction on top of what exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidLoad`] when the body cannot be loaded; the errors of
    /// [`Store::execute`].
    pub(crate) async fn load(&self, body: Bytes) -> Result<Loaded, StoreError> {
        if is_sqlite(&body) {
            self.check_file(body.clone()).await?;
            let request = Request::Load(LoadRequest {
                sqlite: base64::engine::general_purpose::STANDARD.encode(&body),
            });
            return Ok(Loaded::File(self.execute(request, LOAD_TIMEOUT).await?));
        }
        let text = String::from_utf8(body.to_vec()).map_err(|_| LoadError::NotText)?;
        let statements = tokio::task::spawn_blocking(move || split_dump(&text))
            .await
            .map_err(task_failed("load"))??;
        let sql = SqlRequest {
            statements: statements
                .into_iter()
                .map(|sql| SqlStatement {
                    sql,
                    params: Params::None,
                })
                .collect(),
            transaction: true,
            ..SqlRequest::default()
        };
        let applied = self.execute(Request::Sql(sql), WRITE_TIMEOUT).await?;
        Ok(Loaded::Dump(applied))
    }

    /// Checks an uploaded SQLite file on a scratch copy (opens, `quick_check`, no virtual
    /// table).
    async fn check_file(&self, body: Bytes) -> Result<(), StoreError> {
        let tmp = self.data_dir.join(scratch_name("load-check"));
        let checked = tokio::task::spawn_blocking(move || {
            let out = std::fs::write(&tmp, &body)
                .map_err(|source| LoadError::ScratchFile {
                    path: tmp.clone(),
                    source,
                })
                .and_then(|()| check_sqlite_file(&tmp));
            let _ = std::fs::remove_file(&tmp);
            out
        })
        .await
        .map_err(task_failed("load check"))?;
        Ok(checked?)
    }
}
