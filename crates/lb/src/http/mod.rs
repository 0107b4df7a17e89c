//! HTTP mode: a client connection ([`serve`]) and the path of each of its requests through
//! [`Proxy::handle`], in named phases, each a short function with one job:
//!
//! 1. **check the request** ([`request::check`]): an ACME http-01 challenge is answered
//!    by the lb (`[acme]`), a plain frontend with `redirect_https` redirects; `Host`,
//!    declared body size; a refused request is answered 400/413 (`PR`);
//!    then the frontend's `http-request` rules ([`access::check`]): ACLs, deny, tarpit,
//!    redirect, stick-table tracking, before any server is chosen;
//! 2. **choose** ([`request::Plan::new`]): the sticky cookie's server, the balancer's key
//!    (client address, path, header), whether the request may be sent twice; the head is
//!    rewritten for the server ([`request::prepare_head`]);
//! 3. **forward** ([`forward`]): the attempt engine ([`crate::attempt::run`]) takes a
//!    server (queue included), sends on a pooled or new connection, and retries or
//!    answers by the backend's rules;
//! 4. **response headers** ([`response::headers`]): hop-by-hop headers removed, the sticky
//!    cookie set, `X-Request-Id`;
//! 5. **body or tunnel** ([`response::body`], [`response::tunnel`]): the body streamed
//!    to the client (the access line is written when it ends), or a `101`'s tunnel.
//!
//! Every answer of the proxy's own ([`respond::Local`]) carries the reason in its body and
//! a termination state for the access log.

mod access;
mod body;
mod conn;
mod forward;
pub mod fuzzing;
mod headers;
mod request;
mod respond;
mod response;
mod serve;
mod sticky;
mod upgrade;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use webfarm_config::AccessLog;
use webfarm_tls::revoke::CRL_PATH;

use crate::access_log::LogRecord;
use crate::attempt::{Timers, Won};
use crate::control::live::{LiveConfig, LiveFrontend, Snapshot};
use crate::metrics::Tally;
use crate::termination::{EndedBy, Phase, Termination};
use body::{Ending, Inner, ResponseBody};
use conn::ConnGuard;
use headers::{RequestIds, X_REQUEST_ID};
use respond::Local;

pub(crate) use serve::{serve, serve_tls, ClientConn, ConnSettings, TlsInfo};

/// What one frontend needs to proxy a request (one per frontend and event-loop thread).
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The live configuration.
    live: Arc<LiveConfig>,
    /// The frontend's index in the snapshot.
    index: usize,
    /// `X-Request-Id` generator: per thread and frontend, so no counter is shared between
    /// threads (ids are 128 random-seeded bits: distinct across generators).
    ids: RequestIds,
}

/// A request on its way: its id, its access-log record and its connection's guard, which
/// every answer (the server's or the proxy's) carries to its end.
struct Exchange {
    id: HeaderValue,
    log: Option<LogRecord>,
    /// The request's metrics.
    tally: Tally,
    /// The request body's state (its byte count), once the request has a plan.
    request_body: Option<Arc<body::BodyState>>,
    guard: ConnGuard,
    /// `Strict-Transport-Security` for this answer (a TLS frontend with `hsts`).
    hsts: Option<HeaderValue>,
    /// The stick-table entry the request tracks, until its response ends.
    sc0: Option<crate::acl::Tracked>,
}

impl Exchange {
    /// The proxy's own answer `local`, logged when its body ends.
    fn answer(mut self, local: Local) -> Response<ResponseBody> {
        if let Some(l) = self.log.as_mut() {
            l.status = local.status.as_u16();
            l.termination = local.termination;
            l.server.clone_from(&local.server);
        }
        self.tally.status = Some(local.status.as_u16());
        let mut resp = local.into_response();
        resp.headers_mut().insert(X_REQUEST_ID.clone(), self.id);
        if let Some(hsts) = self.hsts {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        let (p, b) = resp.into_parts();
        let end = Ending {
            log: self.log,
            tally: Some(self.tally),
            request_body: self.request_body,
            sc0: self.sc0,
        };
        let body = ResponseBody::new(Inner::Local(b), None, Some(end), Some(self.guard), None);
        Response::from_parts(p, body)
    }

    /// What the response's end records, the status sent being `status`.
    fn ending(mut self, status: u16) -> (Ending, ConnGuard) {
        self.tally.status = Some(status);
        let end = Ending {
            log: self.log,
            tally: Some(self.tally),
            request_body: self.request_body,
            sc0: self.sc0,
        };
        (end, self.guard)
    }

    /// Records the timers of the attempts.
    fn timers(&mut self, timers: &Timers) {
        self.tally.timers = *timers;
        if let Some(l) = self.log.as_mut() {
            (l.tw, l.tc, l.tr) = (timers.tw, timers.tc, timers.tr);
        }
    }
}

impl Proxy {
    /// The proxy of frontend `index` of `live`.
    pub fn new(live: Arc<LiveConfig>, index: usize) -> Proxy {
        Proxy {
            live,
            index,
            ids: RequestIds::new(),
        }
    }

