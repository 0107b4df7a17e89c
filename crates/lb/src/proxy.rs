//! The HTTP request path: check the request, pick a server (sticky cookie, balancer, queue),
//! send the request on a pooled connection, stream the response back; retry where the rules
//! allow; answer 4xx/5xx with a reason otherwise; log one access line.
//!
//! Retry rules (HAProxy's `retries`, `option redispatch`, `retry-on`):
//! - at most `retries` more attempts; with `redispatch` each goes to a server not tried yet
//!   (the same one again only if every server was tried), without it to the same server;
//! - `conn-failure` (no connection; or a pooled connection found closed before the request
//!   went out): no byte reached a server, so any request may go again;
//! - `empty-response`, `junk-response`, `response-timeout` and status codes: the request
//!   reached a server, so it goes again only if its method is idempotent and it has no body
//!   (its head is kept to rebuild it, only when `retries` and `retry_on` allow such a
//!   retry: cloning it costs allocations on every request);
//! - a stale pooled connection (closed by the server while idle) costs no attempt: the
//!   request is handed back untouched and goes on another connection.
//!
//! HAProxy's `http-reuse safe`: a request that must not be sent twice (non-idempotent, or
//! with a body) only goes on a fresh connection or one idle for less than
//! [`SAFE_REUSE_AGE`], which the server cannot have started closing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;
use webfarm_config::{AccessLog, Balance, RetryOn};

use crate::access_log::LogRecord;
use crate::backend::{BackendState, Member, QueueError};
use crate::balance::RequestKey;
use crate::body::{BodyFailure, BodyState, Inner, RequestBody, ResponseBody};
use crate::check::{io_text, observe, Observed};
use crate::conn::ConnGuard;
use crate::headers::{self, add_forwarded, remove_hop_by_hop, X_REQUEST_ID};
use crate::pool::{ConnectError, Pooled, ProxyBody};
use crate::respond::{empty, Local};
use crate::runtime::Runtime;
use crate::server::ActiveRequest;
use crate::{sticky, upgrade};

/// The longest a pooled connection may have been idle to carry a request that must not be
/// sent twice.
pub(crate) const SAFE_REUSE_AGE: Duration = Duration::from_secs(1);

/// What one frontend needs to proxy a request.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The live configuration.
    pub rt: Arc<Runtime>,
    /// The frontend's index in the snapshot.
    pub index: usize,
}

/// Why one attempt on one server failed.
enum AttemptError {
    /// No connection could be made; the request is handed back.
    Connect(ConnectError, Request<ProxyBody>),
    /// A new connection closed before the request went out; the request is handed back.
    NotSent(hyper::Error, Request<ProxyBody>),
    /// The exchange failed after bytes were sent.
    Sent(hyper::Error),
    /// No response head within `timeout server`.
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

/// What a request carries into [`Proxy::forward`].
struct Plan {
    /// The request may be sent twice (idempotent, no body, no upgrade).
    resendable: bool,
    /// Its head, kept only when a retry after sending is possible.
    replay: Option<Replay>,
    body_sent: Option<watch::Receiver<bool>>,
    body_state: Option<Arc<BodyState>>,
    client: SocketAddr,
    /// The path, only when the backend balances by `uri` (else empty).
    path: String,
    /// Only the header `hdr(name)` hashes, when the backend balances so.
    hash_headers: Option<HeaderMap>,
    sticky: Option<usize>,
}

impl Plan {
    fn key(&self) -> RequestKey<'_> {
        RequestKey {
            client: self.client.ip(),
            path: &self.path,
            headers: self.hash_headers.as_ref(),
        }
    }
}

/// HAProxy's timers of the last attempt.
#[derive(Debug, Default, Clone, Copy)]
struct Timers {
    tw: Option<Duration>,
    tc: Option<Duration>,
    tr: Option<Duration>,
}

