//! Entry points for the fuzz targets (`fuzz/`, `crates/fuzzing`): rqlite request bodies and
//! URL flags as the HTTP layer reads them, and a replica that applies log entries to an
//! in-memory database exactly as a db node applies them to `db.sqlite`. Not part of the
//! crate's API: hidden from its documentation.

use std::time::Duration;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use crate::command::{Command, SqlRequest};
use crate::http::request::{self, Flags};
use crate::sqlite::apply::WriteConn;
use crate::sqlite::dump::dump_sql;
use crate::types::{SqlStatement, StatementResult, TypeConfig};

/// Parses an rqlite request body (`/db/execute`, `/db/query`, `/db/request`) as the API does.
///
/// # Errors
///
/// The 400 answer's statement index (when one is at fault) and message.
pub fn parse_statements(body: &[u8]) -> Result<Vec<SqlStatement>, (Option<usize>, String)> {
    request::parse_statements(body).map_err(|e| (e.index, e.message))
}

/// Reads a URL query string as the API does: every flag the handlers ask for, with the
/// durations parsed (`Err`: the 400 answer's message).
pub fn parse_flags(query: &str) -> Vec<(&'static str, Result<Option<Duration>, String>)> {
    let flags = Flags::parse(Some(query));
    for key in [
        "associative",
        "blob_array",
        "compress",
        "noleader",
        "nonvoters",
        "pretty",
        "queue",
        "redirect",
        "sync",
        "timings",
        "transaction",
        "vacuum",
        "wait",
    ] {
        let _ = flags.flag(key);
    }
    let _ = (flags.get("level"), flags.get("q"), flags.get("min_index"));
    ["freshness", "linearizable_timeout", "timeout"]
        .into_iter()
        .map(|k| (k, flags.duration(k).map_err(|e| e.to_string())))
        .collect()
}

/// A Go duration (`1m30s`) as the API reads a flag's value.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    request::parse_go_duration(text)
}

/// A db replica's write connection on an in-memory database: the deterministic functions,
/// the authorizer and the applier of a real node, without Raft or files.
pub struct Replica {
    w: WriteConn,
    next_index: u64,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica with an empty database.
    ///
    /// # Errors
    ///
    /// SQLite's error opening the in-memory database.
    pub fn new() -> rusqlite::Result<Replica> {
        let (w, _) = WriteConn::open(std::path::Path::new(":memory:"))?;
        Ok(Replica { w, next_index: 1 })
    }

    /// Applies one log entry holding `statements` (one request; `transaction`: all or
    /// nothing) proposed at `time_ms` with `seed`, as every replica does. Returns each
    /// statement's result (without its timing).
    ///
    /// # Errors
    ///
    /// The storage fault that failed the batch (the node would stop).
    pub fn apply(
        &mut self,
        statements: Vec<SqlStatement>,
        transaction: bool,
        time_ms: i64,
        seed: u64,
    ) -> Result<Vec<StatementResult>, String> {
        let request = SqlRequest {
            statements,
            transaction,
            ..SqlRequest::default()
        };
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next_index),
            payload: EntryPayload::Normal(Command::sql(request, time_ms, seed)),
        };
        self.next_index += 1;
        let (responses, _) = self
            .w
            .apply_entries(std::slice::from_ref(&entry))
            .map_err(|e| e.to_string())?;
        Ok(responses
            .into_iter()
            .flat_map(|r| r.results)
            .flatten()
            .map(|o| o.result)
            .collect())
    }

    /// The database as `/db/backup?fmt=sql` writes it.
    ///
    /// # Errors
    ///
    /// SQLite's error reading the schema or a table.
    pub fn dump(&self) -> rusqlite::Result<String> {
        dump_sql(self.w.conn(), None)
    }

    /// The write connection, for a harness's own limits (a progress handler).
    pub fn connection(&self) -> &rusqlite::Connection {
        self.w.conn()
    }
}
