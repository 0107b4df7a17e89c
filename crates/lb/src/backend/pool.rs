//! Upstream connections: one pool of idle HTTP/1.1 connections per server.
//!
//! A request checks out the newest idle connection that is still ready (LIFO keeps the
//! warmest sockets busy and lets the others expire), or opens a new one: TCP connect with a
//! deadline, `TCP_NODELAY`, HTTP/1.1 handshake, the connection's I/O driven by its own task.
//! Once the response head is back, the connection travels with the response body as a
//! [`Pooled`]; when the body ends (read in full, or known empty) it goes back to the pool
//! at once, without a task per request. hyper may still be finishing the exchange (request
//! body still being written, its idle state not yet signalled), so a returned connection is
//! only handed out once hyper reports it ready. A connection whose exchange failed or whose
//! body was dropped early is closed by hyper and never comes back. At most `max_idle`
//! connections wait per server and thread; idle ones older than `idle_timeout` are closed.
//!
//! Each event-loop thread of the node (`[lb] threads`) has its own shard of every pool: a
//! connection's I/O task runs on the thread that opened it, so handing it only to requests
//! of that same thread keeps every exchange on one thread (no cross-thread wake-ups), as
//! HAProxy keeps its idle connections per thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The error type of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of requests sent upstream and of responses sent to clients: streamed, boxed.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The sending half of one upstream HTTP/1.1 connection.
pub(crate) type Sender = http1::SendRequest<ProxyBody>;

/// Limits of one pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolLimits {
    /// Idle connections kept per server and shard.
    pub max_idle: usize,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// Shards per pool: the node's event-loop threads (at least 1).
    pub shards: usize,
}

thread_local! {
    /// The pool shard of this thread: its index among the node's event-loop threads, set by
    /// [`set_shard`]; 0 on any other thread.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Makes this thread use pool shard `index` (call once, first thing on an event-loop thread).
pub(crate) fn set_shard(index: usize) {
    SHARD.with(|s| s.set(index));
}

/// Why a new upstream connection could not be made. No byte of any request was sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Nothing listens on the server's port (`ECONNREFUSED`).
    #[error("Connection refused")]
    Refused,
    /// The TCP handshake did not finish in time.
    #[error("connect timeout after {0:?}")]
    Timeout(Duration),
    /// Any other connect error (unreachable, reset...).
    #[error("{0}")]
    Io(std::io::Error),
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP/1.1 handshake failed: {0}")]
    Handshake(hyper::Error),
    /// The TLS handshake failed (internal TLS: not the farm's certificate).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The idle connections of one server.
pub(crate) struct Pool {
    addr: SocketAddr,
    /// TLS to this server (internal TLS, a farm node), else plain TCP.
    tls: Option<TlsConnector>,
    id: String,
    limits: PoolLimits,
    /// One queue per shard (see the module docs).
    shards: Box<[Mutex<VecDeque<Idle>>]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("server", &self.id)
            .field("addr", &self.addr)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    /// An empty pool for the server `id` (`backend/server`) at `addr`, over TLS with `tls`.
    pub fn new(
        id: String,
        addr: SocketAddr,
        limits: PoolLimits,
        tls: Option<TlsConnector>,
    ) -> Pool {
        Pool {
            addr,
            tls,
            id,
            limits,
            shards: (0..limits.shards.max(1))
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    /// The idle queue of this thread's shard.
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        let index = SHARD.with(Cell::get) % self.shards.len();
        lock(&self.shards[index])
    }

    /// The newest idle connection that is still open and ready, if any. Closed and expired
    /// connections met on the way are dropped; ones whose last exchange hyper is still
    /// finishing are skipped and kept. With `max_age`, only a connection idle for less than
    /// that is taken (HAProxy's `http-reuse safe` for requests that must not be sent on a
    /// connection the server may be closing); older ones stay for others.
    pub fn take_idle(&self, max_age: Option<Duration>) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.idle();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            let age = now.duration_since(c.since);
            if c.sender.is_closed() || age >= self.limits.idle_timeout {
                idle.remove(i);
                continue;
            }
            if !c.sender.is_ready() {
                continue;
            }
            if max_age.is_some_and(|max| age >= max) {
                // Older ones sit further front: none is young enough.
                return None;
            }
            return idle.remove(i).map(|c| c.sender);
        }
        None
    }

    /// Opens a new connection to the server, the TCP connect bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: refused, timed out, other I/O error, failed handshake.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves nothing behind.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Err(_) => return Err(ConnectError::Timeout(timeout)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Refused)
            }
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Ok(Ok(s)) => s,
        };
        // Small requests and responses must not wait for Nagle.
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let stream = super::upstream::secure(stream, self.tls.as_ref(), self.addr);
        let stream = match tokio::time::timeout(timeout, stream).await {
            Err(_) => return Err(ConnectError::Timeout(timeout)),
            Ok(r) => r.map_err(ConnectError::Tls)?,
        };
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let id = self.id.clone();
        tokio::spawn(async move {
            // `with_upgrades`: a `101 Switching Protocols` hands the socket to the proxy.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(server = %id, "upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// The TLS client of this server's connections, if it is reached over TLS.
    pub fn tls(&self) -> Option<&TlsConnector> {
        self.tls.as_ref()
    }

    /// Puts a connection back once its response ended; the oldest idle one is closed when
    /// the pool is full. A closed connection is dropped.
    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        while idle.len() >= self.limits.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Wraps `sender`, whose response head just came back, to travel with the response
    /// body and come back here when the body ends ([`Pooled::release`]).
    pub fn lend(self: &Arc<Self>, sender: Sender) -> Pooled {
        Pooled {
            pool: self.clone(),
            sender,
        }
    }

    /// Closes idle connections (of every shard) that expired or were closed by the server.
    pub fn reap(&self) {
        let now = Instant::now();
        let timeout = self.limits.idle_timeout;
        for shard in &self.shards {
            lock(shard).retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
        }
    }

    /// Closes every idle connection (at shutdown).
    pub fn clear(&self) {
        for shard in &self.shards {
            lock(shard).clear();
        }
    }

    /// How many idle connections wait, over all shards.
    pub fn idle_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

fn lock(shard: &Mutex<VecDeque<Idle>>) -> MutexGuard<'_, VecDeque<Idle>> {
    // Sections only push and pop; a poisoned queue is still a valid queue.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection lent to one response: [`Pooled::release`] returns it to its pool when the
/// response body ended normally; dropping it closes the connection once hyper is done.
pub(crate) struct Pooled {
    pool: Arc<Pool>,
    sender: Sender,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").field("pool", &self.pool).finish()
    }
}

impl Pooled {
    /// Gives the connection back to its pool (call when the response body ended normally).
    pub fn release(self) {
        self.pool.put(self.sender);
    }
}
