//! TLS passthrough in TCP mode, routed by SNI: real TLS servers (tokio-rustls, certificates
//! of a farm CA) behind a tcp frontend with `sni_routes`, and rustls clients. Each name
//! reaches its backend, whose own certificate the client sees (the lb never terminates);
//! no SNI and unknown names go to the default backend; a ClientHello sent byte by byte in
//! tiny records still routes; a silent client is closed after `inspect_delay` and frees its
//! slot; a client that does not speak TLS is closed at once; a reload changes the routes.

mod common;

use std::future::ready;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use common::TestLb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use webfarm_testkit::{eventually, loopback_ip, TempDir, DEADLINE};
use webfarm_tls::ca::{FarmCa, Layout, Leaf, Usage};
use webfarm_tls::rustls::pki_types::{CertificateDer, ServerName};
use webfarm_tls::rustls::{self, ClientConfig, ServerConfig};

/// The routes of every test: one exact name, then a wildcard; the rest to `web-tls`.
const ROUTES: &str = "sni_routes = [ { sni = \"db.foobar.com\", backend = \"db-api\" }, \
                      { sni = \"*.foobar.com\", backend = \"other\" } ]";

/// The access line of the session from client address `client`, once written.
async fn access_line(client: SocketAddr) -> String {
    let prefix = format!("{client} ");
    eventually(DEADLINE, "the session's access line", || {
        let text = common::access_log_text();
        ready(
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with(&prefix))
                .map(str::to_string),
        )
    })
    .await
}

/// The farm CA, which signs every backend's certificate; clients trust it.
struct Pki {
    ca: FarmCa,
    layout: Layout,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let layout = Layout::of_data_dir(dir);
        let ca = FarmCa::create(&layout, "www.foobar.com").unwrap();
        Pki { ca, layout }
    }

    /// A server configuration with a certificate of its own for `names`.
    fn server(&self, stem: &str, names: &[&str]) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let leaf = Leaf {
            common_name: names[0].into(),
            names: names.iter().map(|n| (*n).to_string()).collect(),
            usage: Usage::Server,
            crl_url: None,
        };
        let paths = self.layout.node(stem);
        self.ca.issue(&leaf).unwrap().write(&paths).unwrap();
        let chain = webfarm_tls::files::read_chain(&paths.cert).unwrap();
        let key = webfarm_tls::files::read_key(&paths.key).unwrap();
        let cert = chain[0].clone();
        let config = ServerConfig::builder_with_provider(webfarm_tls::server::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        (Arc::new(config), cert)
    }

    /// A client trusting the CA; `sni` off sends no server name; records of at most
    /// `fragment` bytes.
    fn client(&self, sni: bool, fragment: Option<usize>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der().clone()).unwrap();
        let mut c = ClientConfig::builder_with_provider(webfarm_tls::server::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.enable_sni = sni;
        c.max_fragment_size = fragment;
        TlsConnector::from(Arc::new(c))
    }
}

