//! TCP mode: layer-4 proxying with roundrobin, leastconn and source, TCP health checks,
//! connection retries.

mod common;

use std::collections::HashMap;
use std::future::ready;
use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use webfarm_testkit::{eventually, DEADLINE};

/// A TCP server that greets with its name, then echoes.
struct Echo {
    name: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start(name: &str) -> Echo {
        let listener = TcpListener::bind((webfarm_testkit::loopback_ip(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let n = name.to_string();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let n = n.clone();
                conns.spawn(async move {
                    let _ = s.write_all(format!("{n}\n").as_bytes()).await;
                    let mut buf = [0u8; 1024];
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 || s.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo {
            name: name.into(),
            addr,
            task,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tcp_farm(port: u16, servers: &[&Echo], backend: &str) -> String {
    let list: Vec<(&str, SocketAddr, u32)> = servers
        .iter()
        .map(|s| (s.name.as_str(), s.addr, 1))
        .collect();
    farm_toml(port, &list, Checks::default())
        .replace(
            "default_backend = \"web\"",
            "default_backend = \"web\"\nmode = \"tcp\"",
        )
        .replace(
            "balance = \"roundrobin\"",
            &format!("mode = \"tcp\"\n{backend}"),
        )
        .replace("path = \"/healthz\"", "type = \"tcp\"")
}

/// Echo servers `db-1` to `db-N` behind an lb node in TCP mode with `balance` lines.
async fn echo_farm<const N: usize>(balance: &str) -> ([Echo; N], TestLb) {
    let mut s = Vec::with_capacity(N);
    for i in 1..=N {
        s.push(Echo::start(&format!("db-{i}")).await);
    }
    let refs: Vec<&Echo> = s.iter().collect();
    let text = tcp_farm(FRONTEND_PORT, &refs, balance);
    let lb = start_lb_text(&text, None).await;
    match s.try_into() {
        Ok(s) => (s, lb),
        Err(_) => unreachable!("exactly N servers"),
    }
}

/// Connects, reads the greeting, checks the echo; returns the server's name and the stream.
async fn session(addr: SocketAddr) -> (String, TcpStream) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.contains(&b'\n') {
        let n = tokio::time::timeout(DEADLINE, c.read(&mut buf))
            .await
            .expect("greeting in time")
            .unwrap();
        assert!(n > 0, "closed before the greeting");
        got.extend_from_slice(&buf[..n]);
    }
    let name = String::from_utf8_lossy(&got).trim().to_string();
    c.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    c.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    (name, c)
}

#[tokio::test]
async fn roundrobin_over_tcp() {
    let (_s, lb) = echo_farm::<3>("balance = \"roundrobin\"").await;
    let mut counts = HashMap::new();
    for _ in 0..9 {
        let (name, _c) = session(lb.addr).await;
        *counts.entry(name).or_insert(0) += 1;
    }
    assert!(counts.values().all(|&n| n == 3), "{counts:?}");
    lb.stop().await;
}

#[tokio::test]
async fn leastconn_over_tcp_counts_open_connections() {
    let (_s, lb) = echo_farm::<2>("balance = \"leastconn\"").await;
    // Keep one connection open: the next ones all go to the other server while it lasts.
    let (held, _keep) = session(lb.addr).await;
    for _ in 0..4 {
        let (name, c) = session(lb.addr).await;
        assert_ne!(name, held);
        drop(c);
        eventually(DEADLINE, "the connection is closed on the lb", || {
            ready((lb.server_status(&name)["current_conns"] == 0).then_some(()))
        })
        .await;
    }
    lb.stop().await;
}

#[tokio::test]
async fn source_over_tcp_keeps_a_client_on_one_server() {
    let (_s, lb) = echo_farm::<3>("balance = \"source\"").await;
    let (first, _) = session(lb.addr).await;
    for _ in 0..5 {
        assert_eq!(session(lb.addr).await.0, first);
    }
    lb.stop().await;
}

#[tokio::test]
async fn tcp_checks_and_connection_retries() {
    let (mut s, lb) = echo_farm::<2>("balance = \"roundrobin\"").await;
    eventually(DEADLINE, "TCP checks pass", || {
        ready(
            (lb.server_status("db-1")["check"]
                .as_str()
                .unwrap()
                .starts_with("Layer4 check passed"))
            .then_some(()),
        )
    })
    .await;
    // Wait until the listener is gone: the lb's threads could connect before otherwise.
    s[0].task.abort();
    let _ = (&mut s[0].task).await;
    // Refused connections are retried on the other server: every session works.
    for _ in 0..4 {
        assert_eq!(session(lb.addr).await.0, "db-2");
    }
    eventually(DEADLINE, "db-1 is down", || {
        ready((!lb.is_up("db-1")).then_some(()))
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn tcp_sessions_show_in_metrics_with_their_bytes_and_times() {
    use webfarm_testkit::metrics::sample;
    let (_s, lb) = echo_farm::<1>("balance = \"roundrobin\"").await;
    let admin = lb.serve_admin().await;
    let (name, c) = session(lb.addr).await;
    assert_eq!(name, "db-1");
    drop(c);
    let web = [("proxy", "web")];
    let text = eventually(DEADLINE, "the session counted once it ended", || async {
        let text = get(admin, "/metrics").await.body;
        (sample(&text, "haproxy_backend_total_time_seconds_count", &web) == Some(1.0))
            .then_some(text)
    })
    .await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let www = [("proxy", "www")];
    assert_eq!(value("haproxy_frontend_sessions_total", &www), 1.0);
    assert_eq!(value("haproxy_frontend_http_requests_total", &www), 0.0);
    // Up: "ping"; down: the greeting "db-1\n" and the echo.
    assert_eq!(value("haproxy_backend_bytes_in_total", &web), 4.0);
    assert_eq!(value("haproxy_backend_bytes_out_total", &web), 9.0);
    let server = [("proxy", "web"), ("server", "db-1")];
    assert_eq!(
        value("haproxy_server_connect_time_seconds_count", &server),
        1.0
    );
    assert_eq!(value("haproxy_server_bytes_out_total", &server), 9.0);
    lb.stop().await;
}
