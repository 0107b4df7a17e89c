//! The request path: headers, streamed bodies, upstream keep-alive, retries, timeouts,
//! HTTP/2 prior knowledge, graceful shutdown.

mod common;

use std::future::ready;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use webfarm_testkit::{eventually, DEADLINE};

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;

    let req = Request::get("/headers")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let a = send(lb.addr, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = s.shared.last_headers.lock().unwrap().clone();
    assert_eq!(seen["x-forwarded-for"], ["10.1.2.3, 127.0.0.1"]);
    assert_eq!(seen["x-forwarded-proto"], ["http"]);
    assert_eq!(seen["host"], ["www.foobar.com"]);
    let id = &seen["x-request-id"][0];
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        a.headers["x-request-id"],
        id.as_str(),
        "the client sees the same id"
    );

    let a = get(lb.addr, "/headers").await;
    let seen = s.shared.last_headers.lock().unwrap().clone();
    assert_ne!(
        &seen["x-request-id"][0], id,
        "every request gets its own id"
    );
    assert_eq!(seen["x-forwarded-for"], ["127.0.0.1"]);
    assert_eq!(a.headers["x-request-id"], seen["x-request-id"][0].as_str());

    let req = Request::get("/headers")
        .header("x-request-id", "abc-123")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let a = send(lb.addr, req).await;
    assert_eq!(
        s.shared.last_headers.lock().unwrap()["x-request-id"],
        ["abc-123"]
    );
    assert_eq!(a.headers["x-request-id"], "abc-123");

    let req = Request::get("/headers")
        .header("x-request-id", "not valid!")
        .body(Empty::<Bytes>::new())
        .unwrap();
    send(lb.addr, req).await;
    let kept = s.shared.last_headers.lock().unwrap()["x-request-id"].clone();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].len(), 32, "an invalid id is replaced: {kept:?}");
    lb.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let req = Request::get("/headers")
        .header("connection", "keep-alive, X-Secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("upgrade", "h2c")
        .header("x-kept", "yes")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let a = send(lb.addr, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = s.shared.last_headers.lock().unwrap().clone();
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            !seen.contains_key(gone),
            "{gone} reached the server: {seen:?}"
        );
    }
    assert_eq!(seen["x-kept"], ["yes"]);

    let a = get(lb.addr, "/hop").await;
    assert_eq!(a.status, StatusCode::OK);
    for gone in ["connection", "x-internal", "keep-alive", "proxy-connection"] {
        assert!(
            !a.headers.contains_key(gone),
            "{gone} reached the client: {:?}",
            a.headers
        );
    }
    assert_eq!(a.headers["x-kept"], "1");
    assert_eq!(a.headers["x-served-by"], "web-1");
    lb.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_through_intact() {
    const SIZE: u64 = 5 * 1024 * 1024;
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;

    // Upload, chunked: the server must see the first chunk before the rest is sent, which
    // only happens if the proxy streams instead of buffering the body.
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
    let req = Request::post("/upload").body(body).unwrap();
    let lb_addr = lb.addr;
    let upload = tokio::spawn(async move { send(lb_addr, req).await });
    let first: Vec<u8> = (0..65_536).map(pattern).collect();
    tx.send_data(Bytes::from(first)).await.unwrap();
    let shared = s.shared.clone();
    eventually(DEADLINE, "the server reads the first chunk", || {
        ready((shared.uploaded.load(Ordering::SeqCst) >= 65_536).then_some(()))
    })
    .await;
    let mut offset = 65_536u64;
    while offset < SIZE {
        let n = (SIZE - offset).min(64 * 1024);
        let chunk: Vec<u8> = (offset..offset + n).map(pattern).collect();
        tx.send_data(Bytes::from(chunk)).await.unwrap();
        offset += n;
    }
    drop(tx);
    let a = upload.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, format!("len={SIZE} ok=true"));

    // Download, chunked, checked byte by byte.
    let resp = send_head(
        lb.addr,
        Request::get(format!("/download?bytes={SIZE}"))
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(read_pattern(resp.into_body()).await, Ok(SIZE));

    // The first part of a response reaches the client while the server holds the rest.
    let resp = send_head(
        lb.addr,
        Request::get("/gate").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    let mut body = resp.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("the first chunk arrives before the server finished")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    s.shared.gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"rest");
    lb.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let s = servers::<3>().await;
    let lb = start_lb(&[&s[0], &s[1], &s[2]], &[1, 1, 1], Checks::default()).await;
    for _ in 0..30 {
        assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    }
    let requests: u64 = s.iter().map(|s| s.hits()).sum();
    let conns: usize = s.iter().map(|s| s.shared.conns.lock().unwrap().len()).sum();
    assert_eq!(requests, 30);
    assert!(conns <= 15, "{conns} upstream connections for 30 requests");
    eventually(DEADLINE, "idle connections wait in the pool", || {
        ready(
            {
                let st = lb.health.status().to_json();
                st["backends"][0]["servers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|s| s["idle_conns"].as_u64() >= Some(1) && s["current_conns"] == 0)
            }
            .then_some(()),
        )
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn idempotent_bodiless_request_is_retried_after_a_failed_exchange() {
    let s = servers::<2>().await;
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], Checks::default()).await;
    // The first pick is web-1, which drops /flaky after reading it: GET goes to web-2.
    let a = get(lb.addr, "/flaky").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "web-2");
    assert_eq!(s[0].hits(), 1, "web-1 did receive the request");
    lb.stop().await;

    // A POST with a body is never sent twice: 502 with the reason.
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], Checks::default()).await;
    let req = Request::post("/flaky")
        .body(Full::new(Bytes::from_static(b"order=1")))
        .unwrap();
    let a = send(lb.addr, req).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(
        a.body
            .starts_with("502 Bad Gateway: server web/web-1 failed"),
        "{}",
        a.body
    );
    assert_eq!(s[1].hits(), 1, "web-2 saw only the earlier GET");
    // The server is not taken down for an application-level failure.
    assert!(lb.is_up("web-1"));
    lb.stop().await;
}

