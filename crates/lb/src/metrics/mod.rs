//! The load balancer's metrics, in HAProxy's Prometheus exporter names (HAProxy 2.4 and
//! later: `haproxy_frontend_*`, `haproxy_backend_*`, `haproxy_server_*`, labels `proxy`,
//! `server`, `code`, `state`), so HAProxy's Grafana dashboards read them unchanged.
//!
//! What the request path counts lives here as plain atomics, one set per frontend
//! ([`FrontendMetrics`], in the live configuration), per backend ([`UpstreamMetrics`],
//! carried over reloads like the queue) and per server (in its `ServerState`, kept with
//! the server): a few relaxed `fetch_add`s when a response ends ([`Tally`]), no lock and
//! no allocation. Everything the lb already keeps (connections, current sessions, queue
//! length, health, admin state, weight) is not counted twice: [`write`] reads it at scrape
//! time.
//!
//! The latency histograms (queue, connect, response, total: HAProxy's `Tw`, `Tc`, `Tr`,
//! `Ta`, in seconds) are what HAProxy lacks (it keeps averages of the last 1,024
//! requests, `*_time_average_seconds`); they are named `haproxy_{backend,server}_
//! {queue,connect,response,total}_time_seconds`.

mod write;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use webfarm_node::metrics::{Histogram, LATENCY_SECONDS};

use crate::attempt::Timers;
use crate::backend::server::ServerState;

pub(crate) use write::write;

/// HAProxy's `code` label values: the status class of a response.
pub(crate) const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The index in [`CODES`] of `status`.
pub(crate) fn code_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

/// HTTP traffic of a frontend, a backend or a server.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// HTTP requests received (frontend) or sent on (backend).
    pub requests: AtomicU64,
    /// Responses sent to clients, by [`CODES`].
    pub responses: [AtomicU64; 6],
    /// Request body bytes read from clients (and TCP mode's bytes up).
    pub bytes_in: AtomicU64,
    /// Response body bytes sent to clients (and TCP mode's bytes down).
    pub bytes_out: AtomicU64,
}

impl Traffic {
    fn response(&self, status: Option<u16>, bytes: (u64, u64)) {
        if let Some(status) = status {
            self.responses[code_class(status)].fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_in.fetch_add(bytes.0, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes.1, Ordering::Relaxed);
    }
}

/// A frontend's counters (frontends keep their index across reloads).
#[derive(Debug, Default)]
pub(crate) struct FrontendMetrics {
    /// Requests, responses, bytes.
    pub traffic: Traffic,
    /// Client connections admitted (HAProxy's `sessions_total`).
    pub sessions: AtomicU64,
    /// Connections that never sent a whole request head in time (answered 408).
    pub request_errors: AtomicU64,
    /// Requests denied or tarpitted by `http-request` rules (HAProxy's `dreq`).
    pub denied_requests: AtomicU64,
    /// Connections closed by `tcp-request connection reject` (HAProxy's `dcon`).
    pub denied_connections: AtomicU64,
    /// Requests answered by an `http-request redirect` rule (HAProxy's `intercepted`).
    pub intercepted_requests: AtomicU64,
}

/// The four timers of HAProxy's log as histograms (seconds).
#[derive(Debug)]
pub(crate) struct Timings {
    /// `Tw`: time in the queue.
    pub queue: Histogram,
    /// `Tc`: connect time of the last attempt (0 on a reused connection).
    pub connect: Histogram,
    /// `Tr`: request sent to response head.
    pub response: Histogram,
    /// `Ta` (HTTP) or `Tt` (TCP): the whole request or session.
    pub total: Histogram,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            queue: Histogram::seconds(LATENCY_SECONDS),
            connect: Histogram::seconds(LATENCY_SECONDS),
            response: Histogram::seconds(LATENCY_SECONDS),
            total: Histogram::seconds(LATENCY_SECONDS),
        }
    }
}

