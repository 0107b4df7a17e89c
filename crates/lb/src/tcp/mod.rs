//! TCP mode (`mode = "tcp"`): layer-4 proxying for any protocol. Each client connection
//! gets a server through the attempt engine ([`crate::attempt::run`]: the backend's
//! balancer, queue and `maxconn`, connection failures retried by `retries`, `redispatch`
//! and `retry_on`'s `conn-failure`, observed by passive health), then bytes are copied
//! both ways until both sides closed, or nothing moved for `timeout client` (HAProxy
//! advises equal client and server timeouts in TCP mode; webfarm uses one idle bound for
//! the session). One access line per connection ([`TcpRecord`]).
//!
//! A frontend with `sni_routes` first reads the client's TLS ClientHello ([`hello`]),
//! within `inspect_delay` and without decrypting, and takes the backend its server name
//! routes to; the ClientHello's bytes go to the server first, so the client's TLS session
//! is the server's own. A client that sends no ClientHello is closed before any server is
//! chosen (HAProxy's `tcp-request content reject unless { req.ssl_hello_type 1 }`).

mod hello;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webfarm_node::Shutdown;

use crate::access_log::TcpRecord;
use crate::attempt::{self, Failed, Failure, Timers, Transport, Won};
use crate::backend::balance::RequestKey;
use crate::backend::check::{io_text, Observed};
use crate::backend::BackendState;
use crate::control::live::{ConnSlot, LiveConfig, LiveFrontend, Snapshot};
use crate::metrics::Tally;
use crate::termination::{EndedBy, Phase, Termination};

/// TCP mode's attempts: a connection to the server, nothing sent before it is made.
struct Tcp;

impl Transport for Tcp {
    type Connected = TcpStream;
    const WHAT: &'static str = "connection";

    fn attempt(
        &mut self,
        b: &BackendState,
        index: usize,
        timers: &mut Timers,
    ) -> impl Future<Output = Result<TcpStream, Failure>> + Send {
        let addr = b.servers[index].state.addr();
        let limit = b.config.timeout.connect;
        async move {
            let start = Instant::now();
            let result = tokio::time::timeout(limit, TcpStream::connect(addr)).await;
            match result {
                Ok(Ok(s)) => {
                    timers.tc = Some(start.elapsed());
                    Ok(s)
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err(Failure::new(Failed::Refused, io_text(&e)))
                }
                Ok(Err(e)) => Err(Failure::new(Failed::Connect, io_text(&e))),
                Err(_) => Err(Failure::new(Failed::ConnectTimeout, "connect timeout")),
            }
        }
    }

    fn outcome(_: &TcpStream) -> (Observed, Option<u16>) {
        (Observed::Success, None)
    }
}

/// Serves one client connection of TCP frontend `index`, holding its admission `slot`.
pub(crate) async fn serve(
    live: Arc<LiveConfig>,
    index: usize,
    mut client: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
    slot: ConnSlot,
) {
    let start = Instant::now();
    let snap = live.snapshot();
    let Some(fe) = snap.frontends.get(index) else {
        return;
    };
    let mut record = TcpRecord {
        format: snap.farm.lb.access_log,
        client: peer,
        frontend: &fe.config.name,
        backend: fe.backend.name(),
        server: None,
        tw: Duration::ZERO,
        tc: None,
        tt: Duration::ZERO,
        bytes: (0, 0),
        termination: Termination::NORMAL,
    };
    let chosen = tokio::select! {
        chosen = choose(&snap, fe, &mut client, peer) => chosen,
        _ = shutdown.wait() => Err(Termination::new(EndedBy::Proxy, Phase::Request)),
    };
    let mut backend = None;
    match chosen {
        Ok((b, first)) => {
            backend = Some(b);
            record.backend = b.name();
            forward(
                b,
                &mut client,
                &first,
                fe.config.timeout.client,
                &shutdown,
                &mut record,
            )
            .await;
        }
        Err(termination) => {
            // No backend was chosen: the frontend stands in for it, as in HAProxy's logs.
            record.backend = &fe.config.name;
            record.termination = termination;
        }
    }
    record.tt = start.elapsed();
    count(&live, index, backend, &record);
    record.emit();
    drop(slot);
}