/// A server's answer with the server and its slot.
struct Forwarded {
    resp: Response<Incoming>,
    index: usize,
    slot: ActiveRequest,
    /// The connection, to go back to the pool when the response body ends.
    conn: Option<Pooled>,
}

impl Proxy {
    /// Proxies one client request from `client`, counted in progress on its connection by
    /// `guard` (taken when hyper handed the request over, see [`crate::conn::ConnState::begin`]) and whose
    /// head took `tq`; never fails: errors become 4xx/5xx answers.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        client: SocketAddr,
        (guard, tq): (ConnGuard, Duration),
    ) -> Response<ResponseBody> {
        let snap = self.rt.snapshot();
        let Some(fe) = snap.frontends.get(self.index) else {
            return Local::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no such frontend".into(),
                "PR",
            )
            .into_response()
            .map(ResponseBody::local);
        };
        let backend = fe.backend.clone();
        let upgrade_to = if req.version() == Version::HTTP_11 {
            headers::upgrade_protocol(req.headers())
        } else {
            None
        };
        let client_upgrade = upgrade_to.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let id = self.rt.ids.ensure(&mut parts.headers);
        // No record at all (four allocations) when no line would be written.
        let logging = snap.farm.lb.access_log != AccessLog::Off
            && tracing::enabled!(target: "access", tracing::Level::INFO);
        let mut log = logging.then(|| LogRecord {
            format: snap.farm.lb.access_log,
            client,
            frontend: fe.config.name.clone(),
            backend: backend.name().to_string(),
            server: None,
            start: Instant::now(),
            tq,
            tw: None,
            tc: None,
            tr: None,
            status: 0,
            bytes: 0,
            termination: "--",
            method: parts.method.clone(),
            uri: parts.uri.to_string(),
            version: parts.version,
            request_id: id.clone(),
        });
        let finish_local = |local: Local, mut log: Option<LogRecord>, guard: ConnGuard| {
            if let Some(l) = log.as_mut() {
                l.status = local.status.as_u16();
                l.termination = local.termination;
                l.server.clone_from(&local.server);
            }
            let mut resp = local.into_response();
            resp.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
            let (p, b) = resp.into_parts();
            Response::from_parts(
                p,
                ResponseBody::new(Inner::Local(b), None, log, Some(guard), None),
            )
        };

        if let Err(why) = headers::check_host(parts.version, &parts.headers) {
            let local = Local::new(
                StatusCode::BAD_REQUEST,
                format!("400 Bad Request: {why}"),
                "PR",
            );
            return finish_local(local, log, guard);
        }
        let limit = fe.config.max_body_size;
        if limit != 0 && body.size_hint().exact().is_some_and(|n| n > limit) {
            let local = Local::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("413 Content Too Large: the request body is larger than {limit} bytes"),
                "PR",
            );
            return finish_local(local, log, guard);
        }

        let cookie = backend.config.cookie.as_ref();
        let sticky = cookie.as_ref().and_then(|c| {
            let name = sticky::find(&parts.headers, &c.name)?;
            backend.index_of(name)
        });
        if let Some(c) = cookie {
            sticky::strip(&mut parts.headers, &c.name);
        }
        let hash_headers = match &backend.config.balance {
            Balance::Hdr(name) => {
                let mut h = HeaderMap::new();
                if let (Ok(n), Some(v)) = (
                    http::header::HeaderName::from_bytes(name.as_bytes()),
                    parts.headers.get(name.as_str()),
                ) {
                    h.insert(n, v.clone());
                }
                Some(h)
            }
            _ => None,
        };
        let path = if matches!(backend.config.balance, Balance::Uri) {
            parts.uri.path().to_string()
        } else {
            String::new()
        };
        prepare_head(&mut parts, client, &snap.site, upgrade_to.as_ref());
        let bodiless = body.is_end_stream();
        let resendable = bodiless && upgrade_to.is_none() && is_idempotent(&parts.method);
        // Cloning the head costs allocations on every request: only when a retry after
        // the request was sent can happen.
        let replay = (resendable && may_resend(&backend.config)).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        });
        let (body, body_sent, body_state) = if bodiless {
            (empty(), None, None)
        } else {
            let (body, sent, state) = RequestBody::new(body, limit, fe.config.timeout.client);
            (body.boxed(), Some(sent), Some(state))
        };
        let plan = Plan {
            resendable,
            replay,
            body_sent,
            body_state,
            client,
            path,
            hash_headers,
            sticky,
        };
        let mut timers = Timers::default();
        let request = Request::from_parts(parts, body);
        let result = self.forward(&backend, request, &plan, &mut timers).await;
        if let Some(l) = log.as_mut() {
            (l.tw, l.tc, l.tr) = (timers.tw, timers.tc, timers.tr);
        }
        let fwd = match result {
            Ok(f) => f,
            Err(local) => return finish_local(local, log, guard),
        };
        let member = &backend.members[fwd.index];
        if let Some(l) = log.as_mut() {
            l.server = Some(member.state.name().to_string());
            l.status = fwd.resp.status().as_u16();
        }
        let mut resp = fwd.resp;
        let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let server_upgrade =
            (upgraded && client_upgrade.is_some()).then(|| hyper::upgrade::on(&mut resp));
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        if let (Some(c), true) = (cookie, fwd.index != sticky.unwrap_or(usize::MAX)) {
            if c.insert {
                sticky::insert(&mut parts.headers, &c.name, member.state.name());
            }
        }
        parts.headers.entry(&X_REQUEST_ID).or_insert(id.clone());
        if let (Some(proto), Some(client_up), Some(server_up)) =
            (upgrade_to, client_upgrade, server_upgrade)
        {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, proto);
            drop(body);
            upgrade::tunnel(client_up, server_up, fwd.slot, guard);
            if let Some(l) = log {
                l.emit();
            }
            return Response::from_parts(parts, ResponseBody::local(empty()));
        }
        let body = ResponseBody::new(
            Inner::Upstream(body),
            Some(fwd.slot),
            log,
            Some(guard),
            fwd.conn,
        );
        Response::from_parts(parts, body)
    }

    /// Sends `req` to a server of `b`, retrying as the module doc says.
    async fn forward(
        &self,
        b: &BackendState,
        req: Request<ProxyBody>,
        plan: &Plan,
        timers: &mut Timers,
    ) -> Result<Forwarded, Local> {
        let key = plan.key();
        let retry_on = &b.config.retry_on;
        let mut pending = Some(req);
        let mut tried: Vec<usize> = Vec::new();
        let mut retries_left = b.config.retries;
        let mut last: Option<usize> = None;
        loop {
            let fixed = match last {
                None => plan.sticky,
                Some(l) if !b.config.redispatch => Some(l),
                Some(_) => None,
            };
            let queued_at = Instant::now();
            let (index, slot) = match b.acquire(&key, &tried, fixed).await {
                Ok(x) => x,
                Err(QueueError::NoServer) => {
                    let local = Local::no_server(b.name());
                    return Err(match last {
                        Some(l) => local.at(b.members[l].state.name()),
                        None => local,
                    });
                }
                Err(QueueError::Timeout) => {
                    return Err(Local::queue_timeout(b.name(), queued_at.elapsed()))
                }
            };
            timers.tw = Some(timers.tw.unwrap_or_default() + queued_at.elapsed());
            let member = &b.members[index];
            let name = member.state.name();
            last = Some(index);
            let Some(req) = pending
                .take()
                .or_else(|| plan.replay.as_ref().map(Replay::request))
            else {
                return Err(bad_gateway(member, "the request cannot be sent again"));
            };
            let (failure, final_answer, retryable) =
                match self.attempt(b, member, req, plan, timers).await {
                    Ok((resp, conn)) => {
                        let code = resp.status().as_u16();
                        let l7_error = code >= 500 && code != 501 && code != 505;
                        observe(
                            b,
                            index,
                            if l7_error {
                                Observed::Layer7(format!("status {code}"))
                            } else {
                                Observed::Success
                            },
                        );
                        if retries_left == 0
                            || plan.replay.is_none()
                            || !retry_on.contains(&RetryOn::Status(code))
                        {
                            return Ok(Forwarded {
                                resp,
                                index,
                                slot,
                                conn,
                            });
                        }
                        let text = format!("status {code}");
                        let answer = Local::new(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "502 Bad Gateway: server {} answered {code}",
                                member.state.id
                            ),
                            "SH",
                        );
                        (text, answer, true)
                    }
                    Err(AttemptError::Connect(error, request)) => {
                        pending = Some(request);
                        let why = match &error {
                            ConnectError::Io(e) => io_text(e),
                            other => other.to_string(),
                        };
                        let seen = if error.is_refused() {
                            Observed::Refused(why.clone())
                        } else {
                            Observed::Layer4(why.clone())
                        };
                        observe(b, index, seen);
                        let termination = if matches!(error, ConnectError::Timeout(_)) {
                            "sC"
                        } else {
                            "SC"
                        };
                        let answer = Local::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                            "503 Service Unavailable: cannot connect to a server of backend \"{}\" \
                             after {} attempt(s); last: server {name} ({why})",
                            b.name(),
                            b.config.retries - retries_left + 1,
                        ),
                            termination,
                        )
                        .retry_after();
                        (why, answer, retry_on.contains(&RetryOn::ConnFailure))
                    }
                    Err(AttemptError::NotSent(error, request)) => {
                        pending = Some(request);
                        let why = webfarm_node::http::error_chain(&error);
                        observe(b, index, Observed::Layer4(why.clone()));
                        let answer = bad_gateway(member, &why);
                        (why, answer, retry_on.contains(&RetryOn::ConnFailure))
                    }
                    Err(AttemptError::Sent(error)) => {
                        if let Some(f) = plan.body_state.as_ref().and_then(|s| s.get()) {
                            return Err(body_failure(f).at(name));
                        }
                        let why = webfarm_node::http::error_chain(&error);
                        let (seen, cond) = if error.is_parse() {
                            (
                                Observed::Layer7(format!("junk response: {why}")),
                                RetryOn::JunkResponse,
                            )
                        } else {
                            (
                                Observed::Layer4(format!("empty response: {why}")),
                                RetryOn::EmptyResponse,
                            )
                        };
                        observe(b, index, seen);
                        let ok = plan.replay.is_some() && retry_on.contains(&cond);
                        (why.clone(), bad_gateway(member, &why), ok)
                    }
                    Err(AttemptError::Timeout) => {
                        let limit = b.config.timeout.server;
                        observe(
                            b,
                            index,
                            Observed::Layer4(format!("no response within {limit:?}")),
                        );
                        let ok =
                            plan.replay.is_some() && retry_on.contains(&RetryOn::ResponseTimeout);
                        tracing::warn!(
                            "server {} sent no response within {limit:?}",
                            member.state.id
                        );
                        let answer = Local::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "504 Gateway Timeout: server {} did not answer within {limit:?}",
                                member.state.id
                            ),
                            "sH",
                        );
                        (format!("no response within {limit:?}"), answer, ok)
                    }
                };
            drop(slot);
            if !retryable || retries_left == 0 {
                tracing::warn!("request to server {} failed: {failure}", member.state.id);
                return Err(final_answer.at(name));
            }
            retries_left -= 1;
            tracing::info!(
                "request to server {} failed ({failure}); retrying{}, {retries_left} retr{} left",
                member.state.id,
                if b.config.redispatch {
                    " on another server"
                } else {
                    ""
                },
                if retries_left == 1 { "y" } else { "ies" },
            );
            tried.push(index);
        }
    }

    /// One attempt on one server: an idle pooled connection if one is ready (and young
    /// enough for a request that must not be sent twice), else a new one.
    async fn attempt(
        &self,
        b: &BackendState,
        member: &Member,
        mut req: Request<ProxyBody>,
        plan: &Plan,
        timers: &mut Timers,
    ) -> Result<(Response<Incoming>, Option<Pooled>), AttemptError> {
        let max_age = (!plan.resendable).then_some(SAFE_REUSE_AGE);
        loop {
            let connect_start = Instant::now();
            let (mut sender, reused) = match member.pool.take_idle(max_age) {
                Some(s) => (s, true),
                None => match member.pool.connect(b.config.timeout.connect).await {
                    Ok(s) => (s, false),
                    Err(error) => return Err(AttemptError::Connect(error, req)),
                },
            };
            timers.tc = Some(if reused {
                Duration::ZERO
            } else {
                connect_start.elapsed()
            });
            let sent_at = Instant::now();
            let sent = response_head(
                sender.try_send_request(req),
                plan.body_sent.as_ref(),
                b.config.timeout.server,
            )
            .await;
            match sent {
                Err(_) => return Err(AttemptError::Timeout),
                Ok(Ok(resp)) => {
                    timers.tr = Some(sent_at.elapsed());
                    // After a `101` the socket belongs to the tunnel.
                    let conn = (resp.status() != StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| member.pool.lend(sender));
                    return Ok((resp, conn));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    // The server had closed the idle connection: try the next one.
                    Some(r) if reused => req = r,
                    Some(r) => return Err(AttemptError::NotSent(e.into_error(), r)),
                    None => return Err(AttemptError::Sent(e.into_error())),
                },
            }
        }
    }
}