impl Timings {
    fn record(&self, timers: &Timers, total: Duration) {
        let observe = |h: &Histogram, d: Option<Duration>| d.map(|d| h.observe(d));
        observe(&self.queue, timers.tw);
        observe(&self.connect, timers.tc);
        observe(&self.response, timers.tr);
        self.total.observe(total);
    }
}

/// What a backend or one of its servers counts.
#[derive(Debug, Default)]
pub(crate) struct UpstreamMetrics {
    /// Requests, responses, bytes.
    pub traffic: Traffic,
    /// Latency histograms.
    pub timings: Timings,
    /// Attempts whose connection failed (refused, error, timeout).
    pub connection_errors: AtomicU64,
    /// Attempts retried (HAProxy's `wretr`), redispatched or not.
    pub retry_warnings: AtomicU64,
    /// Retries sent to another server (HAProxy's `wredis`).
    pub redispatch_warnings: AtomicU64,
}

impl UpstreamMetrics {
    /// One failed attempt: a connection error if it is one, and the retry decided.
    pub fn attempt_failed(&self, connection_error: bool, retry: Option<bool>) {
        if connection_error {
            self.connection_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(redispatch) = retry {
            self.retry_warnings.fetch_add(1, Ordering::Relaxed);
            if redispatch {
                self.redispatch_warnings.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One finished request or session.
    fn finished(&self, status: Option<u16>, bytes: (u64, u64), timers: &Timers, total: Duration) {
        self.traffic.response(status, bytes);
        self.timings.record(timers, total);
    }
}

/// HAProxy's check status words (`haproxy_server_check_status{state}`), as
/// `CheckResult::reason` maps to them; `INI`: not checked yet.
pub(crate) const CHECK_STATES: [&str; 10] = [
    "INI", "L4OK", "L4TOUT", "L4CON", "L6TOUT", "L6RSP", "L7OK", "L7TOUT", "L7RSP", "L7STS",
];

/// The index in [`CHECK_STATES`] of a check's reason.
pub(crate) fn check_state(reason: &str) -> u8 {
    match reason {
        "Layer4 check passed" => 1,
        "Layer4 timeout" => 2,
        "Layer4 connection problem" => 3,
        "Layer6 timeout" => 4,
        "Layer6 invalid response" => 5,
        "Layer7 check passed" => 6,
        "Layer7 timeout" => 7,
        "Layer7 wrong status" => 9,
        _ => 8, // "Layer7 invalid response", "Layer7 invalid request"
    }
}

/// A server's counters: its traffic and the last health check.
#[derive(Debug, Default)]
pub(crate) struct ServerMetrics {
    /// Traffic, latencies, errors and warnings.
    pub upstream: UpstreamMetrics,
    /// The last check's status, an index in [`CHECK_STATES`].
    pub check_state: AtomicU8,
    /// The last check's duration, nanoseconds.
    pub check_nanos: AtomicU64,
    /// Failed checks.
    pub check_failures: AtomicU64,
}

impl ServerMetrics {
    /// Records one active health check.
    pub fn check(&self, passed: bool, reason: &str, duration: Duration) {
        self.check_state
            .store(check_state(reason), Ordering::Relaxed);
        self.check_nanos.store(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if !passed {
            self.check_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One request's (or TCP session's) share of the counters, recorded once when it ends.
/// Made of `Arc` clones only: no allocation per request.
#[derive(Debug)]
pub(crate) struct Tally {
    frontend: Arc<FrontendMetrics>,
    /// The backend, once the request reached one (not for a redirect or a refused head).
    pub backend: Option<Arc<UpstreamMetrics>>,
    start: Instant,
    tq: Duration,
    /// The attempts' timers.
    pub timers: Timers,
    /// The status sent to the client (HTTP mode).
    pub status: Option<u16>,
    /// HTTP mode: requests are counted.
    http: bool,
}

impl Tally {
    /// A request on `frontend` whose head took `tq` to arrive; counts it received.
    pub fn request(frontend: Arc<FrontendMetrics>, tq: Duration) -> Tally {
        frontend.traffic.requests.fetch_add(1, Ordering::Relaxed);
        Tally {
            frontend,
            backend: None,
            start: Instant::now(),
            tq,
            timers: Timers::default(),
            status: None,
            http: true,
        }
    }

    /// A TCP-mode session on `frontend` (no HTTP request is counted).
    pub fn session(frontend: Arc<FrontendMetrics>) -> Tally {
        Tally {
            frontend,
            backend: None,
            start: Instant::now(),
            tq: Duration::ZERO,
            timers: Timers::default(),
            status: None,
            http: false,
        }
    }

    /// The request (or session) goes to `backend`.
    pub fn forwarded(&mut self, backend: &Arc<UpstreamMetrics>) {
        if self.http {
            backend.traffic.requests.fetch_add(1, Ordering::Relaxed);
        }
        self.backend = Some(backend.clone());
    }

    /// The request or session ended after `bytes` (in, out), answered by `server` (if
    /// one answered).
    pub fn finish(self, server: Option<&ServerState>, bytes: (u64, u64)) {
        let total = self.tq + self.start.elapsed();
        self.finish_after(server, bytes, total);
    }

    /// As [`Tally::finish`], the whole request or session having taken `total`.
    pub fn finish_after(self, server: Option<&ServerState>, bytes: (u64, u64), total: Duration) {
        self.frontend.traffic.response(self.status, bytes);
        if let Some(b) = &self.backend {
            b.finished(self.status, bytes, &self.timers, total);
        }
        if let Some(s) = server {
            s.metrics
                .upstream
                .finished(self.status, bytes, &self.timers, total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_haproxy_classes() {
        let classes: Vec<&str> = [101, 200, 204, 301, 404, 503, 599, 600, 0]
            .iter()
            .map(|&s| CODES[code_class(s)])
            .collect();
        assert_eq!(
            classes,
            ["1xx", "2xx", "2xx", "3xx", "4xx", "5xx", "5xx", "other", "other"]
        );
    }

    #[test]
    fn check_reasons_map_to_haproxy_words() {
        let word = |r| CHECK_STATES[usize::from(check_state(r))];
        assert_eq!(word("Layer7 check passed"), "L7OK");
        assert_eq!(word("Layer4 connection problem"), "L4CON");
        assert_eq!(word("Layer7 wrong status"), "L7STS");
        assert_eq!(word("Layer4 check passed"), "L4OK");
        assert_eq!(word("Layer7 invalid request"), "L7RSP");
    }

    #[test]
    fn a_tally_counts_once_on_every_level() {
        let fe = Arc::new(FrontendMetrics::default());
        let be = Arc::new(UpstreamMetrics::default());
        let mut t = Tally::request(fe.clone(), Duration::from_millis(1));
        t.forwarded(&be);
        t.timers.tw = Some(Duration::ZERO);
        t.timers.tc = Some(Duration::from_millis(2));
        t.status = Some(503);
        t.finish(None, (10, 20));
        assert_eq!(fe.traffic.requests.load(Ordering::Relaxed), 1);
        assert_eq!(fe.traffic.responses[4].load(Ordering::Relaxed), 1);
        assert_eq!(be.traffic.requests.load(Ordering::Relaxed), 1);
        assert_eq!(be.traffic.bytes_out.load(Ordering::Relaxed), 20);
        assert_eq!(be.timings.connect.snapshot().count, 1);
        assert_eq!(be.timings.response.snapshot().count, 0, "Tr never reached");
        assert!(be.timings.total.snapshot().sum >= 0.001);
    }

    #[test]
    fn retries_and_redispatches_are_told_apart() {
        let m = UpstreamMetrics::default();
        m.attempt_failed(true, Some(false));
        m.attempt_failed(false, Some(true));
        m.attempt_failed(true, None);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(get(&m.connection_errors), 2);
        assert_eq!(get(&m.retry_warnings), 2);
        assert_eq!(get(&m.redispatch_warnings), 1);
    }
}
