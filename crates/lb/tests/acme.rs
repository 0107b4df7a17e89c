//! ACME end to end against Pebble, Let's Encrypt's test CA (Debian's `pebble` package): the
//! test starts `pebble` and `pebble-challtestsrv` (its DNS server, answering the lb's
//! address for every name) on loopback addresses of its own, then an lb with `[acme]`
//! pointing at it. Pebble validates http-01 on the lb's plain frontend, which redirects to
//! HTTPS: the lb must answer the challenge itself (the backend counts every request), get
//! the certificate and serve it on its HTTPS frontend without a restart, and renew it at
//! two thirds of its lifetime (Pebble's `certificateValidityPeriod` makes that seconds).
//!
//! Without `pebble` installed the tests fail, naming the package.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{TestLb, TestServer};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_rustls::TlsConnector;
use webfarm_testkit::{eventually, free_port, loopback_ip, TempDir, DEADLINE};
use webfarm_tls::ca::{FarmCa, Layout, Leaf, Usage};
use webfarm_tls::rustls;

/// Pebble and its DNS server, killed on drop (their logs printed if the test failed).
struct Pebble {
    /// The ACME directory URL.
    directory: String,
    /// The management interface (`/roots/0`).
    management: SocketAddr,
    /// The root Pebble's own HTTPS certificate chains to (`[acme] ca_file`).
    api_ca: PathBuf,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Pebble {
    /// Starts Pebble validating http-01 on `http_port` of `lb_ip` (every name resolves to
    /// `lb_ip`), issuing certificates valid `validity` seconds (Pebble's default: 5 years).
    async fn start(dir: &Path, lb_ip: Ipv4Addr, http_port: u16, validity: Option<u64>) -> Self {
        let why = "the ACME tests run Pebble, Let's Encrypt's test CA";
        let pebble = webfarm_testkit::which("pebble", "pebble", why);
        let challtestsrv = webfarm_testkit::which("pebble-challtestsrv", "pebble", why);
        let ip = loopback_ip();
        let (acme, management, dns, dns_mgmt) = (
            SocketAddr::from((ip, free_port(ip))),
            SocketAddr::from((ip, free_port(ip))),
            SocketAddr::from((ip, free_port(ip))),
            SocketAddr::from((ip, free_port(ip))),
        );
        let (api_ca, cert, key) = api_certificate(dir, ip);
        let mut config = serde_json::json!({ "pebble": {
            "listenAddress": acme.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": free_port(lb_ip),
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut dns_server = Command::new(challtestsrv);
        dns_server.args(["-defaultIPv4", &lb_ip.to_string(), "-defaultIPv6", ""]);
        dns_server.args([
            "-dns01",
            &dns.to_string(),
            "-management",
            &dns_mgmt.to_string(),
        ]);
        dns_server.args(["-http01", "", "-https01", "", "-tlsalpn01", ""]);
        let mut ca = Command::new(pebble);
        ca.arg("-config").arg(&config_file);
        ca.args(["-dnsserver", &dns.to_string()]);
        // No random validation delay, no spurious badNonce, a fresh validation every order.
        ca.envs([
            ("PEBBLE_VA_NOSLEEP", "1"),
            ("PEBBLE_WFE_NONCEREJECT", "0"),
            ("PEBBLE_AUTHZREUSE", "0"),
        ]);
        let mut me = Pebble {
            directory: format!("https://{acme}/dir"),
            management,
            api_ca,
            dir: dir.to_path_buf(),
            children: Vec::new(),
        };
        me.spawn("pebble-challtestsrv", dns_server, dns_mgmt).await;
        me.spawn("pebble", ca, acme).await;
        me
    }

    /// Starts `cmd` (output to `<dir>/<name>.log`) and waits until it listens on `addr`.
    async fn spawn(&mut self, name: &str, mut cmd: Command, addr: SocketAddr) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        cmd.stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(std::process::Stdio::null());
        let child = cmd.kill_on_drop(true).spawn();
        self.children
            .push(child.unwrap_or_else(|e| panic!("cannot start {name}: {e}")));
        eventually(DEADLINE, &format!("{name} listening on {addr}"), || async {
            TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
    }

    /// Pebble's root (it issues through an intermediate under it), from its management
    /// interface.
    async fn root(&self) -> CertificateDer<'static> {
        let pem = https_get(self.management, &self.api_ca, "/roots/0").await;
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM root")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["pebble", "pebble-challtestsrv"] {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")));
                eprintln!("---- {name}'s log ----\n{}", log.unwrap_or_default());
            }
        }
    }
}

