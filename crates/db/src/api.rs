//! The SQL API on each db node's main address: rqlite's HTTP API.
//!
//! - `POST /db/execute`: writes through Raft (`?transaction`, `?timings`).
//! - `POST /db/query`, `GET /db/query?q=`: reads (`level=none|weak|linearizable`, `min_index`).
//! - `POST /db/request`: reads served as a query, anything else through Raft.
//! - `GET /status`, `GET /nodes`, `GET /readyz`.
//!
//! A follower forwards writes (and `weak`/`linearizable` reads) to the leader's API; see
//! [`crate::forward`]. No leader: 503 `{"error":"no leader"}`. Bad input: 400 with a JSON
//! error naming the statement at fault.
//!
//! `min_index=N` on a read: the answering node must have applied log index N. A node that has
//! not waits up to [`MIN_INDEX_WAIT`], then answers 503. A follower whose log does not reach N
//! yet forwards the read to the leader; the leader answers an N beyond its own log at once with
//! 400 `{"error": "min_index N is beyond the log (commit index M)", "beyond_log": true,
//! "commit_index": M}`: such an index was never handed out by this cluster (a forged or stale
//! read-your-writes cookie, a wiped cluster), and waiting for it would only time out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use serde_json::{json, Value};
use webfarm_node::http::HttpClient;
use webfarm_node::Health as _;

use crate::client::Consistency;
use crate::determinism::splitmix64;
use crate::forward::{ForwardError, Forwarder, FORWARDED};
use crate::health::{DbHealth, Leader};
use crate::request::{parse_statements, BadRequest, Flags};
use crate::store::Store;
use crate::types::{Command, NodeInfo, Outcome, Raft, SqlStatement};

/// How long the leader waits for a write to be committed and applied. Shorter than
/// [`FORWARD_TIMEOUT`], so a follower relays the leader's answer (even "not committed in
/// time") instead of timing out itself.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take. Shorter than the client's per-attempt timeout
/// ([`crate::client::ATTEMPT_TIMEOUT`]), so the client gets the leader's answer rather than
/// an ambiguous timeout.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a read waits for `min_index` to be applied. Shorter than [`FORWARD_TIMEOUT`]
/// and the client's per-attempt timeout, so a lagging node answers 503 and the client can try
/// another node in time.
pub(crate) const MIN_INDEX_WAIT: Duration = Duration::from_secs(2);
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
    pub(crate) seq: AtomicU64,
}

/// The API router.
pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/db/execute", post(execute))
        .route("/db/query", post(query).get(query))
        .route("/db/request", post(request))
        .route("/status", get(status))
        .route("/nodes", get(nodes))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// The parts of an incoming request needed to serve or forward it.
struct Incoming {
    method: Method,
    path_and_query: String,
    forwarded: bool,
    body: Bytes,
    flags: Flags,
}

