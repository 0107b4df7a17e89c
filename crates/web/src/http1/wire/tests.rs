use std::time::{Duration, UNIX_EPOCH};

use http::header::{CONTENT_LENGTH, ETAG};
use http::HeaderValue;

use super::*;

fn plain(head: &str) -> Plain<'_> {
    match parse(head.as_bytes()) {
        Parsed::Plain(p) => p,
        other => panic!("{head:?}: {other:?}"),
    }
}

#[test]
fn a_get_of_http_1_1_is_plain() {
    let head = "GET /css/style.css?v=3 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\", W/\"y\"\r\n\
                if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive\r\n\r\n";
    let p = plain(head);
    assert_eq!(p.len, head.len());
    assert_eq!(p.path, "/css/style.css");
    assert!(!p.head);
    assert_eq!(p.if_none_match, Some("\"x\", W/\"y\""));
    assert_eq!(
        p.if_modified_since,
        Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
    );
    let p = plain("HEAD / HTTP/1.1\r\nIf-Modified-Since: yesterday\r\n\r\nGET /next");
    assert!(p.head);
    assert_eq!(p.path, "/");
    assert_eq!(p.if_modified_since, None, "an invalid date is ignored");
    assert_eq!(
        p.len,
        "HEAD / HTTP/1.1\r\nIf-Modified-Since: yesterday\r\n\r\n".len()
    );
    // The first of each validator counts, as on hyper's path, even when it is unusable.
    let p = plain(
        "GET / HTTP/1.1\r\nIf-Modified-Since: yesterday\r\n\
         If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-None-Match: \"\u{e9}\"\r\n\
         If-None-Match: \"x\"\r\n\r\n",
    );
    assert_eq!((p.if_modified_since, p.if_none_match), (None, None));
}

#[test]
fn an_incomplete_head_asks_for_more() {
    assert_eq!(parse(b""), Parsed::Partial);
    assert_eq!(
        parse(b"GET /style.css HTTP/1.1\r\nHost: a\r\n"),
        Parsed::Partial
    );
}

#[test]
fn other_requests_of_a_kept_connection_go_to_hyper_one_at_a_time() {
    let post = "POST /api/messages HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
    assert_eq!(
        parse(format!("{post}{{\"text\":\"a\"}}").as_bytes()),
        Parsed::One {
            len: post.len() as u64 + 12
        }
    );
    for head in [
        "GET /big.bin HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n",
        "GET /a HTTP/1.1\r\nIf-Match: \"x\"\r\n\r\n",
        "GET /a HTTP/1.1\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        "GET http://www.foobar.com/a HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "DELETE /a HTTP/1.1\r\n\r\n",
        "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        // Bytes `http::Uri` may refuse: hyper decides (400 or the file).
        "GET /style.css?q=\"x\" HTTP/1.1\r\n\r\n",
        "GET /style.css?a={b} HTTP/1.1\r\n\r\n",
        "GET /caf\u{e9}.css HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            parse(head.as_bytes()),
            Parsed::One {
                len: head.len() as u64
            },
            "{head:?}"
        );
    }
}

#[test]
fn what_changes_the_connection_goes_to_hyper_for_good() {
    for head in [
        "GET /a HTTP/1.0\r\n\r\n",
        "GET /a HTTP/1.1\r\nConnection: Close\r\n\r\n",
        "GET /a HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n",
        "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "CONNECT www.foobar.com:443 HTTP/1.1\r\nHost: www.foobar.com:443\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        assert_eq!(parse(head.as_bytes()), Parsed::Rest, "{head:?}");
    }
}

#[test]
fn a_prepared_head_is_what_hyper_would_write() {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(12));
    headers.insert(ETAG, HeaderValue::from_static("\"a-c\""));
    let head = encode_head(StatusCode::NOT_MODIFIED, &headers);
    assert_eq!(
        &head[..],
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 12\r\netag: \"a-c\"\r\n"
    );
    let mut out = head.to_vec();
    push_date_and_end(&mut out);
    let text = String::from_utf8(out).unwrap();
    let date = text
        .strip_prefix(std::str::from_utf8(&head).unwrap())
        .and_then(|rest| rest.strip_prefix("date: "))
        .and_then(|rest| rest.strip_suffix("\r\n\r\n"))
        .expect(&text);
    let then = httpdate::parse_http_date(date).expect(date);
    let off = SystemTime::now().duration_since(then).unwrap_or_default();
    assert!(off < Duration::from_secs(60), "{date}");
}
