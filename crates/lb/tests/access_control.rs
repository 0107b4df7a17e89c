//! Access control at the load balancer, end to end on real sockets: ACLs with `http-request
//! deny|tarpit|redirect` and `tcp-request connection reject` (no backend work for what is
//! refused, HAProxy's counters and termination states), a reload that changes the rules,
//! and a stick-table rate limit under a wrk flood from one address while another address
//! keeps being served.

mod common;

use std::future::ready;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use webfarm_testkit::metrics::sample;
use webfarm_testkit::{eventually, loopback_ip, TempDir, DEADLINE};

/// `GET path` with `headers` on a new connection from source address `src`.
async fn get_from(src: Ipv4Addr, lb: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    let stream = socket.connect(lb).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "www.foobar.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        DEADLINE,
        sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    answer(resp).await
}

/// Health checks every hour: they stay out of the servers' counts.
fn hourly_checks() -> Checks {
    Checks {
        inter: "1h",
        ..Checks::default()
    }
}

/// An lb in front of `server` (web-1, [`hourly_checks`]) with `extra`'s frontend, its farm
/// file written at `file` when reloads need one; with its admin address.
async fn lb_with(
    server: SocketAddr,
    extra: &Extra,
    file: Option<&std::path::Path>,
) -> (TestLb, SocketAddr) {
    let text = farm_toml_with(
        FRONTEND_PORT,
        &[("web-1", server, 1)],
        hourly_checks(),
        extra,
    );
    let lb = start_lb_text(&text, file).await;
    let admin = lb.serve_admin().await;
    (lb, admin)
}

