//! TLS termination on a frontend, with real handshakes (rustls as the client, and curl):
//! SNI picks the certificate, ALPN offers h2, sessions resume, the servers see
//! `X-Forwarded-Proto: https`, answers carry HSTS, the plain frontend redirects, bad
//! certificate files stop the node naming the file, and certificates change under load
//! without a failed request.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{Checks, Extra, TestLb, TestServer};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use webfarm_testkit::{eventually, TempDir, DEADLINE};
use webfarm_tls::ca::{FarmCa, Layout, Leaf, PairPaths, Usage};
use webfarm_tls::rustls;

/// A CA and certificates for `www.foobar.com` (the default) and `api.test` under `dir`.
struct Pki {
    ca: FarmCa,
    layout: Layout,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let layout = Layout::of_data_dir(dir);
        let ca = FarmCa::create(&layout, "www.foobar.com").unwrap();
        let pki = Pki { ca, layout };
        pki.issue("www", &["www.foobar.com"]);
        pki.issue("api", &["api.test"]);
        pki
    }

    fn issue(&self, stem: &str, names: &[&str]) {
        let leaf = Leaf {
            common_name: names[0].into(),
            names: names.iter().map(|n| (*n).to_string()).collect(),
            usage: Usage::Server,
            crl_url: None,
        };
        self.ca
            .issue(&leaf)
            .unwrap()
            .write(&self.paths(stem))
            .unwrap();
    }

    fn paths(&self, stem: &str) -> PairPaths {
        self.layout.node(stem)
    }

    fn der(&self, stem: &str) -> CertificateDer<'static> {
        webfarm_tls::files::read_chain(&self.paths(stem).cert).unwrap()[0].clone()
    }

    /// `tls = {...}` listing `stems`' certificates.
    fn tls_line(&self, stems: &[&str], extra: &str) -> String {
        let certs: Vec<String> = stems
            .iter()
            .map(|s| {
                let p = self.paths(s);
                format!(
                    "{{ cert = '{}', key = '{}' }}",
                    p.cert.display(),
                    p.key.display()
                )
            })
            .collect();
        format!("tls = {{ certs = [{}]{extra} }}", certs.join(", "))
    }

    /// A client trusting the CA, offering `alpn`, with rustls's default session cache.
    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der().clone()).unwrap();
        let mut c = ClientConfig::builder_with_provider(webfarm_tls::server::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

async fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, sni: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(
        DEADLINE,
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .expect("a handshake in time")
    .unwrap()
}

/// `GET path` over HTTP/1.1 on `tls`; status, headers and body.
async fn get_over(tls: TlsStream<TcpStream>, path: &str) -> common::Answer {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "www.foobar.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    common::Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An lb with an HTTPS frontend `www` (`tls_line`) and a plain frontend redirecting to it.
async fn start(server: &TestServer, tls_line: &str) -> (TestLb, SocketAddr) {
    let plain_port = webfarm_testkit::free_port(webfarm_testkit::loopback_ip());
    let extra = Extra {
        frontend: tls_line.to_string(),
        lb: format!(
            "\n[[frontends]]\nname = \"plain\"\nport = {plain_port}\ndefault_backend = \"web\"\nredirect_https = true\n"
        ),
        ..Extra::default()
    };
    let lb = common::start_lb_extra(&[server], &[1], Checks::default(), &extra).await;
    let plain = lb.node.as_ref().unwrap().frontend_addrs()[1].1;
    (lb, plain)
}

#[tokio::test]
async fn sni_alpn_resumption_forwarded_proto_and_hsts() {
    let dir = TempDir::new("tls-basics");
    let pki = Pki::new(dir.path());
    let [server] = common::servers::<1>().await;
    let (lb, _) = start(&server, &pki.tls_line(&["www", "api"], "")).await;
    let client = pki.client(&[b"h2", b"http/1.1"]);
    // SNI chooses the certificate; an unknown name gets the default.
    for (sni, want) in [("www.foobar.com", "www"), ("api.test", "api")] {
        let tls = connect(lb.addr, &client, sni).await;
        let (_, session) = tls.get_ref();
        assert_eq!(
            session.peer_certificates().unwrap()[0],
            pki.der(want),
            "{sni}"
        );
        assert_eq!(
            session.alpn_protocol(),
            Some(&b"h2"[..]),
            "ALPN picks h2 first"
        );
    }
    // HTTP/1.1 when the client offers only that; the server learns the scheme.
    let h1 = pki.client(&[b"http/1.1"]);
    let tls = connect(lb.addr, &h1, "www.foobar.com").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let a = get_over(tls, "/headers").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["strict-transport-security"], "max-age=31536000");
    let seen = server.shared.last_headers.lock().unwrap().clone();
    assert_eq!(seen["x-forwarded-proto"], ["https"]);
    assert!(
        seen["forwarded"][0].ends_with(";proto=https"),
        "{:?}",
        seen["forwarded"]
    );
    // A second connection with the same client resumes the session.
    let again = connect(lb.addr, &h1, "www.foobar.com").await;
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    lb.stop().await;
}

#[tokio::test]
async fn the_plain_frontend_redirects_except_acme_challenges() {
    let dir = TempDir::new("tls-redirect");
    let pki = Pki::new(dir.path());
    let [server] = common::servers::<1>().await;
    let (lb, plain) = start(&server, &pki.tls_line(&["www"], ", hsts = \"off\"")).await;
    let a = common::get(plain, "/x/y?z=1").await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT, "{}", a.body);
    let port = lb.addr.port();
    assert_eq!(
        a.headers["location"],
        format!("https://www.foobar.com:{port}/x/y?z=1")
    );
    assert!(
        a.headers.get("strict-transport-security").is_none(),
        "no HSTS over http"
    );
    let challenge = common::get(plain, "/.well-known/acme-challenge/token").await;
    assert_eq!(challenge.status, StatusCode::OK, "proxied to the server");
    assert_eq!(challenge.body, "web-1");
    // hsts = "off": no header over HTTPS either.
    let tls = connect(lb.addr, &pki.client(&[]), "www.foobar.com").await;
    let a = get_over(tls, "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("strict-transport-security").is_none());
    lb.stop().await;
}

#[tokio::test]
async fn curl_negotiates_http2_and_trusts_the_farm_ca() {
    let curl = webfarm_testkit::which("curl", "curl", "the HTTP/2 test");
    let dir = TempDir::new("tls-curl");
    let pki = Pki::new(dir.path());
    let [server] = common::servers::<1>().await;
    let (lb, _) = start(&server, &pki.tls_line(&["www"], "")).await;
    let url = format!("https://www.foobar.com:{}/", lb.addr.port());
    let resolve = format!("www.foobar.com:{}:{}", lb.addr.port(), lb.addr.ip());
    let out = tokio::process::Command::new(curl)
        .args(["-sS", "--http2", "--cacert"])
        .arg(pki.layout.ca().cert)
        .args([
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_version} %{http_code}",
            &url,
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.ends_with("\n2 200"),
        "HTTP/2 over TLS expected: {text:?}"
    );
    assert!(text.starts_with("web-1"), "{text:?}");
    lb.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_stop_the_node_naming_the_file() {
    let dir = TempDir::new("tls-bad");
    let pki = Pki::new(dir.path());
    let (www, api) = (pki.paths("www"), pki.paths("api"));
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            format!(
                "tls = {{ certs = [{{ cert = '{}', key = '{}' }}] }}",
                www.cert.display(),
                api.key.display()
            ),
            "does not match",
            "api.key",
        ),
        (
            format!("tls = {{ certs = ['{}'] }}", missing.display()),
            "cannot read",
            "missing.pem",
        ),
        (
            format!(
                "tls = {{ certs = [{{ cert = '{}', key = '{}' }}] }}",
                api.cert.display(),
                api.key.display()
            ),
            "does not cover \"www.foobar.com\"",
            "api.crt",
        ),
    ];
    for (line, why, file) in cases {
        let text = common::farm_toml_with(
            webfarm_testkit::free_port(webfarm_testkit::loopback_ip()),
            &[("web-1", "127.0.0.1:1".parse().unwrap(), 1)],
            Checks::default(),
            &Extra {
                frontend: line.clone(),
                ..Extra::default()
            },
        );
        let Err(err) = common::try_start_lb_text(&text).await else {
            panic!("{line}: the node started");
        };
        let err = err.to_string();
        assert!(err.contains(why) && err.contains(file), "{line}: {err}");
    }
}