/// Rewrites the client's request head for the server.
fn prepare_head(
    parts: &mut http::request::Parts,
    client: SocketAddr,
    site: &HeaderValue,
    upgrade_to: Option<&HeaderValue>,
) {
    remove_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade_to {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto.clone());
    }
    // hyper answers `100 Continue` to the client itself, when the body is first read to go
    // upstream; the server must not hold its answer back waiting for a body.
    parts.headers.remove(header::EXPECT);
    // An absolute-form target (or HTTP/2's :authority) carries the host (RFC 9112 §3.2.2).
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, site.clone());
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
}

/// Waits for the response head of `send`: without a deadline while the request body still
/// streams (a slow upload is no slow server), then for at most `limit`. `Err` when the
/// deadline passed.
async fn response_head<F: Future>(
    send: F,
    body_sent: Option<&watch::Receiver<bool>>,
    limit: Duration,
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
    tokio::time::timeout(limit, send).await
}

/// Whether backend `b`'s rules can send a request again after it reached a server.
fn may_resend(b: &webfarm_config::Backend) -> bool {
    b.retries > 0 && b.retry_on.iter().any(|r| *r != RetryOn::ConnFailure)
}

/// The methods RFC 9110 §9.2.2 calls idempotent.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// 502: the server failed after the request was sent.
fn bad_gateway(member: &Member, why: &str) -> Local {
    Local::new(
        StatusCode::BAD_GATEWAY,
        format!("502 Bad Gateway: server {} failed: {why}", member.state.id),
        "SH",
    )
}

/// The answer when the client's body made the exchange fail.
fn body_failure(f: BodyFailure) -> Local {
    match f {
        BodyFailure::TooLarge => Local::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Content Too Large: the request body is larger than max_body_size".into(),
            "PR",
        ),
        BodyFailure::ClientTimeout => Local::new(
            StatusCode::REQUEST_TIMEOUT,
            "408 Request Timeout: the client stopped sending its body (timeout client)".into(),
            "cD",
        ),
        BodyFailure::ClientAbort => Local::new(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the client's body failed".into(),
            "CD",
        ),
    }
}
