//! Health: active checks (HAProxy's `check` with `option httpchk`, or a plain TCP connect)
//! and passive health (`observe`, `error_limit`, `on_error`).
//!
//! One task per server checks on a new connection every `inter` while the server is UP and
//! passing, every `fastinter` while it is transitioning (UP with failures, DOWN with passes,
//! or after `on_error`), every `downinter` while it is fully DOWN; never while it is in
//! maintenance. Each check is bounded by `check.timeout`. An HTTP check sends `method path`
//! with `Host: <check.host or site>` and passes on a status of `expect_status` (default any
//! 2xx or 3xx); a TCP check passes when the connection opens. Results are described in
//! HAProxy's words (`Layer4 connection problem`, `Layer7 wrong status`...), and every state
//! change is logged as HAProxy logs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use webfarm_config::{Check, CheckType, Observe, OnError};
use webfarm_node::Shutdown;

use crate::backend::server::{AdminState, CheckEffect, ServerState, Transition};
use crate::backend::BackendState;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckResult {
    /// Passed in time.
    pub passed: bool,
    /// HAProxy's reason: `Layer7 check passed`, `Layer4 connection problem`...
    pub reason: &'static str,
    /// The status code, for Layer7 results.
    pub code: Option<StatusCode>,
    /// More detail, such as `Connection refused`.
    pub info: Option<String>,
    /// How long the check took.
    pub duration: Duration,
}

impl std::fmt::Display for CheckResult {
    /// `Layer4 connection problem, info: "Connection refused", check duration: 0ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)?;
        if let Some(code) = self.code {
            write!(f, ", code: {}", code.as_u16())?;
        }
        if let Some(info) = &self.info {
            write!(f, ", info: \"{info}\"")?;
        }
        write!(f, ", check duration: {}ms", self.duration.as_millis())
    }
}

/// What one check does, resolved from the configuration.
#[derive(Clone)]
pub(crate) struct CheckSpec {
    /// HTTP or TCP.
    pub kind: CheckType,
    /// HTTP method.
    pub method: Method,
    /// Path requested.
    pub path: String,
    /// `Host` header.
    pub host: HeaderValue,
    /// Passing statuses; empty: 2xx and 3xx.
    pub expect: Vec<u16>,
    /// Deadline of one check.
    pub timeout: Duration,
    /// TLS to the server (internal TLS, a farm node).
    pub tls: Option<tokio_rustls::TlsConnector>,
}

impl CheckSpec {
    /// The check of `check`, with `site` as the default `Host`.
    pub fn new(check: &Check, site: &str, tls: Option<tokio_rustls::TlsConnector>) -> CheckSpec {
        let host = check.host.as_deref().unwrap_or(site);
        CheckSpec {
            kind: check.kind,
            method: Method::from_bytes(check.method.as_bytes()).unwrap_or(Method::GET),
            path: check.path.clone(),
            host: HeaderValue::from_str(host)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            expect: check.expect_status.clone(),
            timeout: check.timeout,
            tls,
        }
    }

    fn passes(&self, code: StatusCode) -> bool {
        if self.expect.is_empty() {
            code.is_success() || code.is_redirection()
        } else {
            self.expect.contains(&code.as_u16())
        }
    }
}

/// Where a check task finds the current backend of its server (it changes on reload), to
/// log state changes with the current counts.
pub(crate) trait BackendLookup: Send + Sync + 'static {
    /// The current backend named `name`.
    fn backend(&self, name: &str) -> Option<Arc<BackendState>>;
}

