//! The attempt engine, one for HTTP and TCP mode: take a server, connect, send; on a
//! failure ask [`decide`] whether to try again on the same server, on another, or to answer.
//!
//! [`run`] is the loop: it takes a slot on a server of the backend (sticky cookie,
//! balancer, queue: [`BackendState::acquire`]), lets the mode's [`Transport`] make one
//! attempt on it, reports the outcome to passive health ([`observe`]), and on a failure
//! follows [`decide`]. [`decide`] is a pure function of the failure and the backend's rules:
//! every retry rule lives there, and nowhere else.
//!
//! The rules are HAProxy's `retries`, `option redispatch` and `retry-on`:
//! - at most `retries` more attempts after the first;
//! - with `redispatch` each goes to a server not tried yet (the same one again only when
//!   every server was tried), without it to the same server (HAProxy's `option
//!   redispatch 1`: redispatch on every retry, not only the last);
//! - a failure is retried only if `retry_on` names its condition ([`Failed::condition`]):
//!   `conn-failure` (no connection, or a new connection closed before the request went
//!   out), `empty-response`, `junk-response`, `response-timeout`, or the status code;
//! - a failure after the request's bytes may have reached the server is retried only if
//!   the request can be sent twice: an idempotent method (RFC 9110 §9.2.2), no body (bodies
//!   are streamed, never buffered, so one cannot be replayed), and its head kept for it;
//! - a status named by `retry_on` that is not retried goes to the client as the server
//!   sent it; every other failure not retried becomes the proxy's own answer, with the
//!   status and the termination state [`decide`] gives.

use std::future::Future;
use std::time::{Duration, Instant};

use http::StatusCode;
use webfarm_config::RetryOn;

use crate::backend::balance::RequestKey;
use crate::backend::check::{observe, Observed};
use crate::backend::server::ActiveRequest;
use crate::backend::{BackendState, QueueError};
use crate::termination::{EndedBy, Phase, Termination};

/// Why the client's request body made the exchange fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFailure {
    /// It went over `max_body_size`.
    TooLarge,
    /// It stopped for `timeout client`.
    ClientTimeout,
    /// The client aborted it.
    ClientAbort,
}

/// What failed, in which phase, and (from that) whether the request's bytes may have
/// reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Choosing: no server of the backend is usable (down, maintenance, drained, or the
    /// server a sticky cookie or a retry forces is not).
    NoServer,
    /// Queue: every usable server stayed at its `maxconn` for `timeout queue`.
    QueueTimeout,
    /// Connect: nothing listens on the server's port (`ECONNREFUSED`).
    Refused,
    /// Connect: another connection error (unreachable, reset, handshake).
    Connect,
    /// Connect: no connection within `timeout connect`.
    ConnectTimeout,
    /// Connected, but the new connection closed before the request went out.
    ClosedBeforeSend,
    /// Response head: the connection closed after the request went out, without an answer.
    EmptyResponse,
    /// Response head: the answer was not valid HTTP.
    JunkResponse,
    /// Response head: none within `timeout server` after the request was sent in full.
    ResponseTimeout,
    /// Response head: the server answered this status (it is a failure only when
    /// `retry_on` names it).
    Status(u16),
    /// The client's request body failed the exchange.
    Client(BodyFailure),
    /// A retry found the request gone (sent, and its head not kept to send it again).
    NotResendable,
}

impl Failed {
    /// The phase in which it failed.
    pub fn phase(self) -> Phase {
        match self {
            Failed::NoServer | Failed::Refused | Failed::Connect | Failed::ConnectTimeout => {
                Phase::Connect
            }
            Failed::QueueTimeout => Phase::Queue,
            // Connected; the request had not gone out, no answer came.
            Failed::ClosedBeforeSend
            | Failed::EmptyResponse
            | Failed::JunkResponse
            | Failed::ResponseTimeout
            | Failed::Status(_)
            | Failed::NotResendable => Phase::Headers,
            Failed::Client(BodyFailure::TooLarge) => Phase::Request,
            Failed::Client(_) => Phase::Data,
        }
    }

    /// Whether bytes of the request may have reached the server.
    pub fn reached_server(self) -> bool {
        !matches!(
            self,
            Failed::NoServer
                | Failed::QueueTimeout
                | Failed::Refused
                | Failed::Connect
                | Failed::ConnectTimeout
                | Failed::ClosedBeforeSend
        )
    }

