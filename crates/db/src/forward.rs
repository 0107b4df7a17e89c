//! Forwarding an API request to the leader's SQL API (rqlite's `proxy/`).
//!
//! The forwarded request carries `X-Webfarm-Forwarded: 1`: a node that receives such a request
//! and is not the leader answers 503 `not leader` instead of forwarding again, so a stale view
//! of the leader can never make requests loop.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The header that marks a forwarded request.
pub(crate) const FORWARDED: &str = "x-webfarm-forwarded";

/// A pooled HTTP/1.1 client for forwarded requests.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The leader's whole answer.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
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
    pub(crate) fn new() -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Forwarder {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
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
    ) -> Result<Forwarded, ForwardError> {
        let url = format!("http://{addr}{path_and_query}");
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED, "1")
            .body(Full::new(body))
            .map_err(|e| ForwardError::Connect(format!("cannot build a request to {url}: {e}")))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let m = format!("{url}: {}", webfarm_node::http::error_chain(&e));
                if e.is_connect() {
                    ForwardError::Connect(m)
                } else {
                    ForwardError::Uncertain(m)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ForwardError::Uncertain(format!("{url}: {e}")))?
                .to_bytes();
            Ok(Forwarded {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(ForwardError::Uncertain(format!(
                    "{url}: no answer within {timeout:?}"
                )))
            })
    }
}
