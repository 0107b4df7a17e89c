//! `[lb] threads`: the event-loop threads. In a test binary of its own, so that the only
//! `lb-worker-*` threads of this process are the ones of the node under test.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::future::ready;
use std::net::SocketAddr;
use webfarm_testkit::{eventually, DEADLINE};

/// `n` GETs one after the other on one keep-alive connection to `addr`; their statuses.
async fn keep_alive_gets(addr: SocketAddr, n: usize) -> Vec<StatusCode> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for _ in 0..n {
        let req = Request::get("/")
            .header("host", "www.foobar.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("an answer in time")
            .unwrap();
        out.push(resp.status());
        resp.into_body().collect().await.unwrap();
    }
    out
}

/// The threads of this process named `lb-worker-*`.
fn workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("lb-worker-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threads_serve_together_and_stop_with_the_node() {
    let s = servers::<2>().await;
    assert_eq!(workers(), 0);
    let extra = Extra {
        threads: Some(3),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    // A thread names itself once it runs.
    eventually(DEADLINE, "three event-loop threads", || {
        ready((workers() == 3).then_some(()))
    })
    .await;
    assert_eq!(
        lb.node.as_ref().unwrap().health().status().to_json()["threads"],
        3
    );

    // 30 clients at once, 5 requests each on its own keep-alive connection.
    let addr = lb.addr;
    let clients: Vec<_> = (0..30)
        .map(|_| tokio::spawn(async move { keep_alive_gets(addr, 5).await }))
        .collect();
    for c in clients {
        for status in c.await.unwrap() {
            assert_eq!(status, StatusCode::OK);
        }
    }
    let served: u64 = s.iter().map(TestServer::hits).sum();
    assert_eq!(served, 150, "every request reached a server once");

    // The node's wait() joins its threads (their /proc entries may outlive the join a bit).
    lb.stop().await;
    eventually(DEADLINE, "the threads ended with the node", || {
        ready((workers() == 0).then_some(()))
    })
    .await;
}
