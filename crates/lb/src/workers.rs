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
//! Shared state (snapshot, servers' counters and health, queues) is in `Runtime` behind
//! `Arc`s and atomics, as for a multi-threaded runtime; health checks, the admin routes and
//! the idle-connection reaper stay on the node's own runtime.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use webfarm_node::Shutdown;

use crate::runtime::Runtime;
use crate::{frontend, pool};

/// How many event-loop threads `[lb] threads = configured` means: `configured`, or one per
/// CPU this process may run on when 0.
pub(crate) fn count(configured: u16) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => usize::from(n),
    }
}

/// Starts `threads` event-loop threads named `lb-worker-K`, each serving every listener of
/// `listeners` (frontend index, socket). Returns, per thread, a task of the caller's runtime
/// that ends when the thread ended (with the thread's panic, if it panicked).
///
/// # Errors
///
/// A runtime or thread that could not be created (out of memory, thread limit); the
/// threads already started are stopped by `shutdown`.
pub(crate) fn start(
    threads: usize,
    listeners: &[(usize, StdListener)],
    rt: &Arc<Runtime>,
    shutdown: &Shutdown,
    grace: Duration,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(threads);
    for k in 0..threads {
        let own = listeners
            .iter()
            .map(|(index, l)| Ok((*index, l.try_clone()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (rt, shutdown) = (rt.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lb-worker-{k}"))
            .spawn(move || {
                pool::set_shard(k);
                runtime.block_on(serve(own, rt, shutdown, grace));
            })?;
        handles.push(tokio::task::spawn_blocking(move || {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }));
    }
    Ok(handles)
}

/// One thread's work: every frontend on its own clone of the listener, until shutdown and
/// the drain are over.
async fn serve(
    listeners: Vec<(usize, StdListener)>,
    rt: Arc<Runtime>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let mut frontends = JoinSet::new();
    for (index, listener) in listeners {
        match TcpListener::from_std(listener) {
            Ok(l) => {
                frontends.spawn(frontend::serve(
                    l,
                    rt.clone(),
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
