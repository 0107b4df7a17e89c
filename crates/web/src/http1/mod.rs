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
//!   a `Content-Length` one goes to hyper alone ([`Parsed::One`], [`to_hyper::one`]):
//!   hyper reads exactly that request's bytes (what the loop read, then the socket up to
//!   the end of the body, then end-of-file), answers it, and gives the connection back;
//! - everything else goes to hyper for the rest of the connection ([`Parsed::Rest`],
//!   [`to_hyper::rest`]): HTTP/1.0, `Connection: close`, `CONNECT`, chunked bodies,
//!   upgrades, an HTTP/2 preface, a head that does not parse (hyper answers `400`) or
//!   that is longer than [`MAX_HEAD`] (hyper reads it within its own limits).
//!
//! Pipelined requests are answered in order: the loop answers what its buffer holds before
//! it reads again, and hyper never reads past the request it was handed. On shutdown a
//! connection finishes the request in progress and closes; an idle one closes at once. The
//! loop closes the connections it holds as nginx's lingering close does ([`close`]); one
//! given to hyper for good closes through hyper's own shutdown.

mod replay;
mod to_hyper;
pub(crate) mod wire;

use std::future::Future;
use std::io::{self, IoSlice};
use std::time::Duration;

use axum::serve::Listener;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use webfarm_node::tls::Peer;
use webfarm_node::Shutdown;

use crate::app::WebService;
use crate::file_cache::Prepared;
use to_hyper::{Lent, ToHyper};
use wire::Parsed;

/// The read buffer's first size (bytes).
const READ_BUF: usize = 8 * 1024;
/// The longest head the loop waits for (bytes); a longer one goes to hyper, which reads
/// it within its own limits (about 400 KiB; past them it answers `431`).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long a closing connection waits for the client's end ([`close`]).
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes a closing connection reads and discards ([`close`]).
const LINGER_BYTES: usize = 1024 * 1024;

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
    L: Listener<Addr = Peer>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (trigger, stop) = Shutdown::new();
    let mut conns = JoinSet::new();
    tokio::pin!(until);
    loop {
        tokio::select! {
            (io, peer) = listener.accept() => {
                let hyper = ToHyper::new(&service, peer);
                conns.spawn(connection(io, hyper, stop.clone()));
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
async fn connection<I>(mut io: I, hyper: ToHyper, stop: Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::with_capacity(512);
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        let lend = match wire::parse(&buf) {
            Parsed::Partial if buf.len() < MAX_HEAD => {
                if buf.capacity() - buf.len() < READ_BUF / 2 {
                    // Reclaims the front of the buffer, or grows it, once, not by the few
                    // bytes `read_buf` would add to a full one.
                    buf.reserve(READ_BUF);
                }
                let read = tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => read,
                    () = &mut stopped => return close(io).await,
                };
                match read {
                    Ok(n) if n > 0 => continue,
                    // The client left (or the socket failed): nothing more to say.
                    _ => return,
                }
            }
            Parsed::Plain(req) => match hyper.service.answer_plain(&req) {
                Some(answer) => {
                    let len = req.len;
                    buf.advance(len);
                    if write_answer(&mut io, &mut out, &answer).await.is_err() {
                        return;
                    }
                    None
                }
                None => Some(req.len as u64),
            },
            Parsed::One { len } => Some(len),
            Parsed::Partial | Parsed::Rest => {
                return to_hyper::rest(io, buf, &hyper, &stop).await;
            }
        };
        if let Some(len) = lend {
            io = match to_hyper::one(io, &mut buf, len, &hyper).await {
                Lent::Back(io) => io,
                Lent::Close(io) => return close(io).await,
            };
        }
        if stop.is_triggered() {
            return close(io).await;
        }
    }
}

/// Closes a connection as nginx's lingering close does: sends the end (`close_notify` first
/// on TLS, then FIN), then reads and discards what the client still sends until it closes
/// too, for at most [`LINGER`] and [`LINGER_BYTES`]. Closing a socket with unread bytes
/// makes the kernel answer with a reset, which can destroy the last answer still in
/// flight to the client.
async fn close<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    let linger = async {
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match io.read(&mut sink).await? {
                0 => break,
                n => discarded += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
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

#[cfg(test)]
mod tests;
