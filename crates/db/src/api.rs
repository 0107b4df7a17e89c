//! The SQL API on each db node's main address: rqlite's HTTP API.
//!
//! - `POST /db/execute`: writes through Raft (`?transaction`, `?timings`, `?queue`, `?wait`).
//! - `POST /db/query`, `GET /db/query?q=`: reads at a consistency level ([`crate::read`]).
//! - `POST /db/request`: reads served as a query, anything else (or `level=strong`) through
//!   Raft with the rows of each statement.
//! - `GET /db/backup`, `POST /db/load`: [`crate::backup`].
//! - `GET /status`, `GET /nodes`, `GET /readyz`: [`crate::status`].
//!
//! Every answer can be indented with `pretty`; results carry times with `timings`, rows come
//! as objects with `associative` and BLOBs as byte arrays with `blob_array`
//! ([`crate::render`]). A follower forwards what only the leader can serve (writes, `weak`,
//! `linearizable` and `strong` reads, backups, loads) to the leader's API ([`crate::forward`]),
//! or, with `redirect`, answers 301 with the leader's URL in `Location`. No leader: 503
//! `{"error":"no leader"}`. Bad input: 400 with a JSON error naming the statement at fault.
//!
//! On the leader, writes go through the group-commit batcher ([`crate::batch`]). Each write
//! answer carries its Raft log index (`raft_index` and `X-Raft-Index`), for read-your-writes
//! with `min_index` ([`crate::read`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openraft::error::ForwardToLeader;
use serde_json::Value;
use webfarm_db_client::{Answer, Consistency};
use webfarm_node::http::HttpClient;

use crate::batch::{Applied, Batcher, WriteError};
use crate::command::{Request, SqlRequest};
use crate::forward::{ForwardError, Forwarder, FORWARDED};
use crate::health::{DbHealth, Leader};
use crate::network::LeaderContact;
use crate::queue::{Attempt, QueueWriter, WriteQueue};
use crate::render::Render;
use crate::request::{parse_statements, BadRequest, Flags};
use crate::store::Store;
use crate::types::{NodeInfo, Raft, StatementResult};

/// How long the leader waits for a write to be committed and applied. Shorter than
/// [`FORWARD_TIMEOUT`], so a follower relays the leader's answer (even "not committed in
/// time") instead of timing out itself.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take. Shorter than the client's per-attempt timeout
/// ([`webfarm_db_client::ATTEMPT_TIMEOUT`]), so the client gets the leader's answer rather than
/// an ambiguous timeout.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a read waits for `min_index` to be applied. Shorter than [`FORWARD_TIMEOUT`]
/// and the client's per-attempt timeout, so a lagging node answers 503 and the client can try
/// another node in time.
pub(crate) const MIN_INDEX_WAIT: Duration = Duration::from_secs(2);
/// Default of rqlite's `timeout` for `?queue&wait` and `/readyz?sync`.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for the write queue to drain.
const QUEUE_DRAIN: Duration = Duration::from_secs(10);
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the API handlers share.
pub(crate) struct Api {
    pub(crate) raft: Raft,
    pub(crate) health: DbHealth,
    pub(crate) store: Arc<Store>,
    pub(crate) name: String,
    pub(crate) forwarder: Forwarder,
    pub(crate) http: HttpClient,
    pub(crate) batcher: Batcher,
    pub(crate) queue: WriteQueue,
    pub(crate) contact: LeaderContact,
    pub(crate) data_dir: PathBuf,
    pub(crate) started: SystemTime,
}

impl Api {
    /// The API state of a node, with its group-commit batcher and write queue running.
    pub(crate) fn new(
        raft: Raft,
        health: DbHealth,
        store: Arc<Store>,
        name: String,
        http: HttpClient,
        data_dir: PathBuf,
    ) -> Arc<Api> {
        Arc::new_cyclic(|me| Api {
            batcher: Batcher::spawn(raft.clone(), health.id),
            queue: WriteQueue::spawn(me.clone()),
            raft,
            health,
            store,
            name,
            forwarder: Forwarder::new(http.clone()),
            http,
            contact: LeaderContact::default(),
            data_dir,
            started: SystemTime::now(),
        })
    }