/// Counts the ended session of frontend `index` (`/metrics`): bytes up as in, down as
/// out, its queue, connect and total times, on the frontend, the backend and the server.
fn count(live: &LiveConfig, index: usize, backend: Option<&BackendState>, record: &TcpRecord<'_>) {
    let Some(fe) = live.frontend_metrics.get(index) else {
        return;
    };
    let mut tally = Tally::session(fe.clone());
    if let Some(b) = backend {
        tally.forwarded(&b.metrics);
    }
    tally.timers = Timers {
        tw: Some(record.tw),
        tc: record.tc,
        tr: None,
    };
    let server = backend
        .zip(record.server)
        .and_then(|(b, name)| b.server_by_name(name));
    tally.finish_after(server.map(|s| &*s.state), record.bytes, record.tt);
}

/// The backend of the connection and the bytes read to choose it (to send first): the
/// default backend at once, or with `sni_routes` the one the ClientHello's server name
/// routes to. `Err`: no ClientHello came (the termination state); the connection closes.
async fn choose<'s>(
    snap: &'s Snapshot,
    fe: &'s LiveFrontend,
    client: &mut TcpStream,
    peer: SocketAddr,
) -> Result<(&'s BackendState, Vec<u8>), Termination> {
    if fe.config.sni_routes.is_empty() {
        return Ok((&fe.backend, Vec::new()));
    }
    match hello::read(client, fe.config.inspect_delay).await {
        Ok(hello) => {
            let index = fe.config.backend_for_sni(hello.sni.as_deref());
            let b = snap.backends.get(index).unwrap_or(&fe.backend);
            Ok((b, hello.bytes))
        }
        Err(no) => {
            tracing::debug!("frontend {}: {peer} closed: {no}", fe.config.name);
            Err(no.termination())
        }
    }
}

/// Takes a server of `b` through the attempt engine, sends it `first`, then copies both
/// ways until the session ends; fills in `record`.
async fn forward<'r>(
    b: &'r BackendState,
    client: &mut TcpStream,
    first: &[u8],
    idle: Duration,
    shutdown: &Shutdown,
    record: &mut TcpRecord<'r>,
) {
    let key = RequestKey {
        client: record.client.ip(),
        path: "",
        headers: None,
    };
    let mut timers = Timers::default();
    let result = attempt::run(b, &key, None, false, &mut Tcp, &mut timers).await;
    record.tw = timers.tw.unwrap_or_default();
    let Won {
        index: server,
        slot: active,
        connected: mut upstream,
    } = match result {
        Ok(won) => won,
        Err(lost) => {
            record.server = lost.server.map(|i| b.servers[i].state.name());
            record.termination = lost.termination;
            return;
        }
    };
    record.server = Some(b.servers[server].state.name());
    record.tc = timers.tc;
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    (record.bytes, record.termination) = tokio::select! {
        r = pipe(client, &mut upstream, first, idle) => r,
        _ = shutdown.wait() => ((0, 0), Termination::new(EndedBy::Proxy, Phase::Data)),
    };
    drop(active);
}

/// Sends `first` (the client's bytes read already) to the server, then copies both ways
/// until both sides closed or nothing moved for `idle`. Returns the bytes sent up (`first`
/// included) and down, and the termination state.
async fn pipe(
    client: &mut TcpStream,
    server: &mut TcpStream,
    first: &[u8],
    idle: Duration,
) -> ((u64, u64), Termination) {
    let by_client = Termination::new(EndedBy::Client, Phase::Data);
    let by_server = Termination::new(EndedBy::Server, Phase::Data);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    match tokio::time::timeout(idle, sw.write_all(first)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return ((0, 0), by_server),
        Err(_) => {
            return (
                (0, 0),
                Termination::new(EndedBy::ServerTimeout, Phase::Data),
            )
        }
    }
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    let (mut up, mut down) = (first.len() as u64, 0u64);
    let (mut c_open, mut s_open) = (true, true);
    while c_open || s_open {
        tokio::select! {
            r = cr.read(&mut cbuf), if c_open => match r {
                Ok(0) => { c_open = false; let _ = sw.shutdown().await; }
                Ok(n) => {
                    if sw.write_all(&cbuf[..n]).await.is_err() { return ((up, down), by_server); }
                    up += n as u64;
                }
                Err(_) => return ((up, down), by_client),
            },
            r = sr.read(&mut sbuf), if s_open => match r {
                Ok(0) => { s_open = false; let _ = cw.shutdown().await; }
                Ok(n) => {
                    if cw.write_all(&sbuf[..n]).await.is_err() { return ((up, down), by_client); }
                    down += n as u64;
                }
                Err(_) => return ((up, down), by_server),
            },
            _ = tokio::time::sleep(idle) => {
                return ((up, down), Termination::new(EndedBy::ClientTimeout, Phase::Data));
            }
        }
    }
    ((up, down), Termination::NORMAL)
}
