//! What the connection loop hands to hyper: one request ([`one`]), or the rest of the
//! connection ([`rest`]), and the web service as hyper calls it ([`ToHyper`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::BytesMut;
use http::header::CONNECTION;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use webfarm_node::tls::Peer;
use webfarm_node::Shutdown;

use super::replay::Replay;
use crate::app::WebService;

/// What became of a connection lent to hyper for one request.
pub(super) enum Lent<I> {
    /// Answered, every byte of the request read and of the answer written: the loop goes on.
    Back(I),
    /// The connection cannot carry another request: the answer said `Connection: close`
    /// or switched protocols, hyper left part of the request unread (a body the app
    /// answered without reading), so where the next request starts is unknown, or hyper
    /// failed (the client left, a head it refused after answering `400`).
    Close(I),
}

/// Has hyper answer the request of `len` bytes at the start of `buf` (the rest of its body
/// still unread on `io`), then takes the connection back.
///
/// hyper is run to its end, shutdown included: its shutdown flushes its write buffer before
/// the lent I/O's, which only flushes ([`Replay::lend`]). (Stopping it earlier, as
/// `without_shutdown` does, can leave the tail of a large answer in hyper's buffer.)
pub(super) async fn one<I>(io: I, buf: &mut BytesMut, len: u64, hyper: &ToHyper) -> Lent<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let have = usize::try_from(len).map_or(buf.len(), |len| len.min(buf.len()));
    let read = buf.split_to(have).freeze();
    // `have <= len`: what is still to come of the request on the socket.
    let replay = Replay::lend(read, io, len - have as u64);
    let service = hyper.for_one_request();
    let close = service.close.clone();
    let mut conn = hyper::server::conn::http1::Builder::new()
        // End-of-file after the request is where the loop takes over, not a client leaving
        // in the middle of an answer.
        .half_close(true)
        .serve_connection(TokioIo::new(replay), service);
    if let Err(e) = (&mut conn).await {
        // hyper may have answered (its own `400` to a target `http::Uri` refuses) before it
        // failed: the connection still closes the lingering way, so that unread bytes do
        // not reset it under that answer. A socket that failed fails that close at once.
        tracing::debug!(error = %e, "a request handed to hyper failed");
        return Lent::Close(conn.into_parts().io.into_inner().into_inner());
    }
    let parts = conn.into_parts();
    let replay = parts.io.into_inner();
    let whole = replay.is_spent() && parts.read_buf.is_empty();
    if whole && !close.load(Ordering::Relaxed) {
        Lent::Back(replay.into_inner())
    } else {
        Lent::Close(replay.into_inner())
    }
}

/// Hands the connection to hyper for the rest of its life (HTTP/1.1 and HTTP/2, as axum's
/// server does), replaying what the loop read; on shutdown, hyper's graceful close, once
/// hyper has read what the loop had already read (a request in it is answered first).
pub(super) async fn rest<I>(io: I, buf: BytesMut, hyper: &ToHyper, stop: &Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let replay = Replay::give(buf.freeze(), io);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(replay), hyper.clone());
    tokio::pin!(conn);
    tokio::select! {
        // The connection first: a stop that fired before this call must not cancel the
        // protocol detection of a request the loop already read.
        biased;
        _ = conn.as_mut() => return,
        () = stop.wait() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// The web service as hyper calls it: the caller's address and certificate names on each
/// request (`ConnectInfo<Peer>`, as on every other axum listener), and a note of an answer
/// that closes the connection.
#[derive(Clone)]
pub(super) struct ToHyper {
    pub(super) service: WebService,
    peer: Peer,
    close: Arc<AtomicBool>,
}

impl ToHyper {
    /// The service of one connection, from `peer`.
    pub(super) fn new(service: &WebService, peer: Peer) -> ToHyper {
        ToHyper {
            service: service.clone(),
            peer,
            close: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A copy with a note of its own, for one request lent to hyper.
    fn for_one_request(&self) -> ToHyper {
        ToHyper::new(&self.service, self.peer.clone())
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ToHyper {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer.clone()));
        let answer = tower::Service::call(&mut self.service.clone(), req);
        let close = self.close.clone();
        Box::pin(async move {
            let resp = answer.await?;
            if closes(&resp) {
                close.store(true, Ordering::Relaxed);
            }
            Ok(resp)
        })
    }
}

/// Whether an answer ends the connection's HTTP/1.1 requests: `Connection: close` (RFC 9112
/// §9.6), or `101 Switching Protocols`, after which hyper stops reading requests.
fn closes(resp: &Response) -> bool {
    resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
        || resp.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close")))
        })
}
