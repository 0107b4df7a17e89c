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
//! as one log entry that replaces the user's tables on every node; a dump is split into
//! statements (validated on a scratch database) and written as one transaction, like a
//! `/db/execute?transaction` request, on top of what exists (the store's `load`).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use webfarm_db_client::ErrorAnswer;

use crate::http::api::{Api, Incoming};
use crate::http::service::Service;
use crate::store::Loaded;
use crate::types::StatementResult;

/// How long a forwarded backup or load may take.
const BULK_FORWARD_TIMEOUT: Duration = Duration::from_secs(70);

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

/// `GET /db/backup`.
pub(crate) async fn backup<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
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
            match api.store.dump(tables).await {
                Ok(text) => (text.into_bytes(), "application/sql"),
                Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        "" | "binary" | "delete" => match api.store.backup().await {
            Ok(b) => (b, "application/octet-stream"),
            Err(e) => return r.error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
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
pub(crate) async fn load<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    let started = Instant::now();
    let r = &req.render;
    if let Some(resp) = api.via_leader(&req, true, BULK_FORWARD_TIMEOUT).await {
        return resp;
    }
    match api.store.load(req.body.clone()).await {
        Ok(Loaded::File(applied)) => {
            if let Some(StatementResult::Error(e)) = applied.outcomes.first().map(|o| &o.result) {
                return r.json(
                    StatusCode::BAD_REQUEST,
                    &ErrorAnswer {
                        raft_index: Some(applied.index),
                        ..ErrorAnswer::new(e.clone())
                    },
                );
            }
            // A load gives no outcome when it succeeded: `{"results": [], "raft_index": N}`.
            api.applied(&req, &applied, started)
        }
        Ok(Loaded::Dump(applied)) => api.applied(&req, &applied, started),
        Err(e) => api.store_error(&req, e, true).await,
    }
}
