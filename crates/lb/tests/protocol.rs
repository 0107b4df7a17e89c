//! Protocol correctness and limits, over raw sockets: request smuggling defences, timeouts
//! (slowloris, keep-alive, client), header and body size limits, `maxconn`,
//! `Expect: 100-continue`, WebSocket upgrade passthrough.

mod common;

use std::future::ready;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webfarm_testkit::{eventually, DEADLINE};

async fn lb_with(frontend: &str) -> (TestServer, TestLb) {
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        frontend: frontend.into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    (s, lb)
}

/// Reads from `s` until `needle` was seen or the stream ended; returns what was read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&out).contains(needle) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_a_server() {
    let (s, lb) = lb_with("").await;
    let cases: [(&str, &[u8]); 8] = [
        (
            "duplicate Content-Length with different values",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "invalid Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
        ),
        (
            "Transfer-Encoding other than chunked",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
        ),
        (
            "obsolete line folding",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "control byte in a header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        ),
        (
            "space in a header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
        ),
        ("no Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
        (
            "two Host headers",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let answer = raw(lb.addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{what}: expected 400, got {answer:?}"
        );
    }
    assert_eq!(s.hits(), 0, "no malformed request reached the server");
    lb.stop().await;
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_cannot_smuggle() {
    let (s, lb) = lb_with("").await;
    // RFC 9112 §6.3: chunked wins, Content-Length is dropped, and the connection closes
    // after the response, so the bytes after the chunked body are never a request.
    let answer = raw(
        lb.addr,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {answer}"
    );
    assert!(
        answer.contains("len=0"),
        "the server saw the chunked body: {answer}"
    );
    assert_eq!(s.hits(), 1, "the smuggled request never reached the server");
    lb.stop().await;
}

#[tokio::test]
async fn slowloris_is_cut_off_without_holding_up_others() {
    let (_s, lb) = lb_with("timeout = { http_request = \"500ms\" }").await;
    let mut slow = TcpStream::connect(lb.addr).await.unwrap();
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for &b in head.iter() {
        if slow.write_all(&[b]).await.is_err() {
            closed = true;
            break;
        }
        // Others are served meanwhile.
        if start.elapsed() < Duration::from_millis(300) {
            assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > DEADLINE {
            break;
        }
    }
    if !closed {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(DEADLINE, slow.read(&mut buf))
            .await
            .expect("the slow client is cut off")
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "cut off after about 500ms"
    );
    lb.stop().await;
}

#[tokio::test]
async fn a_request_head_that_stops_halfway_gets_408_after_http_request() {
    let (s, lb) = lb_with("timeout = { http_request = \"300ms\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    let sent = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Half: ")
        .await
        .unwrap();
    let answer = read_until(&mut c, "in time").await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Time-out\r\n"),
        "HAProxy's answer to a head that took too long: {answer:?}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        sent.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, c.read(&mut rest))
        .await
        .expect("the connection closes after the 408")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing after the 408");
    assert_eq!(s.hits(), 0, "the half request never reached a server");
    lb.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_closes_silently_after_http_request() {
    let (_s, lb) = lb_with("timeout = { http_request = \"300ms\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, c.read(&mut buf))
        .await
        .expect("an empty connection is closed")
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "closed without an answer (a browser's pre-connect is no error)"
    );
    lb.stop().await;
}

#[tokio::test]
async fn http_request_does_not_cut_keep_alive_idleness() {
    let (_s, lb) =
        lb_with("timeout = { http_request = \"200ms\", http_keep_alive = \"30s\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n";
    c.write_all(request).await.unwrap();
    let answer = read_until(&mut c, "web-1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Idle for several times `http_request`, well within `http_keep_alive`.
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.write_all(request).await.unwrap();
    let answer = read_until(&mut c, "web-1").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the idle keep-alive connection still serves: {answer:?}"
    );
    lb.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_http_keep_alive() {
    let (_s, lb) = lb_with("timeout = { http_keep_alive = \"300ms\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut c, "web-1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle_from = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, c.read(&mut buf))
        .await
        .expect("the idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(250), "{idle:?}");
    assert!(
        idle < Duration::from_secs(5),
        "closed by http_keep_alive (300ms), not by http_request (10s): {idle:?}"
    );
    lb.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let (_s, lb) = lb_with("timeout = { client = \"300ms\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    c.write_all(
        b"POST /upload HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let answer = read_until(&mut c, "timeout client").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    lb.stop().await;
}

#[tokio::test]
async fn header_and_body_limits() {
    let (s, lb) = lb_with("max_header_size = 8192\nmax_body_size = 100").await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let answer = raw(lb.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let answer = raw(
        lb.addr,
        format!(
            "POST /upload HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{}",
            "x".repeat(200)
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than 100 bytes"), "{answer}");
    assert_eq!(s.hits(), 0);

    // Chunked: the limit is found while streaming.
    let chunk = "x".repeat(150);
    let answer = raw(
        lb.addr,
        format!(
            "POST /upload HTTP/1.1\r\nHost: www.foobar.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n96\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    lb.stop().await;
}

#[tokio::test]
async fn over_maxconn_a_new_connection_gets_503() {
    let (_s, lb) = lb_with("maxconn = 1").await;
    let mut first = TcpStream::connect(lb.addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until(&mut first, "web-1")
        .await
        .starts_with("HTTP/1.1 200"));
    let answer = raw(lb.addr, b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("maxconn"), "{answer}");
    drop(first);
    eventually(DEADLINE, "the slot frees", || {
        ready((lb.health.status().to_json()["conns"] == 0).then_some(()))
    })
    .await;
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    lb.stop().await;
}

#[tokio::test]
async fn expect_100_continue() {
    let (s, lb) = lb_with("").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    c.write_all(b"POST /upload HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until(&mut c, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    let body: Vec<u8> = (0..5).map(pattern).collect();
    c.write_all(&body).await.unwrap();
    let answer = read_until(&mut c, "ok=").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("len=5 ok=true"), "{answer}");
    assert_eq!(s.shared.uploaded.load(Ordering::SeqCst), 5);
    lb.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    // A quiet tunnel outlives the keep-alive timeout.
    let (_s, lb) = lb_with("timeout = { http_keep_alive = \"200ms\" }").await;
    let mut c = TcpStream::connect(lb.addr).await.unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_until(&mut c, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    c.write_all(b"hello").await.unwrap();
    assert_eq!(read_until(&mut c, "hello").await, "web-1:hello");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.write_all(b"again").await.unwrap();
    assert_eq!(read_until(&mut c, "again").await, "web-1:again");
    eventually(DEADLINE, "the tunnel counts on the server", || {
        ready((lb.server_status("web-1")["current_conns"] == 1).then_some(()))
    })
    .await;
    drop(c);
    eventually(DEADLINE, "the tunnel closed", || {
        ready((lb.server_status("web-1")["current_conns"] == 0).then_some(()))
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_s, lb) = lb_with("").await;
    let answer = raw(
        lb.addr,
        b"GET /slow?ms=50 HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let first = answer.find("web-1 slow").expect(&answer);
    let second = answer.rfind("web-1").unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(first < second, "{answer}");
    lb.stop().await;
}
