//! The request path: pick a server, send the request on a pooled connection, stream the
//! response back; retry where it is safe; answer 502/503/504 with a reason otherwise.
//!
//! Retry rules (HAProxy's `retries` with `option redispatch`):
//! - connect failed (no byte sent): always safe; a refused connection also marks the server
//!   DOWN at once. The request goes to another up server, at most `retries` more times.
//! - a pooled connection turned out closed before the request went out (hyper hands the
//!   request back): sent again on another connection to the same server, not counted.
//! - the exchange failed after bytes were sent: retried only for an idempotent method
//!   without a body, rebuilt from a copy of its head.
//! - no response head within the response timeout: 504, never retried.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::backend::{BackendState, Member};
use crate::body::{RequestBody, ResponseBody};
use crate::check::{io_text, mark_down_observed};
use crate::headers::{add_forwarded, remove_hop_by_hop, RequestIds, X_REQUEST_ID};
use crate::pool::{ConnectError, ProxyBody};
use crate::server::ActiveRequest;

/// What one frontend needs to proxy a request to its backend.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The frontend's name, for logs.
    pub frontend: String,
    /// Where requests go.
    pub backend: Arc<BackendState>,
    /// `Host` for requests that carry none (HTTP/1.0): the site's name.
    pub site: HeaderValue,
    /// Request id generator shared by every frontend.
    pub ids: Arc<RequestIds>,
    /// Deadline for the response head once the request was sent in full.
    pub response_timeout: Duration,
}

/// Why one attempt on one server failed.
enum AttemptError {
    /// No connection could be made; the request is handed back.
    Connect {
        error: ConnectError,
        request: Request<ProxyBody>,
    },
    /// The connection closed before the request went out; the request is handed back.
    NotSent {
        error: hyper::Error,
        request: Request<ProxyBody>,
    },
    /// The exchange failed after bytes were sent.
    Sent { error: hyper::Error },
    /// No response head in time.
    Timeout,
}

/// The head of a bodiless idempotent request, kept to send it again.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<ProxyBody> {
        let mut r = Request::new(empty());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        *r.version_mut() = Version::HTTP_11;
        r
    }
}

impl Proxy {
    /// Proxies one client request from `client`; never fails: errors become 502/503/504.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_string();
        let id = self.prepare_head(&mut parts, client);
        let bodiless = body.is_end_stream();
        let replay = (bodiless && is_idempotent(&parts.method)).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        });
        let (body, body_sent) = if bodiless {
            (empty(), None)
        } else {
            let (body, sent) = RequestBody::new(body);
            (body.boxed(), Some(sent))
        };
        let request = Request::from_parts(parts, body);
        let (mut resp, server) = self.forward(request, replay, body_sent.as_ref()).await;
        resp.headers_mut()
            .entry(&X_REQUEST_ID)
            .or_insert(id.clone());
        tracing::debug!(
            "{} {}/{} \"{method} {path}\" {} {}ms id={}",
            self.frontend,
            self.backend.name(),
            server.unwrap_or("<NOSRV>"),
            resp.status().as_u16(),
            start.elapsed().as_millis(),
            id.to_str().unwrap_or("-"),
        );
        resp
    }

    /// Rewrites the client's request head for the server; returns the request id.
    fn prepare_head(&self, parts: &mut http::request::Parts, client: SocketAddr) -> HeaderValue {
        remove_hop_by_hop(&mut parts.headers);
        // hyper answers `100 Continue` to the client itself, when the body is first read to
        // go upstream; the server must not hold its answer back waiting for a body.
        parts.headers.remove(header::EXPECT);
        // An absolute-form target (or HTTP/2's :authority) carries the host (RFC 9112 §3.2.2).
        if let Some(authority) = parts.uri.authority() {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
        }
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, self.site.clone());
        }
        if parts.uri.scheme().is_some() {
            let origin = parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .parse::<Uri>();
            if let Ok(origin) = origin {
                parts.uri = origin;
            }
        }
        parts.version = Version::HTTP_11;
        add_forwarded(&mut parts.headers, client.ip());
        self.ids.ensure(&mut parts.headers)
    }

    /// Sends `req` to a server of the backend, retrying as the module doc says. Returns the
    /// response and the name of the server that answered last.
    async fn forward(
        &self,
        req: Request<ProxyBody>,
        replay: Option<Replay>,
        body_sent: Option<&watch::Receiver<bool>>,
    ) -> (Response<ProxyBody>, Option<&str>) {
        let backend = &self.backend;
        let mut pending = Some(req);
        let mut tried: Vec<usize> = Vec::new();
        let mut attempts_left = backend.config.retries.saturating_add(1);
        loop {
            let Some(index) = backend.pick(&tried) else {
                return (no_server_up(backend.name()), None);
            };
            let member = &backend.members[index];
            let name = Some(member.state.name.as_str());
            let Some(req) = pending
                .take()
                .or_else(|| replay.as_ref().map(Replay::request))
            else {
                // Unreachable: a request whose body was sent is never retried.
                return (
                    bad_gateway(member, "the request cannot be sent again"),
                    name,
                );
            };
            attempts_left = attempts_left.saturating_sub(1);
            let failure = match self.attempt(member, req, body_sent).await {
                Ok(resp) => return (resp, name),
                Err(AttemptError::Timeout) => {
                    return (gateway_timeout(member, self.response_timeout), name)
                }
                Err(AttemptError::Sent { error }) => {
                    let why = webfarm_node::http::error_chain(&error);
                    if replay.is_none() || attempts_left == 0 {
                        tracing::warn!(
                            "server {} failed during the exchange: {why}",
                            member.state.id
                        );
                        return (bad_gateway(member, &why), name);
                    }
                    why
                }
                Err(AttemptError::NotSent { error, request }) => {
                    let why = webfarm_node::http::error_chain(&error);
                    if attempts_left == 0 {
                        tracing::warn!(
                            "server {} closed the connection before the request went out: {why}",
                            member.state.id
                        );
                        return (bad_gateway(member, &why), name);
                    }
                    pending = Some(request);
                    why
                }
                Err(AttemptError::Connect { error, request }) => {
                    pending = Some(request);
                    let why = match &error {
                        ConnectError::Io(e) => io_text(e),
                        other => other.to_string(),
                    };
                    if error.is_refused() {
                        mark_down_observed(backend, index, &why);
                    }
                    if attempts_left == 0 {
                        tracing::warn!("cannot connect to server {}: {why}", member.state.id);
                        return (cannot_connect(backend, member, &why), name);
                    }
                    why
                }
            };
            tracing::info!(
                "request to server {} failed ({failure}); retrying on another server, {attempts_left} attempt(s) left",
                member.state.id
            );
            tried.push(index);
        }
    }

    /// One attempt on one server: an idle pooled connection if one is ready, else a new one.
    async fn attempt(
        &self,
        member: &Member,
        mut req: Request<ProxyBody>,
        body_sent: Option<&watch::Receiver<bool>>,
    ) -> Result<Response<ProxyBody>, AttemptError> {
        // Counted once per attempt, however many stale pooled connections it meets.
        let mut counted: Option<ActiveRequest> = None;
        loop {
            let (mut sender, reused) = match member.pool.take_idle() {
                Some(s) => (s, true),
                None => match member.pool.connect().await {
                    Ok(s) => (s, false),
                    Err(error) => {
                        return Err(AttemptError::Connect {
                            error,
                            request: req,
                        })
                    }
                },
            };
            let active = counted
                .take()
                .unwrap_or_else(|| member.state.begin_request());
            let sent = self
                .response_head(sender.try_send_request(req), body_sent)
                .await;
            match sent {
                Err(_) => return Err(AttemptError::Timeout),
                Ok(Ok(resp)) => {
                    member.pool.release_when_ready(sender);
                    return Ok(into_client_response(resp, active));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    // The server had closed the idle connection: try the next one.
                    Some(r) if reused => {
                        req = r;
                        counted = Some(active);
                    }
                    Some(request) => {
                        return Err(AttemptError::NotSent {
                            error: e.into_error(),
                            request,
                        })
                    }
                    None => {
                        return Err(AttemptError::Sent {
                            error: e.into_error(),
                        })
                    }
                },
            }
        }
    }
}

