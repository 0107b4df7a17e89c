//! TCP mode (`mode = "tcp"`): layer-4 proxying for any protocol. Each client connection
//! gets a server through the attempt engine ([`crate::attempt::run`]: the backend's
//! balancer, queue and `maxconn`, connection failures retried by `retries`, `redispatch`
//! and `retry_on`'s `conn-failure`, observed by passive health), then bytes are copied
//! both ways until both sides closed, or nothing moved for `timeout client` (HAProxy
//! advises equal client and server timeouts in TCP mode; webfarm uses one idle bound for
//! the session). One access line per connection ([`TcpRecord`]).

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
use crate::control::live::{ConnSlot, LiveConfig};
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
    let b = &fe.backend;
    let key = RequestKey {
        client: peer.ip(),
        path: "",
        headers: None,
    };
    let mut timers = Timers::default();
    let result = attempt::run(b, &key, None, false, &mut Tcp, &mut timers).await;
    let mut record = TcpRecord {
        format: snap.farm.lb.access_log,
        client: peer,
        frontend: &fe.config.name,
        backend: b.name(),
        server: None,
        tw: timers.tw.unwrap_or_default(),
        tc: None,
        tt: Duration::ZERO,
        bytes: (0, 0),
        termination: Termination::NORMAL,
    };
    let Won {
        index: server,
        slot: active,
        connected: mut upstream,
    } = match result {
        Ok(won) => won,
        Err(lost) => {
            record.server = lost.server.map(|i| b.servers[i].state.name());
            record.termination = lost.termination;
            record.tt = start.elapsed();
            record.emit();
            return;
        }
    };
    record.server = Some(b.servers[server].state.name());
    record.tc = timers.tc;
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let idle = fe.config.timeout.client;
    (record.bytes, record.termination) = tokio::select! {
        r = pipe(&mut client, &mut upstream, idle) => r,
        _ = shutdown.wait() => ((0, 0), Termination::new(EndedBy::Proxy, Phase::Data)),
    };
    record.tt = start.elapsed();
    record.emit();
    drop(active);
    drop(slot);
}

/// Copies both ways until both sides closed or nothing moved for `idle`. Returns the bytes
/// sent up and down and the termination state.
async fn pipe(
    client: &mut TcpStream,
    server: &mut TcpStream,
    idle: Duration,
) -> ((u64, u64), Termination) {
    let by_client = Termination::new(EndedBy::Client, Phase::Data);
    let by_server = Termination::new(EndedBy::Server, Phase::Data);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    let (mut up, mut down) = (0u64, 0u64);
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