    /// The `retry_on` condition it belongs to; `None` for failures never retried.
    pub fn condition(self) -> Option<RetryOn> {
        match self {
            Failed::Refused
            | Failed::Connect
            | Failed::ConnectTimeout
            | Failed::ClosedBeforeSend => Some(RetryOn::ConnFailure),
            Failed::EmptyResponse => Some(RetryOn::EmptyResponse),
            Failed::JunkResponse => Some(RetryOn::JunkResponse),
            Failed::ResponseTimeout => Some(RetryOn::ResponseTimeout),
            Failed::Status(code) => Some(RetryOn::Status(code)),
            Failed::NoServer | Failed::QueueTimeout | Failed::Client(_) | Failed::NotResendable => {
                None
            }
        }
    }
}

/// The backend's retry rules as they stand for one failed attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// `retry_on`.
    pub retry_on: &'a [RetryOn],
    /// `redispatch`.
    pub redispatch: bool,
    /// Attempts still allowed (`retries` minus the retries made).
    pub retries_left: u32,
    /// The request may be sent again after it reached a server: idempotent, no body, and
    /// its head kept for it.
    pub resendable: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again on the same server.
    RetrySameServer,
    /// Try again on a server not tried yet (any, when every one was tried).
    RetryAnotherServer,
    /// Give the client the server's own response (a status `retry_on` names, not retried).
    Deliver,
    /// Answer the client with this status (HTTP mode; TCP mode closes) and log this
    /// termination state.
    Answer {
        /// The proxy's status.
        status: StatusCode,
        /// The termination state.
        termination: Termination,
    },
}

/// What to do after `failed`, under `policy`: HAProxy's rules, as the module doc says.
pub(crate) fn decide(failed: Failed, policy: &Policy<'_>) -> Decision {
    let retry = policy.retries_left > 0
        && failed
            .condition()
            .is_some_and(|c| policy.retry_on.contains(&c))
        && (!failed.reached_server() || policy.resendable);
    if retry {
        return if policy.redispatch {
            Decision::RetryAnotherServer
        } else {
            Decision::RetrySameServer
        };
    }
    if let Failed::Status(_) = failed {
        return Decision::Deliver;
    }
    let (status, termination) = answer(failed);
    Decision::Answer {
        status,
        termination,
    }
}

/// The proxy's own answer to `failed` when it is not retried: the status and the
/// termination state. (A status `retry_on` names is delivered as the server sent it
/// instead; should it be answered, it is a `502` ended by the server.)
pub(crate) fn answer(failed: Failed) -> (StatusCode, Termination) {
    let (status, by) = match failed {
        Failed::NoServer | Failed::Refused | Failed::Connect => {
            (StatusCode::SERVICE_UNAVAILABLE, EndedBy::Server)
        }
        Failed::QueueTimeout | Failed::ConnectTimeout => {
            (StatusCode::SERVICE_UNAVAILABLE, EndedBy::ServerTimeout)
        }
        Failed::ClosedBeforeSend
        | Failed::EmptyResponse
        | Failed::JunkResponse
        | Failed::Status(_)
        | Failed::NotResendable => (StatusCode::BAD_GATEWAY, EndedBy::Server),
        Failed::ResponseTimeout => (StatusCode::GATEWAY_TIMEOUT, EndedBy::ServerTimeout),
        Failed::Client(BodyFailure::TooLarge) => (StatusCode::PAYLOAD_TOO_LARGE, EndedBy::Proxy),
        Failed::Client(BodyFailure::ClientTimeout) => {
            (StatusCode::REQUEST_TIMEOUT, EndedBy::ClientTimeout)
        }
        Failed::Client(BodyFailure::ClientAbort) => (StatusCode::BAD_REQUEST, EndedBy::Client),
    };
    (status, Termination::new(by, failed.phase()))
}

/// One failed attempt: what failed and the reason in words (`Connection refused`,
/// `connect timeout after 1s`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What failed.
    pub failed: Failed,
    /// Why, for logs and the answer's text.
    pub why: String,
}

impl Failure {
    /// A failure with its reason.
    pub fn new(failed: Failed, why: impl Into<String>) -> Failure {
        Failure {
            failed,
            why: why.into(),
        }
    }

    /// What passive health learns from it; `None` when the server is not to blame.
    fn observed(&self) -> Option<Observed> {
        let why = self.why.clone();
        Some(match self.failed {
            Failed::Refused => Observed::Refused(why),
            Failed::Connect | Failed::ConnectTimeout | Failed::ClosedBeforeSend => {
                Observed::Layer4(why)
            }
            Failed::EmptyResponse => Observed::Layer4(format!("empty response: {why}")),
            Failed::JunkResponse => Observed::Layer7(format!("junk response: {why}")),
            Failed::ResponseTimeout => Observed::Layer4(why),
            Failed::NoServer
            | Failed::QueueTimeout
            | Failed::Status(_)
            | Failed::Client(_)
            | Failed::NotResendable => return None,
        })
    }
}

