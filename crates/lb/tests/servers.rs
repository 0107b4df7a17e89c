//! Server options: backup servers and `allbackups`, `maxconn` with the queue, `slowstart`,
//! `disabled`.

mod common;

use std::future::ready;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;
use webfarm_testkit::{eventually, DEADLINE};

/// `n` servers of `maxconn = 1` and `timeout queue` of `queue`.
fn one_slot_each(n: usize, queue: &str) -> Extra {
    Extra {
        backend: format!("timeout = {{ queue = \"{queue}\" }}"),
        servers: vec!["maxconn = 1".into(); n],
        ..Extra::default()
    }
}

fn checks_far_apart() -> Checks {
    Checks {
        inter: "1h",
        retries: 2,
        ..Checks::default()
    }
}

#[tokio::test]
async fn backup_servers_take_over_only_when_no_active_server_is_up() {
    let mut s = [
        TestServer::start("web-1").await,
        TestServer::start("web-2").await,
        TestServer::start("spare-1").await,
        TestServer::start("spare-2").await,
    ];
    let extra = Extra {
        servers: vec![
            String::new(),
            String::new(),
            "backup = true".into(),
            "backup = true".into(),
        ],
        ..Extra::default()
    };
    let refs: Vec<&TestServer> = s.iter().collect();
    let lb = start_lb_extra(&refs, &[1, 1, 1, 1], checks_far_apart(), &extra).await;
    let c = distribution(&lb, 10).await;
    assert_eq!(
        (c.get("web-1"), c.get("web-2")),
        (Some(&5), Some(&5)),
        "{c:?}"
    );
    s[0].stop().await;
    s[1].stop().await;
    // The first request finds both active servers refused (marked down) and goes to the
    // first backup server, which then takes everything.
    let c = distribution(&lb, 10).await;
    assert_eq!(c.get("spare-1"), Some(&10), "{c:?}");
    lb.stop().await;

    let extra = Extra {
        backend: "allbackups = true".into(),
        ..extra
    };
    let refs: Vec<&TestServer> = s.iter().collect();
    let lb = start_lb_extra(&refs, &[1, 1, 1, 1], checks_far_apart(), &extra).await;
    let c = distribution(&lb, 12).await;
    let spares = (c.get("spare-1").copied(), c.get("spare-2").copied());
    assert!(
        matches!(spares, (Some(a), Some(b)) if a >= 5 && b >= 5),
        "{c:?}"
    );
    lb.stop().await;
}

#[tokio::test]
async fn a_server_becomes_a_backup_and_active_again_at_run_time() {
    let s = [
        TestServer::start("web-1").await,
        TestServer::start("web-2").await,
    ];
    let refs: Vec<&TestServer> = s.iter().collect();
    let lb = start_lb_extra(&refs, &[1, 1], checks_far_apart(), &Extra::default()).await;
    let admin = lb.serve_admin().await;
    let a = post(admin, "/lb/servers/web/web-2/backup", "{\"backup\": true}").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("\"previous\":false"), "{}", a.body);
    let c = distribution(&lb, 10).await;
    assert_eq!(
        c.get("web-1"),
        Some(&10),
        "a backup takes nothing while web-1 is up: {c:?}"
    );
    assert_eq!(lb.server_status("web-2")["backup"], true);
    let a = post(admin, "/lb/servers/web/web-2/backup", "false").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = distribution(&lb, 10).await;
    assert_eq!(
        (c.get("web-1"), c.get("web-2")),
        (Some(&5), Some(&5)),
        "{c:?}"
    );
    let a = post(admin, "/lb/servers/web/web-2/backup", "maybe").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    lb.stop().await;
}