    /// Proxies one client request from `client`, counted in progress on its connection by
    /// `guard` (taken when hyper handed the request over, see [`conn::ConnState::begin`])
    /// and whose head took `tq`, through the phases of the module doc; never fails: errors
    /// become 4xx/5xx answers.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        conn: ClientConn,
        (guard, tq): (ConnGuard, Duration),
    ) -> Response<ResponseBody> {
        let snap = self.live.snapshot();
        let Some(fe) = snap.frontends.get(self.index) else {
            let proxy_refused = Termination::new(EndedBy::Proxy, Phase::Request);
            let local = Local::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no such frontend".into(),
                proxy_refused,
            );
            return local.into_response().map(ResponseBody::local);
        };
        let (upgrade_to, client_upgrade) = request::take_upgrade(&mut req).unzip();
        let (mut parts, body) = req.into_parts();
        let id = self.ids.ensure(&mut parts.headers);
        let log = access_record(&snap, fe, &parts, &conn, tq, &id);
        let hsts = fe.hsts.clone().filter(|_| conn.tls.is_some());
        let frontend = self.live.frontend_metrics.get(self.index).cloned();
        let mut ex = Exchange {
            id,
            log,
            tally: Tally::request(frontend.unwrap_or_default(), tq),
            request_body: None,
            guard,
            hsts,
            sc0: None,
        };
        // 1. Check the request: an ACME challenge is answered here, before any redirect to
        // HTTPS and without a backend (RFC 8555 §8.3).
        if let Some(found) = self.live.challenges.lookup(parts.uri.path()) {
            return ex.answer(Local::acme_challenge(found));
        }
        // The farm CA's CRL, which the farm's certificates point to (plain HTTP).
        if parts.uri.path() == CRL_PATH && matches!(parts.method, Method::GET | Method::HEAD) {
            let der = tokio::fs::read(&self.live.crl_file).await.ok();
            return ex.answer(Local::crl(der.map(Bytes::from)));
        }
        if let Some(port) = fe.config.redirect_https {
            if let Some(local) = Local::redirect_https(&parts, port, &snap.site) {
                return ex.answer(local);
            }
        }
        if let Err(local) = request::check(&parts, &body, &fe.config) {
            return ex.answer(local);
        }
        // The http-request rules, before a server is chosen: a denied request costs no
        // backend work (the frontend stands in as the log's backend, as in HAProxy).
        let metrics = self.live.frontend_metrics.get(self.index).map(|m| &**m);
        match access::check(fe, &parts, &conn, metrics).await {
            Ok(sc0) => ex.sc0 = sc0,
            Err(local) => {
                if let Some(l) = ex.log.as_mut() {
                    l.backend.clone_from(&fe.config.name);
                }
                return ex.answer(local);
            }
        }
        // 2. Choose (the inputs of the pick), and the head for the server.
        let backend = fe.backend.clone();
        let (plan, request) = request::Plan::new(parts, body, &conn, upgrade_to, &snap, fe);
        ex.request_body.clone_from(&plan.body_state);
        ex.tally.forwarded(&backend.metrics);
        // 3. Forward.
        let mut timers = Timers::default();
        let result = forward::forward(&backend, request, &plan, &mut timers).await;
        ex.timers(&timers);
        let Won {
            index,
            slot,
            connected: (resp, conn),
        } = match result {
            Ok(won) => won,
            Err(local) => return ex.answer(local),
        };
        // 4. Response headers.
        let (resp, server_upgrade) = response::headers(resp, &plan, &backend, index, &ex);
        if let Some(l) = ex.log.as_mut() {
            l.server = Some(backend.servers[index].state.name().to_string());
            l.status = resp.status().as_u16();
        }
        // 5. Body or tunnel.
        match (plan.upgrade_to, client_upgrade, server_upgrade) {
            (Some(proto), Some(client_up), Some(server_up)) => {
                response::tunnel(resp, proto, (client_up, server_up), slot, ex)
            }
            _ => response::body(resp, slot, conn, ex),
        }
    }
}

/// The access-log record of a request, or `None` (no allocation at all) when no line
/// would be written (`access_log = "off"`, or target `access` not enabled at info).
fn access_record(
    snap: &Snapshot,
    fe: &LiveFrontend,
    parts: &http::request::Parts,
    conn: &ClientConn,
    tq: Duration,
    id: &HeaderValue,
) -> Option<LogRecord> {
    let logging = snap.farm.lb.access_log != AccessLog::Off
        && tracing::enabled!(target: "access", tracing::Level::INFO);
    logging.then(|| LogRecord {
        format: snap.farm.lb.access_log,
        client: conn.peer,
        tls: conn.tls,
        frontend: fe.config.name.clone(),
        backend: fe.backend.name().to_string(),
        server: None,
        start: Instant::now(),
        tq,
        tw: None,
        tc: None,
        tr: None,
        status: 0,
        bytes: 0,
        termination: Termination::NORMAL,
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        version: parts.version,
        request_id: id.clone(),
    })
}
