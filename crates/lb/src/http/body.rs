//! Streamed bodies with side effects.
//!
//! - [`RequestBody`]: a client's request body on its way upstream. Tells when it was sent
//!   in full (the response timeout starts then), enforces the frontend's `max_body_size`
//!   and `timeout client` (no byte from the client for that long), and records why it
//!   failed so the proxy answers 413 or 408 instead of 502.
//! - [`ResponseBody`]: any response on its way to the client. Keeps the request's server
//!   slot and connection counted until it ends, counts the bytes, gives the upstream
//!   connection back to its pool when it ends normally, and writes the access log line when
//!   it ends or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::access_log::LogRecord;
use crate::attempt::BodyFailure;
use crate::backend::pool::{BoxError, Pooled, ProxyBody};
use crate::backend::server::{ActiveRequest, ServerState};
use crate::http::conn::ConnGuard;
use crate::metrics::Tally;
use crate::termination::{EndedBy, Phase, Termination};

/// Shared between a [`RequestBody`] and the proxy: what happened to the body, and how many
/// bytes of it were read (for `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct BodyState(AtomicU8, AtomicU64);

impl BodyState {
    /// The body's bytes read from the client so far.
    pub fn read(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    fn set(&self, f: BodyFailure) {
        let v = match f {
            BodyFailure::TooLarge => 1,
            BodyFailure::ClientTimeout => 2,
            BodyFailure::ClientAbort => 3,
        };
        self.0.store(v, Ordering::Release);
    }

    /// The failure, if the body failed.
    pub fn get(&self) -> Option<BodyFailure> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(BodyFailure::TooLarge),
            2 => Some(BodyFailure::ClientTimeout),
            3 => Some(BodyFailure::ClientAbort),
            _ => None,
        }
    }
}

/// A client's request body on its way upstream.
pub(crate) struct RequestBody {
    inner: Incoming,
    sent: watch::Sender<bool>,
    limit: u64,
    read: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    state: Arc<BodyState>,
}

impl RequestBody {
    /// Wraps `inner`: at most `limit` bytes (0: no limit), at most `idle` between two
    /// frames. The receiver turns `true` once the body was read in full or failed.
    pub fn new(
        inner: Incoming,
        limit: u64,
        idle: Duration,
    ) -> (RequestBody, watch::Receiver<bool>, Arc<BodyState>) {
        let (sent, rx) = watch::channel(false);
        let state = Arc::new(BodyState::default());
        let body = RequestBody {
            inner,
            sent,
            limit,
            read: 0,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            state: state.clone(),
        };
        (body, rx, state)
    }

    fn fail(
        &mut self,
        f: BodyFailure,
        text: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state.set(f);
        self.sent.send_replace(true);
        Poll::Ready(Some(Err(text.into())))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    this.state.1.store(this.read, Ordering::Relaxed);
                    if this.limit != 0 && this.read > this.limit {
                        let limit = this.limit;
                        return this.fail(
                            BodyFailure::TooLarge,
                            format!("request body larger than max_body_size ({limit} bytes)"),
                        );
                    }
                }
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.sent.send_replace(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(BodyFailure::ClientAbort, format!("client body failed: {e}"))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let idle = this.idle;
                    return this.fail(
                        BodyFailure::ClientTimeout,
                        format!("client sent no body byte for {idle:?} (timeout client)"),
                    );
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a [`ResponseBody`] streams.
pub(crate) enum Inner {
    /// A server's body, as hyper gives it (no second box on the hot path).
    Upstream(Incoming),
    /// A local answer's body.
    Local(ProxyBody),
}

impl Inner {
    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Local(b) => b.is_end_stream(),
        }
    }
}

/// What a response's end records: the access-log line and the request's metrics.
#[derive(Default)]
pub(crate) struct Ending {
    /// The access-log record, if a line is written.
    pub log: Option<LogRecord>,
    /// The request's share of the counters.
    pub tally: Option<Tally>,
    /// The request body's state, for its byte count.
    pub request_body: Option<Arc<BodyState>>,
    /// The stick-table entry the request tracks (`http-request track-sc0`): counted in
    /// `conn_cur` until the response ends.
    pub sc0: Option<crate::acl::Tracked>,
}

impl Ending {
    /// Records the metrics of a request answered by `server` (if any) after `bytes_out`
    /// response bytes, and writes the access line.
    pub fn finish(self, server: Option<&ServerState>, bytes_out: u64) {
        if let Some(tally) = self.tally {
            let bytes_in = self.request_body.as_ref().map_or(0, |b| b.read());
            tally.finish(server, (bytes_in, bytes_out));
        }
        if let Some(log) = self.log {
            log.emit();
        }
        // The request's tracking (`conn_cur`) ends with its response.
        drop(self.sc0);
    }
}

/// A response on its way to the client.
pub(crate) struct ResponseBody {
    inner: Inner,
    slot: Option<ActiveRequest>,
    end: Option<Ending>,
    guard: Option<ConnGuard>,
    upstream: Option<Pooled>,
    bytes: u64,
    done: bool,
}

impl ResponseBody {
    /// Wraps `inner`; `slot` (the server's), `guard` (the client connection's) and the
    /// ending (log record, metrics) live until the body ends or is dropped; `upstream` (the
    /// server connection) goes back to its pool if the body ends normally.
    pub fn new(
        inner: Inner,
        slot: Option<ActiveRequest>,
        end: Option<Ending>,
        guard: Option<ConnGuard>,
        upstream: Option<Pooled>,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            slot,
            end,
            guard,
            upstream,
            bytes: 0,
            done: false,
        }
    }

    /// A local answer's body with nothing attached.
    pub fn local(body: ProxyBody) -> ResponseBody {
        ResponseBody::new(Inner::Local(body), None, None, None, None)
    }

    /// `termination`: `None` when the body ended normally.
    fn finish(&mut self, termination: Option<Termination>) {
        self.done = true;
        if let Some(conn) = self.upstream.take() {
            if termination.is_none() {
                conn.release();
            }
        }
        if let Some(mut end) = self.end.take() {
            if let Some(log) = end.log.as_mut() {
                log.bytes = self.bytes;
                if let Some(t) = termination {
                    log.termination = t;
                }
            }
            end.finish(self.slot.as_ref().map(|s| &**s.server()), self.bytes);
        }
        self.slot = None;
        self.guard = None;
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| -> BoxError { Box::new(e) }),
            Inner::Local(b) => Pin::new(b).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let server = this
                    .slot
                    .as_ref()
                    .map_or("?", |s| s.server().id.as_str())
                    .to_string();
                tracing::warn!("server {server} failed while sending the response body: {e}");
                this.finish(Some(Termination::new(EndedBy::Server, Phase::Data)));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Local(b) => b.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.done {
            // hyper drops a body it knows is empty without polling it; anything else
            // dropped early means the client went away.
            let normal = self.inner.is_end_stream();
            self.finish((!normal).then_some(Termination::new(EndedBy::Client, Phase::Data)));
        }
    }
}
