//! One server of a backend as the load balancer sees it: health (UP/DOWN), administrative
//! state (ready/drain/maint), run-time weight, slowstart ramp, connection slots and counters.
//! Plain data with atomics; no I/O here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use webfarm_config::Server;

use crate::backend::queue::{next_server_id, Queue};
use crate::metrics::ServerMetrics;

/// A change of a server's health, returned by the methods that may cause one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The server was DOWN and is UP now.
    WentUp,
    /// The server was UP and is DOWN now.
    WentDown,
}

/// The administrative state, set by the file (`disabled`) or at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes traffic when UP.
    Ready,
    /// Takes no new balanced traffic (sticky clients still reach it); in-flight requests
    /// finish; health checks go on.
    Drain,
    /// Maintenance: no traffic at all, no health checks.
    Maint,
}

impl AdminState {
    /// `ready`, `drain` or `maint`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// Parses `ready`, `drain` or `maint`.
    pub fn parse(s: &str) -> Option<AdminState> {
        match s.trim() {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            AdminState::Ready => 0,
            AdminState::Drain => 1,
            AdminState::Maint => 2,
        }
    }
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
    /// Set by `on_error fastinter`: check at the fast interval until the next pass.
    fast: bool,
}

/// The process-wide origin of the instants stored as nanoseconds in atomics.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The state of one server while the node runs: health, admin state, weight, counters.
#[derive(Debug)]
pub(crate) struct ServerState {
    /// `backend/server`, HAProxy's way of naming a server in logs.
    pub id: String,
    /// The server as configured (name, address, backup, maxconn, slowstart).
    pub config: Server,
    up: AtomicBool,
    admin: AtomicU8,
    file_disabled: AtomicBool,
    /// Whether it is a backup server now (`backup` in the file, changed at run time).
    backup: AtomicBool,
    weight: AtomicU32,
    /// When the server last came UP (nanos since [`epoch`]); 0: never (no slowstart ramp).
    up_since: AtomicU64,
    current: AtomicU64,
    total_requests: AtomicU64,
    observed_errors: AtomicU32,
    counters: Mutex<CheckCounters>,
    /// Process-wide unique id: how the backend's queue names the server.
    pub uid: u64,
    /// The backend's queue: told when a slot frees or the server changes.
    queue: Arc<Queue>,
    /// Wakes this server's check task (state change, `on_error`).
    pub check_wake: Notify,
    /// Its traffic, latencies and last check, for `/metrics`.
    pub metrics: ServerMetrics,
}

/// A snapshot of a server for `/status` and `/lb/servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSnapshot {
    pub up: bool,
    pub admin: AdminState,
    pub weight: u32,
    pub effective_weight: u32,
    pub last_check: String,
    pub current_conns: u64,
    pub total_requests: u64,
    pub consecutive_failures: u32,
}

impl ServerSnapshot {
    /// HAProxy's stats word: `MAINT`, `DRAIN`, `UP` or `DOWN`.
    pub fn state_word(&self) -> &'static str {
        match (self.admin, self.up) {
            (AdminState::Maint, _) => "MAINT",
            (AdminState::Drain, true) => "DRAIN",
            (_, true) => "UP",
            (_, false) => "DOWN",
        }
    }
}

impl ServerState {
    /// A server of backend `backend`. It starts UP (as in HAProxy) and in maintenance when
    /// `disabled`; `queue` is its backend's queue.
    pub fn new(backend: &str, server: &Server, queue: Arc<Queue>) -> ServerState {
        let admin = if server.disabled {
            AdminState::Maint
        } else {
            AdminState::Ready
        };
        ServerState {
            id: format!("{backend}/{}", server.name),
            config: server.clone(),
            up: AtomicBool::new(true),
            admin: AtomicU8::new(admin.to_u8()),
            file_disabled: AtomicBool::new(server.disabled),
            backup: AtomicBool::new(server.backup),
            weight: AtomicU32::new(server.weight),
            up_since: AtomicU64::new(0),
            current: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            observed_errors: AtomicU32::new(0),
            counters: Mutex::new(CheckCounters {
                consecutive_passes: 0,
                consecutive_failures: 0,
                last_check: "not checked yet".into(),
                fast: false,
            }),
            uid: next_server_id(),
            queue,
            check_wake: Notify::new(),
            metrics: ServerMetrics::default(),
        }
    }

