//! The database client the web tier uses: rqlite's HTTP API with failover.
//!
//! A [`DbClient`] knows the SQL API address of every db node. Reads go to a preferred node
//! first (spread the read load by giving each web node another `read_from`), writes go to the
//! node that last took a write (any node forwards a write to the leader anyway). Through a
//! failover the client keeps retrying, with a small backoff, for `retry_for`; after that it
//! gives up with [`ClientError::Unavailable`], which the web tier turns into a 503.
//!
//! A write is only sent again when the previous attempt cannot have been applied: the
//! connection was refused, or the node answered 503 (no leader, not leader). A write whose
//! answer never came (timeout, connection reset after sending) may have been applied, so it
//! is not repeated: the call returns [`ClientError::Unavailable`] with that reason.
//!
//! Timeouts are ordered so that an answer always beats the timeout of the layer above: the
//! leader gives up on a commit after 5s, a follower forwarding to it after 7s, and the client
//! after [`ATTEMPT_TIMEOUT`] (9s): a slow commit comes back as the leader's "not committed in
//! time" rather than as a lost answer.
//!
//! Reads at level `none` answer from whichever node serves them; a node that says "no such
//! table" may simply lag behind the one that created it, so the client asks the next node, and
//! the refusal is final only when every node gives it. A `min_index` beyond the cluster's log
//! (a stale or forged read-your-writes index) is answered at once by the leader; the client
//! then reads at the leader's commit index instead, and [`QueryResult::min_index_reset`] says
//! so.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use webfarm_node::http::{HttpClient, HttpError, HttpResponse};

use crate::answer::{Answer, ErrorAnswer, Rows, WriteResult};
use crate::level::Consistency;
use crate::statement::{request_body, Statement};

/// Longest a single HTTP attempt may take (the whole call is bounded by `retry_for`). Longer
/// than the SQL API's forward timeout, itself longer than the leader's write timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(9);
/// Shortest time given to one attempt, even when the deadline is nearer.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// First pause between two rounds of attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two rounds of attempts: short, because a round costs the cluster
/// three small requests, and a longer pause is added whole to the failover a user sees (the
/// new leader is usually ready 0.7–1 s after the old one died; with 500 ms the first write
/// after it waited up to half a second more: scripts/bench-failover, db).
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// The outcome of [`DbClient::query_full`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// The rows.
    pub rows: Rows,
    /// `Some(index)` when the `min_index` asked for was beyond the cluster's log (a stale or
    /// forged read-your-writes index, or one from before the data was wiped): the rows were
    /// read at `index`, the leader's commit index then, instead. `None` otherwise.
    pub min_index_reset: Option<u64>,
}

/// The outcome of [`DbClient::execute`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecuteResult {
    /// One result per statement, in order.
    pub results: Vec<WriteResult>,
    /// Raft log index of the write: pass it as `min_index` to a later query to read your
    /// own write on any node.
    pub raft_index: u64,
}

/// Why a database call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No node answered usefully within retry_for: the web tier answers 503.
    #[error(
        "database unavailable: no db node answered usefully within {tried_for:?} \
         (last error: {last_error}); check that a majority of db nodes runs"
    )]
    Unavailable {
        /// How long the client tried.
        tried_for: Duration,
        /// The last failure seen.
        last_error: String,
    },
    /// The database refused statement `index` (SQL error): not retried.
    #[error("database refused statement {index}: {message}")]
    Statement {
        /// Index of the statement in the request, from 0.
        index: usize,
        /// SQLite's message, or the reason the request was refused.
        message: String,
    },
}

impl ClientError {
    /// True for [`ClientError::Unavailable`]: the database could not be reached in time.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClientError::Unavailable { .. })
    }
}

/// A cloneable client of the db cluster's SQL API. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct DbClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<SocketAddr>,
    read_from: usize,
    retry_for: Duration,
    http: HttpClient,
    /// Index into `nodes` of the node that last took a write.
    writer: AtomicUsize,
    /// What the calls met, for [`DbClient::stats`].
    stats: Counters,
}

