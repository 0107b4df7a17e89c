//! The access log: one line per request, HAProxy's text format or JSON, target `access`.

mod common;

use std::future::ready;

use common::*;
use http::StatusCode;
use webfarm_testkit::{eventually, DEADLINE};

fn capture() {
    capture_access_log();
}

/// Captured lines containing `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    access_log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test]
async fn one_text_line_per_request_with_haproxy_timers() {
    capture();
    let mut s = servers::<2>().await;
    let checks = Checks {
        inter: "1h",
        retries: 0,
        ..Checks::default()
    };
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], checks).await;
    let a = get(lb.addr, "/text-log-ok?x=1").await;
    assert_eq!(a.status, StatusCode::OK);
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    eventually(DEADLINE, "the line is written", || {
        ready((!lines_with(&id).is_empty()).then_some(()))
    })
    .await;
    let line = &lines_with(&id)[0];
    let fields: Vec<&str> = line.split(' ').collect();
    assert!(fields[0].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(fields[1], "www", "{line}");
    assert_eq!(fields[2], "web/web-1", "{line}");
    let timers: Vec<i64> = fields[3].split('/').map(|t| t.parse().unwrap()).collect();
    assert_eq!(timers.len(), 5, "Tq/Tw/Tc/Tr/Ta: {line}");
    assert!(timers.iter().all(|&t| t >= 0), "{line}");
    assert_eq!(&fields[4..7], ["200", "5", "--"], "{line}");
    assert!(line.contains("\"GET /text-log-ok?x=1 HTTP/1.1\""), "{line}");

    // A refused connection: 503 from the proxy, server named, termination `SC`.
    s[1].stop().await;
    let a = get(lb.addr, "/text-log-refused").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    eventually(DEADLINE, "the 503 line is written", || {
        ready((!lines_with(&id).is_empty()).then_some(()))
    })
    .await;
    let line = &lines_with(&id)[0];
    assert!(line.contains(" web/web-2 "), "{line}");
    assert!(line.contains(" 503 ") && line.contains(" SC "), "{line}");
    assert!(
        line.contains("/-1/-1/"),
        "no connection, no response: {line}"
    );
    lb.stop().await;
}

#[tokio::test]
async fn json_lines() {
    capture();
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        lb: "access_log = \"json\"".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let a = get(lb.addr, "/json-log").await;
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    eventually(DEADLINE, "the line is written", || {
        ready((!lines_with(&id).is_empty()).then_some(()))
    })
    .await;
    let line = &lines_with(&id)[0];
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["frontend"], "www");
    assert_eq!(v["server"], "web-1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["termination"], "--");
    assert_eq!(v["uri"], "/json-log");
    assert!(v["ta"].as_i64().unwrap() >= 0);
    lb.stop().await;
}

#[tokio::test]
async fn access_log_off_writes_nothing() {
    capture();
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        lb: "access_log = \"off\"".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let a = get(lb.addr, "/no-log").await;
    assert_eq!(a.status, StatusCode::OK);
    lb.stop().await;
    assert!(lines_with("/no-log").is_empty());
}

#[tokio::test]
async fn a_request_head_that_times_out_is_logged_as_badreq() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    capture();
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        frontend: "timeout = { http_request = \"200ms\" }".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let mut c = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let me = c.local_addr().unwrap().to_string();
    c.write_all(b"GET /never-finished HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, c.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408 "));
    eventually(DEADLINE, "the <BADREQ> line is written", || {
        ready((!lines_with(&format!("{me} ")).is_empty()).then_some(()))
    })
    .await;
    let line = &lines_with(&format!("{me} "))[0];
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(&fields[1..3], ["www", "www/<NOSRV>"], "{line}");
    assert!(fields[3].starts_with("-1/-1/-1/-1/"), "{line}");
    assert_eq!(fields[4], "408", "{line}");
    assert_eq!(
        fields[5],
        answer.len().to_string(),
        "bytes of the answer: {line}"
    );
    assert_eq!(
        fields[6], "cR",
        "client timeout in the request phase: {line}"
    );
    assert!(line.ends_with("\"<BADREQ>\" -"), "{line}");
    lb.stop().await;
}
