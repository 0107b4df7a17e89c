//! A client connection's socket with two timers of its own: the idle keep-alive timeout
//! (HAProxy's `timeout http-keep-alive`) and the arrival of a request's first byte (the
//! start of the access log's `Tq`).
//!
//! hyper's `header_read_timeout` bounds how long a request head may take (HAProxy's
//! `timeout http-request`, from the moment hyper starts waiting for a head). This wrapper
//! adds the keep-alive bound: once a connection has served a request and has none in
//! progress, it reads end-of-file after `http_keep_alive` without a byte, so hyper closes it
//! quietly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Shared by a connection's socket wrapper and the requests it carries.
#[derive(Debug)]
pub(crate) struct ConnState {
    accepted: Instant,
    keep_alive: Duration,
    active: AtomicUsize,
    served: AtomicU64,
    /// Set while no request is in progress: the next byte read starts a request.
    waiting_first: AtomicBool,
    /// Nanoseconds after `accepted` of the current request's first byte.
    first_byte: AtomicU64,
    /// Nanoseconds after `accepted` when the connection last became idle.
    idle_since: AtomicU64,
}

impl ConnState {
    /// The state of a connection accepted now, idle after `keep_alive`.
    pub fn new(keep_alive: Duration) -> Arc<ConnState> {
        Arc::new(ConnState {
            accepted: Instant::now(),
            keep_alive,
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            waiting_first: AtomicBool::new(true),
            first_byte: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.accepted).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A request starts now: counts it in progress and returns how long ago its first byte
    /// arrived (`Tq`; zero when its bytes were read along with an earlier request's).
    pub fn begin(self: &Arc<Self>) -> (ConnGuard, Duration) {
        let now = Instant::now();
        self.active.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        let tq = if self.waiting_first.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            let first =
                self.accepted + Duration::from_nanos(self.first_byte.load(Ordering::Acquire));
            now.saturating_duration_since(first)
        };
        (ConnGuard(self.clone()), tq)
    }
}

/// A request in progress on its connection; dropping it (when the response ended) may make
/// the connection idle.
#[derive(Debug)]
pub(crate) struct ConnGuard(Arc<ConnState>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let s = &self.0;
        if s.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.idle_since
                .store(s.nanos(Instant::now()), Ordering::Release);
            s.waiting_first.store(true, Ordering::Release);
        }
    }
}

/// A socket with the keep-alive timer; `T` is the raw stream.
#[derive(Debug)]
pub(crate) struct ConnIo<T> {
    inner: T,
    state: Arc<ConnState>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<u64>,
}

impl<T> ConnIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, state: Arc<ConnState>) -> ConnIo<T> {
        ConnIo {
            inner,
            state,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before
                    && this.state.waiting_first.swap(false, Ordering::AcqRel)
                {
                    let now = this.state.nanos(Instant::now());
                    this.state.first_byte.store(now, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let s = &this.state;
                if s.active.load(Ordering::Acquire) == 0 && s.served.load(Ordering::Relaxed) > 0 {
                    let since = s.idle_since.load(Ordering::Acquire);
                    if this.armed_for != Some(since) {
                        let deadline = s.accepted + Duration::from_nanos(since) + s.keep_alive;
                        this.timer.as_mut().reset(deadline.into());
                        this.armed_for = Some(since);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        // Idle too long: end of file, hyper closes the connection quietly.
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