/// A CA of the test's own and, signed by it, Pebble's HTTPS certificate for `ip`: the CA's
/// file, the certificate's and the key's.
fn api_certificate(dir: &Path, ip: Ipv4Addr) -> (PathBuf, PathBuf, PathBuf) {
    let layout = Layout::of_data_dir(&dir.join("pebble-api"));
    let ca = FarmCa::create(&layout, "pebble test").unwrap();
    let leaf = Leaf {
        common_name: ip.to_string(),
        names: vec![ip.to_string(), "localhost".into()],
        usage: Usage::Server,
        crl_url: None,
    };
    let paths = layout.node("pebble");
    ca.issue(&leaf).unwrap().write(&paths).unwrap();
    (layout.ca().cert, paths.cert, paths.key)
}

/// The body of `GET path` over HTTPS to `addr`, trusting `ca_file` only.
async fn https_get(addr: SocketAddr, ca_file: &Path, path: &str) -> String {
    let ca = webfarm_tls::files::read_chain(ca_file).unwrap();
    let tls = connect(addr, client(ca[0].clone()), &addr.ip().to_string())
        .await
        .expect("a handshake with pebble's management interface");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path} from {addr}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A TLS client trusting `root` only.
fn client(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let config = ClientConfig::builder_with_provider(webfarm_tls::server::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A verified handshake with `addr` for `sni`, or why not.
async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let handshake = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(DEADLINE, handshake).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

/// The certificate the lb at `addr` serves for `www.foobar.com`, once it verifies against
/// `root` and differs from `previous` (waits up to `deadline`).
async fn served_by(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    previous: Option<&CertificateDer<'static>>,
    deadline: Duration,
) -> CertificateDer<'static> {
    let config = client(root.clone());
    eventually(deadline, "a certificate issued by pebble served", || {
        let config = config.clone();
        async move {
            let tls = connect(addr, config, "www.foobar.com").await.ok()?;
            let leaf = tls.get_ref().1.peer_certificates()?[0].clone().into_owned();
            (Some(&leaf) != previous).then_some(leaf)
        }
    })
    .await
}

/// A farm of one lb (its HTTPS frontend first, then a plain one on port `plain`
/// redirecting to it) in front of `server`, with `[acme]` of `directory` and `ca_file`;
/// the farm CA's site certificate is made first, as `webfarm up` does, so that the HTTPS
/// frontend can start.
fn farm_text(
    dir: &Path,
    ip: Ipv4Addr,
    plain: u16,
    server: &TestServer,
    acme: (&str, &Path),
) -> String {
    let data = dir.join("data");
    let layout = Layout::of_data_dir(&data);
    let (ca, _) = FarmCa::open_or_create(&layout, "www.foobar.com").unwrap();
    ca.ensure(
        &webfarm_tls::farm::Subjects::site("www.foobar.com").site_leaf(),
        &layout.site(),
    )
    .unwrap();
    format!(
        r#"
site = "www.foobar.com"
data_dir = '{data}'
[[nodes]]
name = "lb-1"
role = "lb"
address = "{ip}"
[[frontends]]
name = "www"
port = {https}
default_backend = "web"
tls = {{}}
[[frontends]]
name = "plain"
port = {plain}
default_backend = "web"
redirect_https = true
[[backends]]
name = "web"
[backends.check]
inter = "100ms"
[[backends.servers]]
name = "web-1"
address = "{server}"
[lb]
threads = 1
[acme]
directory = "{directory}"
contact = ["mailto:ops@foobar.com"]
ca_file = '{ca_file}'
"#,
        data = data.display(),
        https = free_port(ip),
        server = server.addr,
        directory = acme.0,
        ca_file = acme.1.display(),
    )
}

/// Starts the lb of [`farm_text`] with `[acme]` pointing at `pebble`.
async fn start_lb(
    dir: &Path,
    ip: Ipv4Addr,
    plain: u16,
    server: &TestServer,
    pebble: &Pebble,
) -> TestLb {
    let acme = (pebble.directory.as_str(), pebble.api_ca.as_path());
    common::start_lb_text(&farm_text(dir, ip, plain, server, acme), None).await
}

/// Mode bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_lb_gets_its_certificate_from_pebble_answering_http_01_itself() {
    let dir = TempDir::new("acme-issue");
    let [server] = common::servers::<1>().await;
    let ip = loopback_ip();
    let plain = free_port(ip);
    let pebble = Pebble::start(dir.path(), ip, plain, None).await;
    let root = pebble.root().await;
    let lb = start_lb(dir.path(), ip, plain, &server, &pebble).await;

    // Pebble's chain for the site's name, verified against Pebble's root, with no restart.
    let leaf = served_by(lb.addr, &root, None, DEADLINE).await;
    let acme = dir.path().join("data/acme");
    assert_eq!(mode(&acme.join("site.pem")), 0o600);
    assert_eq!(mode(&acme.join("account.json")), 0o600);
    let on_disk = webfarm_tls::files::read_chain(&acme.join("site.pem")).unwrap();
    assert_eq!(on_disk[0], leaf);
    assert!(on_disk.len() >= 2, "the chain carries the intermediate");
    // Pebble's validation went to the plain frontend, which redirects everything else: the
    // lb answered it, the backend saw nothing.
    assert_eq!(server.hits(), 0, "the backend saw a challenge request");
    let plain_addr = SocketAddr::from((ip, plain));
    let a = common::get(plain_addr, "/.well-known/acme-challenge/not-a-token").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert!(a.body.contains("no ACME challenge"), "{}", a.body);
    let a = common::get(plain_addr, "/page").await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT, "{}", a.body);
    assert_eq!(server.hits(), 0);
    lb.stop().await;
}

