//! The node's event-loop threads (`[lb] threads`, HAProxy's `nbthread`).
//!
//! Each thread runs its own single-threaded tokio runtime and serves every frontend: it
//! accepts on its own clone of each listening socket (the kernel wakes the threads waiting
//! on it and one of them gets each connection, as nginx's workers do without
//! `accept_mutex`), serves the connections it accepted to the end, and opens and reuses its
//! own upstream connections (its shard of each pool, see `pool`). A request therefore never
//! leaves the thread that accepted it, unlike on a work-stealing runtime, where the client
//! connection, the upstream connection and the request could each run on another worker.
//!
//! The listening sockets are cloned, not bound again with `SO_REUSEPORT`: a second process
//! binding the same port still fails with "address in use" instead of quietly getting a
//! share of the connections.
//!
//! Shared state (snapshot, servers' counters and health, queues) is in `LiveConfig` behind
//! `Arc`s and atomics, as for a multi-threaded runtime; health checks, the admin routes and
//! the idle-connection reaper stay on the node's own runtime.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use webfarm_node::Shutdown;

use crate::backend::pool;
use crate::control::live::LiveConfig;
use crate::frontend;

/// Starts `threads` event-loop threads named `lb-worker-K`, each serving every listener of
/// `listeners` (frontend index, socket) until `shutdown` fires. Returns once every thread
/// runs its event loop, with, per thread, a task of the caller's runtime that ends when the
/// thread ended (with the thread's panic, if it panicked).
///
/// # Errors
///
/// A socket, runtime or thread that could not be created (descriptor or thread limit, out
/// of memory). The threads already started are then stopped and joined before this returns,
/// so nothing is left serving.
pub(crate) async fn start(
    threads: usize,
    listeners: &[(usize, StdListener)],
    live: &Arc<LiveConfig>,
    shutdown: &Shutdown,
    grace: Duration,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    // The threads stop on the node's shutdown, or on this function's own when a later
    // thread fails to start.
    let (abort, stop) = Shutdown::new();
    let node_stop = shutdown.clone();
    let abort = Arc::new(abort);
    let forward = {
        let abort = abort.clone();
        tokio::spawn(async move {
            node_stop.wait().await;
            abort.trigger();
        })
    };
    let mut handles = Vec::with_capacity(threads);
    for k in 0..threads {
        match start_one(k, listeners, live, &stop, grace).await {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                abort.trigger();
                for h in handles {
                    let _ = h.await;
                }
                forward.abort();
                return Err(e);
            }
        }
    }
    Ok(handles)
}

/// Starts thread `k`; returns once its runtime is built and it serves.
async fn start_one(
    k: usize,
    listeners: &[(usize, StdListener)],
    live: &Arc<LiveConfig>,
    stop: &Shutdown,
    grace: Duration,
) -> std::io::Result<JoinHandle<()>> {
    let own = listeners
        .iter()
        .map(|(index, l)| Ok((*index, l.try_clone()?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (live, stop) = (live.clone(), stop.clone());
    let (started, built) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("lb-worker-{k}"))
        .spawn(move || {
            // Built here, not by the caller: a runtime must not be dropped (as it would be
            // if the spawn failed) inside the caller's async context.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            pool::set_shard(k);
            runtime.block_on(serve(own, live, stop, grace));
        })?;
    let joined = tokio::task::spawn_blocking(move || {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    });
    match built.await {
        Ok(Ok(())) => Ok(joined),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(format!(
            "lb-worker-{k} ended before it started"
        ))),
    }
}

/// One thread's work: every frontend on its own clone of the listener, until shutdown and
/// the drain are over.
async fn serve(
    listeners: Vec<(usize, StdListener)>,
    live: Arc<LiveConfig>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let mut frontends = JoinSet::new();
    for (index, listener) in listeners {
        match TcpListener::from_std(listener) {
            Ok(l) => {
                frontends.spawn(frontend::serve(
                    l,
                    live.clone(),
                    index,
                    shutdown.clone(),
                    grace,
                ));
            }
            // Registering with this thread's event loop failed (epoll out of memory): the
            // node keeps serving this frontend on its other threads.
            Err(e) => tracing::error!("an lb thread cannot serve frontend #{index}: {e}"),
        }
    }
    while let Some(ended) = frontends.join_next().await {
        if let Err(e) = ended {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
