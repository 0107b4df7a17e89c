//! Phase 1b of a request: the frontend's `http-request` rules ([`crate::acl`]), applied
//! before a server is chosen. A denial, a tarpit or a redirect is the lb's own answer
//! (counted in the frontend's metrics, HAProxy's names); a pass may carry the stick-table
//! entry the request tracks.

use std::sync::atomic::Ordering;

use http::request::Parts;

use super::respond::Local;
use super::ClientConn;
use crate::acl::{self, Tracked, Verdict};
use crate::control::live::LiveFrontend;
use crate::metrics::FrontendMetrics;

/// Runs frontend `fe`'s `http-request` rules on request `head` of connection `conn`.
/// A tarpit waits `timeout tarpit` here before its answer.
///
/// # Errors
///
/// The lb's answer: a denial (`PR`), a tarpit's (`PT`), a redirect (`LR`).
///
/// # Cancel safety
///
/// Cancelling a tarpit's wait drops the request (the client left).
pub(super) async fn check(
    fe: &LiveFrontend,
    head: &Parts,
    conn: &ClientConn,
    metrics: Option<&FrontendMetrics>,
) -> Result<Option<Tracked>, Local> {
    let rules = &fe.config.rules;
    if rules.http_request.is_empty() && conn.sc0.is_none() {
        return Ok(None);
    }
    let src = conn.peer.ip();
    let outcome = acl::http_request(
        rules,
        head,
        (src, conn.sni.as_deref()),
        fe.table.as_ref(),
        conn.sc0.as_ref(),
    );
    let count = |c: fn(&FrontendMetrics) -> &std::sync::atomic::AtomicU64| {
        if let Some(m) = metrics {
            c(m).fetch_add(1, Ordering::Relaxed);
        }
    };
    match outcome.verdict {
        Verdict::Pass => Ok(outcome.tracked),
        Verdict::Deny {
            status,
            retry_after,
        } => {
            count(|m| &m.denied_requests);
            Err(Local::denied(status, retry_after))
        }
        Verdict::Tarpit { status } => {
            // HAProxy counts a tarpitted request as denied.
            count(|m| &m.denied_requests);
            tokio::time::sleep(fe.config.timeout.tarpit).await;
            Err(Local::tarpit(status))
        }
        Verdict::Redirect { code, location } => {
            count(|m| &m.intercepted_requests);
            Err(Local::rule_redirect(code, &location))
        }
    }
}
