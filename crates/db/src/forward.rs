//! Forwarding an API request to the leader's SQL API (rqlite's `proxy/`).
//!
//! The forwarded request carries `X-Webfarm-Forwarded: 1`: a node that receives such a request
//! and is not the leader answers 503 `not leader` instead of forwarding again, so a stale view
//! of the leader can never make requests loop.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use webfarm_node::http::{HttpClient, HttpError, HttpResponse};

/// The header that marks a forwarded request.
pub(crate) const FORWARDED: &str = "x-webfarm-forwarded";

/// Sends forwarded requests over the node's shared pooled client.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    client: HttpClient,
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
    pub(crate) fn new(client: HttpClient) -> Forwarder {
        Forwarder { client }
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
        let url = format!("http://{addr}{path_and_query}");
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
