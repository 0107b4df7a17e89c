//! Every listener of every role answers keep-alive requests without a delayed-ACK stall.
//!
//! A server that writes a response's head and body in two pieces without `TCP_NODELAY`
//! holds the second piece (Nagle's algorithm) until the client acknowledges the first, and
//! the client delays that ACK by 40 ms or more: every request on a keep-alive connection then
//! takes at least 40 ms, so 20 sequential requests take at least 800 ms. Without the stall
//! they take a few milliseconds. The test allows half of the stalled minimum (400 ms for 20)
//! and keeps the best of three rounds, so a loaded machine does not fail it while a stall
//! always does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TempDir, TestFarm};

/// Requests per round, sent one after the other on one connection.
const REQUESTS: u32 = 20;
/// The delayed ACK's minimum on Linux: what every request of a stalled server costs.
const DELAYED_ACK: Duration = Duration::from_millis(40);

/// Reads one HTTP/1.1 response with a `Content-Length` body; its status code.
fn read_response(reader: &mut BufReader<TcpStream>, what: &str) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line {line:?}"));
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.unwrap_or_else(|| panic!("{what}: answer without Content-Length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status
}

/// The time `REQUESTS` sequential keep-alive `GET`s of `path` on `addr` take.
/// `auth` is an `Authorization: ...\r\n` line (the db API asks for a user of its auth file).
fn round(addr: &str, host: &str, path: &str, auth: &str) -> Duration {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The client's own requests must not wait behind Nagle either: one write each, no delay.
    stream.set_nodelay(true).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n");
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let what = format!("GET http://{addr}{path}");
    let start = Instant::now();
    for _ in 0..REQUESTS {
        writer.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut reader, &what), 200, "{what}");
    }
    start.elapsed()
}

/// Asserts that the best of three rounds is well under a stalled server's minimum.
fn assert_no_stall(addr: &str, host: &str, path: &str, auth: &str) {
    let best = (0..3).map(|_| round(addr, host, path, auth)).min().unwrap();
    let stalled_minimum = DELAYED_ACK * REQUESTS;
    assert!(
        best < stalled_minimum / 2,
        "{REQUESTS} keep-alive requests of http://{addr}{path} took {best:?} (a delayed-ACK \
         stall costs at least {stalled_minimum:?}): a listener without TCP_NODELAY?"
    );
}

#[test]
fn every_listener_answers_keep_alive_requests_without_a_delayed_ack_stall() {
    let tmp = TempDir::new("nodelay");
    let farm = TestFarm::start(&tmp, 57);
    let ip = |host: &str| format!("127.0.57.{host}");
    // Every request carries the farm operator's credentials.
    let auth = common::operator_authorization(&tmp.path().join("data"))
        .map(|a| format!("Authorization: {}\r\n", a.to_str().unwrap()))
        .expect("the farm's admin token");
    let auth = auth.as_str();
    // The lb's frontend (static file through the proxy) and a web node (static file).
    assert_no_stall(
        &format!("{}:8080", ip("10")),
        "www.foobar.com",
        "/style.css",
        auth,
    );
    assert_no_stall(&format!("{}:8000", ip("21")), "web-1", "/about.html", auth);
    // A db node's SQL API (a local read) and every role's admin port.
    assert_no_stall(
        &format!("{}:4001", ip("31")),
        "db-1",
        "/db/query?q=SELECT%201&level=none",
        auth,
    );
    for host in ["10", "21", "31"] {
        assert_no_stall(&format!("{}:9000", ip(host)), "admin", "/healthz", auth);
    }
    drop(farm);
}
