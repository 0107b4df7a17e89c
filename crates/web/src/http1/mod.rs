//! A web node's connections: HTTP/1.1 requests for cached static files answered by a loop of
//! our own from prepared bytes, every other request handed to hyper.
//!
//! hyper turns each request into an `http::Request` (its `HeaderMap`, `Uri`, extensions)
//! and each answer into bytes again: for a cached file, about as much work as the rest of
//! the request, and what kept the web role below nginx's rate (crates/web/DESIGN.md).
//! The loop reads the head with `httparse` (hyper's own parser) and, for a `GET` or `HEAD`
//! of HTTP/1.1 with no body that the file cache answers, writes the answer's prepared head
//! (made when the file entered the cache), `Date`, and the body (`sendfile(2)` for large
//! ones on a plain connection). Nothing of HTTP's framing is decided here beyond that:
//!
//! - any other request of HTTP/1.1 that keeps the connection open and carries no body or
//!   a `Content-Length` one goes to hyper alone ([`Parsed::One`]): hyper reads exactly that
//!   request's bytes (a [`Replay`] of what the loop read, then the socket up to the end of
//!   the body, then end-of-file), answers it, and gives the connection back;
//! - everything else goes to hyper for the rest of the connection ([`Parsed::Rest`]):
//!   HTTP/1.0, `Connection: close`, chunked bodies, upgrades, an HTTP/2 preface, a head
//!   that does not parse or is longer than [`MAX_HEAD`] (hyper answers `400` or `431`).
//!
//! Pipelined requests are answered in order: the loop answers what its buffer holds before
//! it reads again, and hyper never reads past the request it was handed. On shutdown a
//! connection finishes the request in progress and closes; an idle one closes at once.

mod replay;
pub(crate) mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use axum::serve::Listener;
use bytes::{Buf, BytesMut};
use http::header::CONNECTION;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use webfarm_node::Shutdown;

use crate::app::WebService;
use crate::file_cache::Prepared;
use replay::Replay;
use wire::Parsed;

/// The read buffer's first size (bytes).
const READ_BUF: usize = 8 * 1024;
/// The longest head the loop waits for (bytes); a longer one goes to hyper, whose own
/// limit answers `431`.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Serves `service` on `listener` until `until` completes, then lets every connection
/// finish its request in progress and returns once all have closed.
///
/// # Errors
/// None today: accept errors are retried by the listener (axum's `Listener`); the type is
/// that of the node's other servers.
pub(crate) async fn serve<L>(
    mut listener: L,
    service: WebService,
    until: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (trigger, stop) = Shutdown::new();
    let mut conns = JoinSet::new();
    tokio::pin!(until);
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                conns.spawn(connection(io, service.clone(), stop.clone()));
            }
            Some(ended) = conns.join_next(), if !conns.is_empty() => log_panic(ended),
            () = &mut until => break,
        }
    }
    drop(listener);
    trigger.trigger();
    while let Some(ended) = conns.join_next().await {
        log_panic(ended);
    }
    Ok(())
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "a web connection's task failed");
    }
}

/// One connection, to its end.
async fn connection<I>(mut io: I, service: WebService, stop: Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::with_capacity(512);
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        match wire::parse(&buf) {
            Parsed::Partial if buf.len() < MAX_HEAD => {
                if buf.capacity() - buf.len() < READ_BUF / 2 {
                    // Reclaims the front of the buffer, or grows it, once, not by the few
                    // bytes `read_buf` would add to a full one.
                    buf.reserve(READ_BUF);
                }
                let read = tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => read,
                    () = &mut stopped => return,
                };
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                continue;
            }
            Parsed::Plain(req) => {
                if let Some(answer) = service.answer_plain(&req) {
                    let len = req.len;
                    buf.advance(len);
                    if write_answer(&mut io, &mut out, &answer).await.is_err() {
                        return;
                    }
                } else {
                    let len = req.len as u64;
                    io = match one_request(io, &mut buf, len, &service).await {
                        Some(io) => io,
                        None => return,
                    };
                }
            }
            Parsed::One { len } => {
                io = match one_request(io, &mut buf, len, &service).await {
                    Some(io) => io,
                    None => return,
                };
            }
            Parsed::Partial | Parsed::Rest => {
                return hand_over(io, buf, service, stop.clone()).await
            }
        }
        if stop.is_triggered() {
            return;
        }
    }
}

/// Writes a prepared answer: its head, `Date`, and its body, small ones in the same write.
async fn write_answer<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    answer: &Prepared,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&answer.head);
    wire::push_date_and_end(out);
    let body = match &answer.body {
        Some(body) if body.len() < webfarm_node::sendfile::MIN_SENDFILE => {
            out.extend_from_slice(body);
            &[][..]
        }
        Some(body) => &body[..],
        None => &[][..],
    };
    write_all(io, out, body).await?;
    io.flush().await
}

/// Writes `head` then `body` with vectored writes, so that a connection that sends file
/// copies with `sendfile(2)` ([`webfarm_node::sendfile::Stream`]) sees the body's slice.
async fn write_all<I: AsyncWrite + Unpin>(
    io: &mut I,
    mut head: &[u8],
    mut body: &[u8],
) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        let from = usize::from(head.is_empty());
        let to = if body.is_empty() { 1 } else { 2 };
        let n = io.write_vectored(&slices[from..to]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let of_head = n.min(head.len());
        head = &head[of_head..];
        body = &body[n - of_head..];
    }
    Ok(())
}

/// Has hyper answer the request of `len` bytes at the start of `buf` (the rest of its body
/// still unread on `io`), then gives back the connection, or `None` if it must close: hyper
/// failed, the answer closes it (`Connection: close`), or hyper did not read the whole
/// request (a body the app answered without reading).
async fn one_request<I>(io: I, buf: &mut BytesMut, len: u64, service: &WebService) -> Option<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let have = usize::try_from(len).map_or(buf.len(), |len| len.min(buf.len()));
    let read = buf.split_to(have).freeze();
    let replay = Replay::new(read, io, len - have as u64);
    let to_hyper = ToHyper::new(service);
    let close = to_hyper.close.clone();
    let parts = hyper::server::conn::http1::Builder::new()
        // End-of-file after the request is where the loop takes over, not a client leaving
        // in the middle of an answer.
        .half_close(true)
        .serve_connection(TokioIo::new(replay), to_hyper)
        .without_shutdown()
        .await
        .ok()?;
    let replay = parts.io.into_inner();
    let whole = replay.is_spent() && parts.read_buf.is_empty();
    (whole && !close.load(Ordering::Relaxed)).then(|| replay.into_inner())
}

/// Hands the connection to hyper for the rest of its life (HTTP/1.1 and HTTP/2, as axum's
/// server does), replaying what the loop read; on shutdown, hyper's graceful close.
async fn hand_over<I>(io: I, buf: BytesMut, service: WebService, stop: Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let replay = Replay::new(buf.freeze(), io, u64::MAX);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(replay), ToHyper::new(&service));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop.wait() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// The web service as hyper calls it, noting an answer that closes the connection.
#[derive(Clone)]
struct ToHyper {
    service: WebService,
    close: Arc<AtomicBool>,
}

impl ToHyper {
    fn new(service: &WebService) -> ToHyper {
        ToHyper {
            service: service.clone(),
            close: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ToHyper {
    type Response = Response;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let answer = tower::Service::call(&mut self.service.clone(), req.map(Body::new));
        let close = self.close.clone();
        Box::pin(async move {
            let resp = answer.await?;
            let closes = resp.headers().get_all(CONNECTION).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close")))
            });
            if closes {
                close.store(true, Ordering::Relaxed);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests;
