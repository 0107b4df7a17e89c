//! The lb's families, written at scrape time from the live configuration: the counters of
//! [`super`] and what the lb keeps anyway (connections, sessions, queue, health, weight).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use webfarm_node::metrics::{Histogram, Scrape};

use super::{Traffic, UpstreamMetrics, CHECK_STATES, CODES};
use crate::backend::server::{AdminState, ServerState};
use crate::backend::BackendState;
use crate::control::live::{LiveConfig, Snapshot};

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Writes every `haproxy_*` family of the node.
///
/// # Errors
/// The writer's.
pub(crate) fn write(live: &LiveConfig, s: &mut Scrape<'_>) -> fmt::Result {
    s.gauge(
        "haproxy_process_current_connections",
        "Number of active sessions.",
        live.conns.load(Ordering::Relaxed) as u64,
    )?;
    // One snapshot for the whole scrape: a reload in between cannot mix two configurations.
    let snap = live.snapshot();
    frontends(live, &snap, s)?;
    backends(&snap.backends, s)?;
    servers(&snap.backends, s)
}

/// A family of [`UpstreamMetrics`]: its name after the prefix, its help, its field.
type Field<T> = (&'static str, &'static str, fn(&UpstreamMetrics) -> &T);

/// Labels of one series: `proxy`, and `server` for a server.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// `<prefix>_http_responses_total{code}`, `<prefix>_bytes_in_total`, `<prefix>_bytes_out_total`.
fn traffic(s: &mut Scrape<'_>, prefix: &str, objects: &[(Labels<'_>, &Traffic)]) -> fmt::Result {
    let series = objects.iter().flat_map(|(labels, t)| {
        CODES.iter().zip(&t.responses).map(move |(code, n)| {
            let mut labels = labels.clone();
            labels.push(("code", code));
            (labels, get(n))
        })
    });
    s.counters(
        &format!("{prefix}_http_responses_total"),
        "Total number of HTTP responses.",
        series,
    )?;
    s.counters(
        &format!("{prefix}_bytes_in_total"),
        "Current total of incoming bytes.",
        objects.iter().map(|(l, t)| (l.clone(), get(&t.bytes_in))),
    )?;
    s.counters(
        &format!("{prefix}_bytes_out_total"),
        "Current total of outgoing bytes.",
        objects.iter().map(|(l, t)| (l.clone(), get(&t.bytes_out))),
    )
}

fn frontends(live: &LiveConfig, snap: &Snapshot, s: &mut Scrape<'_>) -> fmt::Result {
    let fe: Vec<_> = snap
        .frontends
        .iter()
        .zip(&live.frontend_metrics)
        .zip(&live.frontend_conns)
        .map(|((f, m), c)| (vec![("proxy", f.config.name.as_str())], m, c))
        .collect();
    s.gauges(
        "haproxy_frontend_current_sessions",
        "Number of current sessions.",
        fe.iter()
            .map(|(l, _, c)| (l.clone(), c.load(Ordering::Relaxed) as u64)),
    )?;
    s.counters(
        "haproxy_frontend_sessions_total",
        "Total number of sessions.",
        fe.iter().map(|(l, m, _)| (l.clone(), get(&m.sessions))),
    )?;
    s.counters(
        "haproxy_frontend_request_errors_total",
        "Total number of request errors.",
        fe.iter()
            .map(|(l, m, _)| (l.clone(), get(&m.request_errors))),
    )?;
    s.counters(
        "haproxy_frontend_http_requests_total",
        "Total number of HTTP requests received.",
        fe.iter()
            .map(|(l, m, _)| (l.clone(), get(&m.traffic.requests))),
    )?;
    s.counters(
        "haproxy_frontend_requests_denied_total",
        "Total number of denied requests.",
        fe.iter()
            .map(|(l, m, _)| (l.clone(), get(&m.denied_requests))),
    )?;
    s.counters(
        "haproxy_frontend_denied_connections_total",
        "Total number of requests denied by \"tcp-request connection\" rules.",
        fe.iter()
            .map(|(l, m, _)| (l.clone(), get(&m.denied_connections))),
    )?;
    s.counters(
        "haproxy_frontend_intercepted_requests_total",
        "Total number of HTTP requests intercepted on the frontend (redirects/stats/services).",
        fe.iter()
            .map(|(l, m, _)| (l.clone(), get(&m.intercepted_requests))),
    )?;
    let objects: Vec<_> = fe.iter().map(|(l, m, _)| (l.clone(), &m.traffic)).collect();
    traffic(s, "haproxy_frontend", &objects)?;
    stick_tables(snap, s)?;
    certificates(live, snap, s)
}

