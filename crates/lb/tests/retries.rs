//! Retries: `retries`, `redispatch`, `retry_on`, never replaying a request whose bytes
//! reached a server unless idempotent and bodiless, `http-reuse safe`, and a server killed
//! under load costing no idempotent request.

mod common;

use std::future::ready;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use webfarm_testkit::{eventually, DEADLINE};

fn backend(lines: &str) -> Extra {
    Extra {
        backend: lines.into(),
        ..Extra::default()
    }
}

#[tokio::test]
async fn retry_on_a_status_resends_idempotent_requests_only() {
    let s = servers::<2>().await;
    let extra = backend("retry_on = [\"conn-failure\", \"503\"]");
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    s[0].shared.force_status.store(503, Ordering::SeqCst);
    // The first pick is web-1, which answers 503: the GET goes again, to web-2.
    let a = get(lb.addr, "/").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-2"));
    assert_eq!(s[0].hits(), 1);
    // Both answer 503 now. A POST with a body reached a server: its 503 is the answer.
    s[1].shared.force_status.store(503, Ordering::SeqCst);
    let before = s[0].hits() + s[1].hits();
    let req = Request::post("/")
        .body(Full::new(Bytes::from_static(b"x=1")))
        .unwrap();
    let a = send(lb.addr, req).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(
        s[0].hits() + s[1].hits(),
        before + 1,
        "the POST was sent once"
    );
    // A GET is tried 1 + retries times, then the last 503 is the answer.
    let before = s[0].hits() + s[1].hits();
    let a = get(lb.addr, "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s[0].hits() + s[1].hits(), before + 2);
    lb.stop().await;
}

#[tokio::test]
async fn without_redispatch_retries_stay_on_the_same_server() {
    let s = servers::<2>().await;
    let extra = backend("redispatch = false");
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    let a = get(lb.addr, "/flaky").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert_eq!(s[0].hits(), 2, "tried twice on web-1");
    assert_eq!(s[1].hits(), 0);
    lb.stop().await;
}

#[tokio::test]
async fn without_conn_failure_a_refused_connection_is_not_retried() {
    let mut s = servers::<2>().await;
    let checks = Checks {
        inter: "1h",
        retries: 3,
        ..Checks::default()
    };
    let extra = backend("retry_on = [\"empty-response\"]");
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], checks, &extra).await;
    s[0].stop().await;
    let a = get(lb.addr, "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("after 1 attempt(s)"), "{}", a.body);
    // The refused server was marked down: the next request goes to web-2.
    assert_eq!(get(lb.addr, "/").await.body, "web-2");
    lb.stop().await;
}

#[tokio::test]
async fn response_timeout_retries_idempotent_requests() {
    let s = servers::<2>().await;
    let extra = backend(
        "retry_on = [\"conn-failure\", \"response-timeout\"]\ntimeout = { server = \"300ms\" }",
    );
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    s[0].shared.delay_ms.store(3000, Ordering::SeqCst);
    let a = get(lb.addr, "/").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-2"));
    lb.stop().await;
}

#[tokio::test]
async fn http_reuse_safe_keeps_unsafe_requests_off_old_idle_connections() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let conns = || s.shared.conns.lock().unwrap().len();
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    assert_eq!(conns(), 1);
    eventually(DEADLINE, "the connection is idle in the pool", || {
        ready((lb.server_status("web-1")["idle_conns"] == 1).then_some(()))
    })
    .await;
    // The semantics are about time: wait past the safe reuse age.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let req = Request::post("/")
        .body(Full::new(Bytes::from_static(b"order=1")))
        .unwrap();
    assert_eq!(send(lb.addr, req).await.status, StatusCode::OK);
    assert_eq!(conns(), 2, "the POST went on a fresh connection");
    // A GET may take the old idle connection.
    let before = conns();
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    assert_eq!(conns(), before, "the GET reused an idle connection");
    lb.stop().await;
}

#[tokio::test]
async fn a_server_killed_under_load_costs_no_idempotent_request() {
    let mut s = servers::<3>().await;
    let checks = Checks {
        retries: 3,
        ..Checks::default()
    };
    let lb = start_lb(&[&s[0], &s[1], &s[2]], &[1, 1, 1], checks).await;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (addr, done, failed) = (lb.addr, done.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..60 {
                let a = get(addr, "/slow?ms=5").await;
                if a.status != StatusCode::OK {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", a.status, a.body);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let d = done.clone();
    eventually(DEADLINE, "the load is running", || {
        ready((d.load(Ordering::SeqCst) >= 100).then_some(()))
    })
    .await;
    // Kill web-2: its listener and every connection, requests in flight included.
    s[1].stop().await;
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 480);
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no client request failed");
    assert!(!lb.is_up("web-2"));
    lb.stop().await;
}

#[tokio::test]
async fn a_connection_goes_back_to_the_pool_when_its_response_ends() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let conns = || s.shared.conns.lock().unwrap().len();
    // Sequential requests of every shape end on the same upstream connection: a small
    // answer, a bodiless HEAD, a 404, a multi-chunk body, a request with a body.
    for _ in 0..3 {
        assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
        let head = Request::head("/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(send(lb.addr, head).await.status, StatusCode::OK);
        assert_eq!(
            get(lb.addr, "/code?code=404").await.status,
            StatusCode::NOT_FOUND
        );
        let big = get(lb.addr, "/download?bytes=300000").await;
        // (Lossy UTF-8 of the byte pattern: at least as long as the bytes.)
        assert!(big.status == StatusCode::OK && big.body.len() >= 300_000);
        let req = Request::post("/upload")
            .body(Full::new(Bytes::from(vec![0u8; 20_000])))
            .unwrap();
        assert_eq!(send(lb.addr, req).await.status, StatusCode::OK);
    }
    assert_eq!(conns(), 1, "every exchange reused the first connection");
    // A response the client abandons takes its connection with it.
    let resp = send_head(
        lb.addr,
        Request::get("/download?bytes=50000000")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    drop(resp);
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    assert_eq!(conns(), 2, "the abandoned connection was not reused");
    eventually(DEADLINE, "the abandoned connection is gone", || {
        ready((lb.server_status("web-1")["idle_conns"] == 1).then_some(()))
    })
    .await;
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    assert_eq!(conns(), 2, "the healthy connection is reused");
    lb.stop().await;
}
