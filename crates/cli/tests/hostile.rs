//! The catalogue of hostile inputs against a running farm (`webfarm up` on 127.0.86.x):
//! request smuggling forms, oversized and slow heads and bodies, invalid bytes, path
//! traversal on static files (symbolic links out of `site/` included), SQL in every field
//! of the app's API, malformed TLS ClientHellos and malformed DNS messages. Each row is
//! asserted (input → expected → got, printed as a table); then the farm must still serve,
//! every message posted before must be there unchanged, and the schema must be the same.

mod common;
#[path = "hostile/inputs.rs"]
mod inputs;
#[path = "hostile/raw.rs"]
mod raw;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TempDir, TestFarm, DEADLINE};
use serde_json::{json, Value};

const NET: u8 = 86;
/// `max_body_size` of the test's frontend.
const MAX_BODY: usize = 65_536;
/// `max_header_size` of the test's frontend.
const MAX_HEAD: usize = 8_192;
/// The file outside the site's root that must never be served.
const SECRET: &str = "TOP-SECRET-outside-the-root-5f1c";

/// One row of the catalogue.
struct Row {
    input: String,
    expected: String,
    got: String,
    ok: bool,
}

#[derive(Default)]
struct Catalogue(Vec<Row>);

impl Catalogue {
    fn row(
        &mut self,
        input: impl Into<String>,
        expected: impl Into<String>,
        got: String,
        ok: bool,
    ) {
        self.0.push(Row {
            input: input.into(),
            expected: expected.into(),
            got,
            ok,
        });
    }

    /// Prints the table and fails naming every row that did not hold.
    fn assert_all(&self) {
        let w = self
            .0
            .iter()
            .map(|r| r.input.len())
            .max()
            .unwrap_or(5)
            .min(70);
        println!("\n{:<w$} | {:<28} | {:<28} |", "input", "expected", "got");
        println!("{}", "-".repeat(w + 66));
        for r in &self.0 {
            let mark = if r.ok { "ok" } else { "FAILED" };
            println!(
                "{:<w$} | {:<28} | {:<28} | {mark}",
                r.input, r.expected, r.got
            );
        }
        let failed: Vec<_> = self.0.iter().filter(|r| !r.ok).map(|r| &r.input).collect();
        println!("{} rows, {} failed", self.0.len(), failed.len());
        assert!(failed.is_empty(), "rows that did not hold: {failed:#?}");
    }
}

/// The seed farm on 127.0.86.x with an HTTPS frontend, a dns node, small limits and
/// timeouts on `www`, and `root` as the web nodes' site.
fn farm_toml(root: &Path) -> String {
    common::farm_toml(NET)
        .replace(webfarm_testkit::INTERNAL_TLS_OFF, "")
        .replace(
            "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n",
            &format!(
                "[[frontends]]\nname = \"www\"\nport = 8080\ndefault_backend = \"web\"\n\
                 max_header_size = {MAX_HEAD}\nmax_body_size = {MAX_BODY}\n\
                 timeout = {{ client = \"3s\", http_request = \"2s\", http_keep_alive = \"5s\" }}\n\
                 [[frontends]]\nname = \"www-https\"\nport = 8443\ndefault_backend = \"web\"\n\
                 tls = {{}}\n[[nodes]]\nname = \"dns-1\"\nrole = \"dns\"\n\
                 address = \"127.0.{NET}.2\"\n"
            ),
        )
        .replace(
            &format!("root = \"{}\"", common::site_dir().display()),
            &format!("root = \"{}\"", root.display()),
        )
}

/// A copy of `site/` in `tmp/site` with symbolic links out of it (`leak -> ../outside`,
/// `leak.txt -> ../outside/secret.txt`, `leakdir/index.html -> ../outside/index.html`), and
/// the secret beside it.
fn hostile_site(tmp: &Path) -> std::path::PathBuf {
    let site = tmp.join("site");
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).expect("outside/");
    std::fs::write(outside.join("secret.txt"), SECRET).expect("the secret");
    std::fs::write(outside.join("index.html"), SECRET).expect("the secret page");
    let status = Command::new("cp")
        .arg("-R")
        .arg(common::site_dir())
        .arg(&site)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying site/");
    std::os::unix::fs::symlink(&outside, site.join("leak")).expect("a link");
    std::os::unix::fs::symlink(outside.join("secret.txt"), site.join("leak.txt")).expect("a link");
    std::fs::create_dir_all(site.join("leakdir")).expect("leakdir/");
    std::os::unix::fs::symlink(outside.join("index.html"), site.join("leakdir/index.html"))
        .expect("a link");
    site
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, NET, host], port))
}