/// HAProxy's `haproxy_sticktable_size` and `haproxy_sticktable_used` (label `name`: the
/// frontend whose table it is), and webfarm's `webfarm_sticktable_track_refused_total`,
/// read from the tables when scraped.
fn stick_tables(snap: &Snapshot, s: &mut Scrape<'_>) -> fmt::Result {
    let tables: Vec<_> = snap
        .frontends
        .iter()
        .filter_map(|f| Some((vec![("name", f.config.name.as_str())], f.table.as_ref()?)))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    s.gauges(
        "haproxy_sticktable_size",
        "Stick table size.",
        tables.iter().map(|(l, t)| (l.clone(), t.capacity() as u64)),
    )?;
    s.gauges(
        "haproxy_sticktable_used",
        "Number of entries used in this stick table.",
        tables.iter().map(|(l, t)| (l.clone(), t.len() as u64)),
    )?;
    s.counters(
        "webfarm_sticktable_track_refused_total",
        "Trackings refused because the entry's shard was full of entries in use.",
        tables.iter().map(|(l, t)| (l.clone(), t.refused())),
    )
}

/// `webfarm_certificate_not_after_seconds{proxy,file}`: when each certificate a TLS
/// frontend serves expires (Unix seconds), for the `CertificateExpiringSoon` alert. HAProxy's
/// exporter has no such family (its runtime API's `show ssl cert` has the date).
fn certificates(live: &LiveConfig, snap: &Snapshot, s: &mut Scrape<'_>) -> fmt::Result {
    let mut series = Vec::new();
    for (i, f) in snap.frontends.iter().enumerate() {
        let Some(Some(tls)) = live.tls.by_index.get(i) else {
            continue;
        };
        let certs = tls
            .certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in certs.iter() {
            let unix = c
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let labels = vec![
                ("proxy".to_string(), f.config.name.clone()),
                ("file".to_string(), c.file.display().to_string()),
            ];
            series.push((labels, unix.as_secs() as i64));
        }
    }
    s.gauges(
        "webfarm_certificate_not_after_seconds",
        "When a certificate served by a TLS frontend expires, Unix seconds.",
        series,
    )
}

