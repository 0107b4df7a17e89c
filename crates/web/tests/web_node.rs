//! A real web node on loopback, without a database: static files, errors, `X-Served-By`,
//! the 503 answers when no db node answers, start errors and graceful shutdown.
//!
//! The database-backed flows (posting, reading, read-your-writes through a replica) need the
//! db cluster and are covered by the end-to-end tests of the binary.

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::*;
use webfarm_node::status::{RoleStatus, WebStatus};
use webfarm_testkit::eventually;
use webfarm_web::WebError;

#[tokio::test]
async fn static_files_have_content_types_and_validators() {
    let tmp = TempDir::new("static");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();

    for (path, content_type) in [
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
        ("/about.html", "text/html"),
        ("/robots.txt", "text/plain"),
        ("/docs/", "text/html"),
    ] {
        let r = get(web.addr, path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
        assert!(
            r.header("content-type").starts_with(content_type),
            "{path}: {r:?}"
        );
        assert_eq!(r.header("x-served-by"), "web-1", "{path}");
        assert!(r.headers.contains_key("last-modified"), "{path}");
        assert!(r.header("etag").starts_with('"'), "{path}");
        assert!(!r.body.is_empty(), "{path}");
    }
    let on_disk = std::fs::read(site.join("style.css")).unwrap();
    let css = get(web.addr, "/style.css", &[]).await;
    assert_eq!(css.body, on_disk);
    assert_eq!(css.header("content-length"), on_disk.len().to_string());

    // HEAD: same validators, no body.
    let head = send(web.addr, Method::HEAD, "/style.css", &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("etag"), css.header("etag"));
    assert!(head.body.is_empty());

    // A directory without its slash is redirected.
    let r = get(web.addr, "/docs", &[]).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.header("location"), "/docs/");
}

