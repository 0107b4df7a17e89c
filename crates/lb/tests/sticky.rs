//! Sticky sessions: `cookie = { name = "SERVERID", insert = true }`.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;

async fn get_with_cookie(lb: &TestLb, cookie: Option<&str>) -> Answer {
    let mut req = Request::get("/headers");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    send(lb.addr, req.body(Empty::<Bytes>::new()).unwrap()).await
}

#[tokio::test]
async fn the_cookie_keeps_a_client_on_its_server_while_it_is_up() {
    let mut s = servers::<3>().await;
    let extra = Extra {
        backend: "cookie = { name = \"SERVERID\", insert = true }".into(),
        ..Extra::default()
    };
    let checks = Checks {
        inter: "1h",
        ..Checks::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1], &s[2]], &[1, 1, 1], checks, &extra).await;

    let first = get_with_cookie(&lb, None).await;
    assert_eq!(first.status, StatusCode::OK);
    let set = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(set, format!("SERVERID={}; Path=/", first.body));
    assert_eq!(first.headers["cache-control"], "private");
    let cookie = format!("session=abc; SERVERID={}", first.body);
    for _ in 0..6 {
        let a = get_with_cookie(&lb, Some(&cookie)).await;
        assert_eq!(a.body, first.body, "the cookie's server answers");
        assert!(
            !a.headers.contains_key("set-cookie"),
            "no new cookie needed"
        );
    }
    // `indirect`: the server never sees the lb's cookie, only the application's.
    let served = s.iter().find(|s| s.name == first.body).unwrap();
    let seen = served.shared.last_headers.lock().unwrap().clone();
    assert_eq!(seen["cookie"], ["session=abc"]);

    // The cookie's server goes down: the client is redispatched and gets a new cookie.
    let idx = s.iter().position(|s| s.name == first.body).unwrap();
    s[idx].stop().await;
    let a = get_with_cookie(&lb, Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(a.body, first.body);
    assert_eq!(
        a.headers["set-cookie"].to_str().unwrap(),
        format!("SERVERID={}; Path=/", a.body)
    );
    // An unknown server name is ignored: balanced, new cookie.
    let a = get_with_cookie(&lb, Some("SERVERID=web-9")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.contains_key("set-cookie"));
    lb.stop().await;
}

#[tokio::test]
async fn a_draining_server_keeps_its_sticky_clients() {
    let s = servers::<2>().await;
    let extra = Extra {
        backend: "cookie = { name = \"SERVERID\" }".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], Checks::default(), &extra).await;
    let admin = lb.serve_admin().await;
    let a = post(admin, "/lb/servers/web/web-1/state", "drain").await;
    assert_eq!(a.status, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(get_with_cookie(&lb, None).await.body, "web-2");
        assert_eq!(
            get_with_cookie(&lb, Some("SERVERID=web-1")).await.body,
            "web-1"
        );
    }
    lb.stop().await;
}