/// The families backends and servers share: traffic, errors, warnings, latencies.
fn upstream(
    s: &mut Scrape<'_>,
    prefix: &str,
    objects: &[(Labels<'_>, &UpstreamMetrics)],
) -> fmt::Result {
    let t: Vec<_> = objects
        .iter()
        .map(|(l, m)| (l.clone(), &m.traffic))
        .collect();
    traffic(s, prefix, &t)?;
    let counters: [Field<AtomicU64>; 3] = [
        (
            "connection_errors_total",
            "Total number of connection errors.",
            |m| &m.connection_errors,
        ),
        (
            "retry_warnings_total",
            "Total number of retry warnings.",
            |m| &m.retry_warnings,
        ),
        (
            "redispatch_warnings_total",
            "Total number of redispatch warnings.",
            |m| &m.redispatch_warnings,
        ),
    ];
    for (name, help, field) in counters {
        s.counters(
            &format!("{prefix}_{name}"),
            help,
            objects.iter().map(|(l, m)| (l.clone(), get(field(m)))),
        )?;
    }
    let timers: [Field<Histogram>; 4] = [
        (
            "queue_time_seconds",
            "Time spent in the queue (HAProxy's Tw), seconds.",
            |m| &m.timings.queue,
        ),
        (
            "connect_time_seconds",
            "Connect time of the last attempt, 0 on a reused connection (Tc), seconds.",
            |m| &m.timings.connect,
        ),
        (
            "response_time_seconds",
            "Request sent to response head (Tr), seconds.",
            |m| &m.timings.response,
        ),
        (
            "total_time_seconds",
            "First byte of the request to last byte of the response (Ta), seconds.",
            |m| &m.timings.total,
        ),
    ];
    for (name, help, field) in timers {
        s.histograms(
            &format!("{prefix}_{name}"),
            help,
            objects.iter().map(|(l, m)| (l.clone(), field(m))),
        )?;
    }
    Ok(())
}

/// A backend's labels.
fn one(b: &BackendState) -> [(&str, &str); 1] {
    [("proxy", b.name())]
}

/// A server's labels, from `(backend name, server)`.
fn two<'a>((b, srv): &(&'a str, &'a ServerState)) -> [(&'a str, &'a str); 2] {
    [("proxy", b), ("server", srv.name())]
}

fn backends(backends: &[std::sync::Arc<BackendState>], s: &mut Scrape<'_>) -> fmt::Result {
    let objects: Vec<_> = backends
        .iter()
        .map(|b| (vec![("proxy", b.name())], &*b.metrics))
        .collect();
    s.gauges(
        "haproxy_backend_status",
        "Current status of the service (1: some server is up).",
        backends
            .iter()
            .map(|b| (one(b), u64::from(b.up_count() > 0))),
    )?;
    s.gauges(
        "haproxy_backend_current_queue",
        "Number of queued requests.",
        backends.iter().map(|b| (one(b), b.queued() as u64)),
    )?;
    s.gauges(
        "haproxy_backend_current_sessions",
        "Number of current sessions.",
        backends.iter().map(|b| {
            let current = b.servers.iter().map(|srv| srv.state.current_conns());
            (one(b), current.sum::<u64>())
        }),
    )?;
    s.gauges(
        "haproxy_backend_active_servers",
        "Current number of active servers.",
        backends.iter().map(|b| (one(b), b.up_counts().0 as u64)),
    )?;
    s.gauges(
        "haproxy_backend_backup_servers",
        "Current number of backup servers.",
        backends.iter().map(|b| (one(b), b.up_counts().1 as u64)),
    )?;
    s.counters(
        "haproxy_backend_http_requests_total",
        "Total number of HTTP requests sent.",
        backends
            .iter()
            .map(|b| (one(b), get(&b.metrics.traffic.requests))),
    )?;
    upstream(s, "haproxy_backend", &objects)
}

/// HAProxy's server states, in `haproxy_server_status{state}`.
const SERVER_STATES: [&str; 4] = ["UP", "DOWN", "MAINT", "DRAIN"];

fn servers(backends: &[std::sync::Arc<BackendState>], s: &mut Scrape<'_>) -> fmt::Result {
    let all: Vec<_> = backends
        .iter()
        .flat_map(|b| b.servers.iter().map(move |srv| (b.name(), &*srv.state)))
        .collect();
    let states = all.iter().flat_map(|one| {
        let word = one.1.snapshot().state_word();
        SERVER_STATES.iter().map(move |state| {
            let [p, srv] = two(one);
            ([p, srv, ("state", *state)], u64::from(word == *state))
        })
    });
    s.gauges(
        "haproxy_server_status",
        "Current status of the service, per state label value.",
        states,
    )?;
    s.gauges(
        "haproxy_server_current_sessions",
        "Number of current sessions.",
        all.iter().map(|o| (two(o), o.1.current_conns())),
    )?;
    s.counters(
        "haproxy_server_sessions_total",
        "Total number of sessions.",
        all.iter().map(|o| (two(o), o.1.snapshot().total_requests)),
    )?;
    let now = Instant::now();
    s.gauges(
        "haproxy_server_weight",
        "Service weight (after the slowstart ramp).",
        all.iter().map(|o| (two(o), o.1.effective_weight(now))),
    )?;
    checks(&all, s)?;
    let objects: Vec<_> = all
        .iter()
        .map(|o| (two(o).to_vec(), &o.1.metrics.upstream))
        .collect();
    upstream(s, "haproxy_server", &objects)
}

fn checks(all: &[(&str, &ServerState)], s: &mut Scrape<'_>) -> fmt::Result {
    let checked = || {
        all.iter()
            .filter(|(_, srv)| srv.admin() != AdminState::Maint)
            .map(|(b, srv)| ([("proxy", *b), ("server", srv.name())], &srv.metrics))
    };
    let states = checked().flat_map(|([p, srv], m)| {
        let now = usize::from(m.check_state.load(Ordering::Relaxed));
        CHECK_STATES
            .iter()
            .enumerate()
            .map(move |(i, state)| ([p, srv, ("state", *state)], u64::from(i == now)))
    });
    s.gauges(
        "haproxy_server_check_status",
        "Status of last health check, per state label value.",
        states,
    )?;
    s.gauges(
        "haproxy_server_check_duration_seconds",
        "Total duration of the latest server health check, seconds.",
        checked().map(|(l, m)| (l, get(&m.check_nanos) as f64 / 1e9)),
    )?;
    s.counters(
        "haproxy_server_check_failures_total",
        "Total number of failed individual health checks.",
        checked().map(|(l, m)| (l, get(&m.check_failures))),
    )
}
