//! The SQL API on each db node's main address: rqlite's HTTP API.
//!
//! - `POST /db/execute`: writes through Raft (`?transaction`, `?timings`, `?queue`, `?wait`).
//! - `POST /db/query`, `GET /db/query?q=`: reads at a consistency level ([`crate::http::read`]).
//! - `POST /db/request`: reads served as a query, anything else (or `level=strong`) through
//!   Raft with the rows of each statement.
//! - `GET /db/backup`, `POST /db/load`: [`crate::http::backup`].
//! - `GET /status`, `GET /nodes`, `GET /readyz`: [`crate::http::status`].
//!
//! Every answer can be indented with `pretty`; results carry times with `timings`, rows come
//! as objects with `associative` and BLOBs as byte arrays with `blob_array`
//! ([`crate::http::render`]). A follower forwards what only the leader can serve (writes, `weak`,
//! `linearizable` and `strong` reads, backups, loads) to the leader's API ([`crate::http::forward`]),
//! or, with `redirect`, answers 301 with the leader's URL in `Location`. No leader: 503
//! `{"error":"no leader"}`. Bad input: 400 with a JSON error naming the statement at fault.
//!
//! The handlers parse the request, call the store through [`Service`] and render its answer
//! or its [`StoreError`]; the store writes through the Raft log with group commit. Each write
//! answer carries its Raft log index (`raft_index` and `X-Raft-Index`), for read-your-writes
//! with `min_index` ([`crate::http::read`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use webfarm_db_client::{Answer, Consistency, ErrorAnswer};
use webfarm_node::http::HttpClient;

use crate::command::{Request, SqlRequest};
use crate::http::forward::{ForwardError, Forwarder, FORWARDED};
use crate::http::queue::{Attempt, QueueWriter, WriteQueue};
use crate::http::render::Render;
use crate::http::request::{parse_statements, BadRequest, Flags};
use crate::http::service::Service;
#[cfg(test)]
pub(crate) use crate::store::read::MIN_INDEX_WAIT;
pub(crate) use crate::store::WRITE_TIMEOUT;
use crate::store::{Applied, Leader, StoreError};
use crate::types::{NodeInfo, StatementResult};

/// How long a forwarded request may take. Shorter than the client's per-attempt timeout
/// ([`webfarm_db_client::ATTEMPT_TIMEOUT`]), so the client gets the leader's answer rather than
/// an ambiguous timeout.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);
/// Default of rqlite's `timeout` for `?queue&wait` and `/readyz?sync`.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for the write queue to drain.
const QUEUE_DRAIN: Duration = Duration::from_secs(10);
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the API handlers share.
pub(crate) struct Api<S> {
    pub(crate) store: Arc<S>,
    pub(crate) forwarder: Forwarder,
    pub(crate) http: HttpClient,
    pub(crate) queue: WriteQueue,
    pub(crate) started: SystemTime,
}

impl<S: Service> Api<S> {
    /// The API state of a node, with its write queue running; `forwarded` counts the
    /// requests relayed to the leader.
    pub(crate) fn new(
        store: Arc<S>,
        http: HttpClient,
        forwarded: Arc<std::sync::atomic::AtomicU64>,
    ) -> Arc<Api<S>> {
        Arc::new_cyclic(|me| Api {
            queue: WriteQueue::spawn(me.clone()),
            store,
            forwarder: Forwarder::new(http.clone(), forwarded),
            http,
            started: SystemTime::now(),
        })
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
}

/// The API router: rqlite's API and the membership endpoints ([`crate::http::cluster`]),
/// each behind the check of [`crate::http::auth`].
pub(crate) fn router<S: Service>(
    api: Arc<Api<S>>,
    auth: Arc<crate::http::auth::ApiAuth>,
) -> Router {
    use crate::http::{backup, cluster, read, status};
    Router::new()
        .route("/db/execute", post(execute::<S>))
        .route("/db/query", post(read::query::<S>).get(read::query::<S>))
        .route("/db/request", post(request::<S>))
        .route("/db/backup", get(backup::backup::<S>))
        .route("/db/load", post(backup::load::<S>))
        .route("/status", get(status::status::<S>))
        .route("/nodes", get(status::nodes::<S>))
        .route("/readyz", get(status::readyz::<S>))
        .merge(cluster::routes::<S>())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::http::auth::check,
        ))
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

async fn execute<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
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