#[tokio::test]
async fn the_lb_renews_at_two_thirds_of_the_lifetime_without_a_restart() {
    const VALIDITY: u64 = 15;
    let dir = TempDir::new("acme-renew");
    let [server] = common::servers::<1>().await;
    let ip = loopback_ip();
    let plain = free_port(ip);
    let pebble = Pebble::start(dir.path(), ip, plain, Some(VALIDITY)).await;
    let root = pebble.root().await;
    let lb = start_lb(dir.path(), ip, plain, &server, &pebble).await;

    let first = served_by(lb.addr, &root, None, DEADLINE).await;
    let (not_before, lifetime) = validity(&first);
    assert!(lifetime <= Duration::from_secs(VALIDITY), "{lifetime:?}");
    let second = served_by(lb.addr, &root, Some(&first), DEADLINE * 2).await;
    // Renewed at two thirds of the first one's lifetime, not before (seconds: X.509 times).
    let (renewed, _) = validity(&second);
    let due = not_before + lifetime * 2 / 3;
    assert!(
        renewed + Duration::from_secs(1) >= due,
        "renewed at {renewed:?}, due at {due:?}"
    );
    assert_eq!(server.hits(), 0, "the backend saw a challenge request");
    lb.stop().await;
}

#[tokio::test]
async fn an_unusable_ca_file_stops_the_lb_naming_it() {
    let dir = TempDir::new("acme-ca-file");
    let [server] = common::servers::<1>().await;
    let ip = loopback_ip();
    let missing = dir.path().join("no-such-ca.pem");
    let acme = ("https://127.0.0.1:14000/dir", missing.as_path());
    let text = farm_text(dir.path(), ip, free_port(ip), &server, acme);
    let Err(e) = common::try_start_lb_text(&text).await else {
        panic!("the lb started with a missing ca_file");
    };
    let e = e.to_string();
    assert!(e.starts_with("ACME: acme.ca_file: "), "{e}");
    assert!(e.contains("no-such-ca.pem"), "{e}");
}

/// `notBefore` and the lifetime of a DER certificate.
fn validity(der: &CertificateDer<'_>) -> (SystemTime, Duration) {
    let (_, x509) = x509_parser::parse_x509_certificate(der).unwrap();
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap());
    let v = x509.validity();
    let (from, to) = (at(v.not_before.timestamp()), at(v.not_after.timestamp()));
    (from, to.duration_since(from).unwrap())
}