/// The check task of `server` of backend `backend`: runs until `shutdown` fires (or the task
/// is aborted by a reload). The first check waits `offset`, to spread the servers' checks.
pub(crate) async fn run(
    lookup: Arc<dyn BackendLookup>,
    backend: String,
    server: Arc<ServerState>,
    check: Check,
    (site, tls): (String, Option<tokio_rustls::TlsConnector>),
    offset: Duration,
    shutdown: Shutdown,
) {
    let spec = CheckSpec::new(&check, &site, tls);
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = server.check_wake.notified() => {
                // `on_error` or a state change: the next check comes at `fastinter` at the
                // latest (HAProxy's "forces fastinter"), not at once.
                if server.admin() != AdminState::Maint {
                    next = next.min(tokio::time::Instant::now() + check.fastinter);
                    continue;
                }
            }
        }
        if server.admin() == AdminState::Maint {
            // No checks in maintenance; a state change wakes the task.
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = server.check_wake.notified() => {}
            }
            next = tokio::time::Instant::now();
            continue;
        }
        let result = tokio::select! {
            _ = shutdown.wait() => return,
            r = check_once(server.addr(), &spec) => r,
        };
        server
            .metrics
            .check(result.passed, result.reason, result.duration);
        let text = result.to_string();
        let effect = server.record_check(result.passed, text.clone(), check.rise, check.fall);
        log_check(&*lookup, &backend, &server, &check, &result, &text, effect);
        let interval = match server.check_phase() {
            Some(false) => check.inter,
            Some(true) => check.fastinter,
            None => check.downinter,
        };
        next = tokio::time::Instant::now() + interval;
    }
}

fn log_check(
    lookup: &dyn BackendLookup,
    backend: &str,
    server: &ServerState,
    check: &Check,
    result: &CheckResult,
    text: &str,
    effect: CheckEffect,
) {
    let id = &server.id;
    match effect.transition {
        Some(t) => match lookup.backend(backend) {
            Some(b) => b.log_transition(server, t, &format!("reason: {text}")),
            None => tracing::info!("Server {id} changed state, reason: {text}"),
        },
        None if !result.passed && server.is_up() => tracing::info!(
            "Health check for server {id} failed, reason: {text}, status: {}/{} UP.",
            check.fall.saturating_sub(effect.failures),
            check.fall
        ),
        None if result.passed && !server.is_up() => tracing::info!(
            "Health check for server {id} succeeded, reason: {text}, status: {}/{} DOWN.",
            effect.passes,
            check.rise
        ),
        None => tracing::debug!("Health check for server {id}: {text}"),
    }
}

/// What the request path saw of a server (passive health, HAProxy's `observe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A valid answer (a status that is no layer-7 error).
    Success,
    /// Nothing listens (`ECONNREFUSED`): marks the server DOWN at once.
    Refused(String),
    /// Another connection error: timeout, reset, closed before an answer.
    Layer4(String),
    /// An invalid answer, or a 5xx other than 501 and 505.
    Layer7(String),
}

/// Reports `what` happened on a request to server `index` of `backend`, per the backend's
/// `observe`, `error_limit` and `on_error`; logs the state changes it causes.
pub(crate) fn observe(backend: &BackendState, index: usize, what: Observed) {
    let check = &backend.config.check;
    let Some(server) = backend.servers.get(index) else {
        return;
    };
    let state = &server.state;
    let info = match (&what, check.observe) {
        (_, Observe::Off) => return,
        (Observed::Success, _) | (Observed::Layer7(_), Observe::Layer4) => {
            state.observe_success();
            return;
        }
        (Observed::Refused(info), _) => {
            let text = format!("Layer4 connection problem (observed on request), info: \"{info}\"");
            if state.mark_down(text.clone()) {
                backend.log_transition(state, Transition::WentDown, &format!("reason: {text}"));
            }
            state.check_wake.notify_one();
            return;
        }
        (Observed::Layer4(info) | Observed::Layer7(info), _) => info,
    };
    if !state.observe_error(check.error_limit) {
        return;
    }
    let text = format!(
        "Health analyze, info: \"Detected {} consecutive errors, last one was: {info}\"",
        check.error_limit
    );
    let transition = match check.on_error {
        OnError::Fastinter => None,
        OnError::FailCheck => {
            state
                .record_check(false, text.clone(), check.rise, check.fall)
                .transition
        }
        OnError::SuddenDeath => {
            state
                .sudden_death(text.clone(), check.rise, check.fall)
                .transition
        }
        OnError::MarkDown => state
            .mark_down(text.clone())
            .then_some(Transition::WentDown),
    };
    state.force_fastinter();
    match transition {
        Some(t) => backend.log_transition(state, t, &format!("reason: {text}")),
        None => tracing::warn!("Server {}: {text}", state.id),
    }
}

