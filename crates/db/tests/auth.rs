//! rqlite's auth file on a 3-node cluster started in-process: a follower checks the caller
//! and forwards to the leader with its own identity (the admin token without TLS), so a
//! write, a queued write and a request reach the leader for a user with `execute`; a user
//! without it is refused by the follower; a caller that claims to be a peer with a wrong
//! token is not one; the Raft port refuses a caller without the admin token. bcrypt hashes made by another implementation (libxcrypt's `crypt`)
//! verify.

mod common;

use std::sync::Arc;

use common::{eventually, Cluster, DEADLINE};
use webfarm_node::access::{AdminToken, NodeAuth, Users};
use webfarm_node::http::HttpClient;

/// `writer-pw` hashed by libxcrypt (`crypt(3)` with a `$2b$` salt, cost 10).
const WRITER_HASH: &str = "$2b$10$Lz.pfyBFORzxL7yzBjrPQeb301tPB7Q2/dS2C7xKeGIEfn7uMMKTG";

fn users() -> Arc<Users> {
    let file = format!(
        r#"[
          {{"username": "writer", "password": "{WRITER_HASH}", "perms": ["execute", "query"]}},
          {{"username": "reader", "password": "reader-pw", "perms": ["query"]}},
          {{"username": "*", "perms": ["ready"]}}
        ]"#
    );
    Arc::new(Users::from_json(file.as_bytes()).unwrap())
}

