//! Shared helpers of the load balancer's crate tests: tiny real backend servers, a real lb
//! node built from a farm file, a raw HTTP client; polling, the deadline and temp dirs are
//! webfarm-testkit's.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use webfarm_config::Farm;
use webfarm_lb::{LbNode, LbOptions};
use webfarm_node::{NodeContext, Shutdown, ShutdownTrigger};
use webfarm_testkit::DEADLINE;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Access log lines written so far (target `access`), captured for this test binary.
static ACCESS_LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct AccessCapture;

impl std::io::Write for AccessCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        ACCESS_LINES.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the `access` target's lines (call before any lb of the test binary starts;
/// instead of [`init_logs`]).
pub fn capture_access_log() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter("access=info")
            .with_writer(|| AccessCapture)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_ansi(false)
            .init();
    });
}

/// Every access line captured so far ([`capture_access_log`]).
pub fn access_log_text() -> String {
    String::from_utf8_lossy(&ACCESS_LINES.lock().unwrap()).into_owned()
}

/// Installs a test log subscriber once (`RUST_LOG=debug cargo test` shows the lb's logs).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The port of frontend `www` in [`farm_toml`]: the lb node listens on a loopback address of
/// its own (webfarm-testkit), so the port is free there whatever other tests bind.
pub const FRONTEND_PORT: u16 = 8080;

/// The byte at offset `i` of every test body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// A body of `len` pattern bytes in 64 KiB frames, made on the fly (no size hint, so it
/// goes out chunked).
pub struct PatternBody {
    sent: u64,
    len: u64,
}