/// The counters behind [`ClientStats`].
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    retries: AtomicU64,
    failovers: AtomicU64,
    unavailable: AtomicU64,
}

/// What a client's calls met since it was made: how often the cluster made it retry or
/// fail over (the web tier's view of a db failover, for its metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls made (`execute`, `query`...), each maybe several attempts.
    pub calls: u64,
    /// Attempts after a call's first one (a node refused, was unreachable, had no leader).
    pub retries: u64,
    /// Calls answered by another node than the one asked first.
    pub failovers: u64,
    /// Calls that gave up (no node answered usefully within `retry_for`): the app's 503s.
    pub unavailable: u64,
}

/// What one attempt on one node gave.
enum Attempt<T> {
    /// A final answer (success or a refusal that retrying cannot change).
    Done(Result<T, ClientError>),
    /// Nothing was done; try another node or later.
    Retry(String),
    /// A refusal that may be this node's alone (it lags): final only when every node of a
    /// round gives it.
    NotHere(ClientError),
    /// A write that may have been applied: give up without resending.
    Ambiguous(String),
}

/// What one read attempt gave.
enum Read {
    /// The rows.
    Rows(Rows),
    /// `min_index` is beyond the cluster's log; the leader's commit index.
    BeyondLog(u64),
}

impl DbClient {
    /// nodes: SQL API addresses of every db node (Node::main_addr()). Reads go to
    /// nodes[read_from % len] first, then the others; writes go to the last node known to be
    /// leader first (any node forwards to the leader anyway). retry_for: how long to keep
    /// retrying through connection errors / "no leader" / 503 before giving up (failover).
    pub fn new(nodes: Vec<SocketAddr>, read_from: usize, retry_for: Duration) -> DbClient {
        Self::with_http(nodes, read_from, retry_for, HttpClient::new())
    }

    /// As [`DbClient::new`], calling the nodes with `http` (with internal TLS: `https://`
    /// and the caller's certificate, [`HttpClient::with_tls`]).
    pub fn with_http(
        nodes: Vec<SocketAddr>,
        read_from: usize,
        retry_for: Duration,
        http: HttpClient,
    ) -> DbClient {
        let writer = if nodes.is_empty() {
            0
        } else {
            read_from % nodes.len()
        };
        DbClient {
            inner: Arc::new(Inner {
                nodes,
                read_from,
                retry_for,
                http,
                writer: AtomicUsize::new(writer),
                stats: Counters::default(),
            }),
        }
    }

    /// POST /db/execute; returns each statement's result and the Raft log index of the write.
    ///
    /// Several statements run in one transaction (`?transaction`): either all apply or none.
    ///
    /// # Errors
    ///
    /// [`ClientError::Statement`] when SQLite refused a statement (nothing was applied when
    /// there were several); [`ClientError::Unavailable`] when no leader took the write within
    /// `retry_for`, or when an attempt's answer was lost (the write may have been applied).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave a write that was sent applied or not.
    pub async fn execute(&self, statements: &[Statement]) -> Result<ExecuteResult, ClientError> {
        let body = Bytes::from(request_body(statements));
        let path = if statements.len() > 1 {
            "/db/execute?transaction"
        } else {
            "/db/execute"
        };
        let start = self.inner.writer.load(Ordering::Relaxed);
        let deadline = Instant::now() + self.inner.retry_for;
        self.run(start, deadline, |client, idx, timeout| {
            let body = body.clone();
            async move {
                let attempt = write_attempt(client.post(idx, path, body, timeout).await);
                if matches!(attempt, Attempt::Done(Ok(_))) {
                    client.inner.writer.store(idx, Ordering::Relaxed);
                }
                attempt
            }
        })
        .await
    }

