//! A client connection's socket with the timers of its idle and request-head phases, and
//! the arrival of a request's first byte (the start of the access log's `Tq`).
//!
//! While no request is in progress the wrapper enforces, on its reads:
//! - `timeout http-keep-alive`: a connection that served a request and has not sent a byte
//!   of the next one reads end-of-file after that long, so hyper closes it quietly;
//! - `timeout http-request` (HTTP/1): the request head must be complete that long after the
//!   connection was accepted (first request) or after its first byte (later ones). Past it,
//!   a client that sent part of a head is answered `408 Request Time-out` and the
//!   connection closes, as HAProxy does; a connection that never sent a byte closes
//!   silently (HAProxy's `option http-ignore-probes`: browsers' pre-connects are not
//!   errors). An HTTP/2 connection (prior-knowledge preface) with no stream in progress is
//!   idle: it closes after `http-keep-alive` and is never sent an HTTP/1 answer.
//!
//! hyper's own header read timeout is off: it cannot answer 408 and it would also run
//! during keep-alive idleness.

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
    http_request: Duration,
    active: AtomicUsize,
    served: AtomicU64,
    /// Set while no request is in progress: the next byte read starts a request.
    waiting_first: AtomicBool,
    /// Nanoseconds after `accepted` of the current request's first byte.
    first_byte: AtomicU64,
    /// Nanoseconds after `accepted` when the connection last became idle.
    idle_since: AtomicU64,
    /// Set once a `408` was sent for a request head that took too long.
    timed_out: AtomicBool,
}

impl ConnState {
    /// The state of a connection accepted now: idle for at most `keep_alive` between
    /// requests, at most `http_request` to send a request head.
    pub fn new(keep_alive: Duration, http_request: Duration) -> Arc<ConnState> {
        Arc::new(ConnState {
            accepted: Instant::now(),
            keep_alive,
            http_request,
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            waiting_first: AtomicBool::new(true),
            first_byte: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
        })
    }

    /// Whether the connection ended with a `408` for a request head that took longer than
    /// `timeout http-request`: the answer's length in bytes and the time since the accept.
    pub fn request_timed_out(&self) -> Option<(usize, Duration)> {
        self.timed_out
            .load(Ordering::Acquire)
            .then(|| (request_timeout_answer().len(), self.accepted.elapsed()))
    }

    fn at(&self, nanos: u64) -> Instant {
        self.accepted + Duration::from_nanos(nanos)
    }

    /// While no request is in progress, when the connection's current wait ends and what
    /// happens then; `None` while a request is in progress.
    fn idle_deadline(&self, http1: bool) -> Option<(Instant, Expiry)> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let served = self.served.load(Ordering::Relaxed) > 0;
        let head_started = !self.waiting_first.load(Ordering::Acquire);
        Some(match (served, head_started) {
            (false, false) => (self.accepted + self.http_request, Expiry::Close),
            (true, false) => (
                self.at(self.idle_since.load(Ordering::Acquire)) + self.keep_alive,
                Expiry::Close,
            ),
            (false, true) if http1 => (self.accepted + self.http_request, Expiry::RequestTimeout),
            (true, true) if http1 => (
                self.at(self.first_byte.load(Ordering::Acquire)) + self.http_request,
                Expiry::RequestTimeout,
            ),
            // HTTP/2 frames (the preface, a PING) and no stream: idle, as between streams.
            (false, true) => (self.accepted + self.keep_alive, Expiry::Close),
            (true, true) => (
                self.at(self.idle_since.load(Ordering::Acquire)) + self.keep_alive,
                Expiry::Close,
            ),
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
            now.saturating_duration_since(self.at(self.first_byte.load(Ordering::Acquire)))
        };
        (ConnGuard(self.clone()), tq)
    }
}

/// What an idle-phase deadline does when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// End-of-file to hyper: the connection closes without a byte.
    Close,
    /// `408` to the client, then an error to hyper.
    RequestTimeout,
}

