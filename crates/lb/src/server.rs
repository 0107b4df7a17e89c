//! One server of a backend as the load balancer sees it: up or down, health-check counters,
//! traffic counters. Plain data with atomics; no I/O here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use webfarm_config::Server;

/// A change of a server's state, returned by the methods that may cause one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The server was down and is up now.
    WentUp,
    /// The server was up and is down now.
    WentDown,
}

/// What one health check or observed error did to the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckEffect {
    /// The state change, if any.
    pub transition: Option<Transition>,
    /// Consecutive passed checks after this one (0 after a failure).
    pub passes: u32,
    /// Consecutive failed checks after this one (0 after a pass).
    pub failures: u32,
}

/// Health-check bookkeeping, changed together under one short lock.
#[derive(Debug)]
struct CheckCounters {
    consecutive_passes: u32,
    consecutive_failures: u32,
    last_check: String,
}

/// The live state of one server: configuration, up/down, counters.
#[derive(Debug)]
pub(crate) struct ServerState {
    /// `backend/server`, HAProxy's way of naming a server in logs.
    pub id: String,
    /// The server's name as written in the farm.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its relative share of requests.
    pub weight: u32,
    up: AtomicBool,
    current_conns: AtomicU64,
    total_requests: AtomicU64,
    counters: Mutex<CheckCounters>,
}

/// A snapshot of a server for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSnapshot {
    pub up: bool,
    pub last_check: String,
    pub current_conns: u64,
    pub total_requests: u64,
    pub consecutive_failures: u32,
}

impl ServerState {
    /// A server of backend `backend`; it starts UP, as in HAProxy.
    pub fn new(backend: &str, server: &Server) -> ServerState {
        ServerState {
            id: format!("{backend}/{}", server.name),
            name: server.name.clone(),
            addr: server.addr,
            weight: server.weight,
            up: AtomicBool::new(true),
            current_conns: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            counters: Mutex::new(CheckCounters {
                consecutive_passes: 0,
                consecutive_failures: 0,
                last_check: "not checked yet".into(),
            }),
        }
    }

    /// Whether the server takes traffic.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn counters(&self) -> MutexGuard<'_, CheckCounters> {
        // The section never panics; a poisoned lock still holds consistent counters.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one health check: `fall` consecutive failures take an up server down,
    /// `rise` consecutive passes bring a down server up. `text` describes the result.
    pub fn record_check(&self, passed: bool, text: String, rise: u32, fall: u32) -> CheckEffect {
        let mut c = self.counters();
        c.last_check = text;
        let up = self.is_up();
        let mut transition = None;
        if passed {
            c.consecutive_failures = 0;
            c.consecutive_passes = c.consecutive_passes.saturating_add(1);
            if !up && c.consecutive_passes >= rise {
                self.up.store(true, Ordering::Release);
                transition = Some(Transition::WentUp);
            }
        } else {
            c.consecutive_passes = 0;
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            if up && c.consecutive_failures >= fall {
                self.up.store(false, Ordering::Release);
                transition = Some(Transition::WentDown);
            }
        }
        CheckEffect {
            transition,
            passes: c.consecutive_passes,
            failures: c.consecutive_failures,
        }
    }

    /// Takes the server down at once because the request path saw it fail (HAProxy's
    /// `observe layer4` with `on-error mark-down`): it comes back after `rise` passed checks.
    /// Returns true if it was up.
    pub fn mark_down(&self, text: String) -> bool {
        let mut c = self.counters();
        c.last_check = text;
        c.consecutive_passes = 0;
        self.up.swap(false, Ordering::AcqRel)
    }

    /// Counts a request sent to this server; the returned guard keeps it counted in
    /// `current_conns` until dropped (when the response body ends or the attempt fails).
    pub fn begin_request(self: &std::sync::Arc<Self>) -> ActiveRequest {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        self.current_conns.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// The server's state for `/status`.
    pub fn snapshot(&self) -> ServerSnapshot {
        let c = self.counters();
        ServerSnapshot {
            up: self.is_up(),
            last_check: c.last_check.clone(),
            current_conns: self.current_conns.load(Ordering::Relaxed),
            total_requests: self.total_requests.load(Ordering::Relaxed),
            consecutive_failures: c.consecutive_failures,
        }
    }
}

/// One request in flight on a server; dropping it ends it.
#[derive(Debug)]
pub(crate) struct ActiveRequest(std::sync::Arc<ServerState>);

impl ActiveRequest {
    /// `backend/server` of the server handling the request.
    pub fn server_id(&self) -> &str {
        &self.0.id
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.current_conns.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn server() -> ServerState {
        ServerState::new(
            "web",
            &Server {
                name: "web-1".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                weight: 1,
            },
        )
    }

    #[test]
    fn starts_up_and_falls_after_fall_consecutive_failures() {
        let s = server();
        assert!(s.is_up());
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        // A pass in between resets the failure count.
        assert_eq!(s.record_check(true, "ok".into(), 2, 3).failures, 0);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        let e = s.record_check(false, "x".into(), 2, 3);
        assert_eq!(e.transition, Some(Transition::WentDown));
        assert_eq!(e.failures, 3);
        assert!(!s.is_up());
        assert_eq!(s.snapshot().consecutive_failures, 3);
    }

    #[test]
    fn rises_after_rise_consecutive_passes() {
        let s = server();
        assert!(s.mark_down("refused".into()));
        assert!(!s.mark_down("refused".into()), "already down");
        assert_eq!(s.record_check(true, "ok".into(), 2, 3).transition, None);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        assert_eq!(s.record_check(true, "ok".into(), 2, 3).transition, None);
        let e = s.record_check(true, "ok".into(), 2, 3);
        assert_eq!(e.transition, Some(Transition::WentUp));
        assert!(s.is_up());
        assert_eq!(s.snapshot().last_check, "ok");
    }

    #[test]
    fn active_request_counts() {
        let s = Arc::new(server());
        let a = s.begin_request();
        let b = s.begin_request();
        assert_eq!(s.snapshot().current_conns, 2);
        drop(a);
        drop(b);
        let snap = s.snapshot();
        assert_eq!((snap.current_conns, snap.total_requests), (0, 2));
    }
}
