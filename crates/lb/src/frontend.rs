//! A frontend's listener: the accept loop, connection limits (`maxconn`, per frontend and
//! global), one task per client connection (HTTP/1.1 with keep-alive and upgrades, HTTP/2
//! with prior knowledge, or TCP mode), and graceful shutdown.
//!
//! Over a limit, a new connection is accepted, answered `503` with the reason (HTTP mode)
//! or closed (TCP mode), so the client learns why at once instead of waiting in the
//! kernel's backlog.
//!
//! On shutdown the listener closes at once (new connections are refused), every connection
//! is told to finish: idle keep-alive connections close, a connection with a request in
//! flight closes after its response. The loop returns when the last connection ended, or
//! after the grace period, when the stragglers are cut.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use webfarm_config::{Frontend, Mode};
use webfarm_node::Shutdown;

use crate::access_log::emit_bad_request;
use crate::conn::{ConnIo, ConnState};
use crate::proxy::Proxy;
use crate::runtime::{ConnSlot, Runtime};

type ServerBuilder = auto::Builder<TokioExecutor>;

/// What a client connection needs of its frontend's configuration (copied, not cloned: no
/// allocation per connection).
#[derive(Debug, Clone, Copy)]
struct ConnSettings {
    /// `timeout http-keep-alive`.
    keep_alive: Duration,
    /// `timeout http-request`.
    http_request: Duration,
    /// `max_header_size`, bytes.
    max_header_size: usize,
}

impl ConnSettings {
    fn of(fe: &Frontend) -> ConnSettings {
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
fn builder(fe: ConnSettings) -> ServerBuilder {
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

/// Serves frontend `index` on `listener` until `shutdown` fires, then drains its
/// connections for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    rt: Arc<Runtime>,
    index: usize,
    shutdown: Shutdown,
    grace: Duration,
) {
    let name = rt
        .snapshot()
        .frontends
        .get(index)
        .map_or_else(String::new, |f| f.config.name.clone());
    let proxy = Arc::new(Proxy {
        rt: rt.clone(),
        index,
    });
    let mut conns = JoinSet::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let snap = rt.snapshot();
                    let Some(fe) = snap.frontends.get(index) else { continue };
                    let mode = fe.config.mode;
                    let settings = ConnSettings::of(&fe.config);
                    match rt.admit(index) {
                        None => {
                            tracing::warn!(
                                "frontend {name}: connection from {peer} refused: maxconn reached \
                                 ({} on this frontend, {} in all)",
                                rt.frontend_conns[index].load(std::sync::atomic::Ordering::Relaxed),
                                rt.conns.load(std::sync::atomic::Ordering::Relaxed),
                            );
                            conns.spawn(reject(stream, mode));
                        }
                        Some(slot) => match mode {
                            Mode::Http => {
                                conns.spawn(serve_http(settings, stream, peer, proxy.clone(), shutdown.clone(), slot));
                            }
                            Mode::Tcp => {
                                conns.spawn(crate::tcp::serve(rt.clone(), index, stream, peer, shutdown.clone(), slot));
                            }
                        },
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("frontend {name}: accept failed: {e}");
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        "frontend {name}: stopped accepting; finishing {} open connection(s)",
        conns.len()
    );
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "frontend {name}: {} connection(s) still busy after {grace:?}; closing them",
            conns.len()
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Answers a connection over `maxconn`: a `503` in HTTP mode, a plain close in TCP mode.
async fn reject(mut stream: TcpStream, mode: Mode) {
    if mode == Mode::Http {
        let body = "503 Service Unavailable: too many connections (maxconn reached); retry later\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what the client sent so that closing does not reset the connection
            // before it read the answer.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    }
}

async fn serve_http(
    fe: ConnSettings,
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    slot: ConnSlot,
) {
    let _ = stream.set_nodelay(true);
    let state = ConnState::new(fe.keep_alive, fe.http_request);
    let io = ConnIo::new(stream, state.clone());
    let log_to = proxy.clone();
    let conn_state = state.clone();
    let service = service_fn(move |req| {
        // Counted in progress at once, not at the handler's first poll, so the connection's
        // request timer never fires for a head hyper has already parsed.
        let begun = state.begin();
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, peer, begun).await) }
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
        let snap = log_to.rt.snapshot();
        if let Some(fe) = snap.frontends.get(log_to.index) {
            // `cR`: the client's timeout, while the proxy waited for its request.
            let (format, name) = (snap.farm.lb.access_log, fe.config.name.as_str());
            emit_bad_request(format, peer, name, (408, bytes), ta, "cR");
        }
    }
    drop(slot);
}