    /// When this node last heard from its leader (shared with the Raft endpoint).
    pub(crate) fn leader_contact(&self) -> LeaderContact {
        self.contact.clone()
    }

    /// Stops taking queued writes and waits (bounded) until the queued ones are written.
    pub(crate) async fn drain_queue(&self) {
        if !self.queue.close(QUEUE_DRAIN).await {
            tracing::warn!(
                pending = self.queue.pending(),
                "queued writes were still not written after {QUEUE_DRAIN:?} at shutdown"
            );
        }
    }

    /// Whether this node is a learner (not a voter of the current membership).
    pub(crate) fn is_learner(&self) -> bool {
        let m = self.health.metrics.borrow();
        let membership = m.membership_config.membership();
        !membership.voter_ids().any(|id| id == self.health.id)
    }
}

/// The API router.
pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/db/execute", post(execute))
        .route(
            "/db/query",
            post(crate::read::query).get(crate::read::query),
        )
        .route("/db/request", post(request))
        .route("/db/backup", get(crate::backup::backup))
        .route("/db/load", post(crate::backup::load))
        .route("/status", get(crate::status::status))
        .route("/nodes", get(crate::status::nodes))
        .route("/readyz", get(crate::status::readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// The parts of an incoming request needed to serve or forward it.
pub(crate) struct Incoming {
    pub(crate) method: Method,
    pub(crate) path_and_query: String,
    pub(crate) forwarded: bool,
    pub(crate) body: Bytes,
    pub(crate) flags: Flags,
    pub(crate) render: Render,
}

/// SQL API handlers take their request as an [`Incoming`] (the body is read with axum's
/// `Bytes` extractor, so the router's body limit applies).
impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let (method, uri, headers) = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        );
        let body = Bytes::from_request(HttpRequest::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Incoming::new(method, &uri, &headers, body))
    }
}