/// HAProxy's timers of a request's attempts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timers {
    /// `Tw`: time in the queue, over every attempt.
    pub tw: Option<Duration>,
    /// `Tc`: the last attempt's connect time (0 on a reused connection).
    pub tc: Option<Duration>,
    /// `Tr`: the last attempt's request sent to response head.
    pub tr: Option<Duration>,
}

/// What one mode (HTTP, TCP) does in one attempt on one server.
pub(crate) trait Transport {
    /// What a successful attempt yields: a response and its connection, a stream.
    type Connected;

    /// `"request"` (HTTP mode) or `"connection"` (TCP mode), for the log lines.
    const WHAT: &'static str;

    /// Connects to server `index` of `b` and sends; sets `timers.tc` and `timers.tr`.
    fn attempt(
        &mut self,
        b: &BackendState,
        index: usize,
        timers: &mut Timers,
    ) -> impl Future<Output = Result<Self::Connected, Failure>> + Send;

    /// What passive health learns from a successful attempt, and the status it carries
    /// (HTTP mode), which `retry_on` may name.
    fn outcome(connected: &Self::Connected) -> (Observed, Option<u16>);
}

/// A successful attempt: the server, its slot, and what the transport made.
#[derive(Debug)]
pub(crate) struct Won<C> {
    /// The server's index in the backend.
    pub index: usize,
    /// Its slot, held while the request (or the TCP session) lives.
    pub slot: ActiveRequest,
    /// The transport's result.
    pub connected: C,
}

/// The answer after the last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The last failure.
    pub failure: Failure,
    /// The proxy's status for the client.
    pub status: StatusCode,
    /// The termination state.
    pub termination: Termination,
    /// The server tried last, if any.
    pub server: Option<usize>,
    /// Attempts made.
    pub attempts: u32,
    /// How long the last choice of a server waited in the queue.
    pub waited: Duration,
}

/// Where a request's attempts stand.
struct Attempts {
    /// Servers that failed it (indexes).
    tried: Vec<usize>,
    retries_left: u32,
    /// The server the next attempt must use: a sticky cookie's, or the last one on a retry
    /// without redispatch.
    fixed: Option<usize>,
    /// The server of the last attempt.
    last: Option<usize>,
    /// The request may be sent again after it reached a server.
    resendable: bool,
}

impl Attempts {
    /// The rules for the current attempt.
    fn policy<'a>(&self, b: &'a BackendState) -> Policy<'a> {
        Policy {
            retry_on: &b.config.retry_on,
            redispatch: b.config.redispatch,
            retries_left: self.retries_left,
            resendable: self.resendable,
        }
    }

    /// The answer when `failure` ends the request, `waited` in the queue last.
    fn lost(&self, b: &BackendState, failure: Failure, waited: Duration) -> Lost {
        let (status, termination) = answer(failure.failed);
        Lost {
            failure,
            status,
            termination,
            server: self.last,
            attempts: b.config.retries - self.retries_left + 1,
            waited,
        }
    }

    /// Counts a failed attempt on the backend and the server tried last (`/metrics`): a
    /// connection error, and the retry `decision` makes (a redispatch when to another).
    fn count(&self, b: &BackendState, failed: Failed, decision: Decision) {
        let connection_error = matches!(
            failed,
            Failed::Refused | Failed::Connect | Failed::ConnectTimeout
        );
        let retry = match decision {
            Decision::RetrySameServer => Some(false),
            Decision::RetryAnotherServer => Some(true),
            Decision::Deliver | Decision::Answer { .. } => None,
        };
        b.metrics.attempt_failed(connection_error, retry);
        if let Some(srv) = self.last.and_then(|i| b.servers.get(i)) {
            srv.state
                .metrics
                .upstream
                .attempt_failed(connection_error, retry);
        }
    }

    /// After `failure` on server `index`: `Ok` to try again (the next server fixed or
    /// not), else the answer.
    fn failed(&mut self, b: &BackendState, what: &str, failure: Failure) -> Result<(), Failure> {
        let id = b
            .servers
            .get(self.last.unwrap_or(usize::MAX))
            .map_or("-", |s| &s.state.id);
        let decision = decide(failure.failed, &self.policy(b));
        self.count(b, failure.failed, decision);
        self.fixed = match decision {
            Decision::RetrySameServer => self.last,
            Decision::RetryAnotherServer => None,
            Decision::Deliver | Decision::Answer { .. } => {
                tracing::warn!("{what} to server {id} failed: {}", failure.why);
                return Err(failure);
            }
        };
        self.retries_left -= 1;
        tracing::info!(
            "{what} to server {id} failed ({}); retrying{}, {} retr{} left",
            failure.why,
            if b.config.redispatch {
                " on another server"
            } else {
                ""
            },
            self.retries_left,
            if self.retries_left == 1 { "y" } else { "ies" },
        );
        self.tried.extend(self.last);
        Ok(())
    }
}