/// One check of the server at `addr`, within `spec.timeout`.
pub(crate) async fn check_once(addr: SocketAddr, spec: &CheckSpec) -> CheckResult {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let done = |passed, reason, code, info| CheckResult {
        passed,
        reason,
        code,
        info,
        duration: start.elapsed(),
    };
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return done(false, "Layer4 timeout", None, None),
        Ok(Err(e)) => return done(false, "Layer4 connection problem", None, Some(io_text(&e))),
        Ok(Ok(s)) => s,
    };
    if spec.kind == CheckType::Tcp {
        return done(true, "Layer4 check passed", None, None);
    }
    let _ = stream.set_nodelay(true);
    let stream = match timeout_at(
        deadline,
        super::upstream::secure(stream, spec.tls.as_ref(), addr),
    )
    .await
    {
        Err(_) => return done(false, "Layer6 timeout", None, None),
        Ok(Err(e)) => return done(false, "Layer6 invalid response", None, Some(io_text(&e))),
        Ok(Ok(s)) => s,
    };
    let (mut sender, conn) = match timeout_at(
        deadline,
        http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
    )
    .await
    {
        Err(_) => return done(false, "Layer7 timeout", None, None),
        Ok(Err(e)) => return done(false, "Layer7 invalid response", None, Some(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    let conn = tokio::spawn(conn);
    let request = Request::builder()
        .method(spec.method.clone())
        .uri(spec.path.as_str())
        .header(header::HOST, spec.host.clone())
        .header(header::USER_AGENT, "webfarm-lb-check")
        .header(header::CONNECTION, "close")
        .body(Empty::new());
    let result = match request {
        Err(e) => done(false, "Layer7 invalid request", None, Some(e.to_string())),
        Ok(request) => match timeout_at(deadline, sender.send_request(request)).await {
            Err(_) => done(false, "Layer7 timeout", None, None),
            Ok(Err(e)) => done(
                false,
                "Layer7 invalid response",
                None,
                Some(webfarm_node::http::error_chain(&e)),
            ),
            Ok(Ok(resp)) => {
                let code = resp.status();
                if spec.passes(code) {
                    done(true, "Layer7 check passed", Some(code), None)
                } else {
                    let info = code.canonical_reason().map(str::to_string);
                    done(false, "Layer7 wrong status", Some(code), info)
                }
            }
        },
    };
    // The check only needs the status line; close the connection now.
    conn.abort();
    result
}

/// An I/O error as HAProxy shows it: `Connection refused`, without Rust's `(os error 111)`.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: CheckType) -> CheckSpec {
        CheckSpec {
            kind,
            method: Method::GET,
            path: "/healthz".into(),
            host: HeaderValue::from_static("www.foobar.com"),
            expect: Vec::new(),
            tls: None,
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn refused_is_a_layer4_connection_problem() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        for kind in [CheckType::Http, CheckType::Tcp] {
            let r = check_once(addr, &spec(kind)).await;
            assert!(!r.passed);
            let text = r.to_string();
            assert!(
                text.starts_with(
                    "Layer4 connection problem, info: \"Connection refused\", check duration: "
                ),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn tcp_check_passes_on_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = check_once(listener.local_addr().unwrap(), &spec(CheckType::Tcp)).await;
        assert!(r.passed, "{r}");
        assert!(r.to_string().starts_with("Layer4 check passed"));
    }

    #[test]
    fn expected_statuses() {
        let mut s = spec(CheckType::Http);
        assert!(s.passes(StatusCode::OK) && s.passes(StatusCode::FOUND));
        assert!(!s.passes(StatusCode::NOT_FOUND));
        s.expect = vec![404];
        assert!(s.passes(StatusCode::NOT_FOUND) && !s.passes(StatusCode::OK));
    }

    #[test]
    fn wrong_status_reads_like_haproxy() {
        let r = CheckResult {
            passed: false,
            reason: "Layer7 wrong status",
            code: Some(StatusCode::SERVICE_UNAVAILABLE),
            info: Some("Service Unavailable".into()),
            duration: Duration::from_millis(15),
        };
        assert_eq!(
            r.to_string(),
            "Layer7 wrong status, code: 503, info: \"Service Unavailable\", check duration: 15ms"
        );
    }
}
