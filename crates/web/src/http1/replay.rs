//! The connection as hyper sees it when the loop hands it a request: the bytes the loop
//! already read, then the socket, up to a limit past which reads see end-of-file.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, Take};

/// A connection's I/O that first reads `read` (bytes the loop took from the socket), then
/// at most a limit of further bytes from the socket. Writes go to the socket as they are
/// (vectored writes too, so `sendfile` still applies).
#[derive(Debug)]
pub(crate) struct Replay<I> {
    read: Bytes,
    io: Take<I>,
    /// Lent for one request: hyper's shutdown only flushes, the loop keeps the socket.
    lent: bool,
}

impl<I: AsyncRead + Unpin> Replay<I> {
    /// `io` lent to hyper for one request of `limit` more bytes after `read`: end-of-file
    /// after them, and a shutdown that only flushes (hyper flushes its own buffer first, so
    /// every byte of the answer is on the socket when hyper is done).
    pub(crate) fn lend(read: Bytes, io: I, limit: u64) -> Replay<I> {
        Replay {
            read,
            io: io.take(limit),
            lent: true,
        }
    }

    /// `io` given to hyper for good, `read` first: no limit, hyper's shutdown is the socket's.
    pub(crate) fn give(read: Bytes, io: I) -> Replay<I> {
        Replay {
            read,
            io: io.take(u64::MAX),
            lent: false,
        }
    }

    /// Whether every byte before the limit was read: nothing replayed or allowed is left.
    pub(crate) fn is_spent(&self) -> bool {
        self.read.is_empty() && self.io.limit() == 0
    }

    /// The socket.
    pub(crate) fn into_inner(self) -> I {
        self.io.into_inner()
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().io.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().io.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let io = Pin::new(this.io.get_mut());
        if this.lent {
            io.poll_flush(cx)
        } else {
            io.poll_shutdown(cx)
        }
    }
}