/// A TLS server with its own certificate: after the handshake it sends its name and a
/// newline, then echoes.
struct TlsBackend {
    name: &'static str,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    /// Handshakes completed (the lb's TCP checks connect without one).
    handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    async fn start(pki: &Pki, name: &'static str, names: &[&str]) -> TlsBackend {
        let (config, cert) = pki.server(name, names);
        let acceptor = TlsAcceptor::from(config);
        let listener = TcpListener::bind((loopback_ip(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicU64::new(0));
        let count = handshakes.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), count.clone());
                conns.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(format!("{name}\n").as_bytes()).await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TlsBackend {
            name,
            addr,
            cert,
            handshakes,
            task,
        }
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `web-tls` (the default backend: certificate for names no route takes), `db-api`
/// (`db.foobar.com`) and `other` (names under `*.foobar.com`), each a tcp backend of one
/// server behind frontend `tls-in` with [`ROUTES`] and `frontend` lines; the farm is read
/// from `dir/farm.toml`, so that it can be reloaded.
async fn start(dir: &TempDir, frontend: &str) -> (Pki, Vec<TlsBackend>, TestLb) {
    common::capture_access_log();
    let pki = Pki::new(dir.path());
    let backends = vec![
        TlsBackend::start(&pki, "web-tls", &["unknown.example", "a.b.foobar.com"]).await,
        TlsBackend::start(&pki, "db-api", &["db.foobar.com"]).await,
        // Also db.foobar.com, for when a reload sends it here.
        TlsBackend::start(
            &pki,
            "other",
            &["shop.foobar.com", "www.foobar.com", "db.foobar.com"],
        )
        .await,
    ];
    let mut text = format!(
        "site = \"www.foobar.com\"\ndata_dir = \"{}\"\n\
         [[nodes]]\nname = \"lb-1\"\nrole = \"lb\"\naddress = \"{}\"\n\
         [[frontends]]\nname = \"tls-in\"\nport = 4443\nmode = \"tcp\"\n\
         default_backend = \"web-tls\"\n{ROUTES}\n{frontend}\n",
        dir.path().join("data").display(),
        loopback_ip(),
    );
    for b in &backends {
        text.push_str(&format!(
            "[[backends]]\nname = \"{0}\"\nmode = \"tcp\"\nretries = 0\n\
             [backends.check]\ntype = \"tcp\"\ninter = \"1h\"\n\
             [[backends.servers]]\nname = \"{0}-1\"\naddress = \"{1}\"\n",
            b.name, b.addr
        ));
    }
    text.push_str("[lb]\nthreads = 1\n");
    let lb = common::start_lb_text(&text, Some(&dir.path().join("farm.toml"))).await;
    (pki, backends, lb)
}

/// One session through the lb over `io`, offering `sni` (checked against the certificate
/// whether or not the client sends it): the greeting (the backend's name), the certificate
/// the client was shown, and the echo checked.
async fn session<IO>(io: IO, client: &TlsConnector, sni: &str) -> (String, CertificateDer<'static>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = tokio::time::timeout(DEADLINE, client.connect(name, io))
        .await
        .expect("a handshake in time")
        .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while !greeting.ends_with(b"\n") {
        let n = tokio::time::timeout(DEADLINE, tls.read(&mut byte))
            .await
            .expect("a greeting in time")
            .unwrap();
        assert_eq!(n, 1, "closed before the greeting");
        greeting.push(byte[0]);
    }
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    tls.shutdown().await.unwrap();
    let greeting = String::from_utf8(greeting).unwrap().trim().to_string();
    (greeting, cert)
}

/// A session over a new connection to the lb; also returns the client's address (which
/// starts its access line).
async fn connect(
    lb: &TestLb,
    client: &TlsConnector,
    sni: &str,
) -> (String, CertificateDer<'static>, SocketAddr) {
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (name, cert) = session(tcp, client, sni).await;
    (name, cert, local)
}

fn backend<'a>(backends: &'a [TlsBackend], name: &str) -> &'a TlsBackend {
    backends.iter().find(|b| b.name == name).unwrap()
}

#[tokio::test]
async fn each_name_reaches_its_backend_which_shows_its_own_certificate() {
    let dir = TempDir::new("sni-names");
    let (pki, backends, lb) = start(&dir, "").await;
    let client = pki.client(true, None);
    for (sni, want) in [
        ("db.foobar.com", "db-api"),
        ("DB.Foobar.COM", "db-api"),
        ("shop.foobar.com", "other"),
        ("www.foobar.com", "other"),
        ("a.b.foobar.com", "web-tls"),
    ] {
        let (name, cert, local) = connect(&lb, &client, sni).await;
        assert_eq!(name, want, "{sni}");
        assert_eq!(
            cert,
            backend(&backends, want).cert,
            "{sni}: the server's own certificate"
        );
        let line = access_line(local).await;
        assert!(
            line.contains(&format!(" tls-in {want}/{want}-1 ")),
            "{sni}: the line names the chosen backend: {line}"
        );
        assert!(line.ends_with(" --"), "{line}");
    }
    lb.stop().await;
}

#[tokio::test]
async fn no_server_name_and_unknown_names_go_to_the_default_backend() {
    let dir = TempDir::new("sni-default");
    let (pki, backends, lb) = start(&dir, "").await;
    for (client, sni) in [
        (pki.client(false, None), "unknown.example"),
        (pki.client(true, None), "unknown.example"),
    ] {
        let (name, cert, local) = connect(&lb, &client, sni).await;
        assert_eq!(name, "web-tls");
        assert_eq!(cert, backend(&backends, "web-tls").cert);
        assert!(access_line(local)
            .await
            .contains(" tls-in web-tls/web-tls-1 "));
    }
    lb.stop().await;
}

