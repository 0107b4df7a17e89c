//! Authentication on every API that changes state, in farms run by the real `webfarm up`:
//!
//! - an rqlite auth file (clear and bcrypt passwords, `"*"`) works unchanged on the db API:
//!   each permission is enforced, bad credentials get 401 and are counted, `webfarm sql -u`
//!   and pyrqlite connect as its users;
//! - the farm's generated secrets: the web tier works with only `execute` and `query`; with
//!   internal TLS off the admin routes, db membership and the control socket take the admin
//!   token, `/healthz`, `/readyz` and `/status` stay open;
//! - with internal TLS on, a web node's certificate is refused on `/metrics`, `/lb/...` and
//!   `/cluster/...` while the operator's and the monitor's are taken; the dashboard's actions
//!   take the admin token.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{TempDir, TestFarm, DEADLINE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use webfarm_node::http::{HttpClient, HttpResponse};
use webfarm_testkit::metrics::sample;

/// One call with `authorization` (or none); the status and the body.
async fn call(
    method: Method,
    url: &str,
    authorization: Option<&HeaderValue>,
    body: &str,
) -> HttpResponse {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    HttpClient::new()
        .request(req, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn basic(user: &str, password: &str) -> HeaderValue {
    webfarm_auth::basic::header(user, password)
}

fn text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A 401 that asks for Basic credentials.
fn challenged(r: &HttpResponse) -> bool {
    r.status == StatusCode::UNAUTHORIZED
        && r.headers
            .get_all("www-authenticate")
            .iter()
            .any(|v| v.to_str().unwrap_or("").starts_with("Basic"))
}

const AUTH_FILE_DB: &str = "127.0.84.41";

/// rqlite's documented shape: users with clear and bcrypt passwords, and `"*"`.
fn rqlite_auth_file() -> String {
    let hash = |pw: &str| bcrypt::hash(pw, 10).unwrap();
    serde_json::json!([
        {"username": "alice", "password": "alice-pw", "perms": ["all"]},
        {"username": "bob", "password": hash("bob-pw"), "perms": ["query"]},
        {"username": "carol", "password": hash("carol-pw"), "perms": ["execute", "query", "status"]},
        {"username": "dave", "password": "dave-pw", "perms": ["backup", "load"]},
        {"username": "*", "perms": ["ready"]}
    ])
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rqlite_auth_file_works_unchanged_and_each_permission_is_enforced() {
    let tmp = TempDir::new("auth-rqlite-file");
    std::fs::write(tmp.path().join("rqlite-auth.json"), rqlite_auth_file()).unwrap();
    let config = tmp.path().join("farm.toml");
    std::fs::write(
        &config,
        format!(
            "site = \"www.foobar.com\"\ndata_dir = \"data\"\n\
             [[nodes]]\nname = \"db-1\"\nrole = \"db\"\naddress = \"{AUTH_FILE_DB}\"\n\
             [tls]\ninternal = false\n[db]\nauth = \"rqlite-auth.json\"\n"
        ),
    )
    .unwrap();
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config, 84);
    let api = |path: &str| format!("http://{AUTH_FILE_DB}:4001{path}");
    let (alice, bob, carol, dave) = (
        basic("alice", "alice-pw"),
        basic("bob", "bob-pw"),
        basic("carol", "carol-pw"),
        basic("dave", "dave-pw"),
    );

    // No credentials, a wrong password, an unknown user: 401 with the challenge.
    let q = api("/db/query?q=SELECT%201");
    assert!(challenged(&call(Method::GET, &q, None, "").await));
    let r = call(Method::GET, &q, Some(&basic("bob", "nope")), "").await;
    assert!(challenged(&r), "{}", text(&r));
    let r = call(Method::GET, &q, Some(&basic("mallory", "x")), "").await;
    assert!(challenged(&r), "{}", text(&r));

    // A clear password with `all`.
    let create =
        r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t (v) VALUES ('a')"]"#;
    let r = call(Method::POST, &api("/db/execute"), Some(&alice), create).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert!(!text(&r).contains("error"), "{}", text(&r));

    // bcrypt, query only: reads, and is refused every other endpoint without a challenge.
    let r = call(
        Method::GET,
        &api("/db/query?q=SELECT%20count(*)%20FROM%20t"),
        Some(&bob),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let insert = r#"["INSERT INTO t (v) VALUES ('b')"]"#;
    for (method, path, body) in [
        (Method::POST, "/db/execute", insert),
        (Method::POST, "/db/request", insert),
        (Method::GET, "/db/backup", ""),
        (Method::GET, "/status", ""),
    ] {
        let r = call(method, &api(path), Some(&bob), body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", text(&r));
        assert!(
            !challenged(&r),
            "{path}: good credentials are not challenged"
        );
        assert!(text(&r).contains("lacks the"), "{path}: {}", text(&r));
    }
    // bcrypt with execute and query: /db/request (both), /status, not /db/load.
    let r = call(Method::POST, &api("/db/request"), Some(&carol), insert).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(
        call(Method::GET, &api("/status"), Some(&carol), "")
            .await
            .status,
        StatusCode::OK
    );
    let r = call(Method::POST, &api("/db/load"), Some(&carol), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", text(&r));
    // backup and load, nothing else.
    let backup = call(Method::GET, &api("/db/backup"), Some(&dave), "").await;
    assert_eq!(backup.status, StatusCode::OK, "{}", text(&backup));
    assert!(backup.body.starts_with(b"SQLite format 3"), "a SQLite file");
    let r = call(Method::GET, &q, Some(&dave), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // "*" opens /readyz to everyone, nothing more.
    assert_eq!(
        call(Method::GET, &api("/readyz"), None, "").await.status,
        StatusCode::OK
    );
    assert!(challenged(
        &call(Method::GET, &api("/status"), None, "").await
    ));
    // Membership without TLS: the admin token, or a user holding the permission.
    assert!(challenged(
        &call(Method::GET, &api("/cluster/nodes"), None, "").await
    ));
    assert_eq!(
        call(Method::GET, &api("/cluster/nodes"), Some(&bob), "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(Method::GET, &api("/cluster/nodes"), Some(&alice), "")
            .await
            .status,
        StatusCode::OK
    );

    // Counted by reason, on the db's /metrics.
    let out = farm.webfarm(&["metrics", "db-1"]);
    let metrics = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failures = |reason| {
        sample(
            &metrics,
            "webfarm_db_auth_failures_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert!(failures("no_credentials") >= 2.0, "{metrics}");
    assert!(failures("bad_password") >= 1.0, "{metrics}");
    assert!(failures("unknown_user") >= 1.0, "{metrics}");
    assert!(failures("forbidden") >= 6.0, "{metrics}");
    // Logged without the password.
    let log = farm.log_text();
    assert!(log.contains("invalid credentials (user \"bob\")"), "{log}");
    assert!(
        !log.contains("nope") && !log.contains("bob-pw"),
        "a password in the log"
    );

    // The operator's shell as rqlite's `-u USER:PASS`.
    let sql = |user: &str, stmt: &str| farm.webfarm(&["sql", "-u", user, "-c", stmt]);
    let out = sql("bob:bob-pw", "SELECT count(*) FROM t");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('2'),
        "{out:?}"
    );
    let out = sql("bob:bob-pw", "INSERT INTO t (v) VALUES ('c')");
    assert!(!out.status.success(), "bob wrote: {out:?}");
    let out = farm.webfarm(&["db", "nodes", "-u", "alice:alice-pw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    pyrqlite_as_users(tmp.path());
    farm.stop();
}

/// pyrqlite's `connect(user=, password=)`: alice writes, bob reads and may not write.
fn pyrqlite_as_users(dir: &Path) {
    let python = common::pyrqlite(dir);
    let script = r#"
import sys
import pyrqlite.dbapi2 as dbapi2
host = sys.argv[1]
alice = dbapi2.connect(host=host, port=4001, user="alice", password="alice-pw")
alice.cursor().execute("INSERT INTO t (v) VALUES (?)", ("from pyrqlite",))
bob = dbapi2.connect(host=host, port=4001, user="bob", password="bob-pw")
cur = bob.cursor()
cur.execute("SELECT v FROM t WHERE v = ?", ("from pyrqlite",))
assert cur.fetchall()[0][0] == "from pyrqlite"
try:
    cur.execute("INSERT INTO t (v) VALUES ('bob')")
except Exception as e:
    print("bob refused:", type(e).__name__)
else:
    raise AssertionError("bob wrote without the execute permission")
print("pyrqlite auth ok")
"#;
    let path = dir.join("pyrqlite_auth.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(python)
        .arg(&path)
        .arg(AUTH_FILE_DB)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("pyrqlite auth ok"),
        "{said}"
    );
    assert!(said.contains("bob refused"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_internal_tls_the_admin_token_guards_every_operator_route() {
    let tmp = TempDir::new("auth-token");
    let mut farm = TestFarm::start(&tmp, 85);
    let secrets = webfarm_auth::Secrets::of_data_dir(&tmp.path().join("data"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secrets.dir), 0o700);
    for f in [
        secrets.token_path(),
        secrets.auth_path(),
        secrets.web_password_path(),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let token = secrets.admin_token().unwrap();
    let bearer = token.bearer();

    // The web tier works with its own user, which has only execute and query.
    let post = call(
        Method::POST,
        &format!("{}/api/messages", farm.lb()),
        None,
        r#"{"author": "auth", "text": "through the web user"}"#,
    )
    .await;
    assert_eq!(post.status, StatusCode::CREATED, "{}", text(&post));
    let web_pw = webfarm_auth::secrets::read_secret(&secrets.web_password_path()).unwrap();
    let web = basic("web", &web_pw);
    let db = |path: &str| format!("http://127.0.85.31:4001{path}");
    let r = call(Method::GET, &db("/db/query?q=SELECT%201"), Some(&web), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    for (method, path) in [(Method::GET, "/db/backup"), (Method::POST, "/db/load")] {
        let r = call(method, &db(path), Some(&web), "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", text(&r));
    }
    let r = call(Method::GET, &db("/cluster/nodes"), Some(&web), "").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "web may not read membership"
    );

    // Operator-only routes: no token 401, a wrong one 401, the token 200.
    let routes = [
        "http://127.0.85.21:9000/metrics".to_string(),
        "http://127.0.85.10:9000/lb/servers".to_string(),
        db("/cluster/nodes"),
    ];
    for url in &routes {
        assert!(challenged(&call(Method::GET, url, None, "").await), "{url}");
        let wrong = HeaderValue::from_static("Bearer 0123");
        assert_eq!(
            call(Method::GET, url, Some(&wrong), "").await.status,
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
        let r = call(Method::GET, url, Some(&bearer), "").await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", text(&r));
    }
    // A change too: a server's weight set with the token only.
    let weight = "http://127.0.85.10:9000/lb/servers/web/web-1/weight";
    let r = call(Method::POST, weight, None, r#"{"weight": 5}"#).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(Method::POST, weight, Some(&bearer), r#"{"weight": 5}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    // Health and status stay open.
    for path in ["/healthz", "/readyz", "/status"] {
        let url = format!("http://127.0.85.21:9000{path}");
        assert_eq!(
            call(Method::GET, &url, None, "").await.status,
            StatusCode::OK,
            "{url}"
        );
    }
    let metrics = text(&call(Method::GET, &routes[0], Some(&bearer), "").await);
    let refusals = |reason| {
        sample(
            &metrics,
            "webfarm_admin_auth_refusals_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert!(refusals("no_credentials") >= 1.0, "{metrics}");
    assert!(refusals("bad_token") >= 1.0, "{metrics}");

    // The control socket: mode 0600, and requests without the token are refused.
    let socket = tmp.path().join("data/run/control.sock");
    assert_eq!(mode(&socket), 0o600);
    for line in ["stop web-3\n".to_string(), "stop web-3 0123\n".to_string()] {
        let answer = control(&socket, &line);
        assert!(
            answer.starts_with("error unauthorized"),
            "{line:?}: {answer}"
        );
    }
    assert!(farm.status("web-3").await.is_some(), "web-3 still runs");
    let stop = farm.webfarm(&["stop", "web-3"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    common::eventually(DEADLINE, "web-3 stopped", || async {
        farm.status("web-3").await.is_none().then_some(())
    })
    .await;
    farm.stop();
}

/// One request line on the supervisor's control socket; its answer line.
fn control(socket: &Path, line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    answer
}

/// The seed farm with mon-1 on 127.0.84.5, internal TLS on (the default).
fn tls_farm_with_monitor() -> String {
    common::farm_toml(84).replace(webfarm_testkit::INTERNAL_TLS_OFF, "")
        + "[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\naddress = \"127.0.84.5\"\nport = 3000\n"
}

/// The HTTP status `curl` got for `url` trusting the farm CA, with the client certificate
/// `who` (`operator` or a node's name) and optional extra arguments.
fn curl_as(ca: &Path, who: &str, url: &str, extra: &[&str]) -> u16 {
    let pair = if who == "operator" {
        (ca.join("operator.crt"), ca.join("operator.key"))
    } else {
        (
            ca.join(format!("nodes/{who}.crt")),
            ca.join(format!("nodes/{who}.key")),
        )
    };
    let curl = webfarm_testkit::which("curl", "curl", "calls the farm with client certificates");
    let out = Command::new(curl)
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(ca.join("ca.crt"))
        .arg("--cert")
        .arg(&pair.0)
        .arg("--key")
        .arg(&pair.1)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_internal_tls_the_operator_and_monitor_certificates_are_taken_a_web_nodes_refused() {
    let tmp = TempDir::new("auth-mtls");
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, tls_farm_with_monitor()).unwrap();
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config, 84);
    let ca = tmp.path().join("data/ca");
    let metrics = "https://127.0.84.10:9000/metrics";
    let lb = "https://127.0.84.10:9000/lb/servers";
    let members = "https://127.0.84.31:4001/cluster/nodes";
    for (who, url, want) in [
        ("web-1", metrics, 403),
        ("web-1", lb, 403),
        ("web-1", members, 403),
        ("operator", metrics, 200),
        ("operator", lb, 200),
        ("operator", members, 200),
        ("mon-1", metrics, 200),
        ("mon-1", lb, 200),
        ("mon-1", members, 403),
        ("db-2", members, 200),
        ("web-1", "https://127.0.84.10:9000/healthz", 200),
        ("web-1", "https://127.0.84.10:9000/readyz", 200),
        ("web-1", "https://127.0.84.10:9000/status", 200),
    ] {
        assert_eq!(curl_as(&ca, who, url, &[]), want, "{who} on {url}");
    }
    // A certificate is not a db user: SQL takes the credentials of the auth file too.
    let query = "https://127.0.84.31:4001/db/query?q=SELECT%201";
    assert_eq!(curl_as(&ca, "operator", query, &[]), 401);
    let token = webfarm_auth::Secrets::of_data_dir(&tmp.path().join("data"))
        .admin_token()
        .unwrap();
    let op = format!("operator:{}", token.expose());
    assert_eq!(curl_as(&ca, "operator", query, &["-u", &op]), 200);
    // The refusals are counted on the lb.
    let out = farm.webfarm(&["metrics", "lb-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let wrong = sample(
        &text,
        "webfarm_admin_auth_refusals_total",
        &[("reason", "wrong_peer")],
    );
    assert!(wrong.unwrap_or(0.0) >= 2.0, "{text}");

    // The dashboard's actions take the admin token (HTTP Basic, any user).
    let action = "http://127.0.84.5:3000/api/servers/web/web-1/weight";
    let post = |auth: Option<HeaderValue>| async move {
        let mut req = Request::post(action)
            .header("content-type", "application/json")
            .header("origin", "http://127.0.84.5:3000");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        HttpClient::new()
            .request(
                req.body(Full::new(Bytes::from(r#"{"value": "7"}"#)))
                    .unwrap(),
                DEADLINE,
            )
            .await
            .unwrap()
    };
    let r = post(None).await;
    assert!(challenged(&r), "{} {}", r.status, text_of(&r));
    let r = post(Some(basic("anyone", "wrong"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(Some(basic("anyone", token.expose()))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text_of(&r));
    let ask = "http://127.0.84.5:3000/api/auth";
    assert!(challenged(&call(Method::GET, ask, None, "").await));
    let r = call(Method::GET, ask, Some(&basic("me", token.expose())), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Viewing stays open.
    let view = call(Method::GET, "http://127.0.84.5:3000/api/view", None, "").await;
    assert_eq!(view.status, StatusCode::OK);
    farm.stop();
}

fn text_of(r: &HttpResponse) -> String {
    text(r)
}