/// The messages the app lists (at most 500), through the lb.
async fn messages(farm: &TestFarm) -> Vec<Value> {
    let r = farm
        .get(&format!("{}/api/messages?limit=500", farm.lb()))
        .await;
    assert_eq!(r.status, 200, "GET /api/messages");
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    v.as_array()
        .or_else(|| v["messages"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("a list of messages: {v}"))
}

/// The database's schema through `webfarm sql` (the operator's tool, not the db API).
fn schema(farm: &TestFarm) -> String {
    let mut child = Command::new(common::bin())
        .args(["sql", "--config"])
        .arg(&farm.config)
        .env("HOME", &farm.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("webfarm sql runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name;\n")
            .expect("a statement");
    }
    let out = child.wait_with_output().expect("webfarm sql ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("messages"),
        "webfarm sql: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_input_catalogue_is_refused_and_loses_nothing() {
    let why = "the hostile-input catalogue (crates/cli/tests/hostile.rs)";
    for (tool, package) in [("curl", "curl"), ("dig", "dnsutils"), ("cp", "coreutils")] {
        webfarm_testkit::which(tool, package, why);
    }
    let tmp = TempDir::new("hostile");
    let root = hostile_site(tmp.path());
    let config = tmp.path().join("farm.toml");
    std::fs::write(&config, farm_toml(&root)).expect("farm.toml");
    let mut farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET);

    // Data written before the catalogue.
    let mut before = Vec::new();
    for i in 0..5 {
        let body = json!({"author": format!("user-{i}"), "text": format!("message {i} before")});
        let r = farm
            .post_json(&format!("{}/api/messages", farm.lb()), &body)
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        before.push(serde_json::from_slice::<Value>(&r.body).expect("the stored message"));
    }
    let schema_before = schema(&farm);

    let mut cat = Catalogue::default();
    let lb = addr(10, 8080);
    let catalogue = {
        let farm = &farm;
        async move {
            http_framing(&mut cat, lb);
            limits(&mut cat, lb);
            slow(&mut cat, lb);
            traversal(&mut cat, farm, lb);
            let injected = sql_in_fields(&mut cat, farm).await;
            tls(&mut cat, addr(10, 8443));
            dns(&mut cat, addr(2, 5353));
            (cat, injected)
        }
    };
    let (cat, injected) = catalogue.await;
    cat.assert_all();

    // The farm still serves, over HTTP, HTTPS and DNS.
    let r = farm.get(&format!("{}/", farm.lb())).await;
    assert_eq!(r.status, 200, "GET / after the catalogue");
    still_serves_https(&farm);
    let answer = Command::new("dig")
        .args(["@127.0.86.2", "-p", "5353", "+short", "www.foobar.com", "A"])
        .output()
        .expect("dig runs");
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("127.0.86.10"),
        "dig after the catalogue: {:?}",
        answer
    );

    // Nothing lost or changed: every message of before, the injected ones verbatim, no
    // other; the same schema.
    let after = messages(&farm).await;
    for m in &before {
        assert!(
            after.contains(m),
            "message {m} lost or changed; now: {after:#?}"
        );
    }
    for (author, text) in &injected {
        let found = after
            .iter()
            .any(|m| m["author"] == *author && m["text"] == *text);
        assert!(found, "{author:?}/{text:?} not stored verbatim");
    }
    assert_eq!(after.len(), before.len() + injected.len(), "{after:#?}");
    assert_eq!(schema(&farm), schema_before, "the schema changed");
    farm.stop();
}

/// Smuggling forms, malformed framing and invalid bytes on the plain frontend.
fn http_framing(cat: &mut Catalogue, lb: SocketAddr) {
    for (name, bytes, expected) in inputs::smuggling().into_iter().chain(inputs::bad_bytes()) {
        let reply = raw::send(lb, &bytes);
        let (want, ok) = if expected.is_empty() {
            let ok = reply.closed && reply.responses() <= 1 && !reply.text().contains("smuggled");
            ("≤ 1 answer, closed".to_string(), ok)
        } else {
            let want = expected
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/");
            let ok =
                reply.status().is_some_and(|s| expected.contains(&s)) && reply.responses() == 1;
            (want, ok)
        };
        cat.row(name, want, reply.summary(), ok);
    }
}