    /// What this client's calls met so far (shared by its clones).
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.inner.stats;
        ClientStats {
            calls: get(&s.calls),
            retries: get(&s.retries),
            failovers: get(&s.failovers),
            unavailable: get(&s.unavailable),
        }
    }

    /// `POST <scheme>://<node idx><path>` with a JSON body.
    async fn post(
        &self,
        idx: usize,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let url = self.inner.http.url(self.inner.nodes[idx], path);
        self.inner
            .http
            .post(&url, "application/json", body, timeout)
            .await
    }

    /// POST /db/query?level=..[&min_index=N]
    ///
    /// `min_index`: the answering node must have applied at least this Raft log index (read
    /// your own writes with [`ExecuteResult::raft_index`]); a node that is behind answers 503
    /// and the client tries another. An index beyond the cluster's log is replaced by the
    /// leader's commit index (see [`DbClient::query_full`] to learn when).
    ///
    /// # Errors
    ///
    /// [`ClientError::Statement`] when SQLite refused the statement (or it is not read-only);
    /// [`ClientError::Unavailable`] when no node answered within `retry_for`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn query(
        &self,
        statement: &Statement,
        level: Consistency,
        min_index: Option<u64>,
    ) -> Result<Rows, ClientError> {
        Ok(self.query_full(statement, level, min_index).await?.rows)
    }

    /// [`DbClient::query`], and whether `min_index` had to be replaced because it is beyond
    /// the cluster's log ([`QueryResult::min_index_reset`]).
    ///
    /// # Errors
    ///
    /// As [`DbClient::query`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn query_full(
        &self,
        statement: &Statement,
        level: Consistency,
        min_index: Option<u64>,
    ) -> Result<QueryResult, ClientError> {
        let began = Instant::now();
        let deadline = began + self.inner.retry_for;
        let commit = match self
            .query_once(statement, level, min_index, deadline)
            .await?
        {
            Read::Rows(rows) => {
                return Ok(QueryResult {
                    rows,
                    min_index_reset: None,
                })
            }
            Read::BeyondLog(commit) => commit,
        };
        tracing::info!(
            min_index,
            commit_index = commit,
            "min_index is beyond the cluster's log; reading at its commit index instead"
        );
        let at = (commit > 0).then_some(commit);
        match self.query_once(statement, level, at, deadline).await? {
            Read::Rows(rows) => Ok(QueryResult {
                rows,
                min_index_reset: Some(commit),
            }),
            Read::BeyondLog(c) => Err(ClientError::Unavailable {
                tried_for: began.elapsed(),
                last_error: format!(
                    "the leader's commit index {commit} is beyond the log of the next leader \
                     (commit index {c})"
                ),
            }),
        }
    }

    async fn query_once(
        &self,
        statement: &Statement,
        level: Consistency,
        min_index: Option<u64>,
        deadline: Instant,
    ) -> Result<Read, ClientError> {
        let body = Bytes::from(request_body(std::slice::from_ref(statement)));
        let mut path = format!("/db/query?level={}", level.as_str());
        if let Some(n) = min_index {
            path.push_str(&format!("&min_index={n}"));
        }
        let start = self.inner.read_from;
        self.run(start, deadline, |client, idx, timeout| {
            let body = body.clone();
            let path = path.clone();
            async move { read_attempt(client.post(idx, &path, body, timeout).await, level) }
        })
        .await
    }

    /// Tries the nodes in turn from `start`, with a backoff after each full round, until one
    /// attempt is final, every node of a round refused with [`Attempt::NotHere`], or
    /// `deadline` has passed.
    async fn run<T, F, Fut>(
        &self,
        start: usize,
        deadline: Instant,
        attempt: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(DbClient, usize, Duration) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let began = Instant::now();
        let n = self.inner.nodes.len();
        if n == 0 {
            return Err(ClientError::Unavailable {
                tried_for: Duration::ZERO,
                last_error: "the client knows no db node".into(),
            });
        }
        let counted = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        let stats = &self.inner.stats;
        counted(&stats.calls);
        let mut backoff = FIRST_BACKOFF;
        let mut last_error: String;
        let mut tried = 0usize;
        let mut in_round = 0usize;
        let mut refused_in_round = 0usize;
        loop {
            let idx = (start + tried) % n;
            if tried > 0 {
                counted(&stats.retries);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = remaining.clamp(MIN_ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT);
            match attempt(self.clone(), idx, timeout).await {
                Attempt::Done(r) => {
                    if idx != start % n {
                        counted(&stats.failovers);
                    }
                    return r;
                }
                Attempt::Ambiguous(e) => {
                    counted(&stats.unavailable);
                    return Err(ClientError::Unavailable {
                        tried_for: began.elapsed(),
                        last_error: format!("{e} (the write may or may not have been applied)"),
                    });
                }
                Attempt::Retry(e) => {
                    tracing::debug!(node = %self.inner.nodes[idx], error = %e, "db attempt failed");
                    last_error = e;
                }
                Attempt::NotHere(refusal) => {
                    refused_in_round += 1;
                    if refused_in_round == n {
                        return Err(refusal);
                    }
                    tracing::debug!(node = %self.inner.nodes[idx], error = %refusal, "trying another node");
                    last_error = refusal.to_string();
                }
            }
            tried += 1;
            in_round += 1;
            if Instant::now() >= deadline {
                counted(&stats.unavailable);
                return Err(ClientError::Unavailable {
                    tried_for: began.elapsed(),
                    last_error,
                });
            }
            if in_round == n {
                in_round = 0;
                refused_in_round = 0;
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The error answer in a body, if it is one.
fn error_answer(resp: &HttpResponse) -> Option<ErrorAnswer> {
    serde_json::from_slice::<ErrorAnswer>(&resp.body).ok()
}

/// The `error` field of a JSON error body, or the body itself.
fn error_text(resp: &HttpResponse) -> String {
    match error_answer(resp) {
        Some(e) => e.error,
        None => String::from_utf8_lossy(&resp.body).trim().to_string(),
    }
}

/// A 400 answer: the request was refused as a whole; `index` names the statement if known.
fn bad_request(resp: &HttpResponse) -> ClientError {
    let index = error_answer(resp).and_then(|e| e.index).unwrap_or(0);
    ClientError::Statement {
        index,
        message: error_text(resp),
    }
}

/// The first statement of `answer` that was refused, as a statement error.
fn first_error(answer: &Answer) -> Option<ClientError> {
    answer
        .first_error()
        .map(|(index, message)| ClientError::Statement {
            index,
            message: message.to_string(),
        })
}

fn write_attempt(resp: Result<HttpResponse, HttpError>) -> Attempt<ExecuteResult> {
    let resp = match resp {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Attempt::Retry(e.to_string()),
        Err(e) => return Attempt::Ambiguous(e.to_string()),
    };
    match resp.status {
        StatusCode::OK => {
            let answer: Answer = match serde_json::from_slice(&resp.body) {
                Ok(b) => b,
                Err(e) => {
                    return Attempt::Ambiguous(format!("unreadable answer to a write: {e}"));
                }
            };
            if let Some(err) = first_error(&answer) {
                return Attempt::Done(Err(err));
            }
            Attempt::Done(Ok(ExecuteResult {
                results: answer.results.iter().map(|r| r.write_result()).collect(),
                raft_index: answer.raft_index.unwrap_or(0),
            }))
        }
        StatusCode::BAD_REQUEST => Attempt::Done(Err(bad_request(&resp))),
        // Our nodes answer 503 only when the write was not proposed (no leader, not leader).
        StatusCode::SERVICE_UNAVAILABLE => Attempt::Retry(format!("503: {}", error_text(&resp))),
        s => Attempt::Ambiguous(format!("{s}: {}", error_text(&resp))),
    }
}

/// Whether a statement error at level `none` (or `auto`, `none` on a learner) may be the
/// answering node's alone: it has not applied the entry that created the table yet.
fn may_be_lag(level: Consistency, e: &ClientError) -> bool {
    matches!(level, Consistency::None | Consistency::Auto)
        && matches!(e, ClientError::Statement { message, .. } if message.starts_with("no such table"))
}

/// The leader's commit index when a 400 says `min_index` is beyond the log.
fn beyond_log(resp: &HttpResponse) -> Option<u64> {
    error_answer(resp)
        .filter(|e| e.beyond_log)
        .and_then(|e| e.commit_index)
}

fn read_attempt(resp: Result<HttpResponse, HttpError>, level: Consistency) -> Attempt<Read> {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(e.to_string()),
    };
    match resp.status {
        StatusCode::OK => {
            let answer: Answer = match serde_json::from_slice(&resp.body) {
                Ok(b) => b,
                Err(e) => return Attempt::Retry(format!("unreadable answer to a query: {e}")),
            };
            if let Some(err) = first_error(&answer) {
                if may_be_lag(level, &err) {
                    return Attempt::NotHere(err);
                }
                return Attempt::Done(Err(err));
            }
            match answer.results.into_iter().next() {
                Some(r) => Attempt::Done(Ok(Read::Rows(r.into_rows().unwrap_or_default()))),
                None => Attempt::Retry("the answer to a query had no result".into()),
            }
        }
        StatusCode::BAD_REQUEST => match beyond_log(&resp) {
            Some(commit) => Attempt::Done(Ok(Read::BeyondLog(commit))),
            None => Attempt::Done(Err(bad_request(&resp))),
        },
        s => Attempt::Retry(format!("{s}: {}", error_text(&resp))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stats_count_calls_retries_and_giving_up() {
        // Nothing listens on port 1 of this address (the cli tests' block, unused here).
        let nowhere: SocketAddr = "127.0.69.254:1".parse().unwrap();
        let client = DbClient::new(vec![nowhere, nowhere], 0, Duration::from_millis(300));
        assert_eq!(client.stats(), ClientStats::default());
        let failed = client.execute(&[Statement::new("SELECT 1")]).await;
        assert!(
            matches!(failed, Err(ClientError::Unavailable { .. })),
            "{failed:?}"
        );
        let s = client.clone().stats();
        assert_eq!((s.calls, s.unavailable, s.failovers), (1, 1, 0));
        assert!(s.retries >= 1, "{s:?}");
    }
    use serde_json::json;

    fn answer(status: u16, body: serde_json::Value) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        })
    }

    #[test]
    fn a_missing_table_at_level_none_may_be_lag() {
        let missing = json!({"results": [{"error": "no such table: messages"}]});
        assert!(matches!(
            read_attempt(answer(200, missing.clone()), Consistency::None),
            Attempt::NotHere(ClientError::Statement { index: 0, .. })
        ));
        // The leader's answer is final.
        assert!(matches!(
            read_attempt(answer(200, missing), Consistency::Weak),
            Attempt::Done(Err(ClientError::Statement { .. }))
        ));
        let syntax = json!({"results": [{"error": "near \"SELEC\": syntax error"}]});
        assert!(matches!(
            read_attempt(answer(200, syntax), Consistency::None),
            Attempt::Done(Err(ClientError::Statement { .. }))
        ));
    }

    #[test]
    fn a_min_index_beyond_the_log_is_told_apart_from_a_bad_request() {
        let beyond = json!({"error": "min_index 99 is beyond the log (commit index 7)",
                            "beyond_log": true, "commit_index": 7});
        assert!(matches!(
            read_attempt(answer(400, beyond), Consistency::None),
            Attempt::Done(Ok(Read::BeyondLog(7)))
        ));
        let bad = json!({"error": "min_index: expected a Raft log index"});
        assert!(matches!(
            read_attempt(answer(400, bad), Consistency::None),
            Attempt::Done(Err(ClientError::Statement { .. }))
        ));
    }

    #[test]
    fn the_first_error_names_its_statement() {
        let answer: Answer = serde_json::from_value(json!({"results": [
            {"rows_affected": 1},
            {"error": "no such table: t"},
        ]}))
        .unwrap();
        assert_eq!(
            first_error(&answer),
            Some(ClientError::Statement {
                index: 1,
                message: "no such table: t".into()
            })
        );
    }
}
