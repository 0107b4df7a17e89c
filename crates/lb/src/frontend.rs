//! A frontend's listener: the accept loop, one task per client connection (HTTP/1.1 with
//! keep-alive, or HTTP/2 with prior knowledge), and graceful shutdown.
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
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use webfarm_node::Shutdown;

use crate::proxy::Proxy;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

type ServerBuilder = auto::Builder<TokioExecutor>;

fn builder() -> ServerBuilder {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2().timer(TokioTimer::new());
    b
}

/// Serves `listener` until `shutdown` fires, then drains its connections for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let builder = Arc::new(builder());
    let name = proxy.frontend.clone();
    let mut conns = JoinSet::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(serve_connection(
                        builder.clone(),
                        stream,
                        peer,
                        proxy.clone(),
                        shutdown.clone(),
                    ));
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

async fn serve_connection(
    builder: Arc<ServerBuilder>,
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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
}
