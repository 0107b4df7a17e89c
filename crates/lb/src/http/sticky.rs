//! Sticky sessions by cookie: HAProxy's `cookie NAME insert indirect nocache`.
//!
//! The cookie's value is the server's name. A request whose cookie names a server that is
//! UP and not in maintenance goes to that server (a draining server keeps its sticky
//! clients). The cookie is removed from the request before it goes upstream (`indirect`:
//! the application never sees it). When the request had no valid cookie, or was served
//! elsewhere, the response gets `Set-Cookie: NAME=<server>; Path=/` and, so that no shared
//! cache stores a response carrying it, `Cache-Control: private` (`nocache`).

use http::header::{self, HeaderMap, HeaderValue};

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// Removes cookie `name` from the request's `Cookie` headers, keeping the others.
pub(crate) fn strip(headers: &mut HeaderMap, name: &str) {
    if find(headers, name).is_none() {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Adds `Set-Cookie: name=server; Path=/` and `Cache-Control: private` to a response.
pub(crate) fn insert(headers: &mut HeaderMap, name: &str, server: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("{name}={server}; Path=/")) {
        headers.append(header::SET_COOKIE, v);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_strips_and_inserts() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; SERVERID=web-2".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(find(&h, "SERVERID"), Some("web-2"));
        assert_eq!(find(&h, "SERVER"), None);
        strip(&mut h, "SERVERID");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "SERVERID=web-1".parse().unwrap());
        strip(&mut h, "SERVERID");
        assert!(!h.contains_key(header::COOKIE));
        let mut r = HeaderMap::new();
        insert(&mut r, "SERVERID", "web-3");
        assert_eq!(r[header::SET_COOKIE], "SERVERID=web-3; Path=/");
        assert_eq!(r[header::CACHE_CONTROL], "private");
    }
}