/// A client socket that writes its first `left` bytes one per write (`TCP_NODELAY`: a
/// segment each).
struct Trickle {
    inner: TcpStream,
    left: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let max = if self.left > 0 { 1 } else { buf.len() };
        let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..max.min(buf.len())]);
        if let Poll::Ready(Ok(n)) = written {
            self.left = self.left.saturating_sub(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_client_hello_sent_byte_by_byte_in_small_records_still_routes() {
    let dir = TempDir::new("sni-trickle");
    let (pki, backends, lb) = start(&dir, "").await;
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let trickle = Trickle {
        inner: tcp,
        left: 4096,
    };
    // Records of at most 64 bytes: the ClientHello spans several of them.
    let (name, cert) = session(trickle, &pki.client(true, Some(64)), "db.foobar.com").await;
    assert_eq!(name, "db-api");
    assert_eq!(cert, backend(&backends, "db-api").cert);
    lb.stop().await;
}

/// Every server's `total_requests` (TCP sessions) in `/status`, summed.
fn sessions(lb: &TestLb) -> u64 {
    let status = lb.health.status().to_json();
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["servers"].as_array().unwrap().iter())
        .map(|s| s["total_requests"].as_u64().unwrap())
        .sum()
}

/// Reads until the lb closes; panics after [`DEADLINE`]. Returns what was read.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("the lb closes the connection in time")
        .unwrap();
    out
}

#[tokio::test]
async fn a_silent_client_is_closed_after_inspect_delay_and_frees_its_slot() {
    let dir = TempDir::new("sni-silent");
    let (pki, backends, lb) = start(&dir, "inspect_delay = \"2s\"\nmaxconn = 1").await;
    let connected = Instant::now();
    let mut silent = TcpStream::connect(lb.addr).await.unwrap();
    let local = silent.local_addr().unwrap();
    eventually(
        DEADLINE,
        "the silent client holds the frontend's one slot",
        || ready((lb.health.status().to_json()["conns"] == 1).then_some(())),
    )
    .await;
    // Over maxconn: a TLS client is closed while the silent one waits.
    let client = pki.client(true, None);
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    let refused = client
        .connect(ServerName::try_from("db.foobar.com").unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "the slot is taken");
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(
        connected.elapsed().as_millis() >= 2000,
        "closed after inspect_delay, not before: {:?}",
        connected.elapsed()
    );
    let line = access_line(local).await;
    assert!(line.contains(" tls-in tls-in/<NOSRV> "), "{line}");
    assert!(line.ends_with(" 0/0 cR"), "{line}");
    assert_eq!(sessions(&lb), 0, "no server was chosen");
    // The slot is free again.
    eventually(DEADLINE, "the slot is released", || {
        ready((lb.health.status().to_json()["conns"] == 0).then_some(()))
    })
    .await;
    let (name, cert, _) = connect(&lb, &client, "db.foobar.com").await;
    assert_eq!(name, "db-api");
    assert_eq!(cert, backend(&backends, "db-api").cert);
    lb.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_is_closed_at_once() {
    let dir = TempDir::new("sni-plain");
    // An inspect_delay longer than DEADLINE: closing in time is no timeout.
    let (_pki, backends, lb) = start(&dir, "inspect_delay = \"1h\"").await;
    let mut plain = TcpStream::connect(lb.addr).await.unwrap();
    let local = plain.local_addr().unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: db.foobar.com\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut plain).await.is_empty(), "no answer");
    let line = access_line(local).await;
    assert!(line.contains(" tls-in tls-in/<NOSRV> "), "{line}");
    assert!(line.ends_with(" 0/0 PR"), "refused by the proxy: {line}");
    assert_eq!(sessions(&lb), 0, "no server was chosen");
    for b in &backends {
        assert_eq!(b.handshakes.load(Ordering::SeqCst), 0, "{}", b.name);
    }
    lb.stop().await;
}

#[tokio::test]
async fn a_reload_changes_the_routes() {
    let dir = TempDir::new("sni-reload");
    let (pki, backends, lb) = start(&dir, "").await;
    let client = pki.client(true, None);
    assert_eq!(connect(&lb, &client, "db.foobar.com").await.0, "db-api");
    // Without its exact route, db.foobar.com falls to the wildcard's backend.
    let file = dir.path().join("farm.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("{ sni = \"db.foobar.com\", backend = \"db-api\" }, ", "");
    std::fs::write(&file, text).unwrap();
    let control = lb.node.as_ref().unwrap().control();
    let summary = tokio::task::spawn_blocking(move || control.reload())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.generation, 1);
    let (name, cert, _) = connect(&lb, &client, "db.foobar.com").await;
    assert_eq!(name, "other");
    assert_eq!(cert, backend(&backends, "other").cert);
    lb.stop().await;
}
