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

pub(crate) mod tls;
pub(crate) mod workers;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use webfarm_config::Mode;
use webfarm_node::Shutdown;

use crate::acl::{self, ConnVerdict};
use crate::control::live::LiveConfig;
use crate::http::{ConnSettings, Proxy};

/// Serves frontend `index` on `listener` until `shutdown` fires, then drains its
/// connections for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    live: Arc<LiveConfig>,
    index: usize,
    shutdown: Shutdown,
    grace: Duration,
) {
    serve_until(listener, live, index, shutdown.clone(), shutdown, grace).await;
}

/// As [`serve`], but the listener also closes when `release` fires (a VRRP master giving up
/// a VIP): the connections it accepted go on until they end or the node shuts down.
pub(crate) async fn serve_until(
    listener: TcpListener,
    live: Arc<LiveConfig>,
    index: usize,
    shutdown: Shutdown,
    release: Shutdown,
    grace: Duration,
) {
    let name = live
        .snapshot()
        .frontends
        .get(index)
        .map_or_else(String::new, |f| f.config.name.clone());
    let proxy = Arc::new(Proxy::new(live.clone(), index));
    let mut conns = JoinSet::new();
    let stop = async {
        tokio::select! {
            _ = shutdown.wait() => {}
            _ = release.wait() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let snap = live.snapshot();
                    let Some(fe) = snap.frontends.get(index) else { continue };
                    let mode = fe.config.mode;
                    let settings = ConnSettings::of(&fe.config);
                    // `tcp-request connection` rules: before anything is read, TLS included.
                    let sc0 = match acl::connection(&fe.config.rules, peer.ip(), fe.table.as_ref()) {
                        ConnVerdict::Reject => {
                            refused(&live, index, &name, peer);
                            continue;
                        }
                        ConnVerdict::Accept(sc0) => sc0,
                    };
                    match live.admit(index, sc0) {
                        None => {
                            tracing::warn!(
                                "frontend {name}: connection from {peer} refused: maxconn reached \
                                 ({} on this frontend, {} in all)",
                                live.frontend_conns[index].load(std::sync::atomic::Ordering::Relaxed),
                                live.conns.load(std::sync::atomic::Ordering::Relaxed),
                            );
                            conns.spawn(reject(stream, mode));
                        }
                        Some(slot) => match mode {
                            Mode::Http => match live.tls.by_index.get(index).cloned().flatten() {
                                Some(tls) => {
                                    conns.spawn(crate::http::serve_tls(settings, stream, peer, proxy.clone(), shutdown.clone(), slot, tls));
                                }
                                None => {
                                    let _ = stream.set_nodelay(true);
                                    conns.spawn(crate::http::serve(settings, stream, crate::http::ClientConn::plain(peer), proxy.clone(), shutdown.clone(), slot));
                                }
                            },
                            Mode::Tcp => {
                                conns.spawn(crate::tcp::serve(live.clone(), index, stream, peer, shutdown.clone(), slot));
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
    if !shutdown.is_triggered() {
        // Released, not shutting down: accepted connections run to their end.
        tokio::select! {
            _ = shutdown.wait() => {}
            _ = async { while conns.join_next().await.is_some() {} } => return,
        }
    }
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

/// Counts a connection a `tcp-request connection reject` rule closed (HAProxy logs none;
/// webfarm says it at debug level).
fn refused(live: &LiveConfig, index: usize, name: &str, peer: std::net::SocketAddr) {
    if let Some(m) = live.frontend_metrics.get(index) {
        m.denied_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::debug!("frontend {name}: connection from {peer} rejected by tcp-request connection");
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