impl PatternBody {
    pub fn new(len: u64) -> PatternBody {
        PatternBody { sent: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// Reads `body` to its end, checking every byte against [`pattern`]; returns the length.
pub async fn read_pattern<B>(mut body: B) -> Result<u64, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body error after {n} bytes: {e}"))?;
        if let Ok(data) = frame.into_data() {
            for &b in data.iter() {
                if b != pattern(n) {
                    return Err(format!("byte {n} is {b}, expected {}", pattern(n)));
                }
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What every test backend shares with its test.
#[derive(Default)]
pub struct Shared {
    /// Requests other than health checks.
    pub hits: AtomicU64,
    /// Health checks received.
    pub checks: AtomicU64,
    /// Ids of the connections that carried requests other than health checks.
    pub conns: Mutex<HashSet<u64>>,
    /// Headers of the last `/headers` request.
    pub last_headers: Mutex<HashMap<String, Vec<String>>>,
    /// `/slow` requests in progress.
    pub in_flight: AtomicU64,
    /// Bytes of `/upload` bodies read so far.
    pub uploaded: AtomicU64,
    /// `/healthz` answers 503 while this is set.
    pub sick: AtomicBool,
    /// Releases the rest of a `/gate` response.
    pub gate: Notify,
    /// Method and `Host` of the last health check.
    pub last_check: Mutex<Option<(String, String)>>,
    /// When non-zero, every request other than a health check gets this status.
    pub force_status: AtomicU64,
    /// Milliseconds every request other than a health check waits before its answer.
    pub delay_ms: AtomicU64,
    next_conn: AtomicU64,
}

/// A tiny HTTP/1.1 backend server that answers with its name.
///
/// Routes: `/healthz` (records method and Host); `/code?code=N`; `/ws` (upgrade, then echo
/// prefixed by the name); `/headers` (records the request headers); `/slow?ms=N`;
/// `/upload` (reads a pattern body, answers `len=N`); `/download?bytes=N`; `/gate` (one
/// chunk, then the rest once [`Shared::gate`] is notified); `/hop` (answers with hop-by-hop
/// headers); `/flaky` (`web-1` drops the connection without answering); anything else: the
/// name.
pub struct TestServer {
    pub name: String,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(name: &str) -> TestServer {
        let listener = TcpListener::bind((webfarm_testkit::loopback_ip(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = TestServer {
            name: name.to_string(),
            addr,
            shared: Arc::new(Shared::default()),
            task: None,
        };
        s.task = Some(tokio::spawn(accept_loop(
            listener,
            s.name.clone(),
            s.shared.clone(),
        )));
        s
    }

    /// Hits (requests other than checks) so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection: connecting is refused from now on.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(accept_loop(
            listener,
            self.name.clone(),
            self.shared.clone(),
        )));
    }
}

/// Starts `N` test servers named `web-1` to `web-N`, one after the other.
pub async fn servers<const N: usize>() -> [TestServer; N] {
    let mut out = Vec::with_capacity(N);
    for i in 1..=N {
        out.push(TestServer::start(&format!("web-{i}")).await);
    }
    match out.try_into() {
        Ok(servers) => servers,
        Err(_) => unreachable!("exactly N servers"),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, name: String, shared: Arc<Shared>) {
    // Dropping this set (when the task is aborted) closes every connection.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        let name = name.clone();
        let shared = shared.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| route(req, name.clone(), shared.clone(), id));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

fn text(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

fn query_u64(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

async fn route(
    req: Request<Incoming>,
    name: String,
    shared: Arc<Shared>,
    conn: u64,
) -> Result<Response<TestBody>, BoxError> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        shared.checks.fetch_add(1, Ordering::SeqCst);
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        *shared.last_check.lock().unwrap() = Some((req.method().to_string(), host));
        let status = if shared.sick.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        let mut r = Response::new(text("ok"));
        *r.status_mut() = status;
        return Ok(r);
    }
    shared.hits.fetch_add(1, Ordering::SeqCst);
    shared.conns.lock().unwrap().insert(conn);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay != 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let forced = shared.force_status.load(Ordering::SeqCst);
    if forced != 0 {
        let mut r = Response::new(text(name.clone()));
        *r.status_mut() = StatusCode::from_u16(forced as u16).unwrap();
        r.headers_mut().insert("x-served-by", name.parse().unwrap());
        return Ok(r);
    }
    let mut resp = match path.as_str() {
        "/code" => {
            let mut r = Response::new(text(name.clone()));
            *r.status_mut() = StatusCode::from_u16(query_u64(&req, "code") as u16).unwrap();
            r
        }
        "/ws" => {
            // A WebSocket-like upgrade: answer 101, then echo every byte prefixed by the name.
            let mut req = req;
            let on = hyper::upgrade::on(&mut req);
            let name2 = name.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut out = format!("{name2}:").into_bytes();
                        out.extend_from_slice(&buf[..n]);
                        if io.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(text(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            return Ok(r);
        }
        "/headers" => {
            let mut seen: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in req.headers() {
                seen.entry(k.as_str().to_string())
                    .or_default()
                    .push(v.to_str().unwrap_or("<binary>").to_string());
            }
            *shared.last_headers.lock().unwrap() = seen;
            Response::new(text(name.clone()))
        }
        "/slow" => {
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(query_u64(&req, "ms"))).await;
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            Response::new(text(format!("{name} slow")))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            let mut ok = true;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    for &b in data.iter() {
                        ok &= b == pattern(n);
                        n += 1;
                    }
                    shared.uploaded.store(n, Ordering::SeqCst);
                }
            }
            Response::new(text(format!("len={n} ok={ok}")))
        }
        "/download" => Response::new(
            PatternBody::new(query_u64(&req, "bytes"))
                .map_err(|e| match e {})
                .boxed(),
        ),
        "/gate" => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"first;")).await;
                shared.gate.notified().await;
                let _ = tx.send_data(Bytes::from_static(b"rest")).await;
            });
            Response::new(body.boxed())
        }
        "/hop" => {
            let mut r = Response::new(text(name.clone()));
            let h = r.headers_mut();
            h.insert("connection", "X-Internal".parse().unwrap());
            h.insert("x-internal", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-connection", "keep-alive".parse().unwrap());
            h.insert("x-kept", "1".parse().unwrap());
            r
        }
        "/flaky" if name == "web-1" => {
            // A service error makes hyper close the connection without an answer.
            return Err("web-1 drops /flaky".into());
        }
        _ => Response::new(text(name.clone())),
    };
    resp.headers_mut()
        .insert("x-served-by", name.parse().unwrap());
    Ok(resp)
}

