//! Phase 3, forward: HTTP's [`Transport`] for the attempt engine — one attempt sends the
//! request on an idle pooled connection if one is ready, else on a new one — and the
//! proxy's answer when the engine gives up.
//!
//! A stale pooled connection (closed by the server while idle) costs no attempt: the
//! request is handed back untouched and goes on the next connection. HAProxy's `http-reuse
//! safe`: a request that must not be sent twice (non-idempotent, or with a body) only goes
//! on a fresh connection or one idle for less than [`SAFE_REUSE_AGE`], which the server
//! cannot have started closing.

use std::future::Future;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use super::request::Plan;
use super::respond::Local;
use crate::attempt::{self, Failed, Failure, Lost, Timers, Transport, Won};
use crate::backend::check::{io_text, Observed};
use crate::backend::pool::{ConnectError, Pooled, ProxyBody};
use crate::backend::BackendState;

/// The longest a pooled connection may have been idle to carry a request that must not be
/// sent twice.
const SAFE_REUSE_AGE: Duration = Duration::from_secs(1);

/// A server's response head and the connection it came on (none after a `101`: the socket
/// then belongs to the tunnel).
pub(super) type Answered = (Response<Incoming>, Option<Pooled>);

/// Sends `req` to a server of `b` through the attempt engine.
///
/// # Errors
///
/// The proxy's own answer when no attempt succeeded (503, 502, 504, or 408/413/400 when
/// the client's body failed).
pub(super) async fn forward(
    b: &BackendState,
    req: Request<ProxyBody>,
    plan: &Plan,
    timers: &mut Timers,
) -> Result<Won<Answered>, Local> {
    let mut transport = Http {
        pending: Some(req),
        plan,
    };
    let key = plan.key();
    let resendable = plan.replay.is_some();
    attempt::run(b, &key, plan.sticky, resendable, &mut transport, timers)
        .await
        .map_err(|lost| answer(b, lost))
}

/// HTTP mode's attempts: the request not sent yet, or its kept head.
struct Http<'a> {
    pending: Option<Request<ProxyBody>>,
    plan: &'a Plan,
}

impl Transport for Http<'_> {
    type Connected = Answered;
    const WHAT: &'static str = "request";

    async fn attempt(
        &mut self,
        b: &BackendState,
        index: usize,
        timers: &mut Timers,
    ) -> Result<Answered, Failure> {
        let req = self
            .pending
            .take()
            .or_else(|| self.plan.replay.as_ref().map(|r| r.request()));
        send(self, b, index, req, timers).await
    }

    fn outcome((resp, _): &Answered) -> (Observed, Option<u16>) {
        let code = resp.status().as_u16();
        let l7_error = code >= 500 && code != 501 && code != 505;
        let seen = if l7_error {
            Observed::Layer7(format!("status {code}"))
        } else {
            Observed::Success
        };
        (seen, Some(code))
    }
}