impl Proxy {
    /// Waits for the response head of `send`: without a deadline while the request body
    /// still streams (a slow upload is no slow server), then for at most the response
    /// timeout. `Err` when the deadline passed.
    async fn response_head<F: Future>(
        &self,
        send: F,
        body_sent: Option<&watch::Receiver<bool>>,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::pin!(send);
        if let Some(rx) = body_sent {
            let mut rx = rx.clone();
            tokio::select! {
                // The server may answer before it read the whole body (e.g. 413).
                r = &mut send => return Ok(r),
                // `Err`: the body was dropped, the exchange is failing; wait for that below.
                _ = rx.wait_for(|sent| *sent) => {}
            }
        }
        tokio::time::timeout(self.response_timeout, send).await
    }
}

/// The methods RFC 9110 §9.2.2 calls idempotent.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The server's response, hop-by-hop headers removed, body streamed and counted.
fn into_client_response(resp: Response<Incoming>, active: ActiveRequest) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ResponseBody::new(body, active).boxed())
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A short `text/plain` error answer.
fn error_response(status: StatusCode, text: String, retry_after: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// 503: every server of the backend is down.
pub(crate) fn no_server_up(backend: &str) -> Response<ProxyBody> {
    tracing::warn!("backend \"{backend}\" has no server up: answering 503");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 Service Unavailable: no server is up in backend \"{backend}\"\n"),
        true,
    )
}

/// 503: the last allowed attempt could not connect.
fn cannot_connect(backend: &BackendState, member: &Member, why: &str) -> Response<ProxyBody> {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "503 Service Unavailable: cannot connect to a server of backend \"{}\" after {} \
             attempt(s); last: server {} ({why})\n",
            backend.name(),
            backend.config.retries.saturating_add(1),
            member.state.name,
        ),
        true,
    )
}

/// 502: the server failed after the request was sent.
fn bad_gateway(member: &Member, why: &str) -> Response<ProxyBody> {
    error_response(
        StatusCode::BAD_GATEWAY,
        format!(
            "502 Bad Gateway: server {} failed: {why}\n",
            member.state.id
        ),
        false,
    )
}

/// 504: no response head in time.
fn gateway_timeout(member: &Member, limit: Duration) -> Response<ProxyBody> {
    tracing::warn!(
        "server {} sent no response within {limit:?}: answering 504",
        member.state.id
    );
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "504 Gateway Timeout: server {} did not answer within {limit:?}\n",
            member.state.id
        ),
        false,
    )
}