#[tokio::test]
async fn slow_server_gives_504() {
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        backend: "timeout = { server = \"300ms\" }".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let a = get(lb.addr, "/slow?ms=3000").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        a.body,
        "504 Gateway Timeout: server web/web-1 did not answer within 300ms\n"
    );
    assert_eq!(get(lb.addr, "/").await.body, "web-1");
    lb.stop().await;
}

#[tokio::test]
async fn slow_upload_is_not_a_gateway_timeout() {
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        backend: "timeout = { server = \"200ms\" }".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
    let req = Request::post("/upload").body(body).unwrap();
    let lb_addr = lb.addr;
    let upload = tokio::spawn(async move { send(lb_addr, req).await });
    // A slow client: the whole upload takes several response timeouts.
    for i in 0..8u64 {
        let chunk: Vec<u8> = (i * 1000..(i + 1) * 1000).map(pattern).collect();
        tx.send_data(Bytes::from(chunk)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let a = upload.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "len=8000 ok=true");
    lb.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let stream = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri("http://www.foobar.com/headers")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"web-1");
    let seen = s.shared.last_headers.lock().unwrap().clone();
    assert_eq!(seen["host"], ["www.foobar.com"]);
    lb.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=800").await });
    let shared = s.shared.clone();
    eventually(DEADLINE, "the slow request reaches the server", || {
        ready((shared.in_flight.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    lb.trigger.trigger();
    // New connections are refused as soon as the listener closed.
    eventually(
        DEADLINE,
        "the frontend refuses connections",
        || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let a = slow.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "web-1 slow");
    let mut lb = lb;
    let node = lb.node.take().unwrap();
    tokio::time::timeout(DEADLINE, node.wait())
        .await
        .expect("wait returns once the request finished")
        .unwrap();
}
