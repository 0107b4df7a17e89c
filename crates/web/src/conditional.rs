//! Conditional requests (RFC 9110 §13) for static files: the validators of a file and the
//! client's preconditions.
//!
//! `ServeDir` (tower-http 0.6) sets `Last-Modified` and handles `If-Unmodified-Since`, but
//! emits no `ETag`. The validator here is computed from the file's modification time
//! (seconds) and size, nginx's recipe: `"<mtime hex>-<size hex>"`. `If-None-Match` and
//! `If-Modified-Since` are evaluated here, in RFC 9110's order (`If-None-Match` wins,
//! `If-Modified-Since` is ignored when it is present), so that every 304 carries the `ETag`
//! and `Last-Modified` a 200 would have.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderValue, StatusCode};

/// A 304 with the validators and caching headers of the 200 it replaces, and its
/// `X-Served-By` if it has one (a cached answer's; the router's answers get theirs after).
pub(crate) fn not_modified(full: &HeaderMap) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    // Room for all four at once: a map grown one insert at a time allocates thrice.
    let headers = resp.headers_mut();
    headers.reserve(4);
    for name in [ETAG, LAST_MODIFIED, CACHE_CONTROL, crate::app::X_SERVED_BY] {
        if let Some(v) = full.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    resp
}

/// The conditional headers of a request, taken out of it so `ServeDir` always produces the
/// full answer and the decision is made here, in one place.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    /// Kept as sent (a header value shares the request's buffer: no copy).
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<SystemTime>,
}

impl Conditions {
    pub(crate) fn take(headers: &mut HeaderMap) -> Conditions {
        // A value that is not visible ASCII is ignored, as if absent.
        let if_none_match = headers.remove(IF_NONE_MATCH).filter(|v| v.to_str().is_ok());
        // An invalid date is ignored (RFC 9110 §13.1.3), as is a second value.
        let if_modified_since = headers
            .remove(IF_MODIFIED_SINCE)
            .and_then(|v| http_date(v.as_bytes()));
        // ServeDir ignores If-Range; ignoring Range instead (allowed by RFC 9110 §14.2) never
        // splices parts of two versions of a file.
        if headers.remove(IF_RANGE).is_some() {
            headers.remove(RANGE);
        }
        Conditions {
            if_none_match,
            if_modified_since,
        }
    }

    /// Whether the client's copy is current: `If-None-Match` (weak comparison) if present,
    /// else `If-Modified-Since`.
    pub(crate) fn not_modified(&self, v: &Validator) -> bool {
        let if_none_match = self.if_none_match.as_ref().and_then(|l| l.to_str().ok());
        v.is_current(if_none_match, self.if_modified_since)
    }
}

/// A request header's value as text if it is visible ASCII (or tab), as
/// [`HeaderValue::to_str`] requires; `None` otherwise (the header is then ignored).
pub(crate) fn header_text(value: &[u8]) -> Option<&str> {
    let visible = value
        .iter()
        .all(|&c| c == b'\t' || (0x20..0x7f).contains(&c));
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// An `If-Modified-Since` value as a time; `None` for an invalid date, which RFC 9110
/// §13.1.3 says to ignore.
pub(crate) fn http_date(value: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(header_text(value)?).ok()
}

/// A file's validators.
#[derive(Debug, Clone)]
pub(crate) struct Validator {
    /// `"<mtime hex>-<size hex>"`, as a header value.
    pub(crate) etag: HeaderValue,
    etag_str: String,
    last_modified: SystemTime,
}

impl Validator {
    /// From `ServeDir`'s `Last-Modified` and the size of the whole file (`Content-Length`, or
    /// the total of `Content-Range` for a 206).
    pub(crate) fn of(headers: &HeaderMap) -> Option<Validator> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let last_modified = httpdate::parse_http_date(text(LAST_MODIFIED)?).ok()?;
        let size: u64 = match text(CONTENT_RANGE) {
            Some(range) => range.rsplit_once('/')?.1.parse().ok()?,
            None => text(CONTENT_LENGTH)?.parse().ok()?,
        };
        let mtime = last_modified.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let etag_str = format!("\"{mtime:x}-{size:x}\"");
        let etag = HeaderValue::from_str(&etag_str).ok()?;
        Some(Validator {
            etag,
            etag_str,
            last_modified,
        })
    }
}

impl Validator {
    /// Whether a client holding `if_none_match` (its `If-None-Match`, compared weakly) or,
    /// without it, `if_modified_since` has this version: RFC 9110 §13.2.2's order.
    pub(crate) fn is_current(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<SystemTime>,
    ) -> bool {
        if let Some(list) = if_none_match {
            return etag_list_matches(list, &self.etag_str);
        }
        if_modified_since.is_some_and(|since| self.last_modified <= since)
    }
}

/// `If-None-Match: *` or a list of entity tags; weak comparison (a `W/` prefix is ignored).
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_etag_is_mtime_and_size() {
        let h = headers(&[
            (LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (CONTENT_LENGTH, "255"),
        ]);
        let v = Validator::of(&h).unwrap();
        assert_eq!(v.etag_str, format!("\"{:x}-ff\"", 784_111_777u64));
        // A 206 of the same file has the same validator.
        let h = headers(&[
            (LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (CONTENT_LENGTH, "10"),
            (CONTENT_RANGE, "bytes 0-9/255"),
        ]);
        assert_eq!(Validator::of(&h).unwrap().etag_str, v.etag_str);
        assert!(Validator::of(&headers(&[(CONTENT_LENGTH, "1")])).is_none());
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(etag_list_matches("\"a-1\"", "\"a-1\""));
        assert!(etag_list_matches("W/\"a-1\"", "\"a-1\""));
        assert!(etag_list_matches("\"x\", W/\"a-1\"", "\"a-1\""));
        assert!(etag_list_matches("*", "\"a-1\""));
        assert!(!etag_list_matches("\"a-2\"", "\"a-1\""));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let lm = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = Validator {
            etag: HeaderValue::from_static("\"f4240-1\""),
            etag_str: "\"f4240-1\"".into(),
            last_modified: lm,
        };
        let mut h = headers(&[
            (IF_NONE_MATCH, "\"other\""),
            (IF_MODIFIED_SINCE, &httpdate::fmt_http_date(lm)),
            (IF_RANGE, "\"f4240-1\""),
            (RANGE, "bytes=0-0"),
        ]);
        let c = Conditions::take(&mut h);
        assert!(!c.not_modified(&v));
        assert!(
            h.is_empty(),
            "conditional headers and the Range they guard are taken: {h:?}"
        );
        let c = Conditions {
            if_none_match: None,
            if_modified_since: Some(lm),
        };
        assert!(c.not_modified(&v));
        let c = Conditions {
            if_none_match: None,
            if_modified_since: Some(lm - Duration::from_secs(1)),
        };
        assert!(!c.not_modified(&v));
    }
}
