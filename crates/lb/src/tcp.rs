//! TCP mode (`mode = "tcp"`): layer-4 proxying for any protocol. Each client connection
//! gets a server from the backend's balancer (`roundrobin`, `leastconn`, `source`...,
//! queue and `maxconn` included) and bytes are copied both ways until both sides closed,
//! or nothing moved for `timeout client` (HAProxy advises equal client and server timeouts
//! in TCP mode; webfarm uses one idle bound for the session). Connection failures are
//! retried (`retries`, `redispatch`) and observed (passive health). One access log line per
//! connection: `client frontend backend/server Tw/Tc/Tt bytes_up/bytes_down termination`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webfarm_config::{AccessLog, RetryOn};
use webfarm_node::Shutdown;

use crate::backend::QueueError;
use crate::balance::RequestKey;
use crate::check::{io_text, observe, Observed};
use crate::runtime::{ConnSlot, Runtime};

/// Serves one client connection of TCP frontend `index`.
pub(crate) async fn serve(
    rt: Arc<Runtime>,
    index: usize,
    mut client: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
    slot: ConnSlot,
) {
    let start = Instant::now();
    let snap = rt.snapshot();
    let Some(fe) = snap.frontends.get(index) else {
        return;
    };
    let b = fe.backend.clone();
    let idle = fe.config.timeout.client;
    let key = RequestKey {
        client: peer.ip(),
        path: "",
        headers: None,
    };
    let mut tried = Vec::new();
    let mut retries_left = b.config.retries;
    let mut last = None;
    let mut tw = Duration::ZERO;
    let log = |server: Option<&str>,
               tw: Duration,
               tc: Option<Duration>,
               bytes: (u64, u64),
               term: &str| {
        if snap.farm.lb.access_log == AccessLog::Off {
            return;
        }
        let tc = tc.map_or(-1, |d| d.as_millis() as i64);
        let line = format!(
            "{peer} {} {}/{} {}/{tc}/{} {}/{} {term}",
            fe.config.name,
            b.name(),
            server.unwrap_or("<NOSRV>"),
            tw.as_millis(),
            start.elapsed().as_millis(),
            bytes.0,
            bytes.1,
        );
        if snap.farm.lb.access_log == AccessLog::Json {
            let v = serde_json::json!({"client": peer.to_string(), "frontend": fe.config.name,
                "backend": b.name(), "server": server.unwrap_or("<NOSRV>"),
                "tw": tw.as_millis() as u64, "tc": tc, "tt": start.elapsed().as_millis() as u64,
                "bytes_up": bytes.0, "bytes_down": bytes.1, "termination": term});
            tracing::info!(target: "access", "{v}");
        } else {
            tracing::info!(target: "access", "{line}");
        }
    };
    let (server, active, tc, name) = loop {
        let fixed = last.filter(|_| !b.config.redispatch);
        let queued = Instant::now();
        let (i, active) = match b.acquire(&key, &tried, fixed).await {
            Ok(x) => x,
            Err(e) => {
                let term = if e == QueueError::Timeout { "sQ" } else { "SC" };
                log(None, tw + queued.elapsed(), None, (0, 0), term);
                return;
            }
        };
        tw += queued.elapsed();
        last = Some(i);
        let member = &b.members[i];
        let connect_start = Instant::now();
        let why = match tokio::time::timeout(
            b.config.timeout.connect,
            TcpStream::connect(member.state.addr()),
        )
        .await
        {
            Ok(Ok(s)) => {
                observe(&b, i, Observed::Success);
                break (
                    s,
                    active,
                    connect_start.elapsed(),
                    member.state.name().to_string(),
                );
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                observe(&b, i, Observed::Refused(io_text(&e)));
                io_text(&e)
            }
            Ok(Err(e)) => {
                observe(&b, i, Observed::Layer4(io_text(&e)));
                io_text(&e)
            }
            Err(_) => {
                observe(&b, i, Observed::Layer4("connect timeout".into()));
                "connect timeout".into()
            }
        };
        drop(active);
        if retries_left == 0 || !b.config.retry_on.contains(&RetryOn::ConnFailure) {
            tracing::warn!("cannot connect to server {}: {why}", member.state.id);
            log(Some(member.state.name()), tw, None, (0, 0), "SC");
            return;
        }
        retries_left -= 1;
        tried.push(i);
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let mut server = server;
    let (bytes, term) = tokio::select! {
        r = pipe(&mut client, &mut server, idle) => r,
        _ = shutdown.wait() => ((0, 0), "PD"),
    };
    log(Some(&name), tw, Some(tc), bytes, term);
    drop(active);
    drop(slot);
}

/// Copies both ways until both sides closed or nothing moved for `idle`. Returns the bytes
/// sent up and down and the termination state.
async fn pipe(
    client: &mut TcpStream,
    server: &mut TcpStream,
    idle: Duration,
) -> ((u64, u64), &'static str) {
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
                    if sw.write_all(&cbuf[..n]).await.is_err() { return ((up, down), "SD"); }
                    up += n as u64;
                }
                Err(_) => return ((up, down), "CD"),
            },
            r = sr.read(&mut sbuf), if s_open => match r {
                Ok(0) => { s_open = false; let _ = cw.shutdown().await; }
                Ok(n) => {
                    if cw.write_all(&sbuf[..n]).await.is_err() { return ((up, down), "CD"); }
                    down += n as u64;
                }
                Err(_) => return ((up, down), "SD"),
            },
            _ = tokio::time::sleep(idle) => return ((up, down), "cD"),
        }
    }
    ((up, down), "--")
}
