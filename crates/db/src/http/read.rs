//! Reads (`/db/query`, and read-only `/db/request`): the request's statements and flags
//! become a [`ReadRequest`] for the store, whose rules for each consistency level live in
//! [`crate::store::read`]; the answer is rendered as rqlite's, and a refusal as
//! [`Api::store_error`] says (forwarded to the leader, `stale read`, `beyond_log`...).
//!
//! Flags: `level` (`none`, `weak` (default), `linearizable`, `strong`, `auto`), `freshness=D`
//! and `freshness_strict`, `min_index=N`, `linearizable_timeout=D` (default
//! [`LINEARIZABLE_TIMEOUT`]), `transaction` (`strong`), `blob_array`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::http::api::{bad_request, Api, Incoming};
use crate::http::request::{parse_statements, BadFlag, Flags};
use crate::http::service::Service;
use crate::store::read::LINEARIZABLE_TIMEOUT;
use crate::store::{Consistency, ReadRequest, ReadResult};
use crate::types::{Params, SqlStatement};

/// `GET /db/query?q=SQL` or `POST /db/query` with statements.
pub(crate) async fn query<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    let statements =
        if req.method == Method::GET {
            match req.flags.get("q") {
                Some(q) if !q.trim().is_empty() => vec![SqlStatement {
                    sql: q.to_string(),
                    params: Params::None,
                }],
                _ => return req.render.error(
                    StatusCode::BAD_REQUEST,
                    "GET /db/query needs the SQL in the q parameter, e.g. /db/query?q=SELECT%201",
                ),
            }
        } else {
            match parse_statements(&req.body) {
                Ok(s) => s,
                Err(e) => return bad_request(&req.render, &e),
            }
        };
    api.read(&req, statements).await
}

/// The read `statements` with the flags of the request.
///
/// # Errors
///
/// [`BadFlag`], for a 400, when a flag's value is not valid.
fn read_request(
    flags: &Flags,
    statements: Vec<SqlStatement>,
    forwarded: bool,
) -> Result<ReadRequest, BadFlag> {
    let min_index = match flags.get("min_index").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(BadFlag::MinIndex),
    };
    let freshness = flags.duration("freshness")?;
    let freshness_strict = flags.get("freshness_strict").is_some();
    if freshness_strict && freshness.is_none() {
        return Err(BadFlag::StrictWithoutFreshness);
    }
    Ok(ReadRequest {
        statements,
        level: Consistency::from_param(flags.get("level")),
        freshness,
        freshness_strict,
        min_index,
        linearizable_timeout: flags
            .duration("linearizable_timeout")?
            .unwrap_or(LINEARIZABLE_TIMEOUT),
        transaction: flags.flag("transaction"),
        blob_array: flags.flag("blob_array"),
        forwarded,
    })
}

impl<S: Service> Api<S> {
    /// Serves a read at the level the request asks for.
    pub(crate) async fn read(&self, req: &Incoming, statements: Vec<SqlStatement>) -> Response {
        let started = Instant::now();
        let r = &req.render;
        let read = match read_request(&req.flags, statements, req.forwarded) {
            Ok(read) => read,
            Err(e) => return r.error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match self.store.query(read).await {
            Ok(ReadResult::Rows(outcomes)) => {
                r.json(StatusCode::OK, &r.results(&outcomes, started))
            }
            Ok(ReadResult::Applied(applied)) => self.applied(req, &applied, started),
            Err(e) => self.store_error(req, e, false).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<ReadRequest, BadFlag> {
        read_request(&Flags::parse(Some(q)), Vec::new(), false)
    }

    #[test]
    fn the_flags_of_a_read_become_its_request() {
        let r =
            parse("level=STRONG&min_index=7&freshness=1s&freshness_strict&transaction").unwrap();
        assert_eq!(r.level, Consistency::Strong);
        assert_eq!(r.min_index, Some(7));
        assert_eq!(r.freshness, Some(std::time::Duration::from_secs(1)));
        assert!(r.freshness_strict && r.transaction && !r.blob_array);
        assert_eq!(r.linearizable_timeout, LINEARIZABLE_TIMEOUT);
        assert_eq!(parse("level=sometimes").unwrap().level, Consistency::Weak);
        assert_eq!(parse("level=auto").unwrap().level, Consistency::Auto);
    }

    #[test]
    fn invalid_read_flags_are_refused() {
        assert_eq!(parse("min_index=-1").unwrap_err(), BadFlag::MinIndex);
        assert_eq!(
            parse("freshness_strict").unwrap_err(),
            BadFlag::StrictWithoutFreshness
        );
        assert!(parse("freshness=soon").is_err());
        assert!(parse("linearizable_timeout=x").is_err());
    }
}
