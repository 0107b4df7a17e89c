//! The bytes of HTTP/1.1 (RFC 9112) that the connection loop reads and writes itself: what a
//! request head asks, parsed by `httparse` (hyper's parser), and prepared response heads.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http::{HeaderMap, StatusCode};

use crate::conditional::{header_text, http_date};

/// The most header fields of a head the loop reads itself; a head with more goes to hyper
/// (whose limit, 100, answers `431` past it).
pub(crate) const MAX_HEADERS: usize = 64;

/// What the connection loop does with the head at the start of its buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed<'a> {
    /// The head is not complete yet.
    Partial,
    /// A request the loop may answer from the cache: `GET` or `HEAD` of HTTP/1.1, no body,
    /// nothing asked but the whole file or a 304.
    Plain(Plain<'a>),
    /// A request of HTTP/1.1 that keeps the connection open, framed by `Content-Length` (or
    /// bodiless): hyper answers it alone, `len` bytes of head and body.
    One {
        /// Bytes of the request: head, then body.
        len: u64,
    },
    /// Everything else, which hyper takes for the rest of the connection: HTTP/1.0, a
    /// `Connection: close` or `Upgrade`, a chunked body, a head that does not parse (hyper
    /// answers `400`), an HTTP/2 preface.
    Rest,
}

/// A `GET` or `HEAD` of HTTP/1.1 with no body and no `Range` or precondition but the two
/// of a cache's revalidation.
#[derive(Debug, PartialEq)]
pub(crate) struct Plain<'a> {
    /// Bytes of the head, through its blank line.
    pub(crate) len: usize,
    /// `HEAD` (the answer has no body).
    pub(crate) head: bool,
    /// The target's path, without its query: what `http::Uri::path` gives.
    pub(crate) path: &'a str,
    /// The first `If-None-Match`, if it is visible ASCII.
    pub(crate) if_none_match: Option<&'a str>,
    /// The first `If-Modified-Since`, if it is a valid date.
    pub(crate) if_modified_since: Option<SystemTime>,
}

/// Reads the head at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Rest,
    };
    // HTTP/1.0's keep-alive rules and a `CONNECT` tunnel are hyper's to follow.
    if req.version != Some(1) || req.method == Some("CONNECT") {
        return Parsed::Rest;
    }
    let mut plain = Plain {
        len,
        head: req.method == Some("HEAD"),
        path: "",
        if_none_match: None,
        if_modified_since: None,
    };
    let mut fast = plain.head || req.method == Some("GET");
    let mut body = None;
    // Only the first of each validator counts, valid or not, as for hyper's path
    // (`HeaderMap::remove` gives the first value).
    let (mut seen_etags, mut seen_date) = (false, false);
    for h in req.headers.iter() {
        match Field::of(h.name) {
            Field::ContentLength => match (body, content_length(h.value)) {
                (None, Some(n)) => body = Some(n),
                // Two lengths, or one that is not digits alone: hyper's to judge (400).
                _ => return Parsed::Rest,
            },
            Field::Framing => return Parsed::Rest,
            Field::Connection if !keeps_alive(h.value) => return Parsed::Rest,
            Field::IfNoneMatch if !seen_etags => {
                seen_etags = true;
                plain.if_none_match = header_text(h.value);
            }
            Field::IfModifiedSince if !seen_date => {
                seen_date = true;
                plain.if_modified_since = http_date(h.value);
            }
            Field::NotPlain => fast = false,
            _ => {}
        }
    }
    let path = req
        .path
        .filter(|p| p.starts_with('/') && p.bytes().all(plain_target_byte));
    match (fast, body, path) {
        (true, None, Some(target)) => {
            plain.path = target.split_once('?').map_or(target, |(path, _)| path);
            Parsed::Plain(plain)
        }
        // A length past what a `u64` holds counts as unframeable: hyper's to refuse.
        _ => match (len as u64).checked_add(body.unwrap_or(0)) {
            Some(len) => Parsed::One { len },
            None => Parsed::Rest,
        },
    }
}

/// A `Content-Length` value: decimal digits only (RFC 9110 §8.6), as hyper reads it (no
/// sign, no blanks).
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether the loop may answer a target holding `b`: RFC 3986's unreserved and sub-delims
/// characters, `:`, `@`, `/`, `?` and `%`, which `http::Uri` accepts in a path and a query
/// alike. Any other byte (`"`, `<`, `{`, `#`, non-ASCII...) sends the request to hyper,
/// which decides whether the target is valid at all.
fn plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// The header fields the loop looks at.
#[derive(Clone, Copy)]
enum Field {
    ContentLength,
    /// `Transfer-Encoding`, `Upgrade`: a body or a protocol hyper must frame.
    Framing,
    Connection,
    IfNoneMatch,
    IfModifiedSince,
    /// `Range`, `If-Range`, `If-Match`, `If-Unmodified-Since`, `Expect`: hyper and
    /// `ServeDir` answer these.
    NotPlain,
    Other,
}

impl Field {
    /// The field named `name` (case-insensitive).
    fn of(name: &str) -> Field {
        const FIELDS: [(&str, Field); 11] = [
            ("content-length", Field::ContentLength),
            ("transfer-encoding", Field::Framing),
            ("upgrade", Field::Framing),
            ("connection", Field::Connection),
            ("if-none-match", Field::IfNoneMatch),
            ("if-modified-since", Field::IfModifiedSince),
            ("range", Field::NotPlain),
            ("if-range", Field::NotPlain),
            ("if-match", Field::NotPlain),
            ("if-unmodified-since", Field::NotPlain),
            ("expect", Field::NotPlain),
        ];
        FIELDS
            .iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map_or(Field::Other, |&(_, field)| field)
    }
}

/// Whether a `Connection` value leaves an HTTP/1.1 connection open: no `close` and no
/// `upgrade` among its options (RFC 9112 §9.6, RFC 9110 §7.8).
fn keeps_alive(value: &[u8]) -> bool {
    value.split(|&c| c == b',').all(|option| {
        let option = option.trim_ascii();
        !option.eq_ignore_ascii_case(b"close") && !option.eq_ignore_ascii_case(b"upgrade")
    })
}

/// A response's status line and header fields, as hyper writes them (lower-case names, in
/// the map's order), without `Date` and without the blank line that ends the head.
pub(crate) fn encode_head(status: StatusCode, headers: &HeaderMap) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

/// Appends `date: <now, IMF-fixdate>\r\n` and the blank line that ends a head. Every
/// response of an origin server with a clock carries `Date` (RFC 9110 §6.6.1); the text
/// is made once a second per thread, as hyper and nginx do.
pub(crate) fn push_date_and_end(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = crate::app::writable_now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    });
}

#[cfg(test)]
mod tests;