/// Oversized heads and bodies.
fn limits(cat: &mut Catalogue, lb: SocketAddr) {
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD + 100)
    );
    let r = raw::send(lb, long_header.as_bytes());
    cat.row(
        "a header over max_header_size",
        "431",
        r.summary(),
        r.status() == Some(431),
    );
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n",
        "u".repeat(20_000)
    );
    let r = raw::send(lb, long_uri.as_bytes());
    let ok = matches!(r.status(), Some(414 | 431));
    cat.row("a 20 kB target", "414/431", r.summary(), ok);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: www.foobar.com\r\n");
    for i in 0..200 {
        many += &format!("X-H{i}: v\r\n");
    }
    many += "\r\n";
    let r = raw::send(lb, many.as_bytes());
    cat.row(
        "200 header lines",
        "431",
        r.summary(),
        r.status() == Some(431),
    );
    let declared = format!(
        "POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        MAX_BODY * 4
    );
    let r = raw::send(lb, declared.as_bytes());
    cat.row(
        "Content-Length over max_body_size",
        "413",
        r.summary(),
        r.status() == Some(413),
    );
    let chunk = "a".repeat(16_384);
    let mut chunked = String::from(
        "POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..6 {
        chunked += &format!("4000\r\n{chunk}\r\n");
    }
    chunked += "0\r\n\r\n";
    let r = raw::send(lb, chunked.as_bytes());
    cat.row(
        "a chunked body over max_body_size",
        "413",
        r.summary(),
        r.status() == Some(413),
    );
}

/// Slowloris: a head and a body that stop half way.
fn slow(cat: &mut Catalogue, lb: SocketAddr) {
    let wait = DEADLINE;
    let r = raw::exchange(
        lb,
        &[b"GET / HTTP/1.1\r\nHost: www.fo"],
        Duration::ZERO,
        false,
        wait,
    );
    let ok = r.status() == Some(408) && r.closed;
    cat.row(
        "a head that stops (timeout http-request 2s)",
        "408, closed",
        r.summary(),
        ok,
    );
    let r = raw::exchange(
        lb,
        &[b"POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"author\":"],
        Duration::ZERO,
        false,
        wait,
    );
    let ok = r.status() == Some(408) && r.closed;
    cat.row(
        "a body that stops (timeout client 3s)",
        "408, closed",
        r.summary(),
        ok,
    );
}

/// Path traversal through the lb (raw bytes) and straight to a web node (curl with the
/// operator's certificate, `--path-as-is`: the web nodes speak mutual TLS only).
fn traversal(cat: &mut Catalogue, farm: &TestFarm, lb: SocketAddr) {
    let verdict = |status: Option<u16>, body: &str| {
        let leaked = body.contains(SECRET) || body.contains("root:x:0:0");
        (matches!(status, Some(400 | 403 | 404)) && !leaked, leaked)
    };
    for path in inputs::traversals() {
        let r = raw::send(lb, &inputs::get(&path));
        let (ok, leaked) = verdict(r.status(), &r.text());
        let got = if leaked {
            format!("{} LEAKED", r.summary())
        } else {
            r.summary()
        };
        cat.row(
            format!("GET {path} (lb)"),
            "400/404, nothing leaked",
            got,
            ok,
        );
    }
    for path in inputs::traversals() {
        let (status, body) = web_direct(farm, &path);
        let (ok, leaked) = verdict(status, &body);
        let got = match status {
            Some(s) if leaked => format!("{s} LEAKED"),
            Some(s) => s.to_string(),
            None => format!("curl failed: {body}"),
        };
        cat.row(
            format!("GET {path} (web-1, mTLS)"),
            "400/404, nothing leaked",
            got,
            ok,
        );
    }
    // The site itself is served.
    let r = raw::send(lb, &inputs::get("/about.html"));
    cat.row(
        "GET /about.html (lb)",
        "200",
        r.summary(),
        r.status() == Some(200),
    );
}

