//! Health: TCP checks, HTTP check method/Host/expected statuses, `fastinter`, `downinter`,
//! passive health (`observe`, `error_limit`, `on_error`).

mod common;

use std::future::ready;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use http::StatusCode;
use webfarm_testkit::{eventually, DEADLINE};

fn check_text(lb: &TestLb, name: &str) -> String {
    lb.server_status(name)["check"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Checks every hour and no retries: after the first checks, only passive health (or what
/// a test does) changes a server's state.
fn hourly() -> Checks {
    Checks {
        inter: "1h",
        retries: 0,
        ..Checks::default()
    }
}

/// web-1 and web-2 (weights 1 and 1) behind an lb node with `checks`, and `check_lines` in
/// `[backends.check]`.
async fn observed_pair(checks: Checks, check_lines: &str) -> ([TestServer; 2], TestLb) {
    let s = servers::<2>().await;
    let extra = Extra {
        check: check_lines.into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s[0], &s[1]], &[1, 1], checks, &extra).await;
    (s, lb)
}

#[tokio::test]
async fn tcp_checks_follow_the_listener() {
    let mut s = TestServer::start("web-1").await;
    let other = TestServer::start("web-2").await;
    let extra = Extra {
        check: "type = \"tcp\"".into(),
        ..Extra::default()
    };
    let text = farm_toml_with(
        FRONTEND_PORT,
        &[("web-1", s.addr, 1), ("web-2", other.addr, 1)],
        Checks::default(),
        &extra,
    )
    .replace("path = \"/healthz\"\n", "");
    let lb = start_lb_text(&text, None).await;
    eventually(DEADLINE, "a TCP check passed", || {
        ready((check_text(&lb, "web-1").starts_with("Layer4 check passed")).then_some(()))
    })
    .await;
    assert_eq!(
        s.shared.checks.load(Ordering::SeqCst),
        0,
        "no HTTP request sent"
    );
    s.stop().await;
    eventually(DEADLINE, "web-1 goes down", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    assert!(check_text(&lb, "web-1").starts_with("Layer4 connection problem"));
    s.restart().await;
    eventually(DEADLINE, "web-1 comes back", || {
        ready(lb.is_up("web-1").then_some(()))
    })
    .await;
    lb.stop().await;
}

#[tokio::test]
async fn http_check_method_host_and_expected_status() {
    let s = TestServer::start("web-1").await;
    let extra = Extra {
        check: "method = \"HEAD\"\nhost = \"check.local\"\nexpect_status = [200]".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    eventually(DEADLINE, "a check arrives", || {
        ready((s.shared.last_check.lock().unwrap().is_some()).then_some(()))
    })
    .await;
    let seen = s.shared.last_check.lock().unwrap().clone().unwrap();
    assert_eq!(seen, ("HEAD".to_string(), "check.local".to_string()));
    lb.stop().await;

    // 200 is not in the expected list: the server goes down with HAProxy's reason.
    let extra = Extra {
        check: "expect_status = [204]".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], Checks::default(), &extra).await;
    eventually(DEADLINE, "web-1 goes down on an unexpected 200", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    assert!(
        check_text(&lb, "web-1").starts_with("Layer7 wrong status, code: 200"),
        "{}",
        check_text(&lb, "web-1")
    );
    lb.stop().await;
}

#[tokio::test]
async fn observed_errors_force_fastinter() {
    // Checks every hour, so only `on_error fastinter` can bring the next ones sooner.
    let checks = Checks {
        inter: "1h",
        rise: 2,
        fall: 2,
        retries: 0,
    };
    let (s, lb) = observed_pair(
        checks,
        "fastinter = \"50ms\"\nobserve = \"layer7\"\nerror_limit = 2\non_error = \"fastinter\"",
    )
    .await;
    // web-1's first check runs at once (web-2's half an interval later).
    eventually(DEADLINE, "web-1's first check ran", || {
        ready((s[0].shared.checks.load(Ordering::SeqCst) >= 1).then_some(()))
    })
    .await;
    s[0].shared.sick.store(true, Ordering::SeqCst);
    s[0].shared.force_status.store(500, Ordering::SeqCst);
    for _ in 0..4 {
        get(lb.addr, "/").await;
    }
    eventually(DEADLINE, "web-1 goes down at fastinter", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    assert!(check_text(&lb, "web-1").starts_with("Layer7 wrong status, code: 503"));
    lb.stop().await;
}

#[tokio::test]
async fn on_error_mark_down_takes_a_failing_server_out() {
    let (s, lb) = observed_pair(
        hourly(),
        "observe = \"layer7\"\nerror_limit = 3\non_error = \"mark-down\"",
    )
    .await;
    s[0].shared.force_status.store(500, Ordering::SeqCst);
    let mut errors = 0;
    for _ in 0..6 {
        if get(lb.addr, "/").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "web-1 answered 500 three times, then left");
    assert!(!lb.is_up("web-1"));
    let text = check_text(&lb, "web-1");
    assert!(
        text.starts_with(
            "Health analyze, info: \"Detected 3 consecutive errors, last one was: status 500"
        ),
        "{text}"
    );
    for _ in 0..4 {
        assert_eq!(get(lb.addr, "/").await.body, "web-2");
    }
    lb.stop().await;
}

#[tokio::test]
async fn layer4_observation_ignores_status_errors() {
    let (s, lb) = observed_pair(
        hourly(),
        "observe = \"layer4\"\nerror_limit = 1\non_error = \"mark-down\"",
    )
    .await;
    s[0].shared.force_status.store(500, Ordering::SeqCst);
    for _ in 0..6 {
        get(lb.addr, "/").await;
    }
    assert!(lb.is_up("web-1"), "a 500 is no layer-4 error");
    lb.stop().await;
}

#[tokio::test]
async fn downinter_slows_the_checks_of_a_down_server() {
    let s = TestServer::start("web-1").await;
    let checks = Checks {
        inter: "50ms",
        rise: 2,
        fall: 2,
        retries: 0,
    };
    let extra = Extra {
        check: "downinter = \"1h\"".into(),
        ..Extra::default()
    };
    let lb = start_lb_extra(&[&s], &[1], checks, &extra).await;
    s.shared.sick.store(true, Ordering::SeqCst);
    eventually(DEADLINE, "web-1 goes down", || {
        ready((!lb.is_up("web-1")).then_some(()))
    })
    .await;
    let at_down = s.shared.checks.load(Ordering::SeqCst);
    // A negative claim needs a wait: ten times `inter` without a check.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.shared.checks.load(Ordering::SeqCst) <= at_down + 1,
        "a fully down server is checked every downinter"
    );
    lb.stop().await;
}
