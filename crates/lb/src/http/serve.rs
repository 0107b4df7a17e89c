//! A client connection in HTTP mode: hyper's server (HTTP/1.1 with keep-alive and
//! upgrades, HTTP/2 with prior knowledge or by ALPN over TLS) over the socket wrapper of
//! [`super::conn`], each request handed to [`Proxy::handle`], graceful close on shutdown.
//! On a TLS frontend the handshake comes first ([`serve_tls`]), bounded by `timeout
//! http-request`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use webfarm_config::Frontend;
use webfarm_node::Shutdown;

use super::conn::{ConnIo, ConnState};
use super::Proxy;
use crate::access_log::emit_bad_request;
use crate::acl::{EntryRef, Tracked};
use crate::control::live::ConnSlot;
use crate::frontend::tls::TlsFrontend;
use crate::termination::{EndedBy, Phase, Termination};

type ServerBuilder = auto::Builder<TokioExecutor>;

/// What a client connection needs of its frontend's configuration (copied, not cloned: no
/// allocation per connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    /// `timeout http-keep-alive`.
    keep_alive: Duration,
    /// `timeout http-request`.
    http_request: Duration,
    /// `max_header_size`, bytes.
    max_header_size: usize,
}

impl ConnSettings {
    /// The settings of frontend `fe`.
    pub fn of(fe: &Frontend) -> ConnSettings {
        ConnSettings {
            keep_alive: fe.timeout.http_keep_alive,
            http_request: fe.timeout.http_request,
            max_header_size: fe.max_header_size,
        }
    }
}

/// The HTTP server settings of a frontend: `max_header_size` as hyper's read buffer limit
/// (431 past it). hyper's header read timeout is off: `timeout http-request` is the socket
/// wrapper's (`conn`), which answers 408.
pub(super) fn builder(fe: ConnSettings) -> ServerBuilder {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(fe.max_header_size);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(fe.max_header_size).unwrap_or(u32::MAX));
    b
}

/// What a request knows of its client connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientConn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The TLS session, on a TLS frontend.
    pub tls: Option<TlsInfo>,
    /// The server name of the TLS ClientHello (`ssl_fc_sni`), on a TLS frontend.
    pub sni: Option<Arc<str>>,
    /// The stick-table entry the connection tracks (`tcp-request connection track-sc0`).
    pub sc0: Option<EntryRef>,
}

impl ClientConn {
    /// A plain-TCP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> ClientConn {
        ClientConn {
            peer,
            tls: None,
            sni: None,
            sc0: None,
        }
    }
}

/// A connection's TLS session, for the headers sent to servers and the access log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2` (HAProxy's `%sslv`).
    pub version: &'static str,
    /// The cipher suite's IANA name (`%sslc`).
    pub cipher: &'static str,
    /// Accept to handshake done (HAProxy's `%Th`).
    pub handshake: Duration,
    /// Whether the session was resumed (`ssl_fc_is_resumed`).
    pub resumed: bool,
}

/// Serves a connection of a TLS frontend: the handshake (within `timeout http-request`;
/// a failure is counted and the connection closed), then HTTP as [`serve`] does, h2 or
/// HTTP/1.1 as ALPN chose.
pub(crate) async fn serve_tls(
    fe: ConnSettings,
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    slot: ConnSlot,
    tls: Arc<TlsFrontend>,
) {
    let _ = stream.set_nodelay(true);
    let begun = Instant::now();
    let handshake = tokio::select! {
        r = tokio::time::timeout(fe.http_request, tls.acceptor.accept(stream)) => r,
        _ = shutdown.wait() => return,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tls.handshake_failed(peer, &e),
        Err(_) => {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out");
            return tls.handshake_failed(peer, &e);
        }
    };
    let session = stream.get_ref().1;
    let (version, cipher) = webfarm_tls::server::describe(session);
    let info = TlsInfo {
        version,
        cipher,
        handshake: begun.elapsed(),
        resumed: session.handshake_kind() == Some(webfarm_tls::rustls::HandshakeKind::Resumed),
    };
    let conn = ClientConn {
        peer,
        tls: Some(info),
        sni: session.server_name().map(Arc::from),
        sc0: None,
    };
    serve(fe, stream, conn, proxy, shutdown, slot).await;
}

/// Serves one client connection of the frontend of `proxy` until it closes or `shutdown`
/// fires (then gracefully: a request in flight finishes), holding its admission `slot`.
/// The caller set `TCP_NODELAY` on the socket.
pub(crate) async fn serve<S>(
    fe: ConnSettings,
    stream: S,
    client: ClientConn,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    slot: ConnSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.peer;
    let mut client = client;
    client.sc0 = slot.sc0.as_ref().map(Tracked::entry_ref);
    let state = ConnState::new(fe.keep_alive, fe.http_request);
    let io = ConnIo::new(stream, state.clone());
    let log_to = proxy.clone();
    let conn_state = state.clone();
    let service = service_fn(move |req| {
        // Counted in progress at once, not at the handler's first poll, so the connection's
        // request timer never fires for a head hyper has already parsed.
        let begun = state.begin();
        let (proxy, client) = (proxy.clone(), client.clone());
        async move { Ok::<_, Infallible>(proxy.handle(req, client, begun).await) }
    });
    let builder = builder(fe);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = shutdown.wait() => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("client connection from {peer} ended: {e}");
    }
    if let Some((bytes, ta)) = conn_state.request_timed_out() {
        if let Some(m) = log_to.live.frontend_metrics.get(log_to.index) {
            m.request_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let snap = log_to.live.snapshot();
        if let Some(fe) = snap.frontends.get(log_to.index) {
            // `cR`: the client's timeout, while the proxy waited for its request.
            let (format, name) = (snap.farm.lb.access_log, fe.config.name.as_str());
            let termination = Termination::new(EndedBy::ClientTimeout, Phase::Request);
            emit_bad_request(format, peer, name, (408, bytes), ta, termination);
        }
    }
    drop(slot);
}