fn as_user(user: &str, password: &str) -> HttpClient {
    HttpClient::new().with_authorization(Some(webfarm_node::access::basic_header(user, password)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_checks_the_caller_and_forwards_as_a_trusted_peer() {
    let mut c = Cluster::new(3, 1000);
    c.auth = NodeAuth {
        token: Some(AdminToken::new("peer-token")),
        db_users: Some(users()),
        ..NodeAuth::default()
    };
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.leader().await;
    let follower = c.other_than(leader);

    c.http = as_user("writer", "writer-pw");
    let (status, v, _) = c
        .post(
            follower,
            "/db/execute",
            r#"["CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('direct')"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["results"][1]["rows_affected"] == 1, "{v}");
    let (status, v, _) = c
        .post(
            follower,
            "/db/execute?queue",
            r#"["INSERT INTO t VALUES ('queued')"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = c
        .post(
            follower,
            "/db/request",
            r#"["INSERT INTO t VALUES ('request')"]"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    eventually(DEADLINE, "the three rows on the leader", || async {
        let (_, v) = c
            .get(leader, "/db/query?q=SELECT%20count(*)%20FROM%20t")
            .await;
        (v["results"][0]["values"][0][0] == 3).then_some(())
    })
    .await;

    // A user without `execute` is refused by the follower; nothing reaches the leader.
    c.http = as_user("reader", "reader-pw");
    let (status, v, _) = c
        .post(follower, "/db/execute", r#"["DELETE FROM t"]"#)
        .await;
    assert_eq!(status, 401, "{v}");
    let (status, _) = c.get(follower, "/db/query?q=SELECT%201").await;
    assert_eq!(status, 200);
    // A wrong password, no credentials, a wrong peer token: not authorized.
    for client in [
        as_user("writer", "nope"),
        HttpClient::new(),
        HttpClient::new().with_authorization(Some(AdminToken::new("other").bearer())),
    ] {
        c.http = client;
        let (status, v, _) = c.post(leader, "/db/execute", r#"["DELETE FROM t"]"#).await;
        assert_eq!(status, 401, "{v}");
    }
    // "*" holds `ready`.
    c.http = HttpClient::new();
    let (status, _) = c.get(follower, "/readyz").await;
    assert_eq!(status, 200);
    let metrics = c.metrics(follower);
    let forbidden = webfarm_testkit::metrics::sample(
        &metrics,
        "webfarm_db_auth_failures_total",
        &[("reason", "forbidden")],
    );
    assert_eq!(forbidden, Some(1.0), "{metrics}");
    c.http = as_user("writer", "writer-pw");
    let (_, v) = c
        .get(leader, "/db/query?q=SELECT%20count(*)%20FROM%20t")
        .await;
    assert_eq!(
        v["results"][0]["values"][0][0], 3,
        "nothing was deleted: {v}"
    );

    // The Raft port without TLS: the cluster formed and replicated with the admin token
    // (above); a caller without it, or with another, is refused before Raft sees anything.
    for authorization in [None, Some(AdminToken::new("other").bearer())] {
        for path in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
            let req = http::Request::post(format!(
                "http://{}{path}",
                c.farm.nodes[follower].raft_addr()
            ))
            .header("x-webfarm-site", &c.farm.site)
            .header("x-webfarm-node", c.name(follower))
            .header("x-webfarm-from", c.name(leader))
            .header("content-type", "application/json");
            let req = match &authorization {
                Some(a) => req.header("authorization", a.clone()),
                None => req,
            };
            let req = req
                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                .unwrap();
            let resp = HttpClient::new()
                .request(req, std::time::Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(resp.status, 401, "{path} without the admin token");
        }
    }
    c.stop_all().await;
}

/// The membership routes without TLS: the admin token, or a user named in the auth file who
/// holds the permission; `"*"`, even with `all`, lets no other caller in, whatever
/// `Authorization` header it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_star_user_opens_no_membership_route() {
    let mut c = Cluster::new(1, 1000);
    c.auth = NodeAuth {
        token: Some(AdminToken::new("peer-token")),
        db_users: Some(Arc::new(
            Users::from_json(
                br#"[
                  {"username": "ops", "password": "ops-pw", "perms": ["status"]},
                  {"username": "*", "perms": ["all", "join", "remove"]}
                ]"#,
            )
            .unwrap(),
        )),
        ..NodeAuth::default()
    };
    c.start(0).await;
    c.leader().await;
    for client in [
        HttpClient::new(),
        HttpClient::new().with_authorization(Some(http::HeaderValue::from_static("Bearer junk"))),
        as_user("*", ""),
        as_user("nobody", "x"),
        as_user("ops", "wrong"),
    ] {
        c.http = client;
        let (status, v) = c.get(0, "/cluster/nodes").await;
        assert_eq!(status, 401, "{v}");
        let (status, v, _) = c.post(0, "/remove", r#"{"id": "db-1"}"#).await;
        assert_eq!(status, 401, "{v}");
        // The method does not matter: HEAD is checked as GET is.
        let url = c.http.url(c.api(0), "/cluster/nodes");
        let r = c
            .http
            .send(
                http::Method::HEAD,
                &url,
                None,
                bytes::Bytes::new(),
                DEADLINE,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 401, "HEAD /cluster/nodes");
    }
    // A path the API does not serve: 404, whoever asks.
    c.http = HttpClient::new();
    let (status, _) = c.get(0, "/cluster/nodes/").await;
    assert_eq!(status, 404);
    c.http = as_user("ops", "ops-pw");
    let (status, v) = c.get(0, "/cluster/nodes").await;
    assert_eq!(status, 200, "{v}");
    c.http = HttpClient::new().with_authorization(Some(AdminToken::new("peer-token").bearer()));
    let (status, v) = c.get(0, "/cluster/nodes").await;
    assert_eq!(status, 200, "{v}");
    c.stop_all().await;
}

/// A flood of password guesses runs at most `bcrypt_slots()` bcrypt checks at once: the
/// guesses beyond what the slots get through in `BCRYPT_WAIT` are answered 503 with
/// `Retry-After` (counted as `busy`), and a client whose password was verified before is
/// served during the flood, since it takes no slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_password_guesses_is_bounded_and_spares_verified_clients() {
    // Cost 13: about a quarter to a whole second per check, so that each slot gets
    // through far fewer than its 30 guesses within the 5 s wait.
    let slow = bcrypt::hash("right", 13).unwrap();
    let file = format!(
        r#"[{{"username": "app", "password": "{WRITER_HASH}", "perms": ["query"]}},
            {{"username": "target", "password": "{slow}", "perms": ["query"]}}]"#
    );
    let mut c = Cluster::new(1, 1000);
    c.auth = NodeAuth {
        token: Some(AdminToken::new("peer-token")),
        db_users: Some(Arc::new(Users::from_json(file.as_bytes()).unwrap())),
        ..NodeAuth::default()
    };
    c.start(0).await;
    c.leader().await;
    // The app's password is verified (and remembered) before the flood.
    c.http = as_user("app", "writer-pw");
    assert_eq!(c.get(0, "/db/query?q=SELECT%201").await.0, 200);

    let guesses = webfarm_db::bcrypt_slots() * 30;
    let url = c.http.url(c.api(0), "/db/query?q=SELECT%201");
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..guesses {
        let (client, url, done) = (
            as_user("target", &format!("guess-{i}")),
            url.clone(),
            done.clone(),
        );
        flood.spawn(async move {
            let r = client.get(&url, DEADLINE).await.expect("an answer");
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (r.status.as_u16(), r.headers.get("retry-after").cloned())
        });
    }
    // Once the first guess has been answered the slots are busy: the app is still served.
    eventually(DEADLINE, "a first guess answered", || async {
        (done.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_eq!(
        c.get(0, "/db/query?q=SELECT%201").await.0,
        200,
        "the verified app"
    );
    let answered = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        answered < guesses,
        "the app was served during the flood ({answered} answered)"
    );

    let (mut refused, mut busy) = (0, 0);
    while let Some(r) = flood.join_next().await {
        match r.expect("a guess") {
            (401, _) => refused += 1,
            (503, Some(retry)) => {
                assert_eq!(retry, "1");
                busy += 1;
            }
            other => panic!("a guess answered {other:?}"),
        }
    }
    assert!(busy > 0, "{refused} refused, none shed");
    assert!(refused > 0, "some guesses were checked");
    let metrics = c.metrics(0);
    let shed = webfarm_testkit::metrics::sample(
        &metrics,
        "webfarm_db_auth_failures_total",
        &[("reason", "busy")],
    );
    assert_eq!(shed, Some(f64::from(busy)), "{metrics}");
    c.stop_all().await;
}
