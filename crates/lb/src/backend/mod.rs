//! A backend at run time: its servers (state + connection pool), its balancer, its queue,
//! server picking with backup servers, and the HAProxy-style log lines of state changes.

pub(crate) mod balance;
pub(crate) mod check;
pub(crate) mod pool;
pub(crate) mod queue;
pub(crate) mod server;
pub(crate) mod upstream;

use std::sync::Arc;
use std::time::Instant;

use webfarm_config::Backend;

use crate::backend::pool::{Pool, PoolLimits};
use crate::backend::queue::{Queue, Ticket, ANY_SERVER};
use crate::backend::server::{ActiveRequest, ServerState, Transition};
use crate::metrics::UpstreamMetrics;
use balance::{Balancer, RequestKey, ServerView};

/// One server of a backend with its pool of upstream connections.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// Health, admin state, weight, counters.
    pub state: Arc<ServerState>,
    /// Idle upstream connections.
    pub pool: Arc<Pool>,
}

/// The outcome of one pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// This server (its slot is not taken yet).
    Server(usize),
    /// Usable servers exist but none has a free slot: wait in the queue.
    Full,
    /// No server is usable.
    NoServer,
}

/// The outcome of one try for a slot; otherwise than `Taken`, with the server to wait for
/// (a server id, or [`ANY_SERVER`]).
#[derive(Debug)]
enum Try {
    /// This server's slot.
    Taken((usize, ActiveRequest)),
    /// Every server it may use is full.
    Full(u64),
    /// A free slot it may use is due to a request that queued before it.
    Behind(u64),
}

/// Why no slot was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// No server is usable.
    NoServer,
    /// Every usable server stayed full for `timeout.queue`.
    Timeout,
}

/// A backend: configuration, servers, balancer, queue.
#[derive(Debug)]
pub(crate) struct BackendState {
    /// The configuration.
    pub config: Backend,
    /// The servers, in configuration order.
    pub servers: Vec<Server>,
    balancer: Box<dyn Balancer>,
    /// Requests waiting for a slot (kept across reloads).
    pub queue: Arc<Queue>,
    /// Its traffic, latencies, errors and warnings, for `/metrics` (kept across reloads).
    pub metrics: Arc<UpstreamMetrics>,
}

/// The servers as one pick sees them.
struct View<'a> {
    servers: &'a [Server],
    now: Instant,
    backup: bool,
    tried: &'a [usize],
    need_slot: bool,
}

impl ServerView for View<'_> {
    fn len(&self) -> usize {
        self.servers.len()
    }
    fn eligible(&self, i: usize) -> bool {
        let s = &self.servers[i].state;
        s.is_backup() == self.backup
            && s.is_usable(self.now)
            && !self.tried.contains(&i)
            && (!self.need_slot || s.has_slot())
    }
    fn weight(&self, i: usize) -> u32 {
        self.servers[i].state.effective_weight(self.now)
    }
    fn base_weight(&self, i: usize) -> u32 {
        self.servers[i].state.weight()
    }
    fn conns(&self, i: usize) -> u64 {
        self.servers[i].state.current_conns()
    }
    fn name(&self, i: usize) -> &str {
        self.servers[i].state.name()
    }
}