/// A running lb node with its shutdown trigger.
pub struct TestLb {
    pub node: Option<LbNode>,
    pub trigger: ShutdownTrigger,
    pub addr: SocketAddr,
    pub health: Arc<dyn webfarm_node::Health>,
}

/// Check settings of a test farm.
#[derive(Clone, Copy)]
pub struct Checks {
    pub inter: &'static str,
    pub rise: u32,
    pub fall: u32,
    pub retries: u32,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            inter: "100ms",
            rise: 2,
            fall: 3,
            retries: 1,
        }
    }
}

/// Extra TOML lines for a test farm, each inserted where its table is open.
#[derive(Clone, Default)]
pub struct Extra {
    /// Lines of `[[frontends]]`.
    pub frontend: String,
    /// The backend's `balance`; `roundrobin` when empty.
    pub balance: String,
    /// Lines of `[[backends]]` (before `[backends.check]`).
    pub backend: String,
    /// Lines of `[backends.check]`.
    pub check: String,
    /// Lines of every `[[backends.servers]]`, by server index.
    pub servers: Vec<String>,
    /// Lines of `[lb]`.
    pub lb: String,
    /// `[lb] threads`; 1 when not given, so that which pooled connection a request reuses
    /// does not depend on which thread accepted it.
    pub threads: Option<u16>,
}

/// The farm file of one lb node on a loopback address of its own (admin port 9000) with
/// frontend `www` on `port` and backend
/// `web` over `servers` (name, address, weight).
pub fn farm_toml(port: u16, servers: &[(&str, SocketAddr, u32)], checks: Checks) -> String {
    farm_toml_with(port, servers, checks, &Extra::default())
}

/// As [`farm_toml`], with `extra` lines.
pub fn farm_toml_with(
    port: u16,
    servers: &[(&str, SocketAddr, u32)],
    checks: Checks,
    extra: &Extra,
) -> String {
    let ip = webfarm_testkit::loopback_ip();
    let admin = if port == 9000 { 9001 } else { 9000 };
    let mut s = format!(
        r#"
site = "www.foobar.com"
data_dir = "{data}"

[[nodes]]
name = "lb-1"
role = "lb"
address = "{ip}"
admin_port = {admin}

[[frontends]]
name = "www"
port = {port}
default_backend = "web"
{frontend}

[[backends]]
name = "web"
balance = "{balance}"
retries = {retries}
{backend}

[backends.check]
path = "/healthz"
inter = "{inter}"
rise = {rise}
fall = {fall}
timeout = "1s"
{check}
"#,
        data = std::env::temp_dir().join("webfarm-lb-tests").display(),
        balance = if extra.balance.is_empty() {
            "roundrobin"
        } else {
            &extra.balance
        },
        retries = checks.retries,
        inter = checks.inter,
        rise = checks.rise,
        fall = checks.fall,
        frontend = extra.frontend,
        backend = extra.backend,
        check = extra.check,
    );
    for (i, (name, addr, weight)) in servers.iter().enumerate() {
        s.push_str(&format!(
            "\n[[backends.servers]]\nname = \"{name}\"\naddress = \"{addr}\"\nweight = {weight}\n{}\n",
            extra.servers.get(i).map_or("", String::as_str)
        ));
    }
    s.push_str(&format!(
        "\n[lb]\nthreads = {}\n{}\n",
        extra.threads.unwrap_or(1),
        extra.lb
    ));
    s
}

/// Starts an lb node in front of `servers` with `weights`.
pub async fn start_lb(servers: &[&TestServer], weights: &[u32], checks: Checks) -> TestLb {
    start_lb_extra(servers, weights, checks, &Extra::default()).await
}

/// As [`start_lb`], with extra configuration lines.
pub async fn start_lb_extra(
    servers: &[&TestServer],
    weights: &[u32],
    checks: Checks,
    extra: &Extra,
) -> TestLb {
    let port = FRONTEND_PORT;
    let list: Vec<(&str, SocketAddr, u32)> = servers
        .iter()
        .zip(weights)
        .map(|(s, &w)| (s.name.as_str(), s.addr, w))
        .collect();
    start_lb_text(&farm_toml_with(port, &list, checks, extra), None).await
}

