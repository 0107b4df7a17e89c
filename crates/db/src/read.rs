//! Reads (`/db/query`, and read-only `/db/request`) at rqlite's consistency levels.
//!
//! - `weak` (the default, also for an unknown level): served by the node that believes it
//!   leads; a follower forwards.
//! - `linearizable`: the leader confirms with a quorum that it still leads and waits until it
//!   applied the commit index of that moment (openraft's `ensure_linearizable`), then reads.
//!   `linearizable_timeout=D` bounds that wait (rqlite's parameter; default
//!   [`LINEARIZABLE_TIMEOUT`]): past it the read is not served, 503.
//! - `strong`: the statements go through the Raft log as an entry of their own kind (read-only
//!   statements only), and the leader answers with the rows its apply gave.
//! - `none`: the local copy of whichever node answers. With `freshness=D` a follower that has
//!   not heard from its leader within `D` answers `{"error": "stale read"}` (as rqlite does,
//!   with status 200); with `freshness_strict` too, it must also have applied the leader's
//!   commit index it knows of, or have applied something within `D`. A leader ignores
//!   `freshness`.
//! - `auto`: `none` on a learner (read-only replica), `weak` on a voter.
//!
//! `min_index=N` on a read: the answering node must have applied log index N. A node that has
//! not waits up to [`MIN_INDEX_WAIT`], then answers 503. A follower whose log does not reach N
//! yet forwards the read to the leader; the leader answers an N beyond its own log at once with
//! 400 `{"error": "min_index N is beyond the log (commit index M)", "beyond_log": true,
//! "commit_index": M}`: such an index was never handed out by this cluster (a forged or stale
//! read-your-writes cookie, a wiped cluster), and waiting for it would only time out.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a `linearizable` read waits for a quorum to confirm the leader when the request
/// does not say (`linearizable_timeout`); rqlite's server default.
pub(crate) const LINEARIZABLE_TIMEOUT: Duration = Duration::from_secs(10);

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use openraft::error::{CheckIsLeaderError, RaftError};
use serde_json::{json, Value};

use crate::api::{bad_request, Api, Incoming, FORWARD_TIMEOUT, MIN_INDEX_WAIT, WRITE_TIMEOUT};
use crate::command::{Request, SqlRequest};
use crate::health::Leader;
use crate::request::{parse_statements, Flags};
use crate::types::{Params, SqlStatement};

/// A read consistency level, as the request asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// The local copy, whoever answers.
    None,
    /// The node that believes it leads.
    Weak,
    /// The leader, after confirming its leadership with a quorum.
    Linearizable,
    /// Through the Raft log.
    Strong,
}

/// The level `flags` ask for: `none`, `weak`, `linearizable`, `strong`; `auto` is `none` on a
/// learner and `weak` otherwise; anything else is `weak` (as rqlite does).
pub(crate) fn parse_level(flags: &Flags, learner: bool) -> Level {
    match flags.get("level").map(str::to_ascii_lowercase).as_deref() {
        Some("none") => Level::None,
        Some("linearizable") => Level::Linearizable,
        Some("strong") => Level::Strong,
        Some("auto") if learner => Level::None,
        _ => Level::Weak,
    }
}

