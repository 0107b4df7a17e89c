//! Run-time control on the admin address: the server list, weights, drain and maintenance,
//! and hot reload of the topology file.

mod common;

use std::future::ready;
use std::sync::atomic::Ordering;

use common::*;
use http::StatusCode;
use webfarm_testkit::{eventually, TempDir, DEADLINE};

#[tokio::test]
async fn servers_are_listed_and_bad_commands_refused() {
    let s = servers::<2>().await;
    let lb = start_lb(&[&s[0], &s[1]], &[1, 2], Checks::default()).await;
    distribution(&lb, 3).await;
    let admin = lb.serve_admin().await;
    let a = get(admin, "/lb/servers").await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let b = &v["backends"][0];
    assert_eq!(b["name"], "web");
    assert_eq!(b["balance"], "roundrobin");
    let web2 = &b["servers"][1];
    assert_eq!(web2["name"], "web-2");
    assert_eq!(web2["state"], "UP");
    assert_eq!(web2["weight"], 2);
    assert_eq!(web2["total_requests"], 2);
    assert_eq!(web2["current_conns"], 0);
    assert!(web2["check"].is_string());

    let a = post(admin, "/lb/servers/web/web-9/weight", "3").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.body.contains("no server \\\"web-9\\\"") && a.body.contains("web-1"),
        "{}",
        a.body
    );
    let a = post(admin, "/lb/servers/api/web-1/weight", "3").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = post(admin, "/lb/servers/web/web-1/weight", "300").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("0..=256"), "{}", a.body);
    let a = post(admin, "/lb/servers/web/web-1/state", "sleepy").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("ready, drain, maint"), "{}", a.body);
    // The status page of the node still works beside the lb routes.
    assert_eq!(get(admin, "/readyz").await.status, StatusCode::OK);
    lb.stop().await;
}

#[tokio::test]
async fn drain_lets_in_flight_requests_finish_and_takes_no_new_ones() {
    let s = servers::<2>().await;
    let lb = start_lb(&[&s[0], &s[1]], &[1, 1], Checks::default()).await;
    let admin = lb.serve_admin().await;
    // The first pick is web-1.
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=600").await });
    let shared = s[0].shared.clone();
    eventually(DEADLINE, "the slow request is on web-1", || {
        ready((shared.in_flight.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;
    let a = post(
        admin,
        "/lb/servers/web/web-1/state",
        "{\"state\": \"drain\"}",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(lb.server_status("web-1")["state"], "DRAIN");
    let c = distribution(&lb, 6).await;
    assert_eq!(c.get("web-2"), Some(&6), "{c:?}");
    let a = slow.await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web-1 slow"));
    let a = post(admin, "/lb/servers/web/web-1/state", "maint").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(lb.server_status("web-1")["state"], "MAINT");
    let a = post(admin, "/lb/servers/web/web-1/state", "ready").await;
    assert_eq!(a.status, StatusCode::OK);
    let c = distribution(&lb, 6).await;
    assert_eq!(c.get("web-1"), Some(&3), "{c:?}");
    lb.stop().await;
}

#[tokio::test]
async fn reload_applies_new_servers_and_weights_without_dropping_anything() {
    let s = servers::<3>().await;
    let dir = TempDir::new("reload");
    let file = dir.path().join("reload.toml");
    let port = FRONTEND_PORT;
    let before = farm_toml(
        port,
        &[("web-1", s[0].addr, 1), ("web-2", s[1].addr, 1)],
        Checks::default(),
    );
    let lb = start_lb_text(&before, Some(&file)).await;
    let admin = lb.serve_admin().await;
    distribution(&lb, 4).await;
    eventually(DEADLINE, "idle connections wait in the pool", || {
        ready((lb.server_status("web-1")["idle_conns"] == 1).then_some(()))
    })
    .await;
    let web1_conns = s[0].shared.conns.lock().unwrap().len();
    let addr = lb.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=800").await });
    eventually(DEADLINE, "a request is in flight", || {
        ready(
            (s.iter()
                .any(|s| s.shared.in_flight.load(Ordering::SeqCst) == 1))
            .then_some(()),
        )
    })
    .await;

    // New file: web-1 weight 2, web-3 added. The node's address and admin port must stay
    // the same.
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_string()
    };
    let mut after = farm_toml(
        port,
        &[
            ("web-1", s[0].addr, 2),
            ("web-2", s[1].addr, 1),
            ("web-3", s[2].addr, 1),
        ],
        Checks::default(),
    );
    for key in ["address", "admin_port"] {
        after = after.replace(&line(&after, key), &line(&before, key));
    }
    std::fs::write(&file, &after).unwrap();
    let a = post(admin, "/lb/reload", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["servers_added"], serde_json::json!(["web/web-3"]));
    assert_eq!(v["servers_removed"], serde_json::json!([]));
    assert_eq!(v["generation"], 1);

    // The request in flight finishes; web-1 kept its state and idle connection.
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(lb.server_status("web-1")["weight"], 2);
    assert!(
        lb.server_status("web-1")["total_requests"]
            .as_u64()
            .unwrap()
            >= 2
    );
    let c = distribution(&lb, 40).await;
    assert_eq!((c["web-1"], c["web-2"], c["web-3"]), (20, 10, 10), "{c:?}");
    assert!(
        s[0].shared.conns.lock().unwrap().len() <= web1_conns + 1,
        "web-1's keep-alive connections were kept"
    );

    // An invalid file is refused and the running configuration kept.
    std::fs::write(&file, after.replace("weight = 2", "weight = 999")).unwrap();
    let a = post(admin, "/lb/reload", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("weight: 999 is out of range"), "{}", a.body);
    assert!(a.body.contains("keeping the running one"), "{}", a.body);
    assert_eq!(lb.server_status("web-1")["weight"], 2);
    let servers: serde_json::Value =
        serde_json::from_str(&get(admin, "/lb/servers").await.body).unwrap();
    assert_eq!(
        servers["generation"], 1,
        "a refused reload is no new generation"
    );
    assert_eq!(servers["reloads_refused"], 1);

    // New frontends need a restart.
    std::fs::write(
        &file,
        after.replace(&format!("port = {port}"), &format!("port = {}", port + 1)),
    )
    .unwrap();
    let a = post(admin, "/lb/reload", "").await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("frontends changed"), "{}", a.body);
    assert_eq!(get(lb.addr, "/").await.status, StatusCode::OK);
    lb.stop().await;
}

#[tokio::test]
async fn the_built_in_farm_cannot_reload() {
    let s = TestServer::start("web-1").await;
    let lb = start_lb(&[&s], &[1], Checks::default()).await;
    let admin = lb.serve_admin().await;
    let a = post(admin, "/lb/reload", "").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.body.contains("built-in farm"), "{}", a.body);
    lb.stop().await;
}