/// Starts the lb node `lb-1` of farm `text`, or returns why it cannot start.
pub async fn try_start_lb_text(text: &str) -> Result<TestLb, webfarm_lb::LbError> {
    init_logs();
    start_farm(Farm::parse(text, None, &std::env::temp_dir()).unwrap()).await
}

/// Starts the lb node `lb-1` of `farm`.
async fn start_farm(farm: Farm) -> Result<TestLb, webfarm_lb::LbError> {
    let node = farm.node("lb-1").unwrap().clone();
    let (trigger, shutdown) = Shutdown::new();
    let ctx = NodeContext {
        data_dir: farm.node_data_dir("lb-1"),
        farm: Arc::new(farm),
        node,
        shutdown,
        auth: Default::default(),
    };
    let lb = LbNode::start_with(ctx, LbOptions::default()).await?;
    let addr = lb.frontend_addrs()[0].1;
    Ok(TestLb {
        health: lb.health(),
        node: Some(lb),
        trigger,
        addr,
    })
}

/// Starts the lb node `lb-1` of farm `text` (read from `file` when given, so that it can
/// be reloaded).
pub async fn start_lb_text(text: &str, file: Option<&std::path::Path>) -> TestLb {
    init_logs();
    let farm = match file {
        Some(path) => {
            std::fs::write(path, text).unwrap();
            Farm::load(path).unwrap()
        }
        None => Farm::parse(text, None, &std::env::temp_dir()).unwrap(),
    };
    start_farm(farm).await.unwrap()
}

impl TestLb {
    /// Server `name`'s entry of `/status`.
    pub fn server_status(&self, name: &str) -> serde_json::Value {
        let status = self.health.status().to_json();
        status["backends"][0]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no server {name} in {status}"))
    }

    /// Whether server `name` is UP in `/status`.
    pub fn is_up(&self, name: &str) -> bool {
        self.server_status(name)["state"] == "UP"
    }

    /// Serves the node's admin routes (`/lb/...`, `/status`) on a free port; returns it.
    pub async fn serve_admin(&self) -> SocketAddr {
        let node = self.node.as_ref().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let extra = node.admin_routes();
        let health = node.health();
        let (_trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            let _keep = _trigger;
            webfarm_node::admin::serve(
                listener,
                "lb-1",
                webfarm_config::Role::Lb,
                health,
                extra,
                shutdown,
                webfarm_node::admin::Access {
                    tls: None,
                    guard: webfarm_node::access::Guard::new(["operator"], &Default::default()),
                },
            )
            .await
            .unwrap();
        });
        addr
    }

    /// Fires shutdown and waits for the node to stop.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(node) = self.node.take() {
            tokio::time::timeout(DEADLINE, node.wait())
                .await
                .expect("the lb stops in time")
                .unwrap();
        }
    }
}

/// Sends `n` sequential GETs to `/` and counts the answers by server name.
pub async fn distribution(lb: &TestLb, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let a = get(lb.addr, "/").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        *counts.entry(a.body).or_insert(0) += 1;
    }
    counts
}

/// A whole response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends `req` on a new HTTP/1.1 connection to `addr` and reads the whole answer.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    answer(send_head(addr, req).await).await
}

/// Reads the whole of `resp` (its body as UTF-8, lossily).
pub async fn answer(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `req` on a new HTTP/1.1 connection to `addr`; returns once the head is back.
pub async fn send_head<B>(addr: SocketAddr, mut req: Request<B>) -> Response<Incoming>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    if !req.headers().contains_key("host") {
        req.headers_mut()
            .insert("host", "www.foobar.com".parse().unwrap());
    }
    tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap()
}

/// Writes `raw` on a new TCP connection to `addr` and reads until the server closes (or
/// [`DEADLINE`]); returns what was read.
pub async fn raw(addr: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST path` with `body` to `addr` on a new connection.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Answer {
    send(
        addr,
        Request::post(path)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// `GET path` on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        addr,
        Request::get(path).body(Empty::<Bytes>::new()).unwrap(),
    )
    .await
}
