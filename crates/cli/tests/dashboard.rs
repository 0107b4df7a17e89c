//! The monitor's dashboard in a real browser (Debian's headless Chromium, driven through
//! chromedriver by fantoccini): the page loads with no console message, shows every node,
//! and, without a reload, shows web-2 down with its traffic at zero after `webfarm kill
//! web-2`; a screenshot is written for people to look at
//! (`target/tmp/dashboard-web-2-down.png`). The
//! dashboard's actions (kill, server state) and its refusal of cross-site requests are
//! exercised over HTTP.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::{TempDir, TestFarm, DEADLINE};

const NET: u8 = 73;

/// The seed farm plus mon-1 on 127.0.73.5:3000, with internal TLS on (the monitor scrapes
/// over mutual TLS, as in the built-in farm).
fn farm_with_monitor() -> String {
    common::farm_toml(NET).replace(webfarm_testkit::INTERNAL_TLS_OFF, "")
        + &format!(
            "[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\naddress = \"127.0.{NET}.5\"\n\
             port = 3000\n"
        )
}

/// chromedriver (Debian's chromium-driver) on a free port of 127.0.0.1, its output (and
/// Chromium's, where the page's console messages appear as `CONSOLE(line)`) in `log`.
struct Driver {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Driver {
    fn start(log: std::path::PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver cannot run ({e}): install Debian's chromium and \
                     chromium-driver (.ci/run does)"
                )
            });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// A headless Chromium session (retried while chromedriver starts).
    async fn session(&self) -> fantoccini::Client {
        let chrome = serde_json::json!({
            "goog:chromeOptions": {
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,2200"],
            },
            // Keep the page's console messages for `console`.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = chrome.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = fantoccini::ClientBuilder::new(connector);
        builder.capabilities(caps);
        let mut last = String::new();
        for _ in 0..100 {
            match builder.connect(&self.url).await {
                Ok(c) => return c,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "no Chromium session from chromedriver: {last}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// The page's console messages (and uncaught errors) since the last call, from
    /// chromedriver's log endpoint.
    async fn console(&self, page: &fantoccini::Client) -> Vec<String> {
        let id = page
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("a session id");
        let url = format!("{}/session/{id}/se/log", self.url);
        let body = bytes::Bytes::from_static(br#"{"type":"browser"}"#);
        let http = webfarm_node::http::HttpClient::new();
        let resp = http
            .post(&url, "application/json", body, Duration::from_secs(10))
            .await
            .expect("chromedriver's log");
        let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
        let entries = json["value"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("chromedriver gave no browser log: {json}"));
        entries.iter().map(ToString::to_string).collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` in the page (its return value as JSON).
async fn js(page: &fantoccini::Client, script: &str) -> serde_json::Value {
    page.execute(script, vec![]).await.expect("script")
}

/// Each diagram box as `name:state`.
const DIAGRAM: &str = "return [...document.querySelectorAll('#diagram g')]\
    .map(g => g.dataset.node + ':' + g.dataset.state);";
/// web-2's row of the lb's table: its cells' text.
const WEB2_ROW: &str = "const r = document.querySelector('tr[data-server=\"web-2\"]');\
    return r ? [...r.cells].map(c => c.textContent) : [];";

async fn until(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = std::time::Instant::now() + deadline;
    while !f().await {
        assert!(
            std::time::Instant::now() < end,
            "timed out after {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_farm_and_a_killed_web_node_in_chromium() {
    let tmp = TempDir::new("dashboard");
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, farm_with_monitor()).unwrap();
    let farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET);
    let url = format!("http://127.0.{NET}.5:3000/");
    assert!(
        farm.log_text().contains(&url),
        "webfarm up prints the dashboard's URL"
    );

    let driver = Driver::start(tmp.path().join("chromedriver.log"));
    let page = driver.session().await;
    page.goto(&url).await.expect("open the dashboard");
    let every = ["lb-1", "web-1", "web-2", "web-3", "db-1", "db-2", "db-3"];
    until(
        "the dashboard drawing every node up",
        DEADLINE,
        async || {
            let boxes = js(&page, DIAGRAM).await.to_string();
            every.iter().all(|n| boxes.contains(&format!("{n}:up")))
        },
    )
    .await;
    // Traffic through the lb shows as a p99 (from the lb's /metrics) in the backend's line.
    let lb_url = format!("http://127.0.{NET}.10:8080/style.css");
    until("the backend's p99 from traffic", DEADLINE, async || {
        for _ in 0..20 {
            let _ = farm.http.get(&lb_url, Duration::from_secs(5)).await;
        }
        let line = js(
            &page,
            "return document.querySelector('#backends h3').textContent;",
        )
        .await;
        let line = line.as_str().unwrap_or("").to_string();
        line.contains("p99 ") && !line.contains("p99 –")
    })
    .await;
    let db = js(
        &page,
        "return document.querySelector('#db-summary').textContent;",
    )
    .await;
    assert!(
        db.to_string().contains("primary (Raft leader): db-"),
        "{db}"
    );

    // The same page, never reloaded: the live stream brings the change.
    let kill = farm.webfarm(&["kill", "web-2"]);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    until(
        "web-2 DOWN with no traffic",
        Duration::from_secs(20),
        async || {
            let boxes = js(&page, DIAGRAM).await.to_string();
            let row = js(&page, WEB2_ROW).await;
            let cells: Vec<&str> = row
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            // server, state, last check, in flight, req/s, controls
            boxes.contains("web-2:down")
                && cells.get(1) == Some(&"DOWN")
                && cells.get(4) == Some(&"0.0")
        },
    )
    .await;
    let timeline = js(
        &page,
        "return document.querySelector('#timeline').textContent;",
    )
    .await;
    assert!(
        timeline.to_string().contains("web-2 is unreachable"),
        "{timeline}"
    );
    // A page opened now gets what happened before from the history.
    page.goto(&url).await.expect("open the dashboard again");
    until(
        "the reopened page's timeline and charts",
        DEADLINE,
        async || {
            let timeline = js(
                &page,
                "return document.querySelector('#timeline').textContent;",
            )
            .await;
            let keys = js(
                &page,
                "return document.querySelector('#keys-servers').textContent;",
            )
            .await;
            let t = timeline.to_string();
            t.contains("web-2 is unreachable")
                && t.matches("server web/web-2 is DOWN").count() == 1
                && keys.to_string().contains("lb-1/web/web-2")
        },
    )
    .await;

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-web-2-down.png");
    let png = page.screenshot().await.expect("a screenshot");
    std::fs::write(&shot, &png).unwrap();
    assert!(png.len() > 10_000, "a screenshot of {} bytes", png.len());
    println!("screenshot: {}", shot.display());
    let console = driver.console(&page).await;
    assert!(console.is_empty(), "the page logged: {console:#?}");
    page.close().await.expect("close the session");
}

#[test]
fn dashboard_actions_reach_the_lb_and_refuse_cross_site_requests() {
    let tmp = TempDir::new("dashboard-actions");
    let config = tmp.path().join("farm.toml");
    let text = farm_with_monitor().replace(&format!("127.0.{NET}."), "127.0.74.");
    std::fs::write(&config, text).unwrap();
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config, 74);
    let api = "http://127.0.74.5:3000/api";
    // The dashboard's actions take the admin token as the password of HTTP Basic.
    let token = webfarm_auth::Secrets::of_data_dir(&tmp.path().join("data"))
        .admin_token()
        .expect("the farm's admin token");
    let credentials = format!("operator:{}", token.expose());
    let post = |path: &str, content_type: &str, origin: Option<&str>, body: &str| {
        let mut args = vec![
            "-sS".to_string(),
            "-u".into(),
            credentials.clone(),
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("Content-Type: {content_type}"),
            "-d".into(),
            body.into(),
            "-w".into(),
            " %{http_code}".into(),
        ];
        if let Some(o) = origin {
            args.extend(["-H".into(), format!("Origin: {o}")]);
        }
        args.push(format!("{api}{path}"));
        let out = Command::new("curl").args(&args).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // What a page of another site could send: refused, nothing done.
    let text_plain = post("/nodes/web-1/kill", "text/plain", None, "{}");
    assert!(text_plain.ends_with(" 415"), "{text_plain}");
    let other_origin = post(
        "/nodes/web-1/kill",
        "application/json",
        Some("http://evil.example"),
        "{}",
    );
    assert!(other_origin.ends_with(" 403"), "{other_origin}");
    let bad = post(
        "/servers/web/web-3/state",
        "application/json",
        None,
        r#"{"value":"sleep"}"#,
    );
    assert!(
        bad.contains("ready, drain or maint") && bad.ends_with(" 400"),
        "{bad}"
    );
    // A drain reaches the lb.
    let drain = post(
        "/servers/web/web-3/state",
        "application/json",
        None,
        r#"{"value":"drain"}"#,
    );
    assert!(drain.ends_with(" 200"), "{drain}");
    let status = farm.webfarm(&["lb", "servers"]);
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text.lines().find(|l| l.contains("web-3")).unwrap_or("");
    assert!(line.contains("DRAIN") || line.contains("drain"), "{text}");
    // web-1 becomes a backup server, and active again.
    for value in ["true", "false"] {
        let body = format!("{{\"value\":\"{value}\"}}");
        let answer = post("/servers/web/web-1/backup", "application/json", None, &body);
        assert!(
            answer.ends_with(" 200") && answer.contains(&format!("backup {value}")),
            "{answer}"
        );
    }
    // Kill and start web-1 from the dashboard; every node is still running after the refusals.
    let kill = post("/nodes/web-1/kill", "application/json", None, "{}");
    assert!(
        kill.contains("web-1 stopped") && kill.ends_with(" 200"),
        "{kill}"
    );
    let start = post("/nodes/web-1/start", "application/json", None, "{}");
    assert!(start.ends_with(" 200"), "{start}");
    let events = Command::new("curl")
        .args(["-sS", &format!("{api}/events")])
        .output()
        .expect("curl");
    let events = String::from_utf8_lossy(&events.stdout);
    for said in [
        "dashboard: kill web-1",
        "dashboard: set state of web/web-3 to drain",
    ] {
        assert!(events.contains(said), "{said}: {events}");
    }

    // A browser still listening does not hold the monitor up at shutdown: every node stops
    // gracefully (no SIGKILL after 10 s).
    let mut listener = Command::new("curl")
        .args(["-sN", &format!("{api}/stream")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    // It is listening once its first frame arrived.
    let mut first = String::new();
    let out = listener.stdout.take().expect("curl's stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut first).unwrap();
    assert_eq!(first.trim(), "event: frame");
    let started = std::time::Instant::now();
    farm.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let _ = listener.kill();
    let _ = listener.wait();
}