/// One attempt on server `index`: an idle pooled connection if one is ready (and young
/// enough for a request that must not be sent twice), else a new one. A request handed
/// back (no connection, or closed before it went out) is kept for the next attempt.
async fn send(
    http: &mut Http<'_>,
    b: &BackendState,
    index: usize,
    req: Option<Request<ProxyBody>>,
    timers: &mut Timers,
) -> Result<Answered, Failure> {
    let Some(mut req) = req else {
        return Err(Failure::new(
            Failed::NotResendable,
            "the request cannot be sent again",
        ));
    };
    let server = &b.servers[index];
    let max_age = (!http.plan.resendable).then_some(SAFE_REUSE_AGE);
    loop {
        let connect_start = Instant::now();
        let (mut sender, reused) = match server.pool.take_idle(max_age) {
            Some(s) => (s, true),
            None => match server.pool.connect(b.config.timeout.connect).await {
                Ok(s) => (s, false),
                Err(error) => {
                    http.pending = Some(req);
                    return Err(connect_failure(&error));
                }
            },
        };
        timers.tc = Some(if reused {
            Duration::ZERO
        } else {
            connect_start.elapsed()
        });
        let sent_at = Instant::now();
        let limit = b.config.timeout.server;
        let body_sent = http.plan.body_sent.as_ref();
        match response_head(sender.try_send_request(req), body_sent, limit).await {
            Err(_) => {
                tracing::warn!(
                    "server {} sent no response within {limit:?}",
                    server.state.id
                );
                let why = format!("no response within {limit:?}");
                return Err(Failure::new(Failed::ResponseTimeout, why));
            }
            Ok(Ok(resp)) => {
                timers.tr = Some(sent_at.elapsed());
                // After a `101` the socket belongs to the tunnel.
                let conn = (resp.status() != StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| server.pool.lend(sender));
                return Ok((resp, conn));
            }
            Ok(Err(mut e)) => match e.take_message() {
                // The server had closed the idle connection: try the next one.
                Some(r) if reused => req = r,
                Some(r) => {
                    http.pending = Some(r);
                    let why = webfarm_node::http::error_chain(&e.into_error());
                    return Err(Failure::new(Failed::ClosedBeforeSend, why));
                }
                None => return Err(sent_failure(http.plan, &e.into_error())),
            },
        }
    }
}

/// The failure of a connection that could not be made.
fn connect_failure(error: &ConnectError) -> Failure {
    let why = match error {
        ConnectError::Io(e) => io_text(e),
        other => other.to_string(),
    };
    let failed = match error {
        ConnectError::Refused => Failed::Refused,
        ConnectError::Timeout(_) => Failed::ConnectTimeout,
        ConnectError::Io(_) | ConnectError::Handshake(_) | ConnectError::Tls(_) => Failed::Connect,
    };
    Failure::new(failed, why)
}

/// The failure of an exchange that failed after the request went out: the client's body
/// (if it failed first), else an invalid answer or none.
fn sent_failure(plan: &Plan, error: &hyper::Error) -> Failure {
    let why = webfarm_node::http::error_chain(error);
    if let Some(f) = plan.body_state.as_ref().and_then(|s| s.get()) {
        return Failure::new(Failed::Client(f), why);
    }
    let failed = if error.is_parse() {
        Failed::JunkResponse
    } else {
        Failed::EmptyResponse
    };
    Failure::new(failed, why)
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

/// The proxy's answer after the engine gave up: the status and termination state it
/// decided, with the reason in words.
fn answer(b: &BackendState, lost: Lost) -> Local {
    let server = lost.server.map(|i| &b.servers[i].state);
    let id = server.map_or("-", |s| s.id.as_str());
    let why = &lost.failure.why;
    let local = match lost.failure.failed {
        Failed::NoServer => Local::no_server(b.name()),
        // HAProxy's queue timeout names no server.
        Failed::QueueTimeout => return Local::queue_timeout(b.name(), lost.waited),
        Failed::Refused | Failed::Connect | Failed::ConnectTimeout => {
            let text = format!(
                "503 Service Unavailable: cannot connect to a server of backend \"{}\" after \
                 {} attempt(s); last: server {} ({why})",
                b.name(),
                lost.attempts,
                server.map_or("-", |s| s.name()),
            );
            Local::new(lost.status, text, lost.termination).retry_after()
        }
        Failed::ResponseTimeout => {
            let limit = b.config.timeout.server;
            let text = format!("504 Gateway Timeout: server {id} did not answer within {limit:?}");
            Local::new(lost.status, text, lost.termination)
        }
        Failed::Client(f) => Local::body_failure(f, lost.termination),
        Failed::Status(code) => {
            let text = format!("502 Bad Gateway: server {id} answered {code}");
            Local::new(lost.status, text, lost.termination)
        }
        Failed::ClosedBeforeSend
        | Failed::EmptyResponse
        | Failed::JunkResponse
        | Failed::NotResendable => {
            let text = format!("502 Bad Gateway: server {id} failed: {why}");
            Local::new(lost.status, text, lost.termination)
        }
    };
    match server {
        Some(s) => local.at(s.name()),
        None => local,
    }
}
