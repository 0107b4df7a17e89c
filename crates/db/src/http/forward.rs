//! Forwarding an API request to the leader's SQL API (rqlite's `proxy/`).
//!
//! The forwarded request carries `X-Webfarm-Forwarded: 1`: a node that receives such a request
//! and is not the leader answers 503 `not leader` instead of forwarding again, so a stale view
//! of the leader can never make requests loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderName, Method, Request, StatusCode};
use http_body_util::Full;
use webfarm_node::http::{HttpClient, HttpError, HttpResponse};

use crate::types::NodeInfo;

/// The leader's headers a client needs in a relayed answer.
const RELAYED_HEADERS: [HeaderName; 3] = [
    http::header::CONTENT_TYPE,
    HeaderName::from_static("x-raft-index"),
    http::header::LOCATION,
];

/// The header that marks a forwarded request.
pub(crate) const FORWARDED: &str = "x-webfarm-forwarded";

/// Sends forwarded requests over the node's shared pooled client.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    client: HttpClient,
    /// Requests relayed (for `/metrics`).
    relayed: Arc<AtomicU64>,
}

/// Why forwarding failed.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// The leader refused the connection: the request was not seen, safe to retry.
    Connect(String),
    /// The request may have been seen (timeout, reset): not safe to retry a write.
    Uncertain(String),
}

impl Forwarder {
    pub(crate) fn new(client: HttpClient, relayed: Arc<AtomicU64>) -> Forwarder {
        Forwarder { client, relayed }
    }

    /// Relays a request (`method path_and_query` with `body`) to `leader` and returns the
    /// leader's answer (status, body and the headers a client needs).
    ///
    /// # Errors
    ///
    /// The status and reason to answer with instead: 503 when the leader cannot have seen the
    /// request (safe to retry), or when `change` is `None` (a read) and no answer came; 504
    /// when `change` names a change (`"the write"`) that may or may not have been made.
    pub(crate) async fn relay(
        &self,
        (method, path_and_query, body): (&Method, &str, &Bytes),
        leader: &NodeInfo,
        timeout: Duration,
        change: Option<&str>,
    ) -> Result<Response, (StatusCode, String)> {
        self.relayed.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .send(
                method.clone(),
                &leader.api_addr,
                path_and_query,
                body.clone(),
                timeout,
            )
            .await;
        match (sent, change) {
            (Ok(f), _) => {
                let mut resp = (f.status, f.body).into_response();
                for name in RELAYED_HEADERS {
                    if let Some(v) = f.headers.get(&name) {
                        resp.headers_mut().insert(name, v.clone());
                    }
                }
                Ok(resp)
            }
            (Err(ForwardError::Connect(m)), _) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("leader {} is unreachable: {m}", leader.name),
            )),
            (Err(ForwardError::Uncertain(m)), Some(change)) => Err((
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "no answer from leader {} ({m}); {change} may or may not have been made",
                    leader.name
                ),
            )),
            (Err(ForwardError::Uncertain(m)), None) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no answer from leader {}: {m}", leader.name),
            )),
        }
    }

    /// Sends `method path_and_query` with `body` to `addr` (`ip:port`) and collects the answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        addr: &str,
        path_and_query: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, ForwardError> {
        let url = self.client.url(addr, path_and_query);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED, "1")
            .body(Full::new(body))
            .map_err(|e| ForwardError::Connect(format!("cannot build a request to {url}: {e}")))?;
        self.client
            .request(req, timeout)
            .await
            .map_err(|e| match e {
                // Not built or not connected: the leader cannot have seen it.
                HttpError::Build { .. } | HttpError::Connect { .. } => {
                    ForwardError::Connect(e.to_string())
                }
                HttpError::Timeout { .. } | HttpError::Io { .. } => {
                    ForwardError::Uncertain(e.to_string())
                }
            })
    }
}