impl Incoming {
    pub(crate) fn new(method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Incoming {
        let flags = Flags::parse(uri.query());
        Incoming {
            method,
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            forwarded: headers.contains_key(FORWARDED),
            body,
            render: Render::of(&flags),
            flags,
        }
    }
}

pub(crate) fn bad_request(r: &Render, e: &BadRequest) -> Response {
    r.json(StatusCode::BAD_REQUEST, &e.to_answer())
}

async fn execute(State(api): State<Arc<Api>>, req: Incoming) -> Response {
    if req.flags.flag("queue") {
        return api.queued(&req).await;
    }
    match parse_statements(&req.body) {
        Ok(statements) => {
            let sql = SqlRequest {
                statements,
                transaction: req.flags.flag("transaction"),
                blob_array: req.flags.flag("blob_array"),
                ..SqlRequest::default()
            };
            api.write(&req, sql).await
        }
        Err(e) => bad_request(&req.render, &e),
    }
}

async fn request(State(api): State<Arc<Api>>, req: Incoming) -> Response {
    let statements = match parse_statements(&req.body) {
        Ok(s) => s,
        Err(e) => return bad_request(&req.render, &e),
    };
    let strong = crate::read::parse_level(&req.flags, api.is_learner()) == Consistency::Strong;
    let sqls = statements.iter().map(|s| s.sql.clone()).collect();
    let read_only = match api.store.all_read_only(sqls).await {
        Ok(r) => r,
        Err(e) => return req.render.error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    if read_only && !strong {
        return api.read(&req, statements).await;
    }
    let sql = SqlRequest {
        statements,
        transaction: req.flags.flag("transaction"),
        want_rows: true,
        read_only: false,
        blob_array: req.flags.flag("blob_array"),
    };
    api.write(&req, sql).await
}

impl Api {
    /// Answers 301 to the same path and query on `leader`'s API.
    pub(crate) fn redirect(&self, req: &Incoming, leader: &NodeInfo) -> Response {
        let location = format!("http://{}{}", leader.api_addr, req.path_and_query);
        let mut resp = req.render.error(
            StatusCode::MOVED_PERMANENTLY,
            format!(
                "not the leader; the leader is {} at {location}",
                leader.name
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    /// Forwards `req` to `leader` (one that certainly did not see it may be retried: 503; one
    /// that may have been applied: 504). A forwarded request never forwards again.
    pub(crate) async fn forward(
        &self,
        req: &Incoming,
        leader: &NodeInfo,
        write: bool,
        timeout: Duration,
    ) -> Response {
        if req.forwarded {
            return req
                .render
                .error(StatusCode::SERVICE_UNAVAILABLE, "not leader");
        }
        let change = write.then_some("the write");
        let parts = (&req.method, req.path_and_query.as_str(), &req.body);
        match self.forwarder.relay(parts, leader, timeout, change).await {
            Ok(resp) => resp,
            Err((status, reason)) => req.render.error(status, reason),
        }
    }

    /// `None` when this node leads and should serve `req`; otherwise the answer: a redirect
    /// (`?redirect`), the leader's answer, or 503 without a leader.
    pub(crate) async fn via_leader(
        &self,
        req: &Incoming,
        write: bool,
        timeout: Duration,
    ) -> Option<Response> {
        match self.health.leader() {
            Leader::Me => None,
            Leader::Other(node) if req.flags.flag("redirect") => Some(self.redirect(req, &node)),
            Leader::Other(node) => Some(self.forward(req, &node, write, timeout).await),
            Leader::Unknown if req.forwarded => Some(
                req.render
                    .error(StatusCode::SERVICE_UNAVAILABLE, "not leader"),
            ),
            Leader::Unknown => Some(
                req.render
                    .error(StatusCode::SERVICE_UNAVAILABLE, "no leader"),
            ),
        }
    }

    /// Serves `req` on the leader named by openraft's `ForwardToLeader`, or answers 503.
    pub(crate) async fn forward_to(
        &self,
        req: &Incoming,
        f: &ForwardToLeader<u64, NodeInfo>,
        write: bool,
    ) -> Response {
        match (&f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) if *id != self.health.id => {
                if req.flags.flag("redirect") {
                    self.redirect(req, node)
                } else {
                    self.forward(req, node, write, FORWARD_TIMEOUT).await
                }
            }
            _ if req.forwarded => req
                .render
                .error(StatusCode::SERVICE_UNAVAILABLE, "not leader"),
            _ => req
                .render
                .error(StatusCode::SERVICE_UNAVAILABLE, "no leader"),
        }
    }

    /// Proposes `request` through the group-commit batcher (this node must lead).
    pub(crate) async fn propose(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Applied, WriteError> {
        match tokio::time::timeout(timeout, self.batcher.submit(request, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::Timeout(timeout)),
        }
    }

    /// The answer to a write that got no result.
    pub(crate) async fn write_error(&self, req: &Incoming, e: WriteError) -> Response {
        let r = &req.render;
        match e {
            WriteError::NotLeader(f) => self.forward_to(req, &f, true).await,
            WriteError::Stopped(m) => r.error(StatusCode::SERVICE_UNAVAILABLE, m),
            WriteError::Timeout(d) => r.error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the write was not committed within {d:?}; it may still be applied"),
            ),
            WriteError::Lost => r.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "raft stopped before confirming the write; it may or may not have been applied",
            ),
            WriteError::Other(m) => r.error(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }

    /// The 200 answer of an applied request: its results and its log index.
    pub(crate) fn applied(&self, req: &Incoming, applied: &Applied, started: Instant) -> Response {
        let body = Answer {
            raft_index: Some(applied.index),
            ..req.render.results(&applied.outcomes, started)
        };
        let mut out = req.render.json(StatusCode::OK, &body);
        out.headers_mut()
            .insert("x-raft-index", HeaderValue::from(applied.index));
        out
    }

    /// Serves a write: proposes it on the leader, or forwards it there.
    pub(crate) async fn write(&self, req: &Incoming, sql: SqlRequest) -> Response {
        let started = Instant::now();
        if let Some(resp) = self.via_leader(req, true, FORWARD_TIMEOUT).await {
            return resp;
        }
        match self.propose(Request::Sql(sql), WRITE_TIMEOUT).await {
            Ok(applied) => self.applied(req, &applied, started),
            Err(e) => self.write_error(req, e).await,
        }
    }

    /// Serves `/db/execute?queue`: queues the statements and answers with their sequence
    /// number at once, or with `wait` once they are written.
    async fn queued(&self, req: &Incoming) -> Response {
        let started = Instant::now();
        let r = &req.render;
        if !req.flags.flag("noleader") && self.health.leader() == Leader::Unknown {
            return r.error(StatusCode::SERVICE_UNAVAILABLE, "no leader");
        }
        let timeout = match req.flags.duration("timeout") {
            Ok(t) => t.unwrap_or(DEFAULT_WAIT),
            Err(e) => return r.error(StatusCode::BAD_REQUEST, e),
        };
        let wait = req.flags.flag("wait");
        let empty = matches!(serde_json::from_slice::<Value>(&req.body), Ok(Value::Array(a)) if a.is_empty());
        let seq = if empty && wait {
            // A checkpoint: wait for what is already queued.
            self.queue.flushed() + self.queue.pending()
        } else {
            let statements = match parse_statements(&req.body) {
                Ok(s) => s,
                Err(e) => return bad_request(r, &e),
            };
            let sql = SqlRequest {
                statements,
                transaction: req.flags.flag("transaction"),
                ..SqlRequest::default()
            };
            match self.queue.push(sql) {
                Ok(seq) => seq,
                Err(m) => return r.error(StatusCode::SERVICE_UNAVAILABLE, m),
            }
        };
        if wait && !self.queue.wait_flushed(seq, timeout).await {
            return r.error(
                StatusCode::REQUEST_TIMEOUT,
                format!("timeout: sequence number {seq} was not written within {timeout:?}"),
            );
        }
        let body = Answer {
            sequence_number: Some(seq),
            ..r.results(&[], started)
        };
        r.json(StatusCode::OK, &body)
    }
}

/// Logs the statement errors of a queued write (its client was told only "queued").
fn log_queued_errors(outcomes: &[crate::types::Outcome]) {
    for (i, o) in outcomes.iter().enumerate() {
        if let StatementResult::Error(e) = &o.result {
            tracing::warn!(statement = i, error = %e, "a queued write failed");
        }
    }
}

impl QueueWriter for Api {
    async fn write_queued(&self, request: SqlRequest) -> Attempt {
        match self.health.leader() {
            Leader::Me => match self.propose(Request::Sql(request), WRITE_TIMEOUT).await {
                Ok(a) => {
                    log_queued_errors(&a.outcomes);
                    Attempt::Done
                }
                Err(WriteError::NotLeader(_)) => Attempt::Retry("not leader".into()),
                Err(WriteError::Stopped(m)) => Attempt::Retry(m),
                Err(e) => Attempt::Unknown(format!("{e:?}")),
            },
            Leader::Other(node) => {
                let path = if request.transaction {
                    "/db/execute?transaction"
                } else {
                    "/db/execute"
                };
                let body = webfarm_db_client::request_body(&request.statements);
                let sent = self
                    .forwarder
                    .send(
                        Method::POST,
                        &node.api_addr,
                        path,
                        body.into(),
                        FORWARD_TIMEOUT,
                    )
                    .await;
                match sent {
                    Ok(resp) if resp.status == StatusCode::OK => Attempt::Done,
                    Ok(resp) if resp.status == StatusCode::SERVICE_UNAVAILABLE => {
                        Attempt::Retry(String::from_utf8_lossy(&resp.body).into_owned())
                    }
                    Ok(resp) => Attempt::Unknown(format!(
                        "leader {} answered {}: {}",
                        node.name,
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    )),
                    Err(ForwardError::Connect(m)) => Attempt::Retry(m),
                    Err(ForwardError::Uncertain(m)) => Attempt::Unknown(m),
                }
            }
            Leader::Unknown => Attempt::Retry("no leader".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_ordered_so_an_answer_beats_the_timeout_above() {
        assert!(WRITE_TIMEOUT < FORWARD_TIMEOUT, "leader write < forward");
        assert!(
            FORWARD_TIMEOUT < webfarm_db_client::ATTEMPT_TIMEOUT,
            "forward < client attempt"
        );
        assert!(MIN_INDEX_WAIT < FORWARD_TIMEOUT, "min_index wait < forward");
    }
}
