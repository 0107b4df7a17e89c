//! [`AdminClient`]: membership, status, backups and one-node SQL calls, for operators' tools
//! (`webfarm db`, `webfarm sql`).
//!
//! Unlike [`crate::DbClient`] it does not retry: it asks the first of its nodes that accepts a
//! connection (any db node forwards a change to the leader) and reports that node's answer.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use webfarm_node::http::{HttpClient, HttpError, HttpResponse};

use crate::answer::{Answer, ErrorAnswer, Reply};
use crate::level::Consistency;
use crate::membership::{
    ChangeAnswer, ClusterView, JoinRequest, NodeRef, RemoveAnswer, StepDownAnswer, StepDownRequest,
};
use crate::statement::{request_body, Statement};
use crate::status::StatusAnswer;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client was given no node.
    #[error("no db node to ask")]
    NoNode,
    /// No node accepted a connection.
    #[error("no db node answers ({})", tried.join("; "))]
    Unreachable {
        /// Each node tried, `name: error`.
        tried: Vec<String>,
    },
    /// A node answered with an error status.
    #[error("{node} answered {status}: {message}")]
    Refused {
        /// The node's name.
        node: String,
        /// The HTTP status.
        status: StatusCode,
        /// The `error` of its JSON answer, or its body.
        message: String,
    },
    /// The request failed after it was sent (it may have been served).
    #[error("{what} on {node}: {source}")]
    Http {
        /// The node's name.
        node: String,
        /// The request, such as `POST /join`.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: HttpError,
    },
    /// A node's answer is not the JSON expected.
    #[error("{node} answered {what} with something unreadable: {reason}")]
    BadAnswer {
        /// The node's name.
        node: String,
        /// The request, such as `GET /status`.
        what: String,
        /// The parse error and the start of the body.
        reason: String,
    },
}

impl AdminError {
    /// The node's own words for a refusal (the `error` of its answer); the whole message for
    /// any other failure.
    pub fn reason(&self) -> String {
        match self {
            AdminError::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// A db node an [`AdminClient`] may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name for messages (the node's name, or its address).
    pub name: String,
    /// Its SQL API address, `host:port`.
    pub addr: String,
}

/// A client of the SQL API's operator endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminClient {
    nodes: Vec<Target>,
    http: HttpClient,
}

/// A request body and its content type.
type Body = Option<(&'static str, Bytes)>;

fn json_body<T: Serialize>(v: &T) -> Body {
    // Serializing plain structs of strings and numbers cannot fail.
    Some((
        "application/json",
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    ))
}

impl AdminClient {
    /// A client that asks `nodes` in order, the first that accepts a connection answering.
    pub fn new(nodes: Vec<Target>) -> AdminClient {
        Self::with_http(nodes, HttpClient::new())
    }

    /// As [`AdminClient::new`], calling the nodes with `http` (with internal TLS: the
    /// operator's certificate, [`HttpClient::with_tls`]).
    pub fn with_http(nodes: Vec<Target>, http: HttpClient) -> AdminClient {
        AdminClient { nodes, http }
    }

    /// `method path` on the first node that accepts a connection; its answer and name.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<(HttpResponse, &str), AdminError> {
        let mut tried = Vec::new();
        for n in &self.nodes {
            let url = self.http.url(&n.addr, path);
            let (content_type, bytes) = match &body {
                Some((t, b)) => (Some(*t), b.clone()),
                None => (None, Bytes::new()),
            };
            match self
                .http
                .send(method.clone(), &url, content_type, bytes, timeout)
                .await
            {
                Ok(r) => return Ok((r, n.name.as_str())),
                Err(e) if e.is_connect() => tried.push(format!("{}: {e}", n.name)),
                Err(source) => {
                    return Err(AdminError::Http {
                        node: n.name.clone(),
                        what: format!("{method} {path}"),
                        source,
                    })
                }
            }
        }
        if tried.is_empty() {
            return Err(AdminError::NoNode);
        }
        Err(AdminError::Unreachable { tried })
    }

    /// `method path`, a success's JSON answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<T, AdminError> {
        let what = format!("{method} {path}");
        let (r, node) = self.send(method, path, body, timeout).await?;
        if !r.status.is_success() {
            return Err(refusal(node, &r));
        }
        serde_json::from_slice(&r.body).map_err(|e| AdminError::BadAnswer {
            node: node.to_string(),
            what,
            reason: format!("{e}: {}", preview(&r.body)),
        })
    }

    /// `GET /cluster/nodes`: every member as the leader sees it.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or the node's refusal.
    pub async fn cluster_nodes(&self, timeout: Duration) -> Result<ClusterView, AdminError> {
        self.call(Method::GET, "/cluster/nodes", None, timeout)
            .await
    }