#[tokio::test]
async fn conditional_requests_get_304_until_the_file_changes() {
    let tmp = TempDir::new("etag");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();

    let first = get(web.addr, "/robots.txt", &[]).await;
    let etag = first.header("etag").to_string();
    let last_modified = first.header("last-modified").to_string();

    let r = get(web.addr, "/robots.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), etag);
    assert_eq!(r.header("last-modified"), last_modified);
    assert_eq!(r.header("x-served-by"), "web-1");

    let weak = format!("\"nope\", W/{etag}");
    let r = get(web.addr, "/robots.txt", &[("if-none-match", &weak)]).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_MODIFIED,
        "weak comparison, list: {r:?}"
    );

    // If-Modified-Since alone (ServeDir's Last-Modified) also gives a 304 with the ETag.
    let r = get(
        web.addr,
        "/robots.txt",
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r:?}");
    assert_eq!(r.header("etag"), etag);

    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let r = get(
        web.addr,
        "/robots.txt",
        &[
            ("if-none-match", "\"other\""),
            ("if-modified-since", &last_modified),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, first.body);

    // A new version of the file (another size) has another ETag.
    std::fs::write(
        site.join("robots.txt"),
        "User-agent: *\nDisallow:\n# changed\n",
    )
    .unwrap();
    let r = get(web.addr, "/robots.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_ne!(r.header("etag"), etag);
    assert!(r.text().contains("# changed"));
}

#[tokio::test]
async fn unknown_paths_and_methods_get_404_and_405_with_x_served_by() {
    let tmp = TempDir::new("404");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();

    let r = get(web.addr, "/no-such-page.html", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-served-by"), "web-1");
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text().contains("/no-such-page.html"));

    let r = get(web.addr, "/../../etc/passwd", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    let r = get(web.addr, "/api/nothing", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-served-by"), "web-1");
    assert!(r.error().contains("/api/nothing"));

    let r = send(web.addr, Method::POST, "/style.css", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "GET, HEAD");
    assert_eq!(r.header("x-served-by"), "web-1");

    let r = send(web.addr, Method::DELETE, "/api/messages", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.header("allow").contains("POST"), "{r:?}");
    assert!(r.error().contains("DELETE"));
    assert_eq!(r.header("x-served-by"), "web-1");
}

#[tokio::test]
async fn bad_requests_get_json_errors_without_touching_the_database() {
    let tmp = TempDir::new("errors");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    let a = web.addr;

    let r = post_json(a, "/api/messages", r#"{"author": "ann", "text": "#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.error().contains("JSON"), "{r:?}");
    assert_eq!(r.header("x-served-by"), "web-1");

    let r = send(
        a,
        Method::POST,
        "/api/messages",
        &[],
        r#"{"author":"a","text":"b"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    assert!(r.error().contains("application/json"), "{r:?}");

    let r = post_json(a, "/api/messages", r#"{"author": "", "text": "hello"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error(), "author: must be 1 to 64 characters");

    let long = "x".repeat(1001);
    let r = post_json(
        a,
        "/api/messages",
        &format!(r#"{{"author":"a","text":"{long}"}}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error(), "text: must be 1 to 1000 characters");

    let r = post_json(a, "/api/messages", r#"{"author": "ann"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error(), "text: is required");

    let r = post_json(a, "/api/messages", r#"{"author": 5, "text": "x"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(r.error().contains("author"), "{r:?}");

    let huge = format!(r#"{{"author":"a","text":"{}"}}"#, "x".repeat(70 * 1024));
    let r = post_json(a, "/api/messages", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert!(!r.error().is_empty());

    let r = get(a, "/api/messages?limit=0", &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error(), "limit: must be 1 to 500");
    let r = get(a, "/api/messages?limit=lots", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("limit"), "{r:?}");
    let r = get(a, "/api/messages/abc", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.error().is_empty());

    // The form: the reason, and what was typed, back in the form.
    let r = send(
        a,
        Method::POST,
        "/messages",
        &[("content-type", "application/x-www-form-urlencoded")],
        "author=&text=%3Cb%3Ekeep+me%3C%2Fb%3E",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text().contains("author: must be 1 to 64 characters"));
    assert!(
        r.text().contains("&lt;b&gt;keep me&lt;/b&gt;</textarea>"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn an_unreachable_database_gives_503_never_500() {
    let tmp = TempDir::new("503");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    let a = web.addr;

    // Liveness does not depend on the database.
    let r = get(a, "/healthz", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    assert_eq!(r.header("x-served-by"), "web-1");

    // Visitors get a generic reason; the db nodes' addresses stay in the log.
    let db_port = web
        .farm
        .node("db-1")
        .unwrap()
        .main_addr()
        .port()
        .to_string();
    let r = get(a, "/api/messages", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.error().starts_with("database unavailable: "), "{r:?}");
    assert!(r.error().contains("try again"), "{r:?}");
    assert!(!r.text().contains(&db_port), "{}", r.text());
    assert_eq!(r.header("x-served-by"), "web-1");

    let r = post_json(a, "/api/messages", r#"{"author": "ann", "text": "hi"}"#).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.error().starts_with("database unavailable: "));
    assert!(!r.headers.contains_key("set-cookie"));

    let r = get(a, "/api/messages/1", &[("cookie", "wf_index=12")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");

    let r = get(a, "/", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text().contains("Service unavailable"));
    assert!(
        r.text().contains("try again in a few seconds"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains(&db_port), "{}", r.text());
    assert!(r.text().contains("Served by <strong>web-1</strong>"));

    let r = send(
        a,
        Method::POST,
        "/messages",
        &[("content-type", "application/x-www-form-urlencoded")],
        "author=ann&text=not+lost",
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().contains("not lost</textarea>"), "{}", r.text());
    assert!(!r.text().contains(&db_port), "{}", r.text());

    // Readiness says why; status shows the node's shape.
    let node = web.node.as_ref().unwrap();
    let health = node.health();
    let reason = eventually(DEADLINE, "a not-ready reason", || {
        let h = health.clone();
        async move {
            match h.ready() {
                Err(r) if r.contains("database unavailable") => Some(r),
                _ => None,
            }
        }
    })
    .await;
    assert!(
        reason.starts_with("database not reachable yet: "),
        "{reason}"
    );
    let status = web_status(health.status());
    let db = web.farm.node("db-1").unwrap().main_addr().to_string();
    assert_eq!(status.http, a.to_string());
    assert_eq!(status.root, site.display().to_string());
    assert_eq!(status.db_nodes, std::slice::from_ref(&db));
    assert_eq!(status.read_from, db);
    assert!(status.requests >= 6, "{status:?}");
}

#[tokio::test]
async fn start_refuses_a_missing_root_and_a_taken_port() {
    let tmp = TempDir::new("start");
    let missing = tmp.path().join("no-such-site");
    let err = start(farm(&tmp, &missing, "300ms"), "web-1")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, WebError::Root { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");

    let site = make_site(&tmp);
    let farm = farm(&tmp, &site, "300ms");
    let taken = std::net::TcpListener::bind(farm.node("web-1").unwrap().main_addr()).unwrap();
    let err = start(farm.clone(), "web-1").await.err().unwrap();
    assert!(matches!(err, WebError::Bind(_)), "{err}");
    drop(taken);

    let err = start(farm, "db-1").await.err().unwrap();
    assert!(matches!(err, WebError::NotAWebNode { .. }), "{err}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let tmp = TempDir::new("shutdown");
    let site = make_site(&tmp);
    // A long db_timeout: the request below is in flight when shutdown fires.
    let mut web = start(farm(&tmp, &site, "1500ms"), "web-1").await.unwrap();
    let a = web.addr;
    let in_flight = tokio::spawn(async move { get(a, "/api/messages", &[]).await });
    // Let the request reach the server before shutting down.
    eventually(DEADLINE, "the request to arrive", || {
        let h = web.node.as_ref().unwrap().health();
        async move { (web_status(h.status()).requests >= 1).then_some(()) }
    })
    .await;
    web.trigger.trigger();
    let node = web.node.take().unwrap();
    tokio::time::timeout(DEADLINE, node.wait())
        .await
        .expect("wait() returns after shutdown")
        .unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "finished, not cut: {r:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(a).await.is_err(),
        "still accepting"
    );
}

/// The details of a web node's `/status`.
fn web_status(status: RoleStatus) -> WebStatus {
    match status {
        RoleStatus::Web(s) => s,
        other => panic!("not a web node's status: {other:?}"),
    }
}