#[tokio::test]
async fn certificates_change_on_disk_under_load_without_a_failed_request() {
    let dir = TempDir::new("tls-reload");
    let pki = Pki::new(dir.path());
    let [server] = common::servers::<1>().await;
    let (lb, _) = start(&server, &pki.tls_line(&["www"], "")).await;
    let client = pki.client(&[b"http/1.1"]);
    let old = pki.der("www");
    // Load: new connections (each a full handshake) and one keep-alive connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (stop, ok, failed, client, addr) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            client.clone(),
            lb.addr,
        );
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let tls = connect(addr, &client, "www.foobar.com").await;
                let a = get_over(tls, "/").await;
                let counter = if a.status == StatusCode::OK {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let keep = connect(lb.addr, &client, "www.foobar.com").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(keep))
        .await
        .unwrap();
    tokio::spawn(conn);
    until("requests flow", || ok.load(Ordering::Relaxed) > 20).await;
    // Renew the certificate the way ACME clients do: new files renamed into place.
    pki.issue("www", &["www.foobar.com"]);
    let new = pki.der("www");
    assert_ne!(new, old);
    let fresh = pki.client(&[b"http/1.1"]);
    eventually_async_cert(lb.addr, &fresh, &new).await;
    let before = ok.load(Ordering::Relaxed);
    until("requests flow after the swap", || {
        ok.load(Ordering::Relaxed) > before + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    // The keep-alive connection opened before the swap still works.
    let req = Request::get("/")
        .header("host", "www.foobar.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed request across the swap"
    );
    lb.stop().await;
}

/// Polls `check` until it holds, or fails after the deadline naming `what`.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    eventually(DEADLINE, what, || std::future::ready(check().then_some(()))).await;
}