async fn request<S: Service>(State(api): State<Arc<Api<S>>>, req: Incoming) -> Response {
    let statements = match parse_statements(&req.body) {
        Ok(s) => s,
        Err(e) => return bad_request(&req.render, &e),
    };
    let strong = Consistency::from_param(req.flags.get("level")) == Consistency::Strong;
    let sqls = statements.iter().map(|s| s.sql.clone()).collect();
    let read_only = match api.store.all_read_only(sqls).await {
        Ok(r) => r,
        Err(e) => {
            return req
                .render
                .error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
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

impl<S: Service> Api<S> {
    /// Answers 301 to the same path and query on `leader`'s API.
    pub(crate) fn redirect(&self, req: &Incoming, leader: &NodeInfo) -> Response {
        let location = self.http.url(&leader.api_addr, &req.path_and_query);
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

    /// The answer to a request this node cannot serve because it does not lead: a redirect
    /// to `leader` (`?redirect`), `leader`'s answer, or 503 without a leader (or for a request
    /// forwarded already).
    pub(crate) async fn to_leader(
        &self,
        req: &Incoming,
        leader: Option<&NodeInfo>,
        write: bool,
        timeout: Duration,
    ) -> Response {
        match leader {
            Some(node) if req.flags.flag("redirect") => self.redirect(req, node),
            Some(node) => self.forward(req, node, write, timeout).await,
            None if req.forwarded => req
                .render
                .error(StatusCode::SERVICE_UNAVAILABLE, "not leader"),
            None => req
                .render
                .error(StatusCode::SERVICE_UNAVAILABLE, "no leader"),
        }
    }

    /// `None` when this node leads and should serve `req`; otherwise the answer of
    /// [`Api::to_leader`].
    pub(crate) async fn via_leader(
        &self,
        req: &Incoming,
        write: bool,
        timeout: Duration,
    ) -> Option<Response> {
        match self.store.leader() {
            Leader::Me => None,
            Leader::Other(node) => Some(self.to_leader(req, Some(&node), write, timeout).await),
            Leader::Unknown => Some(self.to_leader(req, None, write, timeout).await),
        }
    }

    /// The answer to a request the store refused: forwarded to the leader it names, or the
    /// status that says why (`write`: a refused write was a change, see [`Api::forward`]).
    pub(crate) async fn store_error(&self, req: &Incoming, e: StoreError, write: bool) -> Response {
        let r = &req.render;
        let status = match &e {
            StoreError::NotLeader { leader } => {
                return self
                    .to_leader(req, leader.as_ref(), write, FORWARD_TIMEOUT)
                    .await
            }
            StoreError::LogBehind { leader } => {
                return self.forward(req, leader, false, FORWARD_TIMEOUT).await
            }
            // As rqlite: a stale read is an answer, not a failure.
            StoreError::StaleRead => return r.error(StatusCode::OK, "stale read"),
            StoreError::BeyondLog { commit_index, .. } => {
                let answer = ErrorAnswer {
                    beyond_log: true,
                    commit_index: Some(*commit_index),
                    ..ErrorAnswer::new(e.to_string())
                };
                return r.json(StatusCode::BAD_REQUEST, &answer);
            }
            StoreError::InvalidLoad(_) => StatusCode::BAD_REQUEST,
            StoreError::NotApplied { .. }
            | StoreError::CatchingUp { .. }
            | StoreError::NotConfirmed(_)
            | StoreError::Unconfirmed(_)
            | StoreError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::CommitTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            StoreError::Lost
            | StoreError::Rejected(_)
            | StoreError::Database(_)
            | StoreError::Dump(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        r.error(status, e.to_string())
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

    /// Serves a write: through the store on the leader, or forwarded there.
    pub(crate) async fn write(&self, req: &Incoming, sql: SqlRequest) -> Response {
        let started = Instant::now();
        match self.store.execute(Request::Sql(sql), WRITE_TIMEOUT).await {
            Ok(applied) => self.applied(req, &applied, started),
            Err(e) => self.store_error(req, e, true).await,
        }
    }

    /// Serves `/db/execute?queue`: queues the statements and answers with their sequence
    /// number at once, or with `wait` once they are written.
    async fn queued(&self, req: &Incoming) -> Response {
        let started = Instant::now();
        let r = &req.render;
        if !req.flags.flag("noleader") && self.store.leader() == Leader::Unknown {
            return r.error(StatusCode::SERVICE_UNAVAILABLE, "no leader");
        }
        let timeout = match req.flags.duration("timeout") {
            Ok(t) => t.unwrap_or(DEFAULT_WAIT),
            Err(e) => return r.error(StatusCode::BAD_REQUEST, e.to_string()),
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
                Err(e) => return r.error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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

impl<S: Service> QueueWriter for Api<S> {
    async fn write_queued(&self, request: SqlRequest) -> Attempt {
        match self.store.leader() {
            Leader::Me => match self
                .store
                .execute(Request::Sql(request), WRITE_TIMEOUT)
                .await
            {
                Ok(a) => {
                    log_queued_errors(&a.outcomes);
                    Attempt::Done
                }
                Err(StoreError::NotLeader { .. }) => Attempt::Retry("not leader".into()),
                Err(StoreError::Stopped(m)) => Attempt::Retry(m),
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