/// `GET /db/query?q=SQL` or `POST /db/query` with statements.
pub(crate) async fn query(State(api): State<Arc<Api>>, req: Incoming) -> Response {
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

impl Api {
    /// Whether a `none` read with `freshness` is stale here (see the module docs).
    fn is_stale(&self, freshness: Duration, strict: bool) -> bool {
        let Some(last) = self.contact.last() else {
            return true;
        };
        if last.elapsed() > freshness {
            return true;
        }
        if !strict {
            return false;
        }
        let applied = *self.store.applied_index().borrow();
        if applied >= self.health.log.committed_index() {
            return false;
        }
        self.store.applied_at().elapsed() > freshness
    }

    /// Serves a read at the level the request asks for.
    pub(crate) async fn read(&self, req: &Incoming, statements: Vec<SqlStatement>) -> Response {
        let started = Instant::now();
        let r = &req.render;
        let level = parse_level(&req.flags, self.is_learner());
        let min_index = match req.flags.get("min_index").map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return r.error(
                    StatusCode::BAD_REQUEST,
                    "min_index: expected a Raft log index (an unsigned integer)",
                )
            }
        };
        let freshness = match req.flags.duration("freshness") {
            Ok(f) => f,
            Err(e) => return r.error(StatusCode::BAD_REQUEST, e),
        };
        let strict = req.flags.get("freshness_strict").is_some();
        if strict && freshness.is_none() {
            return r.error(
                StatusCode::BAD_REQUEST,
                "freshness_strict requires freshness",
            );
        }
        let linearizable_timeout = match req.flags.duration("linearizable_timeout") {
            Ok(d) => d.unwrap_or(LINEARIZABLE_TIMEOUT),
            Err(e) => return r.error(StatusCode::BAD_REQUEST, e),
        };
        let blob_array = req.flags.flag("blob_array");
        match level {
            Level::Strong => {
                if let Some(resp) = self.via_leader(req, false, FORWARD_TIMEOUT).await {
                    return resp;
                }
                let sql = SqlRequest {
                    statements,
                    transaction: req.flags.flag("transaction"),
                    want_rows: true,
                    read_only: true,
                    blob_array,
                };
                return match self.propose(Request::Sql(sql), WRITE_TIMEOUT).await {
                    Ok(applied) => self.applied(req, &applied, started),
                    Err(e) => self.write_error(req, e).await,
                };
            }
            Level::Weak | Level::Linearizable => {
                if let Some(resp) = self.via_leader(req, false, FORWARD_TIMEOUT).await {
                    return resp;
                }
            }
            Level::None => {
                if let Some(f) = freshness.filter(|f| !f.is_zero()) {
                    if self.health.leader() != Leader::Me && self.is_stale(f, strict) {
                        return r.json(StatusCode::OK, &json!({ "error": "stale read" }));
                    }
                }
            }
        }
        if level == Level::Linearizable {
            let confirmed =
                tokio::time::timeout(linearizable_timeout, self.raft.ensure_linearizable()).await;
            let Ok(confirmed) = confirmed else {
                return r.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "leadership not confirmed by a quorum within linearizable_timeout \
                         ({linearizable_timeout:?}); the read was not served"
                    ),
                );
            };
            match confirmed {
                Ok(_) => {}
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return self.forward_to(req, &f, false).await
                }
                Err(e) => {
                    return r.error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot confirm leadership: {e}"),
                    )
                }
            }
        }
        if matches!(level, Level::Weak | Level::Linearizable) {
            if let Some(resp) = self.reach_startup_log(req).await {
                return resp;
            }
        }
        if let Some(n) = min_index {
            if let Some(resp) = self.reach_min_index(req, n).await {
                return resp;
            }
        }
        match self.store.query(statements, blob_array).await {
            Ok(outcomes) => r.json(
                StatusCode::OK,
                &Value::Object(r.results(&outcomes, started)),
            ),
            Err(e) => r.error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    /// Makes sure the leader applied the log it held when it started before it serves a
    /// `weak` or `linearizable` read; `Some(503)` when that did not happen within
    /// [`MIN_INDEX_WAIT`]. openraft restores a leader that restarts within its term as leader
    /// at once, with the commit index `raft-log.db` saved, which can trail what it committed
    /// and acknowledged before it stopped; and a database rebuilt at start (see
    /// [`crate::applied`]) holds only what was applied again up to that index. Every entry of
    /// a leader's log commits while it leads, so once its applied index passes its startup
    /// log, every write it acknowledged before the restart is in its database.
    async fn reach_startup_log(&self, req: &Incoming) -> Option<Response> {
        let startup = self.store.startup_log_index();
        if *self.store.applied_index().borrow() >= startup {
            return None;
        }
        match self.wait_applied(startup, MIN_INDEX_WAIT).await {
            Ok(()) => None,
            Err(applied) => Some(req.render.error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this node restarted and has applied its log up to {applied} of {startup}; \
                     retry"
                ),
            )),
        }
    }

    /// Makes sure this node applied log index `n` before a read; `Some(answer)` when the read
    /// must not run here: `n` is beyond the leader's log (400), the leader serves it instead
    /// (forwarded), or `n` was not applied within [`MIN_INDEX_WAIT`] (503).
    async fn reach_min_index(&self, req: &Incoming, n: u64) -> Option<Response> {
        if *self.store.applied_index().borrow() >= n {
            return None;
        }
        let last_log = self.health.metrics.borrow().last_log_index.unwrap_or(0);
        if n > last_log {
            match self.health.leader() {
                // A leader's log holds every committed entry: nothing past it was handed out.
                Leader::Me => {
                    let commit = self.health.log.committed_index();
                    return Some(req.render.json(
                        StatusCode::BAD_REQUEST,
                        &json!({
                            "error": format!(
                                "min_index {n} is beyond the log (commit index {commit})"
                            ),
                            "beyond_log": true,
                            "commit_index": commit,
                        }),
                    ));
                }
                // The leader knows whether n exists, and has it applied if it does.
                Leader::Other(node) if !req.forwarded => {
                    return Some(self.forward(req, &node, false, FORWARD_TIMEOUT).await)
                }
                _ => {}
            }
        }
        match self.wait_applied(n, MIN_INDEX_WAIT).await {
            Ok(()) => None,
            Err(applied) => Some(req.render.error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {} has applied log index {applied}, below min_index {n}, after \
                     {MIN_INDEX_WAIT:?}; try another node or later",
                    self.name
                ),
            )),
        }
    }

    /// Waits until this node applied log index `n`; `Err(applied)` after `timeout`.
    pub(crate) async fn wait_applied(&self, n: u64, timeout: Duration) -> Result<(), u64> {
        let mut rx = self.store.applied_index();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&a| a >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(*rx.borrow())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_levels_are_weak_and_auto_depends_on_the_node() {
        let level = |q: &str, learner| parse_level(&Flags::parse(Some(q)), learner);
        assert_eq!(level("level=none", false), Level::None);
        assert_eq!(level("level=STRONG", false), Level::Strong);
        assert_eq!(level("level=linearizable", false), Level::Linearizable);
        assert_eq!(level("level=sometimes", false), Level::Weak);
        assert_eq!(level("", false), Level::Weak);
        assert_eq!(level("level=auto", true), Level::None);
        assert_eq!(level("level=auto", false), Level::Weak);
    }
}
