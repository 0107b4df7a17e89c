//! Read-your-writes across replicas with a cookie.
//!
//! After a write the app sets `wf_index=<raft log index of the write>`; every later read of
//! that browser passes it as `min_index`, so whichever replica answers has applied the write
//! (a replica that is behind refuses and the client tries another). Other users read the
//! replica's copy at once, possibly a few milliseconds stale.
//!
//! A cookie beyond the database's log (forged, or from before the data was wiped) would make
//! every read wait in vain: the database says so at once, the read is made without it, and
//! [`forget`] drops the cookie.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "wf_index";

/// The largest valid `wf_index` among the request's cookies, if any.
pub(crate) fn min_index(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE_NAME)
        .filter_map(|(_, value)| value.trim_matches('"').parse::<u64>().ok())
        .max()
}

/// Adds `Set-Cookie: wf_index=<raft_index>; Path=/; HttpOnly; SameSite=Lax` to `headers`.
pub(crate) fn remember(headers: &mut HeaderMap, raft_index: u64) {
    let cookie = format!("{COOKIE_NAME}={raft_index}; Path=/; HttpOnly; SameSite=Lax");
    // Digits and ASCII punctuation only: always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, v);
    }
}

/// Adds `Set-Cookie: wf_index=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`: the browser drops
/// the cookie.
pub(crate) fn forget(headers: &mut HeaderMap) {
    headers.append(
        SET_COOKIE,
        HeaderValue::from_static("wf_index=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_the_index_among_other_cookies() {
        assert_eq!(
            min_index(&with_cookies(&["a=1; wf_index=42; b=x"])),
            Some(42)
        );
        assert_eq!(min_index(&with_cookies(&["wf_index=\"7\""])), Some(7));
        assert_eq!(
            min_index(&with_cookies(&["a=1", "wf_index=9; wf_index=12"])),
            Some(12)
        );
    }

    #[test]
    fn ignores_missing_or_bad_values() {
        assert_eq!(min_index(&HeaderMap::new()), None);
        assert_eq!(
            min_index(&with_cookies(&["wf_index=abc; xwf_index=5"])),
            None
        );
        assert_eq!(min_index(&with_cookies(&["wf_index=-3"])), None);
    }

    #[test]
    fn sets_a_scoped_http_only_cookie() {
        let mut h = HeaderMap::new();
        remember(&mut h, 99);
        assert_eq!(
            h.get(SET_COOKIE).unwrap(),
            "wf_index=99; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(min_index(&with_cookies(&["wf_index=99"])), Some(99));
        let mut h = HeaderMap::new();
        forget(&mut h);
        let dropped = h.get(SET_COOKIE).unwrap().to_str().unwrap();
        assert!(
            dropped.starts_with("wf_index=;") && dropped.contains("Max-Age=0"),
            "{dropped}"
        );
    }
}
