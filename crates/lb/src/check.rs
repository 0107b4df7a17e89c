//! Active health checks (HAProxy's `option httpchk` with `check inter rise fall`).
//!
//! One task per server sends `GET <check.path>` with `Host: <site>` on a new connection every
//! `inter`, bounded by `check.timeout`; a 2xx or 3xx answer passes. A server starts UP;
//! `fall` consecutive failures take it DOWN and `rise` consecutive passes bring it back UP.
//! Results are described in HAProxy's words (`Layer4 connection problem`, `Layer7 wrong
//! status`...), and every state change is logged as HAProxy logs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use webfarm_node::Shutdown;

use crate::backend::BackendState;
use crate::server::Transition;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckResult {
    /// 2xx or 3xx received in time.
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

/// The check task of server `index` of `backend`: runs until `shutdown` fires.
pub(crate) async fn run(
    backend: Arc<BackendState>,
    index: usize,
    site: String,
    shutdown: Shutdown,
) {
    let check = backend.config.check.clone();
    let member = &backend.members[index];
    // Spread the servers' first checks over one interval, as HAProxy does at start-up.
    let n = u32::try_from(backend.members.len())
        .unwrap_or(u32::MAX)
        .max(1);
    let offset = check.inter / n * u32::try_from(index).unwrap_or(0);
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next += check.inter;
        let result = tokio::select! {
            _ = shutdown.wait() => return,
            r = check_once(member.state.addr, &check.path, &site, check.timeout) => r,
        };
        let text = result.to_string();
        let effect = member
            .state
            .record_check(result.passed, text.clone(), check.rise, check.fall);
        let id = &member.state.id;
        match effect.transition {
            Some(t) => backend.log_transition(&member.state, t, &format!("reason: {text}")),
            None if !result.passed && member.state.is_up() => tracing::info!(
                "Health check for server {id} failed, reason: {text}, status: {}/{} UP.",
                check.fall.saturating_sub(effect.failures),
                check.fall
            ),
            None if result.passed && !member.state.is_up() => tracing::info!(
                "Health check for server {id} succeeded, reason: {text}, status: {}/{} DOWN.",
                effect.passes,
                check.rise
            ),
            None => tracing::debug!("Health check for server {id}: {text}"),
        }
        // A slow check must not make the next ones pile up.
        let now = tokio::time::Instant::now();
        if next < now {
            next = now;
        }
    }
}

/// Marks server `index` DOWN because a request could not connect to it (`info` says why);
/// logs the change. The checks bring it back after `rise` passes.
pub(crate) fn mark_down_observed(backend: &BackendState, index: usize, info: &str) {
    let state = &backend.members[index].state;
    let text = format!("Layer4 connection problem (observed on request), info: \"{info}\"");
    if state.mark_down(text.clone()) {
        backend.log_transition(state, Transition::WentDown, &format!("reason: {text}"));
    }
}

/// One check of the server at `addr`: `GET path` with `Host: site`, within `limit`.
pub(crate) async fn check_once(
    addr: SocketAddr,
    path: &str,
    site: &str,
    limit: Duration,
) -> CheckResult {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
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
    let _ = stream.set_nodelay(true);
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
    let request = Request::get(path)
        .header(header::HOST, site)
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
                if code.is_success() || code.is_redirection() {
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

    #[tokio::test]
    async fn refused_is_a_layer4_connection_problem() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let r = check_once(addr, "/healthz", "www.foobar.com", Duration::from_secs(2)).await;
        assert!(!r.passed);
        let text = r.to_string();
        assert!(
            text.starts_with(
                "Layer4 connection problem, info: \"Connection refused\", check duration: "
            ),
            "{text}"
        );
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