/// Takes servers of `b` for `key` and makes attempts with `transport` until one succeeds
/// or [`decide`] says to answer. `sticky` forces the first server (a sticky cookie);
/// `resendable` as in [`Policy`].
///
/// # Errors
///
/// [`Lost`]: the status and termination state to answer with.
///
/// # Cancel safety
///
/// Cancel safe as far as the engine goes (a slot is released when dropped); whether an
/// attempt may be cancelled is the transport's.
pub(crate) async fn run<T: Transport>(
    b: &BackendState,
    key: &RequestKey<'_>,
    sticky: Option<usize>,
    resendable: bool,
    transport: &mut T,
    timers: &mut Timers,
) -> Result<Won<T::Connected>, Lost> {
    let mut at = Attempts {
        tried: Vec::new(),
        retries_left: b.config.retries,
        fixed: sticky,
        last: None,
        resendable,
    };
    loop {
        let queued_at = Instant::now();
        let acquired = b.acquire(key, &at.tried, at.fixed).await;
        let waited = queued_at.elapsed();
        timers.tw = Some(timers.tw.unwrap_or_default() + waited);
        let (index, slot) = match acquired {
            Ok(x) => x,
            Err(e) => return Err(at.lost(b, choose_failure(e, waited), waited)),
        };
        at.last = Some(index);
        let failure = match transport.attempt(b, index, timers).await {
            Ok(connected) => {
                let (seen, status) = T::outcome(&connected);
                observe(b, index, seen);
                match status.filter(|&code| retry_status(code, &at.policy(b))) {
                    None => {
                        return Ok(Won {
                            index,
                            slot,
                            connected,
                        })
                    }
                    Some(code) => Failure::new(Failed::Status(code), format!("status {code}")),
                }
            }
            Err(failure) => {
                if let Some(seen) = failure.observed() {
                    observe(b, index, seen);
                }
                failure
            }
        };
        drop(slot);
        at.failed(b, T::WHAT, failure)
            .map_err(|failure| at.lost(b, failure, waited))?;
    }
}

/// Whether a response with status `code` is to be retried under `policy`.
fn retry_status(code: u16, policy: &Policy<'_>) -> bool {
    matches!(
        decide(Failed::Status(code), policy),
        Decision::RetrySameServer | Decision::RetryAnotherServer
    )
}

