//! Balancing and health: exact smooth weighted round robin, servers going down (refused
//! connections, failed checks) and coming back after `rise` passes, 503 when none is up.

mod common;

use std::future::ready;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use webfarm_testkit::{eventually, DEADLINE};

#[tokio::test]
async fn equal_weights_share_exactly() {
    let s = servers::<3>().await;
    let lb = start_lb(&[&s[0], &s[1], &s[2]], &[1, 1, 1], Checks::default()).await;
    let counts = distribution(&lb, 30).await;
    for name in ["web-1", "web-2", "web-3"] {
        assert_eq!(counts.get(name), Some(&10), "{counts:?}");
        assert_eq!(lb.server_status(name)["total_requests"], 10);
    }
    assert!(lb.health.ready().is_ok());
    lb.stop().await;
}

#[tokio::test]
async fn weights_three_to_one() {
    let a = TestServer::start("big").await;
    let b = TestServer::start("small").await;
    let lb = start_lb(&[&a, &b], &[3, 1], Checks::default()).await;
    let counts = distribution(&lb, 40).await;
    assert_eq!(counts.get("big"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("small"), Some(&10), "{counts:?}");
    lb.stop().await;
}

#[tokio::test]
async fn refused_server_is_marked_down_and_costs_no_request() {
    let mut s = servers::<3>().await;
    // Checks far apart: only the request path can notice the stopped server in time.
    let checks = Checks {
        inter: "1h",
        ..Checks::default()
    };
    let lb = start_lb(&[&s[0], &s[1], &s[2]], &[1, 1, 1], checks).await;
    s[1].stop().await;
    let counts = distribution(&lb, 30).await;
    assert_eq!(counts.get("web-2"), None, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 30);
    assert_eq!(counts.get("web-1"), Some(&15), "{counts:?}");
    let web2 = lb.server_status("web-2");
    assert_eq!(web2["state"], "DOWN", "{web2}");
    let check = web2["check"].as_str().unwrap();
    assert!(
        check.contains("observed on request") && check.contains("Connection refused"),
        "{check}"
    );
    assert!(lb.health.ready().is_ok(), "two servers are still up");
    lb.stop().await;
}

#[tokio::test]
async fn stopped_server_comes_back_after_rise_checks() {
    let mut s = servers::<3>().await;
    let checks = Checks::default(); // inter 100ms, rise 2, fall 3
    let lb = start_lb(&[&s[0], &s[1], &s[2]], &[1, 1, 1], checks).await;
    s[1].stop().await;
    eventually(DEADLINE, "the checks take web-2 down", || {
        ready((!lb.is_up("web-2")).then_some(()))
    })
    .await;
    let web2 = lb.server_status("web-2");
    assert!(
        web2["check"]
            .as_str()
            .unwrap()
            .starts_with("Layer4 connection problem"),
        "{web2}"
    );
    assert!(
        web2["consecutive_failures"].as_u64().unwrap() >= 1,
        "{web2}"
    );

    let counts = distribution(&lb, 10).await;
    assert_eq!(
        counts.get("web-2"),
        None,
        "a down server gets no request: {counts:?}"
    );

    s[1].restart().await;
    let back = Instant::now();
    eventually(DEADLINE, "web-2 rises again", || {
        ready(lb.is_up("web-2").then_some(()))
    })
    .await;
    // Two consecutive passes are at least one interval apart.
    assert!(back.elapsed() >= Duration::from_millis(100));
    assert!(lb.server_status("web-2")["check"]
        .as_str()
        .unwrap()
        .starts_with("Layer7 check passed, code: 200"));

    let counts = distribution(&lb, 30).await;
    let web2 = counts.get("web-2").copied().unwrap_or(0);
    assert!(web2 >= 8, "web-2 takes its share again: {counts:?}");
    lb.stop().await;
}

#[tokio::test]
async fn failing_check_takes_server_down_and_back_up() {
    let s = servers::<2>().await;
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], Checks::default()).await;
    s[0].shared
        .sick
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(DEADLINE, "web-1 goes down on 503 checks", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    let web1 = lb.server_status("web-1");
    assert_eq!(
        web1["check"]
            .as_str()
            .unwrap()
            .split(", check duration")
            .next(),
        Some("Layer7 wrong status, code: 503, info: \"Service Unavailable\""),
        "{web1}"
    );
    assert!(
        web1["consecutive_failures"].as_u64().unwrap() >= 3,
        "{web1}"
    );
    let counts = distribution(&lb, 6).await;
    assert_eq!(counts.get("web-2"), Some(&6), "{counts:?}");

    s[0].shared
        .sick
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(DEADLINE, "web-1 comes back", || {
        ready(lb.is_up("web-1").then_some(()))
    })
    .await;
    let counts = distribution(&lb, 10).await;
    assert!(counts.get("web-1").copied().unwrap_or(0) >= 4, "{counts:?}");
    lb.stop().await;
}

#[tokio::test]
async fn no_server_up_gives_503_with_the_reason() {
    let mut s = servers::<2>().await;
    let checks = Checks {
        inter: "1h",
        ..Checks::default()
    };
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], checks).await;
    s[0].stop().await;
    s[1].stop().await;
    // The first request finds both refused and marks them down; later ones find none up.
    for _ in 0..3 {
        let a = get(lb.addr, "/").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.headers["retry-after"], "1");
        assert!(a.body.starts_with("503 Service Unavailable"), "{}", a.body);
    }
    let a = get(lb.addr, "/").await;
    assert_eq!(
        a.body,
        "503 Service Unavailable: no server is up in backend \"web\"\n"
    );
    let err = lb.health.ready().unwrap_err();
    assert!(err.contains("\"web\""), "{err}");
    let status = lb.health.status().to_json();
    assert_eq!(status["frontends"][0]["backend"], "web");
    assert_eq!(status["backends"][0]["balance"], "roundrobin");
    lb.stop().await;
}