    /// The server's name as written in the farm.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    /// Whether the health checks say UP.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The administrative state.
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Acquire))
    }

    /// Sets the administrative state; returns the previous one. Leaving maintenance starts
    /// the slowstart ramp and wakes the checks; any change wakes the backend's queue.
    pub fn set_admin(&self, state: AdminState) -> AdminState {
        let old = AdminState::from_u8(self.admin.swap(state.to_u8(), Ordering::AcqRel));
        if old == AdminState::Maint && state != AdminState::Maint {
            self.up_since
                .store(nanos_since_epoch(Instant::now()).max(1), Ordering::Release);
        }
        self.check_wake.notify_one();
        self.queue.wake_all();
        old
    }

    /// Whether it is a backup server now: it takes traffic only when no active server is
    /// usable (HAProxy's `backup`, from the file or set at run time).
    pub fn is_backup(&self) -> bool {
        self.backup.load(Ordering::Acquire)
    }

    /// Makes it a backup server (`true`) or an active one; the previous value.
    pub fn set_backup(&self, backup: bool) -> bool {
        let old = self.backup.swap(backup, Ordering::AcqRel);
        if old != backup {
            self.queue.wake_all();
        }
        old
    }

    /// The run-time weight (before the slowstart ramp).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the run-time weight.
    pub fn set_weight(&self, weight: u32) {
        if self.weight.swap(weight, Ordering::Relaxed) != weight {
            self.queue.wake_all();
        }
    }

    /// The weight balancing uses now: the run-time weight, ramped from ~0 over `slowstart`
    /// after the server came UP (at least 1 while ramping a non-zero weight).
    pub fn effective_weight(&self, now: Instant) -> u32 {
        let weight = self.weight();
        let (Some(ramp), since) = (self.config.slowstart, self.up_since.load(Ordering::Acquire))
        else {
            return weight;
        };
        if since == 0 || weight == 0 {
            return weight;
        }
        let elapsed = Duration::from_nanos(nanos_since_epoch(now).saturating_sub(since));
        if elapsed >= ramp {
            return weight;
        }
        let scaled = u128::from(weight) * elapsed.as_nanos() / ramp.as_nanos().max(1);
        u32::try_from(scaled).unwrap_or(weight).clamp(1, weight)
    }

    /// UP, ready and with a non-zero effective weight: may be picked by balancing.
    pub fn is_usable(&self, now: Instant) -> bool {
        self.is_up() && self.admin() == AdminState::Ready && self.effective_weight(now) > 0
    }

    /// UP and not in maintenance: a sticky (cookie) request may still go there (drain).
    pub fn is_sticky_usable(&self) -> bool {
        self.is_up() && self.admin() != AdminState::Maint
    }

    /// Requests in flight.
    pub fn current_conns(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// Whether one more request fits under `maxconn`.
    pub fn has_slot(&self) -> bool {
        self.config.maxconn == 0 || self.current_conns() < u64::from(self.config.maxconn)
    }

    fn counters(&self) -> MutexGuard<'_, CheckCounters> {
        // The section never panics; a poisoned lock still holds consistent counters.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one health check: `fall` consecutive failures take an UP server DOWN,
    /// `rise` consecutive passes bring a DOWN server UP. `text` describes the result.
    pub fn record_check(&self, passed: bool, text: String, rise: u32, fall: u32) -> CheckEffect {
        let mut c = self.counters();
        c.last_check = text;
        let up = self.is_up();
        let mut transition = None;
        if passed {
            c.consecutive_failures = 0;
            c.fast = false;
            c.consecutive_passes = c.consecutive_passes.saturating_add(1);
            if !up && c.consecutive_passes >= rise {
                self.went_up();
                transition = Some(Transition::WentUp);
            }
        } else {
            c.consecutive_passes = 0;
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            if up && c.consecutive_failures >= fall {
                self.up.store(false, Ordering::Release);
                // Requests waiting for this server look elsewhere (or give up).
                self.queue.wake_all();
                transition = Some(Transition::WentDown);
            }
        }
        CheckEffect {
            transition,
            passes: c.consecutive_passes,
            failures: c.consecutive_failures,
        }
    }

    fn went_up(&self) {
        self.up_since
            .store(nanos_since_epoch(Instant::now()).max(1), Ordering::Release);
        self.up.store(true, Ordering::Release);
        self.observed_errors.store(0, Ordering::Relaxed);
        self.queue.wake_all();
    }

    /// Takes the server DOWN at once (`on_error mark-down`, refused connection): it comes
    /// back after `rise` passed checks. Returns true if it was UP.
    pub fn mark_down(&self, text: String) -> bool {
        let mut c = self.counters();
        c.last_check = text;
        c.consecutive_passes = 0;
        c.fast = true;
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up {
            self.queue.wake_all();
        }
        was_up
    }

    /// Sets the failure count so that one more failed check takes the server down
    /// (`on_error sudden-death`), then counts one failure. Returns the effect.
    pub fn sudden_death(&self, text: String, rise: u32, fall: u32) -> CheckEffect {
        {
            let mut c = self.counters();
            c.consecutive_failures = c.consecutive_failures.max(fall.saturating_sub(2));
            c.fast = true;
        }
        self.record_check(false, text, rise, fall)
    }

    /// Asks the check task to use `fastinter` until the next pass, and to check now.
    pub fn force_fastinter(&self) {
        self.counters().fast = true;
        self.check_wake.notify_one();
    }

    /// Whether the server is transitioning (UP with failures, DOWN with passes, or forced
    /// by `on_error`): the check task then uses `fastinter`. `None` when fully DOWN
    /// (`downinter`), `Some(false)` when fully UP (`inter`).
    pub fn check_phase(&self) -> Option<bool> {
        let c = self.counters();
        let up = self.is_up();
        if c.fast || (up && c.consecutive_failures > 0) || (!up && c.consecutive_passes > 0) {
            Some(true)
        } else if up {
            Some(false)
        } else {
            None
        }
    }

    /// Counts one observed error (passive health); returns true when `limit` consecutive
    /// errors are reached (the counter then restarts).
    pub fn observe_error(&self, limit: u32) -> bool {
        let n = self.observed_errors.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= limit {
            self.observed_errors.store(0, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// An observed success resets the consecutive error count.
    pub fn observe_success(&self) {
        if self.observed_errors.load(Ordering::Relaxed) != 0 {
            self.observed_errors.store(0, Ordering::Relaxed);
        }
    }

    /// Takes a connection slot if one is free under `maxconn`; the returned guard keeps the
    /// request counted until dropped (when the response body ends or the attempt fails).
    pub fn try_acquire(self: &Arc<Self>) -> Option<ActiveRequest> {
        let max = u64::from(self.config.maxconn);
        if max == 0 {
            self.current.fetch_add(1, Ordering::AcqRel);
        } else {
            self.current
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .ok()?;
        }
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        Some(ActiveRequest(self.clone()))
    }

    /// Applies a reloaded file's `weight` and `disabled` to a kept server: the weight
    /// replaces the run-time one (as a restarted HAProxy would), and a changed `disabled`
    /// sets maintenance or ready. Health, counters and connections are kept.
    pub fn apply_file(&self, server: &Server) {
        self.set_weight(server.weight);
        let was = self.file_disabled.swap(server.disabled, Ordering::AcqRel);
        if was != server.disabled {
            self.set_admin(if server.disabled {
                AdminState::Maint
            } else {
                AdminState::Ready
            });
        }
    }

    /// The server's state for `/status`.
    pub fn snapshot(&self) -> ServerSnapshot {
        let c = self.counters();
        ServerSnapshot {
            up: self.is_up(),
            admin: self.admin(),
            weight: self.weight(),
            effective_weight: self.effective_weight(Instant::now()),
            last_check: c.last_check.clone(),
            current_conns: self.current_conns(),
            total_requests: self.total_requests.load(Ordering::Relaxed),
            consecutive_failures: c.consecutive_failures,
        }
    }
}

/// One request in flight on a server (a taken connection slot); dropping it ends it.
#[derive(Debug)]
pub(crate) struct ActiveRequest(Arc<ServerState>);

impl ActiveRequest {
    /// The server handling the request.
    pub fn server(&self) -> &Arc<ServerState> {
        &self.0
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
        if self.0.config.maxconn != 0 {
            self.0.queue.slot_freed(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_with(maxconn: u32, slowstart: Option<Duration>) -> Arc<ServerState> {
        Arc::new(ServerState::new(
            "web",
            &Server {
                name: "web-1".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                weight: 10,
                backup: false,
                maxconn,
                slowstart,
                disabled: false,
                node: false,
            },
            Arc::new(Queue::default()),
        ))
    }

    fn server() -> Arc<ServerState> {
        server_with(0, None)
    }

    #[test]
    fn starts_up_and_falls_after_fall_consecutive_failures() {
        let s = server();
        assert!(s.is_up());
        assert_eq!(s.check_phase(), Some(false));
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        assert_eq!(s.check_phase(), Some(true), "transitioning: fastinter");
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        // A pass in between resets the failure count.
        assert_eq!(s.record_check(true, "ok".into(), 2, 3).failures, 0);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        assert_eq!(s.record_check(false, "x".into(), 2, 3).transition, None);
        let e = s.record_check(false, "x".into(), 2, 3);
        assert_eq!(e.transition, Some(Transition::WentDown));
        assert_eq!(e.failures, 3);
        assert!(!s.is_up());
        assert_eq!(s.check_phase(), None, "fully down: downinter");
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
    fn sudden_death_leaves_one_failure_to_go() {
        let s = server();
        let e = s.sudden_death("err".into(), 2, 3);
        assert_eq!((e.failures, e.transition), (2, None));
        let e = s.record_check(false, "x".into(), 2, 3);
        assert_eq!(e.transition, Some(Transition::WentDown));
    }

    #[test]
    fn slots_respect_maxconn_and_count() {
        let s = server_with(2, None);
        let a = s.try_acquire().unwrap();
        let b = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_none());
        assert!(!s.has_slot());
        assert_eq!(s.snapshot().current_conns, 2);
        drop(a);
        assert!(s.has_slot());
        drop(b);
        let snap = s.snapshot();
        assert_eq!((snap.current_conns, snap.total_requests), (0, 2));
    }

    #[test]
    fn slowstart_ramps_after_coming_up_only() {
        let s = server_with(0, Some(Duration::from_secs(10)));
        let now = Instant::now();
        assert_eq!(s.effective_weight(now), 10, "no ramp at start-up");
        s.mark_down("x".into());
        s.record_check(true, "ok".into(), 1, 3);
        let since = Instant::now();
        assert_eq!(s.effective_weight(since), 1);
        assert_eq!(s.effective_weight(since + Duration::from_secs(5)), 5);
        assert_eq!(s.effective_weight(since + Duration::from_secs(11)), 10);
    }

    #[test]
    fn admin_states_and_usability() {
        let s = server();
        let now = Instant::now();
        assert!(s.is_usable(now));
        s.set_admin(AdminState::Drain);
        assert!(!s.is_usable(now) && s.is_sticky_usable());
        assert_eq!(s.snapshot().state_word(), "DRAIN");
        s.set_admin(AdminState::Maint);
        assert!(!s.is_sticky_usable());
        assert_eq!(s.snapshot().state_word(), "MAINT");
        s.set_admin(AdminState::Ready);
        s.set_weight(0);
        assert!(
            !s.is_usable(Instant::now()),
            "weight 0 takes no balanced traffic"
        );
        assert_eq!(AdminState::parse("drain"), Some(AdminState::Drain));
        assert_eq!(AdminState::parse("up"), None);
    }

    #[test]
    fn observed_errors_trigger_at_the_limit() {
        let s = server();
        assert!(!s.observe_error(3));
        assert!(!s.observe_error(3));
        s.observe_success();
        assert!(!s.observe_error(3));
        assert!(!s.observe_error(3));
        assert!(s.observe_error(3));
        assert!(!s.observe_error(3), "the count restarts");
    }
}
