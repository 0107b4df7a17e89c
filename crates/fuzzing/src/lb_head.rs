//! Target `lb_head`: a client connection's raw bytes → what the lb refuses (hyper's 400,
//! 431, 501...; its own 400 for `Host`, 413) and what it would forward
//! ([`webfarm_lb::fuzzing::serve_bytes`]: the frontend's hyper server, phase 1's checks, the
//! head's rewrite, the body with `max_body_size`).

use std::cell::RefCell;

use http::{header, HeaderValue, Method, Version};
use webfarm_config::{Farm, Frontend};
use webfarm_lb::fuzzing::{serve_bytes, Exchange, Forwarded};

/// The frontend fuzzed: small limits, so that inputs can reach them.
const FARM: &str = r#"
[[nodes]]
name = "lb-1"
role = "lb"
address = "127.0.0.10"
[[frontends]]
name = "www"
port = 8080
default_backend = "web"
max_header_size = 8192
max_body_size = 1000
# The input ends with end-of-file, so nothing waits on these; short all the same.
timeout = { client = "2s", http_request = "2s", http_keep_alive = "2s" }
[[backends]]
name = "web"
[[backends.servers]]
address = "127.0.0.21:8000"
"#;

/// The hop-by-hop headers (RFC 9110 §7.6.1) and `Expect`, never sent to a server.
const NEVER_FORWARDED: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "expect",
    "http2-settings",
];

struct Setup {
    rt: tokio::runtime::Runtime,
    fe: Frontend,
    site: HeaderValue,
}

thread_local! {
    static SETUP: RefCell<Option<Setup>> = const { RefCell::new(None) };
}

fn setup() -> Setup {
    let farm = Farm::parse(FARM, None, std::path::Path::new("/fuzz")).expect("the fuzzed farm");
    Setup {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
        fe: farm.frontends[0].clone(),
        site: HeaderValue::from_static("www.foobar.com"),
    }
}

/// Checks one input.
///
/// # Panics
///
/// When an answer is not HTTP, or a forwarded request breaks a rule: more or less than one
/// valid `Host`, a hop-by-hop header or `Expect`, a version other than HTTP/1.1, an
/// absolute-form target, a `Content-Length` that is not its body's length, a body over
/// `max_body_size`, `X-Forwarded-For` not ending with the client, or a head that does not
/// re-serialise and re-parse to the same head.
pub fn check(data: &[u8]) {
    SETUP.with(|cell| {
        let mut cell = cell.borrow_mut();
        let s = cell.get_or_insert_with(setup);
        let exchange = s.rt.block_on(serve_bytes(data, &s.fe, &s.site));
        check_exchange(data, &exchange, &s.fe);
    });
}

fn check_exchange(data: &[u8], ex: &Exchange, fe: &Frontend) {
    for f in &ex.forwarded {
        check_forwarded(f, fe);
    }
    for status in &ex.refused {
        assert!(
            status.is_client_error(),
            "the proxy refused with {status}, not a 4xx"
        );
    }
    // HTTP/2 (prior knowledge) answers in frames; everything else in HTTP/1.1 responses.
    if data.starts_with(b"PRI ") {
        return;
    }
    let statuses = answer_statuses(&ex.answer);
    let ok = statuses
        .iter()
        .filter(|&&s| (200..300).contains(&s))
        .count();
    assert!(
        ok <= ex.forwarded.len(),
        "{ok} answers 2xx for {} forwarded requests",
        ex.forwarded.len()
    );
}

/// The statuses of the HTTP/1.1 responses in `answer`, in order.
///
/// # Panics
///
/// When `answer` holds something else than whole HTTP/1.x responses (a last one may be cut
/// short only after its head).
fn answer_statuses(mut answer: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    while !answer.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(answer) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("the answer is not an HTTP response ({other:?}): {answer:?}"),
        };
        let code = resp.code.unwrap_or_default();
        assert!((100..600).contains(&code), "status {code}");
        let length = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        statuses.push(code);
        answer = answer.get(head + length..).unwrap_or_default();
    }
    statuses
}

fn check_forwarded(f: &Forwarded, fe: &Frontend) {
    let h = &f.headers;
    let hosts: Vec<_> = h.get_all(header::HOST).iter().collect();
    assert_eq!(hosts.len(), 1, "Host headers sent: {hosts:?}");
    assert!(
        !hosts[0].is_empty() && hosts[0].as_bytes().iter().all(u8::is_ascii_graphic),
        "Host {:?}",
        hosts[0]
    );
    for name in NEVER_FORWARDED {
        assert!(!h.contains_key(name), "{name} forwarded: {h:?}");
    }
    // `Connection` only as the upgrade the proxy itself writes.
    if let Some(c) = h.get(header::CONNECTION) {
        assert!(
            c == "upgrade" && h.contains_key(header::UPGRADE),
            "Connection: {c:?}"
        );
    } else {
        assert!(
            !h.contains_key(header::UPGRADE),
            "Upgrade without Connection"
        );
    }
    assert_eq!(f.version, Version::HTTP_11);
    assert!(
        f.uri.scheme().is_none(),
        "absolute-form target forwarded: {}",
        f.uri
    );
    let target = f.uri.to_string();
    match f.method {
        Method::CONNECT => assert!(f.uri.authority().is_some(), "CONNECT {target:?}"),
        Method::OPTIONS => assert!(target.starts_with('/') || target == "*", "{target:?}"),
        _ => assert!(target.starts_with('/'), "target {target:?}"),
    }
    let lengths: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    let declared = lengths.first().map(|v| {
        let n = v.to_str().ok().and_then(|t| t.parse::<u64>().ok());
        n.unwrap_or_else(|| panic!("Content-Length {v:?} forwarded"))
    });
    assert!(
        lengths.iter().all(|v| Some(v) == lengths.first()),
        "{lengths:?}"
    );
    if let Ok(body) = &f.body {
        if let Some(n) = declared {
            assert_eq!(n, body.len() as u64, "Content-Length and the body differ");
        }
        assert!(
            fe.max_body_size == 0 || body.len() as u64 <= fe.max_body_size,
            "a body of {} bytes passed max_body_size",
            body.len()
        );
    }
    let xff = h
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(xff.ends_with("127.0.0.1"), "X-Forwarded-For {xff:?}");
    assert_eq!(
        h.get("x-forwarded-proto").map(HeaderValue::as_bytes),
        Some(&b"http"[..])
    );
    reparse(f);
}

/// The head the server receives, written as HTTP/1.1 and parsed again, is the same head:
/// no value or target can split it.
fn reparse(f: &Forwarded) {
    let mut text = format!("{} {} HTTP/1.1\r\n", f.method, f.uri).into_bytes();
    for (name, value) in &f.headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; f.headers.len() + 1];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(&text) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "the forwarded head does not parse ({other:?}): {:?}",
            String::from_utf8_lossy(&text)
        ),
    };
    assert_eq!(n, text.len(), "the head ends early");
    assert_eq!(req.method, Some(f.method.as_str()));
    assert_eq!(req.path.map(str::to_string), Some(f.uri.to_string()));
    let again: Vec<_> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    let sent: Vec<_> = f
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(again.len(), sent.len(), "header count");
    for ((n1, v1), (n2, v2)) in again.iter().zip(&sent) {
        assert!(
            n1.eq_ignore_ascii_case(n2) && v1 == v2,
            "{n1}: {v1:?} read as {n2}: {v2:?}"
        );
    }
}