impl Incoming {
    fn new(method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Incoming {
        Incoming {
            method,
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            forwarded: headers.contains_key(FORWARDED),
            body,
            flags: Flags::parse(uri.query()),
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

fn bad_request(e: &BadRequest) -> Response {
    json_response(StatusCode::BAD_REQUEST, &e.to_json())
}

fn results_json(
    outcomes: &[Outcome],
    timings: bool,
    started: Instant,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "results".into(),
        Value::Array(outcomes.iter().map(|o| o.to_json(timings)).collect()),
    );
    if timings {
        m.insert("time".into(), Value::from(started.elapsed().as_secs_f64()));
    }
    m
}

async fn execute(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Incoming::new(method, &uri, &headers, body);
    match parse_statements(&req.body) {
        Ok(statements) => api.write(&req, statements, false).await,
        Err(e) => bad_request(&e),
    }
}

async fn query(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Incoming::new(method, &uri, &headers, body);
    let statements =
        if req.method == Method::GET {
            match req.flags.get("q") {
                Some(q) if !q.trim().is_empty() => vec![SqlStatement {
                    sql: q.to_string(),
                    params: crate::types::Params::None,
                }],
                _ => return error_response(
                    StatusCode::BAD_REQUEST,
                    "GET /db/query needs the SQL in the q parameter, e.g. /db/query?q=SELECT%201",
                ),
            }
        } else {
            match parse_statements(&req.body) {
                Ok(s) => s,
                Err(e) => return bad_request(&e),
            }
        };
    api.read(&req, statements).await
}

async fn request(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Incoming::new(method, &uri, &headers, body);
    let statements = match parse_statements(&req.body) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let sqls = statements.iter().map(|s| s.sql.clone()).collect();
    match api.store.all_read_only(sqls).await {
        Ok(true) => api.read(&req, statements).await,
        Ok(false) => api.write(&req, statements, true).await,
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn parse_level(flags: &Flags) -> Result<Consistency, String> {
    match flags.get("level").unwrap_or("weak") {
        "none" => Ok(Consistency::None),
        "" | "weak" => Ok(Consistency::Weak),
        "linearizable" | "strong" => Ok(Consistency::Linearizable),
        other => Err(format!(
            "level: {other:?} is not a read consistency level; expected none, weak or \
             linearizable"
        )),
    }
}

impl Api {
    fn next_seed(&self) -> u64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut s =
            nanos ^ self.health.id ^ self.seq.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        splitmix64(&mut s)
    }

    /// Forwards `req` to `leader`; a forwarded request never forwards again.
    async fn forward(&self, req: &Incoming, leader: &NodeInfo, write: bool) -> Response {
        if req.forwarded {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "not leader");
        }
        let sent = self
            .forwarder
            .send(
                req.method.clone(),
                &leader.api_addr,
                &req.path_and_query,
                req.body.clone(),
                FORWARD_TIMEOUT,
            )
            .await;
        match sent {
            Ok(f) => {
                let mut resp = (f.status, f.body).into_response();
                for name in [axum::http::header::CONTENT_TYPE.as_str(), "x-raft-index"] {
                    if let Some(v) = f.headers.get(name) {
                        resp.headers_mut()
                            .insert(axum::http::HeaderName::from_static(name), v.clone());
                    }
                }
                resp
            }
            Err(ForwardError::Connect(m)) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("leader {} is unreachable: {m}", leader.name),
            ),
            Err(ForwardError::Uncertain(m)) if write => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "no answer from leader {} ({m}); the write may or may not have been applied",
                    leader.name
                ),
            ),
            Err(ForwardError::Uncertain(m)) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no answer from leader {}: {m}", leader.name),
            ),
        }
    }

    /// Forwards to the leader named by openraft's `ForwardToLeader`, or answers 503.
    async fn forward_to(
        &self,
        req: &Incoming,
        f: &ForwardToLeader<u64, NodeInfo>,
        write: bool,
    ) -> Response {
        match (&f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) if *id != self.health.id => self.forward(req, node, write).await,
            _ if req.forwarded => error_response(StatusCode::SERVICE_UNAVAILABLE, "not leader"),
            _ => error_response(StatusCode::SERVICE_UNAVAILABLE, "no leader"),
        }
    }

    /// Serves a write: proposes it on the leader, or forwards it there.
    async fn write(
        &self,
        req: &Incoming,
        statements: Vec<SqlStatement>,
        want_rows: bool,
    ) -> Response {
        let started = Instant::now();
        match self.health.leader() {
            Leader::Me => {}
            Leader::Other(node) => return self.forward(req, &node, true).await,
            Leader::Unknown if req.forwarded => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, "not leader")
            }
            Leader::Unknown => return error_response(StatusCode::SERVICE_UNAVAILABLE, "no leader"),
        }
        let cmd = Command {
            statements,
            transaction: req.flags.flag("transaction"),
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            seed: self.next_seed(),
            want_rows,
        };
        // Not proposed when this fails: safe for the client to retry.
        let rx = match self.raft.client_write_ff(cmd).await {
            Ok(rx) => rx,
            Err(e) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("raft is stopping: {e}"),
                )
            }
        };
        let resp =
            match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
                Err(_) => {
                    return error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                        "the write was not committed within {WRITE_TIMEOUT:?}; it may still be \
                         applied"
                    ),
                    )
                }
                Ok(Err(_)) => return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "raft stopped before confirming the write; it may or may not have been applied",
                ),
                Ok(Ok(r)) => r,
            };
        match resp {
            Ok(r) => {
                let mut body = results_json(&r.data.results, req.flags.flag("timings"), started);
                body.insert("raft_index".into(), Value::from(r.log_id.index));
                let mut out = json_response(StatusCode::OK, &Value::Object(body));
                out.headers_mut()
                    .insert("x-raft-index", HeaderValue::from(r.log_id.index));
                out
            }
            Err(ClientWriteError::ForwardToLeader(f)) => self.forward_to(req, &f, true).await,
            Err(ClientWriteError::ChangeMembershipError(e)) => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }

    /// Serves a read at the level the request asks for.
    async fn read(&self, req: &Incoming, statements: Vec<SqlStatement>) -> Response {
        let started = Instant::now();
        let level = match parse_level(&req.flags) {
            Ok(l) => l,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
        };
        let min_index = match req.flags.get("min_index").map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "min_index: expected a Raft log index (an unsigned integer)",
                )
            }
        };
        if level != Consistency::None {
            match self.health.leader() {
                Leader::Me => {}
                Leader::Other(node) => return self.forward(req, &node, false).await,
                Leader::Unknown if req.forwarded => {
                    return error_response(StatusCode::SERVICE_UNAVAILABLE, "not leader")
                }
                Leader::Unknown => {
                    return error_response(StatusCode::SERVICE_UNAVAILABLE, "no leader")
                }
            }
        }
        if level == Consistency::Linearizable {
            match self.raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return self.forward_to(req, &f, false).await
                }
                Err(e) => {
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot confirm leadership: {e}"),
                    )
                }
            }
        }
        if let Some(n) = min_index {
            if let Some(resp) = self.reach_min_index(req, n).await {
                return resp;
            }
        }
        match self.store.query(statements).await {
            Ok(outcomes) => json_response(
                StatusCode::OK,
                &Value::Object(results_json(&outcomes, req.flags.flag("timings"), started)),
            ),
            Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
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
                    return Some(json_response(
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
                    return Some(self.forward(req, &node, false).await)
                }
                _ => {}
            }
        }
        match self.wait_applied(n).await {
            Ok(()) => None,
            Err(applied) => Some(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {} has applied log index {applied}, below min_index {n}, after \
                     {MIN_INDEX_WAIT:?}; try another node or later",
                    self.name
                ),
            )),
        }
    }

    /// Waits until this node applied log index `n`; `Err(applied)` after [`MIN_INDEX_WAIT`].
    async fn wait_applied(&self, n: u64) -> Result<(), u64> {
        let mut rx = self.store.applied_index();
        let reached = tokio::time::timeout(MIN_INDEX_WAIT, rx.wait_for(|&a| a >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            Ok(())
        } else {
            Err(*rx.borrow())
        }
    }
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    let mut v = api.health.status();
    if let Value::Object(m) = &mut v {
        m.insert("name".into(), Value::from(api.name.clone()));
    }
    json_response(StatusCode::OK, &v)
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    match api.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn nodes(State(api): State<Arc<Api>>) -> Response {
    let leader = api.health.metrics.borrow().current_leader;
    let mut checks = tokio::task::JoinSet::new();
    for (id, node) in api.health.members.iter() {
        let (id, node, http) = (*id, node.clone(), api.http.clone());
        let me = id == api.health.id;
        checks.spawn(async move {
            let reachable = me
                || http
                    .get(
                        &format!("http://{}/readyz", node.api_addr),
                        Duration::from_secs(1),
                    )
                    .await
                    .is_ok();
            (id, node, reachable)
        });
    }
    let mut out = serde_json::Map::new();
    while let Some(joined) = checks.join_next().await {
        let Ok((id, node, reachable)) = joined else {
            continue;
        };
        out.insert(
            node.name.clone(),
            json!({
                "id": node.name,
                "node_id": id.to_string(),
                "api_addr": format!("http://{}", node.api_addr),
                "addr": node.raft_addr,
                "reachable": reachable,
                "leader": leader == Some(id),
                "voter": true,
            }),
        );
    }
    json_response(StatusCode::OK, &Value::Object(out))
}