/// Waits until a new handshake gets certificate `want`.
async fn eventually_async_cert(
    addr: SocketAddr,
    client: &Arc<ClientConfig>,
    want: &CertificateDer<'static>,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let tls = connect(addr, client, "www.foobar.com").await;
        if tls.get_ref().1.peer_certificates().unwrap()[0] == *want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn failed_handshakes_are_counted_in_status() {
    let dir = TempDir::new("tls-fail");
    let pki = Pki::new(dir.path());
    let [server] = common::servers::<1>().await;
    let (lb, _) = start(&server, &pki.tls_line(&["www"], "")).await;
    // Plain HTTP sent to the TLS port, and a client that trusts another CA.
    let answer = common::raw(lb.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!answer.contains("200"), "{answer}");
    let other = Pki::new(&dir.path().join("other"));
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    let name = ServerName::try_from("www.foobar.com").unwrap();
    let refused = TlsConnector::from(other.client(&[]))
        .connect(name, tcp)
        .await;
    assert!(
        refused.is_err(),
        "a client of another CA refuses the certificate"
    );
    until("two failures counted", || {
        let status = lb.health.status().to_json();
        status["frontends"][0]["tls"]["handshake_failures"].as_u64() >= Some(2)
    })
    .await;
    let status = lb.health.status().to_json();
    let cert = &status["frontends"][0]["tls"]["certificates"][0];
    assert_eq!(cert["names"], "www.foobar.com");
    assert_eq!(cert["expired"], false);
    lb.stop().await;
}

#[tokio::test]
async fn a_reload_swaps_to_the_certificates_the_new_file_names() {
    let dir = TempDir::new("tls-reload-file");
    let pki = Pki::new(dir.path());
    pki.issue("www2", &["www.foobar.com"]);
    let [server] = common::servers::<1>().await;
    let port = webfarm_testkit::free_port(webfarm_testkit::loopback_ip());
    let extra = Extra {
        frontend: pki.tls_line(&["www"], ""),
        ..Extra::default()
    };
    let text = common::farm_toml_with(
        port,
        &[("web-1", server.addr, 1)],
        Checks::default(),
        &extra,
    );
    let (www, www2, api) = (pki.paths("www"), pki.paths("www2"), pki.paths("api"));
    let path = |p: &std::path::Path| p.display().to_string();
    let file = dir.path().join("farm.toml");
    let lb = common::start_lb_text(&text, Some(&file)).await;
    let client = pki.client(&[]);
    let served =
        |tls: &TlsStream<TcpStream>| tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        served(&connect(lb.addr, &client, "www.foobar.com").await),
        pki.der("www")
    );
    let reload = || {
        let control = lb.node.as_ref().unwrap().control();
        tokio::task::spawn_blocking(move || control.reload())
    };
    // The same farm with other certificate files: the watcher does not know them; the
    // reload (what SIGHUP and `webfarm reload` call) swaps them in.
    let moved = text
        .replace(&path(&www.cert), &path(&www2.cert))
        .replace(&path(&www.key), &path(&www2.key));
    std::fs::write(&file, &moved).unwrap();
    let summary = reload().await.unwrap().unwrap();
    assert_eq!(summary.certificates_reloaded, 1);
    assert_eq!(
        served(&connect(lb.addr, &client, "www.foobar.com").await),
        pki.der("www2")
    );
    // A file whose key does not match is refused whole; the running certificate stays.
    std::fs::write(&file, moved.replace(&path(&www2.key), &path(&api.key))).unwrap();
    let err = reload().await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("does not match") && err.contains("api.key"),
        "{err}"
    );
    assert_eq!(
        served(&connect(lb.addr, &client, "www.foobar.com").await),
        pki.der("www2")
    );
    lb.stop().await;
}

#[tokio::test]
async fn an_expired_certificate_is_served_with_a_warning_and_shows_in_status() {
    let dir = TempDir::new("tls-expired");
    let pki = Pki::new(dir.path());
    let leaf = Leaf {
        common_name: "www.foobar.com".into(),
        names: vec!["www.foobar.com".into()],
        usage: Usage::Server,
        crl_url: None,
    };
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let old = pki
        .ca
        .issue_valid(&leaf, now - 30 * day, now - day)
        .unwrap();
    old.write(&pki.paths("old")).unwrap();
    let [server] = common::servers::<1>().await;
    let (lb, _) = start(&server, &pki.tls_line(&["old"], "")).await;
    let status = lb.health.status().to_json();
    let cert = &status["frontends"][0]["tls"]["certificates"][0];
    assert_eq!(cert["expired"], true, "{status}");
    // A client that checks dates refuses it, which is why the operator is told.
    let tcp = TcpStream::connect(lb.addr).await.unwrap();
    let name = ServerName::try_from("www.foobar.com").unwrap();
    let refused = TlsConnector::from(pki.client(&[])).connect(name, tcp).await;
    let Err(err) = refused else {
        panic!("an expired certificate was accepted");
    };
    let err = err.to_string();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    lb.stop().await;
}