impl BackendState {
    /// The run-time state of `config`. Servers of `previous` with the same name and the same
    /// configuration (weight and `disabled` aside) are kept as they are, with their health,
    /// counters, check task and idle connections; the others start fresh (UP, as in
    /// HAProxy).
    ///
    /// `tls`: the lb's internal TLS client, used for the servers that are farm nodes.
    pub fn new(
        config: &Backend,
        limits: PoolLimits,
        previous: Option<&BackendState>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> BackendState {
        let queue = previous.map_or_else(Arc::default, |p| p.queue.clone());
        let metrics = previous.map_or_else(Arc::default, |p| p.metrics.clone());
        let servers = config
            .servers
            .iter()
            .map(|s| match previous.and_then(|p| p.server_by_name(&s.name)) {
                Some(old) if same_server(&old.state.config, s) => {
                    old.state.apply_file(s);
                    old.clone()
                }
                _ => {
                    let state = Arc::new(ServerState::new(&config.name, s, queue.clone()));
                    Server {
                        pool: Arc::new(Pool::new(
                            state.id.clone(),
                            s.addr,
                            limits,
                            tls.filter(|_| s.node).cloned(),
                        )),
                        state,
                    }
                }
            })
            .collect();
        let weights: Vec<u32> = config.servers.iter().map(|s| s.weight).collect();
        BackendState {
            config: config.clone(),
            servers,
            balancer: balance::build(&config.balance, config.hash_type, &weights),
            queue,
            metrics,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The server named `name`.
    pub fn server_by_name(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|srv| srv.state.name() == name)
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|srv| srv.state.name() == name)
    }

    /// Picks a server for `key` that is not in `tried`, as HAProxy does: active servers
    /// while any is usable, else the first usable backup server (every usable backup server
    /// with `allbackups`). A server without a free slot is skipped, except by hash
    /// algorithms, whose key keeps its server (the caller then waits for the slot). When
    /// every usable server was tried, picks among all of them (a fresh connection to the
    /// same server may work).
    pub fn pick(&self, key: &RequestKey<'_>, tried: &[usize]) -> Pick {
        let now = Instant::now();
        let backup = !self.tier_usable(false, now);
        if backup && !self.tier_usable(true, now) {
            return Pick::NoServer;
        }
        if backup && !self.config.allbackups {
            let first = self
                .servers
                .iter()
                .position(|srv| srv.state.is_backup() && srv.state.is_usable(now));
            return match first {
                Some(i) if self.servers[i].state.has_slot() => Pick::Server(i),
                Some(_) => Pick::Full,
                None => Pick::NoServer,
            };
        }
        let need_slot = !self.balancer.is_deterministic(key);
        let mut view = View {
            servers: &self.servers,
            now,
            backup,
            tried,
            need_slot,
        };
        if let Some(i) = self.balancer.select(&view, key) {
            return Pick::Server(i);
        }
        if !tried.is_empty() {
            view.tried = &[];
            if let Some(i) = self.balancer.select(&view, key) {
                return Pick::Server(i);
            }
        }
        Pick::Full
    }

    /// Whether a server of the backup tier (`backup`) or of the active one is usable.
    fn tier_usable(&self, backup: bool, now: Instant) -> bool {
        self.servers
            .iter()
            .any(|srv| srv.state.is_backup() == backup && srv.state.is_usable(now))
    }

    /// The ids of the servers a pick for a request that tried `tried` may choose now: the
    /// tier in use (active servers while any is usable, else backups: the first usable one
    /// unless `allbackups`), without the tried ones unless that leaves none (as
    /// [`BackendState::pick`]). A queued request may be handed a slot of these only.
    fn eligible_ids(&self, tried: &[usize]) -> Vec<u64> {
        let now = Instant::now();
        let backup = !self.tier_usable(false, now);
        let tier = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, srv)| srv.state.is_backup() == backup && srv.state.is_usable(now));
        if backup && !self.config.allbackups {
            return tier.take(1).map(|(_, srv)| srv.state.uid).collect();
        }
        let untried: Vec<u64> = tier
            .clone()
            .filter(|(i, _)| !tried.contains(i))
            .map(|(_, srv)| srv.state.uid)
            .collect();
        if untried.is_empty() {
            tier.map(|(_, srv)| srv.state.uid).collect()
        } else {
            untried
        }
    }

    /// Takes a slot on a server for `key`: picks, and while every server it may use is
    /// full waits in the backend's queue (first come, first served; see [`Queue`]) for at
    /// most `timeout.queue`. `fixed` forces a server (sticky cookie, retry without
    /// redispatch). Returns the server and its slot.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoServer`] when no server is usable (or `fixed` is not), or
    /// [`QueueError::Timeout`] when the queue timeout passed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until it returns, and a wake it was handed goes on to
    /// the next waiter.
    pub async fn acquire(
        &self,
        key: &RequestKey<'_>,
        tried: &[usize],
        fixed: Option<usize>,
    ) -> Result<(usize, ActiveRequest), QueueError> {
        // Fast path: with nobody waiting, no lock and no list.
        let wants = match self.try_take(key, tried, fixed, None)? {
            Try::Taken(got) => return Ok(got),
            Try::Full(wants) | Try::Behind(wants) => wants,
        };
        let deadline = tokio::time::Instant::now() + self.config.timeout.queue;
        let servers = if wants == ANY_SERVER {
            self.eligible_ids(tried)
        } else {
            Vec::new()
        };
        // Joins knowing its server(s), so a slot of another is never handed to it.
        let mut ticket = self.queue.join(wants, servers);
        loop {
            if let Some(slot) = ticket.take_slot() {
                // Handed over by the request that freed it (only servers of this snapshot).
                if let Some(i) = self
                    .servers
                    .iter()
                    .position(|srv| Arc::ptr_eq(&srv.state, slot.server()))
                {
                    ticket.handed();
                    return Ok((i, slot));
                }
            }
            let woken = ticket.take_wake();
            match self.try_take(key, tried, fixed, Some(&ticket))? {
                Try::Taken(got) => return Ok(got),
                // Nothing free is for it: those behind it may take what is.
                Try::Full(_) if woken => ticket.decline(),
                // An earlier request takes this slot; this one waits for the next.
                Try::Full(_) | Try::Behind(_) => {}
            }
            tokio::select! {
                () = ticket.woken() => {}
                () = tokio::time::sleep_until(deadline) => return Err(QueueError::Timeout),
            }
        }
    }

    /// One try of [`BackendState::acquire`] for a new request (`me` `None`) or a waiting
    /// one. A waiting request's ticket learns which server it now waits for.
    fn try_take(
        &self,
        key: &RequestKey<'_>,
        tried: &[usize],
        fixed: Option<usize>,
        me: Option<&Ticket<'_>>,
    ) -> Result<Try, QueueError> {
        let pick = match fixed {
            Some(i) if self.servers[i].state.is_sticky_usable() => Pick::Server(i),
            Some(_) => Pick::NoServer,
            None => self.pick(key, tried),
        };
        match pick {
            Pick::NoServer => Err(QueueError::NoServer),
            Pick::Server(i) => {
                let server = &self.servers[i].state;
                // A forced server or a hash key's server is the only one it may use.
                let pinned = fixed.is_some() || self.balancer.is_deterministic(key);
                let wants = if pinned { server.uid } else { ANY_SERVER };
                if let Some(t) = me {
                    t.wait_for(wants, || self.eligible_ids(tried));
                }
                if self.queue.ahead_for(me, server) {
                    return Ok(Try::Behind(wants));
                }
                Ok(server
                    .try_acquire()
                    .map_or(Try::Full(wants), |slot| Try::Taken((i, slot))))
            }
            Pick::Full => {
                if let Some(t) = me {
                    t.wait_for(ANY_SERVER, || self.eligible_ids(tried));
                }
                Ok(Try::Full(ANY_SERVER))
            }
        }
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How many active and backup servers are UP (and not in maintenance).
    pub fn up_counts(&self) -> (usize, usize) {
        let up = |backup: bool| {
            self.servers
                .iter()
                .filter(|srv| {
                    srv.state.is_backup() == backup
                        && srv.state.is_up()
                        && srv.state.admin() != crate::backend::server::AdminState::Maint
                })
                .count()
        };
        (up(false), up(true))
    }

    /// How many servers are UP and not in maintenance.
    pub fn up_count(&self) -> usize {
        let (a, b) = self.up_counts();
        a + b
    }

    /// Logs a server's state change the way HAProxy does, `detail` being
    /// `reason: ..., info: "...", check duration: Nms`.
    pub fn log_transition(&self, server: &ServerState, transition: Transition, detail: &str) {
        let (active, backup) = self.up_counts();
        let kind = if server.is_backup() {
            "Backup server"
        } else {
            "Server"
        };
        match transition {
            Transition::WentUp => tracing::info!(
                "{kind} {} is UP, {detail}. {active} active and {backup} backup servers online.",
                server.id
            ),
            Transition::WentDown => {
                tracing::warn!(
                    "{kind} {} is DOWN, {detail}. {active} active and {backup} backup servers left.",
                    server.id
                );
                if active + backup == 0 {
                    tracing::error!("backend '{}' has no server available!", self.name());
                }
            }
        }
    }

    /// Closes idle connections that expired, in every pool.
    pub fn reap_idle(&self) {
        for srv in &self.servers {
            srv.pool.reap();
        }
    }

    /// Closes every idle connection, in every pool.
    pub fn close_idle(&self) {
        for srv in &self.servers {
            srv.pool.clear();
        }
    }
}

/// Whether a reload may keep a server's state: same name, address and options (weight and
/// `disabled` are applied to the kept state).
fn same_server(old: &webfarm_config::Server, new: &webfarm_config::Server) -> bool {
    old.name == new.name
        && old.addr == new.addr
        && old.backup == new.backup
        && old.maxconn == new.maxconn
        && old.slowstart == new.slowstart
}