async fn scrape(admin: SocketAddr) -> String {
    let a = get(admin, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    a.body
}

fn counter(text: &str, name: &str) -> f64 {
    sample(text, name, &[("proxy", "www")]).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The access line of request `id`, once written.
async fn access_line(id: &str) -> String {
    eventually(DEADLINE, "the access line is written", || {
        ready(
            access_log_text()
                .lines()
                .find(|l| l.contains(id))
                .map(str::to_string),
        )
    })
    .await
}

/// The frontend lines of the rules test: `blocked` is denied, `rejected` refused at
/// connection time, only `admin` may reach `/admin`.
fn rules_frontend(blocked: Ipv4Addr, rejected: Ipv4Addr, admin: Ipv4Addr) -> String {
    format!(
        r#"acl = [
  "blocked src {blocked}/32",
  "admin path_beg /admin",
  "old path_beg /old",
  "bot hdr_sub(user-agent) -i bot",
]
tcp_request_connection = ["reject if {{ src {rejected} }}"]
http_request = [
  "deny if blocked",
  "deny deny_status 404 if admin !{{ src {admin} }}",
  "redirect prefix /new code 301 if old",
  "tarpit deny_status 403 if bot",
]
timeout = {{ tarpit = "300ms" }}
"#
    )
}

#[tokio::test]
async fn refused_requests_cost_no_backend_work_and_are_counted_and_logged() {
    capture_access_log();
    let s = TestServer::start("web-1").await;
    let (blocked, rejected) = (loopback_ip(), loopback_ip());
    let (client, stranger) = (loopback_ip(), loopback_ip());
    let dir = TempDir::new("acl-rules");
    let file = dir.path().join("farm.toml");
    let extra = Extra {
        frontend: rules_frontend(blocked, rejected, client),
        ..Extra::default()
    };
    let (lb, admin) = lb_with(s.addr, &extra, Some(&file)).await;

    // A client the rules let through reaches the server.
    let a = get_from(client, lb.addr, "/", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-1"));
    let hits = s.hits();

    // deny: 403 from the lb, `PR`, the frontend named as backend, no server.
    let a = get_from(blocked, lb.addr, "/", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let line = access_line(a.headers["x-request-id"].to_str().unwrap()).await;
    assert!(
        line.contains(" www www/<NOSRV> ") && line.contains(" 403 ") && line.contains(" PR "),
        "{line}"
    );
    // deny_status, AND, a negated anonymous ACL: only `client` may reach /admin.
    let a = get_from(stranger, lb.addr, "/admin/x", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let a = get_from(client, lb.addr, "/admin/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    // redirect prefix, code 301, query kept: `LR`.
    let a = get_from(client, lb.addr, "/old/page?q=1", &[]).await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.headers["location"], "/new/old/page?q=1");
    let line = access_line(a.headers["x-request-id"].to_str().unwrap()).await;
    assert!(line.contains(" 301 ") && line.contains(" LR "), "{line}");
    // tarpit: held `timeout tarpit`, then 403, `PT`.
    let begun = Instant::now();
    let a = get_from(client, lb.addr, "/", &[("user-agent", "EvilBot/1.0")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        begun.elapsed() >= Duration::from_millis(300),
        "{:?}",
        begun.elapsed()
    );
    let line = access_line(a.headers["x-request-id"].to_str().unwrap()).await;
    assert!(line.contains(" PT "), "{line}");
    // tcp-request connection reject: closed before a byte is read, no answer at all.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((rejected, 0))).unwrap();
    let mut stream = socket.connect(lb.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );

    // The server saw none of them (the one that passed /admin aside).
    assert_eq!(
        s.hits(),
        hits + 1,
        "only the allowed /admin request reached the server"
    );
    let metrics = scrape(admin).await;
    assert_eq!(
        counter(&metrics, "haproxy_frontend_requests_denied_total"),
        3.0,
        "two denials and a tarpit"
    );
    assert_eq!(
        counter(&metrics, "haproxy_frontend_intercepted_requests_total"),
        1.0
    );
    assert_eq!(
        counter(&metrics, "haproxy_frontend_denied_connections_total"),
        1.0
    );
    let backend_requests = sample(
        &metrics,
        "haproxy_backend_http_requests_total",
        &[("proxy", "web")],
    );
    assert_eq!(
        backend_requests,
        Some(2.0),
        "the backend counted the two requests it served"
    );

    // A reload that changes the rules applies them to the next request.
    let changed = extra
        .frontend
        .replace(&format!("src {blocked}/32"), &format!("src {client}/32"));
    let mut after = farm_toml_with(
        FRONTEND_PORT,
        &[("web-1", s.addr, 1)],
        hourly_checks(),
        &Extra {
            frontend: changed,
            ..Extra::default()
        },
    );
    // The running farm's file: the lb's own address and admin port stay.
    let text = std::fs::read_to_string(&file).unwrap();
    for key in ["address", "admin_port"] {
        let line = |t: &str| t.lines().find(|l| l.starts_with(key)).unwrap().to_string();
        after = after.replace(&line(&after), &line(&text));
    }
    std::fs::write(&file, &after).unwrap();
    let a = post(admin, "/lb/reload", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        get_from(blocked, lb.addr, "/", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_from(client, lb.addr, "/", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    lb.stop().await;
}

/// The frontend lines of the rate-limit test: more than `limit` requests over 10 s from
/// one address get 429.
fn rate_limit_frontend(limit: u32) -> String {
    format!(
        r#"acl = ["too_fast sc0_http_req_rate gt {limit}"]
http_request = ["track-sc0 src", "deny deny_status 429 if too_fast"]
stick_table = {{ type = "ip", size = 1000, expire = "30s", store = ["http_req_rate(10s)", "conn_cur"] }}
"#
    )
}

/// `Non-2xx or 3xx responses: N` of wrk's report (0 when absent), and its request count.
fn wrk_counts(report: &str) -> (u64, u64) {
    let non_2xx = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    let total = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"))
        .parse()
        .unwrap();
    (non_2xx, total)
}

#[tokio::test]
async fn a_flooding_address_is_limited_while_another_keeps_being_served() {
    capture_access_log();
    let wrk = webfarm_testkit::which("wrk", "wrk", "it floods the lb from one address");
    let s = TestServer::start("web-1").await;
    let limit = 50;
    let extra = Extra {
        frontend: rate_limit_frontend(limit),
        threads: Some(2),
        ..Extra::default()
    };
    let (lb, admin) = lb_with(s.addr, &extra, None).await;
    let other = loopback_ip();

    // wrk connects from 127.0.0.1 (the kernel's source for 127.0.0.0/8).
    let url = format!("http://{}/", lb.addr);
    let flood = tokio::task::spawn_blocking(move || {
        Command::new(wrk)
            .args(["-t1", "-c8", "-d4s", "-H", "Host: www.foobar.com", &url])
            .output()
            .unwrap()
    });
    // Wait until the flood is being limited, then measure the other address meanwhile.
    eventually(DEADLINE, "the flood is limited", || async {
        let text = scrape(admin).await;
        (counter(&text, "haproxy_frontend_requests_denied_total") > 100.0).then_some(())
    })
    .await;
    let mut latencies = Vec::new();
    for _ in 0..30 {
        let begun = Instant::now();
        let a = get_from(other, lb.addr, "/", &[]).await;
        latencies.push(begun.elapsed());
        assert_eq!(
            a.status,
            StatusCode::OK,
            "the other address is served during the flood"
        );
    }
    let out = flood.await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "other address during the flood: median {median:?}, max {:?}",
        latencies.last().unwrap()
    );
    println!("{report}");
    assert!(median < Duration::from_millis(500), "median {median:?}");

    let (limited, total) = wrk_counts(&report);
    assert!(limited > 0 && total > limited, "{report}");
    // The flood's requests that reached the server: at most the limit (plus those of
    // other connections counted in the same instant); the other address's 30 all did.
    let flood_hits = s.hits() - 30;
    assert!(
        flood_hits <= u64::from(limit) + 8,
        "{flood_hits} of {total} flood requests passed"
    );
    let text = scrape(admin).await;
    assert!(counter(&text, "haproxy_frontend_requests_denied_total") >= limited as f64);
    assert_eq!(
        sample(&text, "haproxy_sticktable_used", &[("name", "www")]),
        Some(2.0)
    );

    // 429 with Retry-After: the table's period.
    let a = get_from(Ipv4Addr::LOCALHOST, lb.addr, "/", &[]).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["retry-after"], "10");
    lb.stop().await;
}

/// curl over HTTPS to `lb` with server name `sni` (`--resolve`), from source address
/// `src` (`--interface`); its exit status and the HTTP status it printed.
async fn curl_https(
    curl: &std::path::Path,
    lb: SocketAddr,
    sni: &str,
    src: Ipv4Addr,
) -> (i32, String) {
    let out = tokio::process::Command::new(curl)
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(["--interface", &src.to_string()])
        .args(["--resolve", &format!("{sni}:{}:{}", lb.port(), lb.ip())])
        .arg(format!("https://{sni}:{}/", lb.port()))
        .output()
        .await
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), code)
}

#[tokio::test]
async fn https_frontends_match_the_sni_and_reject_before_the_handshake() {
    capture_access_log();
    let curl = webfarm_testkit::which(
        "curl",
        "curl",
        "it is the TLS client with an SNI and a source address",
    );
    let dir = TempDir::new("acl-tls");
    let layout = webfarm_tls::ca::Layout::of_data_dir(dir.path());
    let ca = webfarm_tls::ca::FarmCa::create(&layout, "www.foobar.com").unwrap();
    let leaf = webfarm_tls::ca::Leaf {
        common_name: "www.foobar.com".into(),
        names: vec!["www.foobar.com".into(), "api.foobar.com".into()],
        usage: webfarm_tls::ca::Usage::Server,
        crl_url: None,
    };
    let paths = layout.node("site");
    ca.issue(&leaf).unwrap().write(&paths).unwrap();
    let s = TestServer::start("web-1").await;
    let (client, rejected) = (loopback_ip(), loopback_ip());
    let extra = Extra {
        frontend: format!(
            r#"tls = {{ certs = [{{ cert = '{}', key = '{}' }}] }}
acl = ["api ssl_fc_sni -i api.foobar.com"]
tcp_request_connection = ["reject if {{ src {rejected} }}"]
http_request = ["deny unless api"]
"#,
            paths.cert.display(),
            paths.key.display()
        ),
        ..Extra::default()
    };
    let (lb, admin) = lb_with(s.addr, &extra, None).await;

    assert_eq!(
        curl_https(&curl, lb.addr, "API.foobar.com", client).await,
        (0, "200".into())
    );
    assert_eq!(
        curl_https(&curl, lb.addr, "www.foobar.com", client).await,
        (0, "403".into())
    );
    // Rejected at accept: the handshake never starts (curl: no HTTP status at all).
    let (status, code) = curl_https(&curl, lb.addr, "api.foobar.com", rejected).await;
    assert!(status != 0 && code == "000", "curl {status} {code}");
    assert_eq!(s.hits(), 1);
    let metrics = scrape(admin).await;
    assert_eq!(
        counter(&metrics, "haproxy_frontend_denied_connections_total"),
        1.0
    );
    assert_eq!(
        counter(&metrics, "haproxy_frontend_requests_denied_total"),
        1.0
    );
    lb.stop().await;
}