    /// `POST /join`: adds a node as a learner, then promotes it when it is to be a voter.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or the leader's refusal (409 conflicting addresses,
    /// 504 not done in time...).
    pub async fn join(
        &self,
        join: &JoinRequest,
        timeout: Duration,
    ) -> Result<ChangeAnswer, AdminError> {
        self.call(Method::POST, "/join", json_body(join), timeout)
            .await
    }

    /// `DELETE /remove`: removes a voter or a learner.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or the leader's refusal (404 not a member, 409 the
    /// last voter...).
    pub async fn remove(&self, name: &str, timeout: Duration) -> Result<RemoveAnswer, AdminError> {
        let body = json_body(&NodeRef { id: name.into() });
        self.call(Method::DELETE, "/remove", body, timeout).await
    }

    /// `POST /cluster/promote`: makes a learner a voter once it caught up.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or the leader's refusal (404 not a member...).
    pub async fn promote(&self, name: &str, timeout: Duration) -> Result<ChangeAnswer, AdminError> {
        let body = json_body(&NodeRef { id: name.into() });
        self.call(Method::POST, "/cluster/promote", body, timeout)
            .await
    }

    /// `POST /cluster/step-down`: the leader hands its leadership to `to` (default: the most
    /// up-to-date voter).
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or the leader's refusal (409 `to` is a learner...).
    pub async fn step_down(
        &self,
        to: Option<&str>,
        timeout: Duration,
    ) -> Result<StepDownAnswer, AdminError> {
        let body = json_body(&StepDownRequest {
            to: to.map(String::from),
        });
        self.call(Method::POST, "/cluster/step-down", body, timeout)
            .await
    }

    /// `GET /status` of the first node that answers.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or an answer that is not a db node's status.
    pub async fn status(&self, timeout: Duration) -> Result<StatusAnswer, AdminError> {
        self.call(Method::GET, "/status", None, timeout).await
    }

    /// `GET /db/backup`: a copy of the database, a SQLite file.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or its refusal.
    pub async fn backup(&self, timeout: Duration) -> Result<Bytes, AdminError> {
        let (r, node) = self.send(Method::GET, "/db/backup", None, timeout).await?;
        if !r.status.is_success() {
            return Err(refusal(node, &r));
        }
        Ok(r.body)
    }

    /// `POST /db/load`: replaces the database with `data`, a SQLite file or an SQL dump (told
    /// apart by SQLite's file header).
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or its refusal. Statements of a dump that failed are
    /// in the answer's results.
    pub async fn load(&self, data: Bytes, timeout: Duration) -> Result<Answer, AdminError> {
        let kind = if data.starts_with(b"SQLite format 3\0") {
            "application/octet-stream"
        } else {
            "text/plain"
        };
        self.sql(Method::POST, "/db/load", Some((kind, data)), timeout)
            .await
    }

    /// `POST /db/query?level=...` with `statements`, on the first node that answers.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: no node reachable, or a refusal of the request as a whole (`no leader`,
    /// `stale read`...). A refused statement is in the answer's results.
    pub async fn query(
        &self,
        statements: &[Statement],
        level: Consistency,
        timeout: Duration,
    ) -> Result<Answer, AdminError> {
        let path = format!("/db/query?level={level}");
        self.sql(Method::POST, &path, statements_body(statements), timeout)
            .await
    }

    /// `POST /db/execute` with `statements`, on the first node that answers.
    ///
    /// # Errors
    ///
    /// As [`AdminClient::query`].
    pub async fn execute(
        &self,
        statements: &[Statement],
        timeout: Duration,
    ) -> Result<Answer, AdminError> {
        self.sql(
            Method::POST,
            "/db/execute",
            statements_body(statements),
            timeout,
        )
        .await
    }

    /// A call of the SQL API: an [`Answer`], or the error the node answered with (also a
    /// `200` one, such as `stale read`).
    async fn sql(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Answer, AdminError> {
        let what = format!("{method} {path}");
        let (r, node) = self.send(method, path, body, timeout).await?;
        match (
            serde_json::from_slice::<Reply>(&r.body),
            r.status.is_success(),
        ) {
            (Ok(Reply::Error(e)), _) => Err(AdminError::Refused {
                node: node.to_string(),
                status: r.status,
                message: e.error,
            }),
            (Ok(Reply::Done(a)), true) => Ok(a),
            (Err(e), true) => Err(AdminError::BadAnswer {
                node: node.to_string(),
                what,
                reason: format!("{e}: {}", preview(&r.body)),
            }),
            (_, false) => Err(refusal(node, &r)),
        }
    }
}

fn statements_body(statements: &[Statement]) -> Body {
    Some(("application/json", Bytes::from(request_body(statements))))
}

/// The refusal in an error answer: its `error`, or its body.
fn refusal(node: &str, r: &HttpResponse) -> AdminError {
    let message = match serde_json::from_slice::<ErrorAnswer>(&r.body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&r.body).trim().to_string(),
    };
    AdminError::Refused {
        node: node.to_string(),
        status: r.status,
        message,
    }
}

/// The start of a body, for an error message.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}