#[tokio::test]
async fn maxconn_queues_then_answers_503_when_the_queue_times_out() {
    let s = TestServer::start("web-1").await;
    let extra = one_slot_each(1, "300ms");
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=2000").await });
    let shared = s.shared.clone();
    eventually(DEADLINE, "the slow request holds the only slot", || {
        ready((shared.in_flight.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    let start = Instant::now();
    let a = get(lb.addr, "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(
        a.body.contains("maxconn") && a.body.contains("timeout queue"),
        "{}",
        a.body
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    lb.stop().await;
}

#[tokio::test]
async fn a_queued_request_gets_the_slot_when_it_frees() {
    let s = TestServer::start("web-1").await;
    let extra = one_slot_each(1, "10s");
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=500").await });
    let shared = s.shared.clone();
    eventually(DEADLINE, "the slow request holds the only slot", || {
        ready((shared.in_flight.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    let queued = tokio::spawn(async move { get(addr, "/slow?ms=1").await });
    eventually(DEADLINE, "the second request waits in the queue", || {
        ready((lb.health.status().to_json()["backends"][0]["queued"] == 1).then_some(()))
    })
    .await;
    assert_eq!(
        shared.in_flight.load(Ordering::SeqCst),
        1,
        "never two at once"
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    let a = queued.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "web-1 slow");
    lb.stop().await;
}

/// `GET path` with `X-Key: key`.
fn keyed(path: &str, key: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("x-key", key)
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_freed_slot_goes_to_a_request_waiting_for_that_server() {
    // Hash balancing pins each key to a server; with maxconn 1 each, requests wait for
    // their own server. A slot that frees on web-1 must reach the request waiting for
    // web-1 even when a request for web-2 queued before it.
    let s = servers::<2>().await;
    let extra = Extra {
        balance: "hdr(X-Key)".into(),
        ..one_slot_each(2, "30s")
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], checks_far_apart(), &extra).await;
    let addr = lb.addr;
    let mut key_of = std::collections::HashMap::new();
    for k in 0..64 {
        let key = format!("k{k}");
        let a = send(addr, keyed("/", &key)).await;
        key_of.entry(a.body).or_insert(key);
    }
    let (k1, k2) = (key_of["web-1"].clone(), key_of["web-2"].clone());

    // web-2's slot is held until the test lets go; web-1's for a moment.
    let held = send_head(addr, keyed("/gate", &k2)).await;
    assert_eq!(held.status(), StatusCode::OK);
    let short = tokio::spawn({
        let k1 = k1.clone();
        async move { send(addr, keyed("/slow?ms=300", &k1)).await }
    });
    let web1 = s[0].shared.clone();
    eventually(DEADLINE, "web-1's slot is taken", || {
        ready((web1.in_flight.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    let queued = |n: u64| lb.health.status().to_json()["backends"][0]["queued"] == n;
    let for_web2 = tokio::spawn({
        let k2 = k2.clone();
        async move { send(addr, keyed("/", &k2)).await }
    });
    eventually(DEADLINE, "a request for web-2 waits", || {
        ready(queued(1).then_some(()))
    })
    .await;
    let for_web1 = tokio::spawn(async move { send(addr, keyed("/", &k1)).await });
    eventually(DEADLINE, "then one for web-1", || {
        ready(queued(2).then_some(()))
    })
    .await;

    assert_eq!(short.await.unwrap().status, StatusCode::OK);
    let a = tokio::time::timeout(DEADLINE, for_web1)
        .await
        .expect("web-1's freed slot reached the request waiting for it")
        .unwrap();
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-1"));
    assert!(!for_web2.is_finished(), "web-2 is still held");

    s[1].shared.gate.notify_one();
    drop(held);
    let a = tokio::time::timeout(DEADLINE, for_web2)
        .await
        .expect("web-2's slot reached its waiter")
        .unwrap();
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-2"));
    lb.stop().await;
}

#[tokio::test]
async fn queued_requests_are_served_first_come_first_served() {
    let s = TestServer::start("web-1").await;
    let extra = one_slot_each(1, "30s");
    let lb = start_lb_extra(&[&s], &[1], checks_far_apart(), &extra).await;
    let addr = lb.addr;
    let held = send_head(addr, keyed("/gate", "-")).await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for i in 0..5u64 {
        let order = order.clone();
        waiting.push(tokio::spawn(async move {
            let a = get(addr, "/slow?ms=20").await;
            order.lock().unwrap().push(i);
            a.status
        }));
        eventually(DEADLINE, "it waits in the queue", || {
            ready((lb.health.status().to_json()["backends"][0]["queued"] == i + 1).then_some(()))
        })
        .await;
    }
    s.shared.gate.notify_one();
    drop(held);
    for w in waiting {
        assert_eq!(w.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4], "in arrival order");
    lb.stop().await;
}

#[tokio::test]
async fn slots_that_free_together_all_go_to_waiting_requests() {
    let s = servers::<2>().await;
    let extra = one_slot_each(2, "30s");
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], checks_far_apart(), &extra).await;
    let addr = lb.addr;
    let held = [
        send_head(addr, keyed("/gate", "-")).await,
        send_head(addr, keyed("/gate", "-")).await,
    ];
    assert_eq!((s[0].hits(), s[1].hits()), (1, 1), "one slot held on each");
    let mut waiting = Vec::new();
    for i in 0..4u64 {
        waiting.push(tokio::spawn(async move { get(addr, "/slow?ms=20").await }));
        eventually(DEADLINE, "it waits in the queue", || {
            ready((lb.health.status().to_json()["backends"][0]["queued"] == i + 1).then_some(()))
        })
        .await;
    }
    for server in &s {
        server.shared.gate.notify_one();
    }
    drop(held);
    for w in waiting {
        let a = tokio::time::timeout(DEADLINE, w)
            .await
            .expect("no waiter is left behind while a slot is free (timeout queue is 30s)")
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    assert_eq!(lb.health.status().to_json()["backends"][0]["queued"], 0);
    lb.stop().await;
}

#[tokio::test]
async fn slowstart_ramps_the_weight_of_a_returning_server() {
    let mut s = servers::<2>().await;
    let extra = Extra {
        servers: vec![String::new(), "slowstart = \"3s\"".into()],
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[100, 100], Checks::default(), &extra).await;
    assert_eq!(
        lb.server_status("web-2")["effective_weight"],
        100,
        "no ramp at start-up"
    );
    s[1].stop().await;
    eventually(DEADLINE, "web-2 goes down", || {
        ready((!lb.is_up("web-2")).then_some(()))
    })
    .await;
    s[1].restart().await;
    eventually(DEADLINE, "web-2 comes back", || {
        ready(lb.is_up("web-2").then_some(()))
    })
    .await;
    let early = lb.server_status("web-2")["effective_weight"]
        .as_u64()
        .unwrap();
    assert!(early < 100, "the ramp starts low: {early}");
    // While ramping, web-2 gets less than its share.
    let c = distribution(&lb, 40).await;
    assert!(c.get("web-2").copied().unwrap_or(0) < 20, "{c:?}");
    eventually(DEADLINE, "the ramp ends at the full weight", || {
        ready((lb.server_status("web-2")["effective_weight"] == 100).then_some(()))
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn a_disabled_server_is_in_maintenance_until_set_ready() {
    let s = servers::<2>().await;
    let extra = Extra {
        servers: vec![String::new(), "disabled = true".into()],
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    assert_eq!(lb.server_status("web-2")["state"], "MAINT");
    let c = distribution(&lb, 6).await;
    assert_eq!(c.get("web-1"), Some(&6), "{c:?}");
    let checks_before = s[1].shared.checks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s[1].shared.checks.load(Ordering::SeqCst),
        checks_before,
        "no checks in maintenance"
    );
    let admin = lb.serve_admin().await;
    let a = post(admin, "/lb/servers/web/web-2/state", "ready").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = distribution(&lb, 6).await;
    assert_eq!(c.get("web-2"), Some(&3), "{c:?}");
    lb.stop().await;
}