/// `GET path` straight to web-1 over its mutual TLS, with the operator's certificate:
/// the status and the body.
fn web_direct(farm: &TestFarm, path: &str) -> (Option<u16>, String) {
    let ca = farm.dir.join("data/ca");
    let url = format!("https://127.0.{NET}.21:8000{path}");
    let out = Command::new("curl")
        .args(["-sS", "--path-as-is", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca.join("ca.crt"))
        .arg("--cert")
        .arg(ca.join("operator.crt"))
        .arg("--key")
        .arg(ca.join("operator.key"))
        .arg(&url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = code.trim().parse().ok().filter(|&c| c != 0);
    let body = if status.is_some() {
        body.to_string()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (status, body)
}

/// SQL in every field of the app's API: stored as text, nothing executed. Returns the
/// (author, text) pairs that must now be stored.
async fn sql_in_fields(cat: &mut Catalogue, farm: &TestFarm) -> Vec<(String, String)> {
    let payloads = [
        (
            "Robert'); DROP TABLE messages;--",
            "x'); DELETE FROM messages; --",
        ),
        ("admin' OR '1'='1", "1; UPDATE messages SET text = 'pwned'"),
        ("\" OR \"\"=\"", "' UNION SELECT sql FROM sqlite_master --"),
        (
            "x\u{0027}; ATTACH DATABASE '/tmp/x' AS x; --",
            "'||(SELECT randomblob(1000000000))||'",
        ),
    ];
    let mut stored = Vec::new();
    for (author, text) in payloads {
        let body = json!({"author": author, "text": text});
        let r = farm
            .post_json(&format!("{}/api/messages", farm.lb()), &body)
            .await;
        let got: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let ok = r.status == 201 && got["author"] == author && got["text"] == text;
        cat.row(
            format!("POST /api/messages author={author:?}"),
            "201, stored verbatim",
            r.status.to_string(),
            ok,
        );
        stored.push((author.to_string(), text.to_string()));
    }
    // The form posts the same way (303 to /).
    let form = "author=%27%3B+DROP+TABLE+messages%3B--&text=%27+OR+1%3D1+--";
    let req = format!(
        "POST /messages HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let r = raw::send(addr(10, 8080), req.as_bytes());
    cat.row(
        "POST /messages (form) with SQL",
        "303",
        r.summary(),
        r.status() == Some(303),
    );
    stored.push(("'; DROP TABLE messages;--".into(), "' OR 1=1 --".into()));
    for (path, expected) in [
        ("/api/messages?limit=1;DROP%20TABLE%20messages", 400),
        ("/api/messages?limit=1%20OR%201=1", 400),
        ("/api/messages/1%20OR%201=1", 400),
        ("/api/messages/0;DELETE%20FROM%20messages", 400),
    ] {
        let r = raw::send(addr(10, 8080), &inputs::get(path));
        let ok = r.status() == Some(expected) || r.status() == Some(404);
        cat.row(format!("GET {path}"), "400/404", r.summary(), ok);
    }
    stored
}

/// Malformed ClientHellos to the HTTPS frontend: closed (an alert at most), never HTTP.
fn tls(cat: &mut Catalogue, https: SocketAddr) {
    for (name, hello) in inputs::tls_hellos() {
        let r = raw::exchange(https, &[&hello], Duration::ZERO, true, DEADLINE);
        let ok = r.closed && (r.bytes.is_empty() || r.bytes[0] == 0x15) && r.status().is_none();
        cat.row(format!("TLS: {name}"), "alert or close", r.summary(), ok);
    }
}

/// Malformed DNS messages to dns-1 over UDP: FORMERR (or the rcode named) or dropped, and
/// the node answers the next query.
fn dns(cat: &mut Catalogue, server: SocketAddr) {
    let rcode_name = |r: u8| match r {
        0 => "NOERROR".to_string(),
        1 => "FORMERR".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("rcode {n}"),
    };
    for (i, (name, bad, expected)) in inputs::dns_packets().into_iter().enumerate() {
        let probe_id = 0x7000 + u16::try_from(i).unwrap_or(0);
        let probe = inputs::dns_query(probe_id, "www.foobar.com", 1);
        let (answer, probed) = raw::dns_pair(server, &bad, &probe, probe_id);
        let got_rcode = answer.as_ref().and_then(|a| a.get(3)).map(|b| b & 0x0f);
        let same_id = answer.as_ref().is_none_or(|a| a.get(..2) == bad.get(..2));
        let got = match got_rcode {
            Some(r) => format!(
                "{}{}",
                rcode_name(r),
                if probed { ", then answers" } else { "" }
            ),
            None if probed => "dropped, then answers".into(),
            None => "nothing at all".into(),
        };
        let want = match expected {
            Some(r) => format!("{}, then answers", rcode_name(r)),
            None => "dropped, then answers".into(),
        };
        let ok = got_rcode == expected && probed && same_id;
        cat.row(format!("DNS: {name}"), want, got, ok);
    }
}

/// The HTTPS frontend still answers curl (which trusts the farm CA).
fn still_serves_https(farm: &TestFarm) {
    let ca = farm.dir.join("data/ca/ca.crt");
    let resolve = format!("www.foobar.com:8443:127.0.{NET}.10");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &resolve, "https://www.foobar.com:8443/"])
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "HTTPS after the catalogue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
