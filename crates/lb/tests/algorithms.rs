//! Balancing algorithms through a real lb node: each one's distribution, and weights
//! changed at run time.

mod common;

use std::collections::HashMap;
use std::future::ready;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;
use webfarm_testkit::{eventually, DEADLINE};

/// The farm text with `balance` replaced.
async fn lb_with(s: &[TestServer], weights: &[u32], backend_lines: &str) -> TestLb {
    let refs: Vec<&TestServer> = s.iter().collect();
    let port = FRONTEND_PORT;
    let list: Vec<(&str, std::net::SocketAddr, u32)> = refs
        .iter()
        .zip(weights)
        .map(|(s, &w)| (s.name.as_str(), s.addr, w))
        .collect();
    let text = farm_toml(port, &list, Checks::default())
        .replace("balance = \"roundrobin\"\n", &format!("{backend_lines}\n"));
    start_lb_text(&text, None).await
}

async fn counts(lb: &TestLb, paths: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for p in paths {
        let a = get(lb.addr, &p).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        *out.entry(a.body).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn static_rr_is_weighted() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 2, 3], "balance = \"static-rr\"").await;
    let c = counts(&lb, (0..60).map(|_| "/".to_string())).await;
    assert_eq!((c["web-1"], c["web-2"], c["web-3"]), (10, 20, 30), "{c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn leastconn_avoids_the_busy_server() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"leastconn\"").await;
    // Two slow requests occupy two servers; every quick request goes to the third.
    let addr = lb.addr;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/slow?ms=1500").await }))
        .collect();
    eventually(DEADLINE, "two slow requests in flight", || {
        ready(
            (s.iter()
                .map(|s| s.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst))
                .sum::<u64>()
                == 2)
                .then_some(()),
        )
    })
    .await;
    let idle: Vec<&TestServer> = s
        .iter()
        .filter(|s| s.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0)
        .collect();
    assert_eq!(idle.len(), 1);
    let c = counts(&lb, (0..6).map(|_| "/".to_string())).await;
    assert_eq!(c.get(&idle[0].name), Some(&6), "{c:?}");
    for t in slow {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    // All idle again: an even spread.
    let c = counts(&lb, (0..30).map(|_| "/".to_string())).await;
    assert!(c.values().all(|&n| n == 10), "{c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn first_fills_the_first_server() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"first\"").await;
    let c = counts(&lb, (0..10).map(|_| "/".to_string())).await;
    assert_eq!(c.get("web-1"), Some(&10), "{c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn uri_hash_consistent_keeps_keys_and_remaps_only_the_down_servers() {
    let mut s = servers::<3>().await;
    let lb = lb_with(
        &s,
        &[1, 1, 1],
        "balance = \"uri\"\nhash_type = \"consistent\"",
    )
    .await;
    let mut first = HashMap::new();
    for k in 0..60 {
        let p = format!("/item/{k}");
        let a = get(lb.addr, &p).await;
        first.insert(p.clone(), a.body.clone());
        assert_eq!(get(lb.addr, &p).await.body, a.body, "same key, same server");
    }
    let per: HashMap<&str, usize> = first.values().fold(HashMap::new(), |mut m, v| {
        *m.entry(v.as_str()).or_insert(0) += 1;
        m
    });
    assert_eq!(per.len(), 3, "keys spread over every server: {per:?}");
    s[1].stop().await;
    for (p, before) in &first {
        let a = get(lb.addr, p).await;
        assert_eq!(a.status, StatusCode::OK);
        if before == "web-2" {
            assert_ne!(a.body, "web-2");
        } else {
            assert_eq!(&a.body, before, "{p} moved although its server is up");
        }
    }
    lb.stop().await;
}

#[tokio::test]
async fn source_hash_sends_a_client_to_one_server() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"source\"").await;
    let c = counts(&lb, (0..12).map(|_| "/".to_string())).await;
    assert_eq!(c.len(), 1, "one client address, one server: {c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn hdr_hash_follows_the_header_and_falls_back_to_roundrobin() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"hdr(X-User)\"").await;
    let mut seen = HashMap::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        for _ in 0..3 {
            let req = Request::get("/")
                .header("x-user", user)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let a = send(lb.addr, req).await;
            let prev = seen.entry(user).or_insert_with(|| a.body.clone());
            assert_eq!(*prev, a.body, "user {user} stays on one server");
        }
    }
    let c = counts(&lb, (0..9).map(|_| "/".to_string())).await;
    assert_eq!(c.len(), 3, "no header: round robin: {c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn random_two_choices_uses_every_server() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"random(2)\"").await;
    let c = counts(&lb, (0..90).map(|_| "/".to_string())).await;
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(c.values().all(|&n| n >= 10), "{c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn roundrobin_weight_changes_at_run_time() {
    let s = servers::<3>().await;
    let lb = lb_with(&s, &[1, 1, 1], "balance = \"roundrobin\"").await;
    let admin = lb.serve_admin().await;
    let a = post(admin, "/lb/servers/web/web-1/weight", "4").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = counts(&lb, (0..60).map(|_| "/".to_string())).await;
    assert_eq!((c["web-1"], c["web-2"], c["web-3"]), (40, 10, 10), "{c:?}");
    let a = post(admin, "/lb/servers/web/web-2/weight", "{\"weight\": 0}").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = counts(&lb, (0..50).map(|_| "/".to_string())).await;
    assert_eq!(c.get("web-2"), None, "weight 0 takes no traffic: {c:?}");
    assert_eq!(lb.server_status("web-2")["weight"], 0);
    lb.stop().await;
}
