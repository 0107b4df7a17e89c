//! `/metrics` of an lb node: HAProxy's exporter names with values that follow the traffic
//! sent, a server going DOWN, the retries it causes, and `promtool check metrics` silent.

mod common;

use std::future::ready;
use std::net::SocketAddr;

use common::*;
use http::StatusCode;
use webfarm_testkit::metrics::{sample, sum};
use webfarm_testkit::{eventually, DEADLINE};

async fn scrape(admin: SocketAddr) -> String {
    let answer = get(admin, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    answer.body
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// Passive health only (checks every hour), one retry: a stopped server is found by the
/// request that is refused, which is then redispatched.
fn hourly() -> Checks {
    Checks {
        inter: "1h",
        retries: 1,
        ..Checks::default()
    }
}

#[tokio::test]
async fn counters_follow_traffic_and_a_server_going_down() {
    let mut s = servers::<2>().await;
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], hourly()).await;
    let admin = lb.serve_admin().await;
    for _ in 0..10 {
        assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    }
    let text = scrape(admin).await;
    let www = [("proxy", "www")];
    let web = [("proxy", "web")];
    assert_eq!(
        value(&text, "haproxy_frontend_http_requests_total", &www),
        10.0
    );
    assert_eq!(value(&text, "haproxy_frontend_sessions_total", &www), 10.0);
    let ok = [("proxy", "web"), ("code", "2xx")];
    assert_eq!(
        value(&text, "haproxy_backend_http_responses_total", &ok),
        10.0
    );
    assert_eq!(
        value(&text, "haproxy_backend_http_requests_total", &web),
        10.0
    );
    assert_eq!(sum(&text, "haproxy_server_sessions_total", &web), 10.0);
    for h in ["total", "response", "connect", "queue"] {
        let name = format!("haproxy_backend_{h}_time_seconds_count");
        assert_eq!(value(&text, &name, &web), 10.0, "{name}");
    }
    let web2 = [("proxy", "web"), ("server", "web-2")];
    let n = value(&text, "haproxy_server_total_time_seconds_count", &web2);
    assert_eq!(n, 5.0, "round robin: half of the requests");
    assert!(value(&text, "haproxy_frontend_bytes_out_total", &www) > 0.0);
    let up = [("server", "web-2"), ("state", "UP")];
    assert_eq!(value(&text, "haproxy_server_status", &up), 1.0);
    assert_eq!(value(&text, "haproxy_backend_active_servers", &web), 2.0);
    let web1_checked = [("server", "web-1"), ("state", "L7OK")];
    assert_eq!(
        value(&text, "haproxy_server_check_status", &web1_checked),
        1.0
    );

    // web-2 stops: the next request sent to it is refused, marks it DOWN and is
    // redispatched to web-1.
    s[1].stop().await;
    for _ in 0..2 {
        assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    }
    let text = scrape(admin).await;
    let down = [("server", "web-2"), ("state", "DOWN")];
    assert_eq!(value(&text, "haproxy_server_status", &down), 1.0);
    assert_eq!(value(&text, "haproxy_server_status", &up), 0.0);
    assert_eq!(value(&text, "haproxy_backend_active_servers", &web), 1.0);
    assert_eq!(
        value(&text, "haproxy_server_connection_errors_total", &web2),
        1.0
    );
    assert_eq!(
        value(&text, "haproxy_backend_retry_warnings_total", &web),
        1.0
    );
    assert_eq!(
        value(&text, "haproxy_backend_redispatch_warnings_total", &web),
        1.0
    );
    assert_eq!(
        value(&text, "haproxy_frontend_http_requests_total", &www),
        12.0
    );
    lb.stop().await;
}

#[tokio::test]
async fn no_server_answers_count_as_5xx_and_promtool_finds_nothing_wrong() {
    let promtool = webfarm_testkit::which("promtool", "prometheus", "checks the exposition format");
    let mut s = servers::<1>().await;
    let lb = start_lb(&[&s[0]], &[1], Checks::default()).await;
    let admin = lb.serve_admin().await;
    s[0].stop().await;
    eventually(DEADLINE, "web-1 DOWN", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    assert_eq!(
        get(lb.addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let text = scrape(admin).await;
    let failed = [("proxy", "web"), ("code", "5xx")];
    assert_eq!(
        value(&text, "haproxy_backend_http_responses_total", &failed),
        1.0
    );
    let www5xx = [("proxy", "www"), ("code", "5xx")];
    assert_eq!(
        value(&text, "haproxy_frontend_http_responses_total", &www5xx),
        1.0
    );
    let refused = [("server", "web-1"), ("state", "L4CON")];
    assert_eq!(value(&text, "haproxy_server_check_status", &refused), 1.0);
    assert!(
        value(
            &text,
            "haproxy_server_check_failures_total",
            &[("server", "web-1")]
        ) >= 3.0
    );
    assert_eq!(
        value(&text, "haproxy_backend_status", &[("proxy", "web")]),
        0.0
    );
    assert!(value(&text, "process_resident_memory_bytes", &[]) > 0.0);

    let out = webfarm_testkit::metrics::promtool_check(&promtool, &text);
    assert!(out.is_empty(), "promtool check metrics: {out}\n{text}");
    lb.stop().await;
}

#[tokio::test]
async fn a_request_head_that_times_out_is_a_frontend_request_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = servers::<1>().await;
    let extra = Extra {
        frontend: "timeout = { http_request = \"300ms\" }".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0]], &[1], Checks::default(), &extra).await;
    let admin = lb.serve_admin().await;
    let mut c = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Half: ")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, c.read_to_end(&mut answer))
        .await
        .expect("the connection closes after the 408")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408"), "{answer:?}");
    let www = [("proxy", "www")];
    let text = eventually(DEADLINE, "the request error counted", || async {
        let text = scrape(admin).await;
        (sample(&text, "haproxy_frontend_request_errors_total", &www) == Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(
        value(&text, "haproxy_frontend_http_requests_total", &www),
        0.0
    );
    lb.stop().await;
}
