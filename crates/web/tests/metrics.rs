//! `/metrics` of a web node without a database: requests by route and status class, their
//! latency, and the database client's retries and give-ups behind the 503s.

mod support;

use http::StatusCode;
use support::*;
use webfarm_testkit::metrics::sample;

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[tokio::test]
async fn requests_are_counted_by_route_and_class_and_db_give_ups_show() {
    let tmp = TempDir::new("metrics");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            get(web.addr, "/style.css", &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(web.addr, "/nothing-here", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(web.addr, "/healthz", &[]).await.status, StatusCode::OK);
    let r = get(web.addr, "/api/messages/7", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no db node answers"
    );

    let text = webfarm_node::metrics::text(web.node.as_ref().unwrap().health()).unwrap();
    let count = |route, code| {
        value(
            &text,
            "webfarm_web_http_requests_total",
            &[("route", route), ("code", code)],
        )
    };
    assert_eq!(count("static", "2xx"), 3.0);
    assert_eq!(count("static", "4xx"), 1.0);
    assert_eq!(count("/healthz", "2xx"), 1.0);
    assert_eq!(
        count("/api/messages/{id}", "5xx"),
        1.0,
        "the matched route, not the URL"
    );
    let latency = [("route", "static")];
    let n = value(
        &text,
        "webfarm_web_http_request_duration_seconds_count",
        &latency,
    );
    assert_eq!(n, 4.0);
    assert_eq!(value(&text, "webfarm_web_messages_posted_total", &[]), 0.0);
    assert!(value(&text, "webfarm_web_db_unavailable_total", &[]) >= 1.0);
    assert!(value(&text, "webfarm_web_db_retries_total", &[]) >= 1.0);
    assert!(text.contains("# TYPE webfarm_build_info gauge"), "{text}");
}
