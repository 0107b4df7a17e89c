//! The web node's metrics: requests by route and status class, their latency, messages
//! posted, and what the database client met (retries, failovers), read at scrape time.
//!
//! The route is axum's matched route (`/api/messages/{id}`), one of [`ROUTES`], so the
//! label never takes a value per URL; everything else (static files) is `static`.
//! Counting is a few relaxed atomic adds per request into counters made at start: no lock,
//! no allocation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use webfarm_db_client::ClientStats;
use webfarm_node::metrics::{Histogram, Scrape, LATENCY_SECONDS};

/// The `route` label values: the app's routes, then everything else.
pub(crate) const ROUTES: [&str; 6] = [
    "/",
    "/messages",
    "/api/messages",
    "/api/messages/{id}",
    "/healthz",
    "static",
];

/// The `code` label values: a response's status class.
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// One route's responses by status class and their latency.
#[derive(Debug)]
struct Route {
    responses: [AtomicU64; 6],
    seconds: Histogram,
}

/// A web node's counters.
#[derive(Debug)]
pub(crate) struct WebMetrics {
    routes: [Route; 6],
    /// Messages stored (`POST /api/messages`, `POST /messages`).
    pub posted: AtomicU64,
    /// Static-file answers the connection loop wrote from prepared bytes ([`crate::http1`]).
    pub prepared: AtomicU64,
}

impl Default for WebMetrics {
    fn default() -> WebMetrics {
        WebMetrics {
            routes: std::array::from_fn(|_| Route {
                responses: Default::default(),
                seconds: Histogram::seconds(LATENCY_SECONDS),
            }),
            posted: AtomicU64::new(0),
            prepared: AtomicU64::new(0),
        }
    }
}

fn route_index(matched: Option<&str>) -> usize {
    matched
        .and_then(|m| ROUTES.iter().position(|r| *r == m))
        .unwrap_or(ROUTES.len() - 1)
}

fn code_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => CODES.len() - 1,
    }
}

impl WebMetrics {
    /// Counts one response of `status` on `matched` (axum's matched route, if any), its
    /// head ready after `elapsed`.
    pub(crate) fn record(&self, matched: Option<&str>, status: u16, elapsed: std::time::Duration) {
        let route = &self.routes[route_index(matched)];
        route.responses[code_index(status)].fetch_add(1, Ordering::Relaxed);
        route.seconds.observe(elapsed);
    }

    /// Writes the `webfarm_web_*` families; `db` is the database client's view.
    ///
    /// # Errors
    /// The writer's.
    pub(crate) fn write(&self, db: ClientStats, s: &mut Scrape<'_>) -> fmt::Result {
        let by_code = ROUTES.iter().zip(&self.routes).flat_map(|(r, m)| {
            CODES
                .iter()
                .zip(&m.responses)
                .map(move |(c, n)| ([("route", *r), ("code", *c)], n.load(Ordering::Relaxed)))
        });
        s.counters(
            "webfarm_web_http_requests_total",
            "HTTP requests answered, by route and status class.",
            by_code,
        )?;
        s.histograms(
            "webfarm_web_http_request_duration_seconds",
            "Time from a request to its response head, by route, seconds.",
            ROUTES
                .iter()
                .zip(&self.routes)
                .map(|(r, m)| ([("route", *r)], &m.seconds)),
        )?;
        s.counter(
            "webfarm_web_messages_posted_total",
            "Messages stored by this node.",
            self.posted.load(Ordering::Relaxed),
        )?;
        s.counter(
            "webfarm_web_static_prepared_total",
            "Static-file answers written by the connection loop from prepared bytes, without \
             hyper (counted in route=\"static\" too).",
            self.prepared.load(Ordering::Relaxed),
        )?;
        let db_counters = [
            (
                "webfarm_web_db_calls_total",
                "Database calls made by the app.",
                db.calls,
            ),
            (
                "webfarm_web_db_retries_total",
                "Database attempts after a call's first (a node refused or was unreachable).",
                db.retries,
            ),
            (
                "webfarm_web_db_failovers_total",
                "Database calls answered by another node than the one asked first.",
                db.failovers,
            ),
            (
                "webfarm_web_db_unavailable_total",
                "Database calls that gave up (answered 503).",
                db.unavailable,
            ),
        ];
        for (name, help, v) in db_counters {
            s.counter(name, help, v)?;
        }
        Ok(())
    }
}

/// The middleware that counts every response (a layer of the whole router).
pub(crate) async fn observe(
    State(metrics): State<Arc<WebMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    metrics.record(
        matched.as_ref().map(MatchedPath::as_str),
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unknown_paths_are_static_and_statuses_are_classes() {
        assert_eq!(
            ROUTES[route_index(Some("/api/messages/{id}"))],
            "/api/messages/{id}"
        );
        assert_eq!(ROUTES[route_index(None)], "static");
        assert_eq!(CODES[code_index(303)], "3xx");
        assert_eq!(CODES[code_index(700)], "other");
        let m = WebMetrics::default();
        m.record(Some("/"), 200, Duration::from_millis(2));
        m.record(None, 404, Duration::from_millis(1));
        assert_eq!(m.routes[0].responses[1].load(Ordering::Relaxed), 1);
        assert_eq!(m.routes[5].responses[3].load(Ordering::Relaxed), 1);
        assert_eq!(m.routes[0].seconds.snapshot().count, 1);
    }
}