/// The failure when no server could be taken, after `waited` in the queue.
fn choose_failure(e: QueueError, waited: Duration) -> Failure {
    match e {
        QueueError::NoServer => Failure::new(Failed::NoServer, "no server is up"),
        QueueError::Timeout => Failure::new(
            Failed::QueueTimeout,
            format!("every server stayed full for {waited:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use EndedBy::{ClientTimeout, Proxy, Server, ServerTimeout};

    const DEFAULT: &[RetryOn] = &[RetryOn::ConnFailure, RetryOn::EmptyResponse];
    const ALL: &[RetryOn] = &[
        RetryOn::ConnFailure,
        RetryOn::EmptyResponse,
        RetryOn::JunkResponse,
        RetryOn::ResponseTimeout,
        RetryOn::Status(503),
    ];

    fn local(status: u16, by: EndedBy, phase: Phase) -> Decision {
        Decision::Answer {
            status: StatusCode::from_u16(status).unwrap(),
            termination: Termination::new(by, phase),
        }
    }

    /// HAProxy's documented cases (configuration manual: `retries`, `retry-on`, `option
    /// redispatch`) and webfarm's additions (DESIGN.md, "Retries").
    #[test]
    fn decides_like_haproxy() {
        use Decision::{Deliver, RetryAnotherServer as Another, RetrySameServer as Same};
        use Failed::*;
        // (failure, retry_on, redispatch, retries left, resendable) -> decision
        type Case = (Failed, &'static [RetryOn], bool, u32, bool, Decision);
        #[rustfmt::skip]
        let table: &[Case] = &[
            // conn-failure: no byte reached the server, any request goes again.
            (Refused, DEFAULT, true, 3, false, Another),
            (Connect, DEFAULT, true, 3, false, Another),
            (ConnectTimeout, DEFAULT, true, 3, false, Another),
            (ClosedBeforeSend, DEFAULT, true, 3, false, Another),
            // Without redispatch, the same server again.
            (Refused, DEFAULT, false, 3, false, Same),
            (ConnectTimeout, DEFAULT, false, 1, false, Same),
            // `retries` spent: answer.
            (Refused, DEFAULT, true, 0, false, local(503, Server, Phase::Connect)),
            (ConnectTimeout, DEFAULT, true, 0, true, local(503, ServerTimeout, Phase::Connect)),
            (ClosedBeforeSend, DEFAULT, true, 0, true, local(502, Server, Phase::Headers)),
            // `retry_on` without conn-failure: connection failures are answered.
            (Refused, &[RetryOn::EmptyResponse], true, 3, true, local(503, Server, Phase::Connect)),
            (Refused, &[], true, 3, true, local(503, Server, Phase::Connect)),
            // The request reached the server: again only if it can be sent twice.
            (EmptyResponse, DEFAULT, true, 3, true, Another),
            (EmptyResponse, DEFAULT, true, 3, false, local(502, Server, Phase::Headers)),
            (EmptyResponse, DEFAULT, false, 3, true, Same),
            (EmptyResponse, &[RetryOn::ConnFailure], true, 3, true, local(502, Server, Phase::Headers)),
            // junk-response and response-timeout only when named.
            (JunkResponse, DEFAULT, true, 3, true, local(502, Server, Phase::Headers)),
            (JunkResponse, ALL, true, 3, true, Another),
            (JunkResponse, ALL, true, 3, false, local(502, Server, Phase::Headers)),
            (ResponseTimeout, DEFAULT, true, 3, true, local(504, ServerTimeout, Phase::Headers)),
            (ResponseTimeout, ALL, true, 3, true, Another),
            (ResponseTimeout, ALL, true, 0, true, local(504, ServerTimeout, Phase::Headers)),
            // A status named by retry_on: retried if resendable, else the server's answer.
            (Status(503), ALL, true, 3, true, Another),
            (Status(503), ALL, false, 3, true, Same),
            (Status(503), ALL, true, 3, false, Deliver),
            (Status(503), ALL, true, 0, true, Deliver),
            (Status(500), ALL, true, 3, true, Deliver),
            // Choosing and queueing are never retried.
            (NoServer, ALL, true, 3, true, local(503, Server, Phase::Connect)),
            (QueueTimeout, ALL, true, 3, true, local(503, ServerTimeout, Phase::Queue)),
            // The client's body failed: the client is answered, nothing is retried.
            (Client(BodyFailure::TooLarge), ALL, true, 3, true, local(413, Proxy, Phase::Request)),
            (Client(BodyFailure::ClientTimeout), ALL, true, 3, true,
             local(408, ClientTimeout, Phase::Data)),
            (Client(BodyFailure::ClientAbort), ALL, true, 3, true, local(400, EndedBy::Client, Phase::Data)),
            (NotResendable, ALL, true, 3, true, local(502, Server, Phase::Headers)),
        ];
        for &(failed, retry_on, redispatch, retries_left, resendable, want) in table {
            let policy = Policy {
                retry_on,
                redispatch,
                retries_left,
                resendable,
            };
            assert_eq!(
                decide(failed, &policy),
                want,
                "{failed:?} retry_on {retry_on:?} redispatch {redispatch} retries left \
                 {retries_left} resendable {resendable}"
            );
        }
    }

    #[test]
    fn termination_states_read_like_haproxy() {
        let policy = Policy {
            retry_on: &[],
            redispatch: true,
            retries_left: 0,
            resendable: false,
        };
        let code = |f| match decide(f, &policy) {
            Decision::Answer { termination, .. } => termination.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(code(Failed::NoServer), "SC");
        assert_eq!(code(Failed::QueueTimeout), "sQ");
        assert_eq!(code(Failed::ConnectTimeout), "sC");
        assert_eq!(code(Failed::EmptyResponse), "SH");
        assert_eq!(code(Failed::ResponseTimeout), "sH");
        assert_eq!(code(Failed::Client(BodyFailure::TooLarge)), "PR");
        assert_eq!(code(Failed::Client(BodyFailure::ClientTimeout)), "cD");
        assert_eq!(code(Failed::Client(BodyFailure::ClientAbort)), "CD");
    }
}