/// HAProxy's answer when `timeout http-request` expires (its reason phrase, `Time-out`).
fn request_timeout_answer() -> String {
    let body = "408 Request Time-out: the request head was not received in time.\n";
    format!(
        "HTTP/1.1 408 Request Time-out\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The HTTP/2 connection preface's first bytes (RFC 9113 §3.4); no HTTP/1 method is `PRI`.
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

/// A request in progress on its connection; dropping it (when the response ended) may make
/// the connection idle.
#[derive(Debug)]
pub(crate) struct ConnGuard(Arc<ConnState>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let s = &self.0;
        // Stored before the count drops, so a reader that sees no request in progress (on
        // another thread: HTTP/2 streams run as tasks of their own) sees when it began.
        // While other requests are still in progress both are unused, and overwritten later.
        s.idle_since
            .store(s.nanos(Instant::now()), Ordering::Release);
        s.waiting_first.store(true, Ordering::Release);
        s.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket with the idle-phase timers; `T` is the raw stream.
#[derive(Debug)]
pub(crate) struct ConnIo<T> {
    inner: T,
    state: Arc<ConnState>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    /// The connection's first bytes, up to 4, to tell HTTP/2's preface from HTTP/1.
    start: [u8; 4],
    start_len: usize,
    /// Bytes were written since the last flush: hyper may be mid-response (it flushes the
    /// socket only once its own buffer is empty), so no 408 may be written now.
    unflushed: bool,
}

impl<T> ConnIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, state: Arc<ConnState>) -> ConnIo<T> {
        ConnIo {
            inner,
            state,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            start: [0; 4],
            start_len: 0,
            unflushed: false,
        }
    }

    /// Whether the connection is HTTP/1: anything but the HTTP/2 preface (a client that
    /// stalls within its first 4 bytes is HTTP/1 too).
    fn http1(&self) -> bool {
        self.start != *H2_PREFACE_START
    }

    /// While a request is in progress: makes sure the timer wakes this reader at most
    /// `keep_alive` from now. hyper does not read again after a response until data or a
    /// timer wakes it, so without this a connection that goes idle would not arm its idle
    /// timers. Re-armed only when the armed time passed or lies further out (once per
    /// `keep_alive` at most on a busy connection), never per request.
    fn wake_within_keep_alive(&mut self, cx: &mut Context<'_>) {
        let now = Instant::now();
        let latest = now + self.state.keep_alive;
        if self.armed_for.is_none_or(|d| d <= now || d > latest) {
            self.timer.as_mut().reset(latest.into());
            self.armed_for = Some(latest);
        }
        // Registers this task with the timer; an expiry now only means a look again.
        let _ = self.timer.as_mut().poll(cx);
    }

    fn note_start(&mut self, read: &[u8]) {
        let n = read.len().min(self.start.len() - self.start_len);
        self.start[self.start_len..self.start_len + n].copy_from_slice(&read[..n]);
        self.start_len += n;
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if this.start_len < this.start.len() {
                        this.note_start(&buf.filled()[before..]);
                    }
                    if this.state.waiting_first.swap(false, Ordering::AcqRel) {
                        let now = this.state.nanos(Instant::now());
                        this.state.first_byte.store(now, Ordering::Release);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some((deadline, expiry)) = this.state.idle_deadline(this.http1()) else {
                    this.wake_within_keep_alive(cx);
                    return Poll::Pending;
                };
                if this.armed_for != Some(deadline) {
                    this.timer.as_mut().reset(deadline.into());
                    this.armed_for = Some(deadline);
                }
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match expiry {
                    // End of file: hyper closes the connection quietly. Also when a response
                    // may still be half written: a 408 must not land inside it.
                    Expiry::Close => Poll::Ready(Ok(())),
                    Expiry::RequestTimeout if this.unflushed => Poll::Ready(Ok(())),
                    Expiry::RequestTimeout => {
                        // One attempt: the send buffer of a connection with no response in
                        // progress has room for a few hundred bytes; if not, only close.
                        let answer = request_timeout_answer();
                        if let Poll::Ready(Ok(n)) =
                            Pin::new(&mut this.inner).poll_write(cx, answer.as_bytes())
                        {
                            if n == answer.len() {
                                this.state.timed_out.store(true, Ordering::Release);
                            }
                            let _ = Pin::new(&mut this.inner).poll_shutdown(cx);
                        }
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "timeout http-request: the request head was not received in time",
                        )))
                    }
                }
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
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
