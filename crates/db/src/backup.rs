//! `GET /db/backup` and `POST /db/load`, as rqlite serves them.
//!
//! Backup: the leader's database by default (a follower forwards, or redirects with
//! `?redirect`), this node's own with `?noleader`. The default format is a SQLite file
//! (`application/octet-stream`: a `VACUUM INTO` copy made on a read connection, so writes go
//! on; rollback-journal mode; the user's objects only); `fmt=sql` is a text
//! dump (`application/sql`, like `sqlite3 .dump`, restricted to `tables=a,b` if given).
//! `compress` gzips either. `vacuum` is accepted (the copy is always vacuumed).
//!
//! Load: the body is a SQLite file when it starts with SQLite's header, otherwise SQL text.
//! A file is checked on the leader (opens, `quick_check`, no virtual table), then replicated
//! as one log entry that replaces the user's tables on every node ([`crate::load`]); a dump
//! is split into statements (validated on a scratch database, [`crate::dump`]) and written as
//! one transaction, like a `/db/execute?transaction` request, on top of what exists.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use crate::api::{Api, Incoming};
use crate::command::{LoadRequest, Request, SqlRequest};
use crate::dump::{check_sqlite_file, dump_sql, is_sqlite, split_dump};
use crate::types::{Params, SqlStatement, StatementResult};

/// How long the leader waits for a load to be committed and applied.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a forwarded backup or load may take.
const BULK_FORWARD_TIMEOUT: Duration = Duration::from_secs(70);

fn scratch_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{what}-{nanos}.tmp")
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

/// `GET /db/backup`.
pub(crate) async fn backup(State(api): State<Arc<Api>>, req: Incoming) -> Response {
    let r = &req.render;
    if !req.flags.flag("noleader") {
        if let Some(resp) = api.via_leader(&req, false, BULK_FORWARD_TIMEOUT).await {
            return resp;
        }
    }
    let fmt = req.flags.get("fmt").unwrap_or("").to_ascii_lowercase();
    let (bytes, content_type) = match fmt.as_str() {
        "sql" => {
            if req.flags.flag("vacuum") {
                return r.error(
                    StatusCode::BAD_REQUEST,
                    "vacuum applies to the SQLite format only, not fmt=sql",
                );
            }
            let tables: Option<Vec<String>> = req.flags.get("tables").map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
            let dumped = api
                .store
                .with_reader(move |reader| {
                    reader.internal(|conn| dump_sql(conn, tables.as_deref()))
                })
                .await;
            match dumped {
                Ok(Ok(text)) => (text.into_bytes(), "application/sql"),
                Ok(Err(e)) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        "" | "binary" | "delete" => {
            let tmp = api.data_dir.join(scratch_name("backup"));
            let copied = api.store.backup_to(tmp.clone()).await;
            let read = copied
                .and_then(|()| std::fs::read(&tmp).map_err(|e| format!("{}: {e}", tmp.display())));
            let _ = std::fs::remove_file(&tmp);
            match read {
                Ok(b) => (b, "application/octet-stream"),
                Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        other => {
            return r.error(
                StatusCode::BAD_REQUEST,
                format!("fmt: {other:?} is not a backup format; expected binary or sql"),
            )
        }
    };
    let bytes = if req.flags.flag("compress") {
        match gzip(&bytes) {
            Ok(b) => b,
            Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        bytes
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        bytes,
    )
        .into_response()
}

/// `POST /db/load`.
pub(crate) async fn load(State(api): State<Arc<Api>>, req: Incoming) -> Response {
    let r = &req.render;
    if let Some(resp) = api.via_leader(&req, true, BULK_FORWARD_TIMEOUT).await {
        return resp;
    }
    if is_sqlite(&req.body) {
        return load_file(&api, &req).await;
    }
    let Ok(text) = String::from_utf8(req.body.to_vec()) else {
        return r.error(
            StatusCode::BAD_REQUEST,
            "the body is neither a SQLite database file nor UTF-8 SQL text",
        );
    };
    let split = tokio::task::spawn_blocking(move || split_dump(&text)).await;
    let statements = match split {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return r.error(StatusCode::BAD_REQUEST, e),
        Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
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
    api.write(&req, sql).await
}

async fn load_file(api: &Arc<Api>, req: &Incoming) -> Response {
    let started = Instant::now();
    let r = &req.render;
    let tmp = api.data_dir.join(scratch_name("load-check"));
    let body = req.body.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let out = std::fs::write(&tmp, &body)
            .map_err(|e| format!("{}: {e}", tmp.display()))
            .and_then(|()| check_sqlite_file(&tmp));
        let _ = std::fs::remove_file(&tmp);
        out
    })
    .await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return r.error(StatusCode::BAD_REQUEST, e),
        Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let request = Request::Load(LoadRequest {
        sqlite: base64::engine::general_purpose::STANDARD.encode(&req.body),
    });
    match api.propose(request, LOAD_TIMEOUT).await {
        Ok(applied) => {
            if let Some(StatementResult::Error(e)) = applied.outcomes.first().map(|o| &o.result) {
                return r.json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": e, "raft_index": applied.index}),
                );
            }
            // A load gives no outcome when it succeeded: `{"results": [], "raft_index": N}`.
            api.applied(req, &applied, started)
        }
        Err(e) => api.write_error(req, e).await,
    }
}
