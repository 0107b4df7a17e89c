//! Header rewriting on the proxy path: hop-by-hop headers out (both directions),
//! `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` / `X-Request-Id` in; the checks
//! hyper leaves to the application (`Host`); upgrade detection.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use std::fmt::Write as _;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`: the chain of client addresses.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Request-Id`: one id per request, the same in every tier's logs.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted incoming `X-Request-Id`, in bytes.
const MAX_REQUEST_ID_LEN: usize = 128;

/// `Keep-Alive`: a hop-by-hop header outside `http`'s standard set.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`: likewise.
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether `name` is one of the fixed hop-by-hop headers.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1: `Connection` and every header it
/// names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` (hyper
/// frames the body itself) and `Upgrade`. Allocates nothing in the usual cases (no such
/// header, or one `Connection` header).
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Cloning a value shares its bytes; only a second `Connection` header needs the Vec.
    let (first, more): (Option<HeaderValue>, Vec<HeaderValue>) = {
        let mut all = headers.get_all(header::CONNECTION).iter();
        (all.next().cloned(), all.cloned().collect())
    };
    for value in first.iter().chain(&more) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if !token.is_empty() {
                // By `&str`: no `HeaderName` is allocated; an invalid name removes nothing.
                headers.remove(token);
            }
        }
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// `Forwarded` (RFC 7239).
pub(crate) static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Appends `client` to `X-Forwarded-For` (joining repeated headers into one list), sets
/// `X-Forwarded-Proto: <scheme>`, and appends `for=<client>;proto=<scheme>` to `Forwarded`
/// (RFC 7239), the scheme being `https` when the client came over TLS. Each value is
/// written once into its own buffer, which the header then shares.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, https: bool) {
    let scheme = if https { "https" } else { "http" };
    // `write!` into a `BytesMut` cannot fail: it grows as needed.
    let mut fwd = BytesMut::with_capacity(64);
    let _ = match client {
        IpAddr::V4(v4) => write!(fwd, "for={v4};proto={scheme}"),
        IpAddr::V6(v6) => write!(fwd, "for=\"[{v6}]\";proto={scheme}"),
    };
    if let Ok(v) = HeaderValue::from_maybe_shared(fwd.freeze()) {
        headers.append(&FORWARDED, v);
    }
    let mut chain = BytesMut::with_capacity(48);
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(text) = v.to_str() else { continue };
        let text = text.trim();
        if !text.is_empty() {
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(text.as_bytes());
        }
    }
    if !chain.is_empty() {
        chain.extend_from_slice(b", ");
    }
    let _ = write!(chain, "{client}");
    match HeaderValue::from_maybe_shared(chain.freeze()) {
        Ok(v) => {
            headers.insert(&X_FORWARDED_FOR, v);
        }
        Err(_) => {
            // Unreachable in practice: the parts came from valid header values.
            headers.insert(&X_FORWARDED_FOR, ip_value(client));
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with an
/// `Upgrade` header, e.g. WebSocket), if any.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// What hyper's parser leaves to the application (RFC 9112 §3.2): an HTTP/1.1 request
/// must carry exactly one `Host`, and a valid one. `Err` has the reason for a 400.
pub(crate) fn check_host(version: http::Version, headers: &HeaderMap) -> Result<(), String> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == http::Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header".into())
        }
        (Some(_), Some(_)) => Err("more than one Host header".into()),
        (Some(h), None) if h.is_empty() || h.as_bytes().iter().any(|b| !b.is_ascii_graphic()) => {
            Err("invalid Host header".into())
        }
        _ => Ok(()),
    }
}

/// The request-target forms of RFC 9112 §3.2 a server may receive: origin form (`/path`)
/// or absolute form (`http://host/path`) for any method, authority form (`host:port`) for
/// CONNECT only, asterisk form (`*`) for OPTIONS only. hyper's parser takes any of them
/// with any method; a `GET host:port` would otherwise be forwarded as is, with its
/// authority as the `Host`. `Err` has the reason for a 400.
pub(crate) fn check_target(method: &http::Method, uri: &http::Uri) -> Result<(), String> {
    let origin_or_absolute = uri.scheme().is_some() || uri.path().starts_with('/');
    let form_ok = match *method {
        http::Method::CONNECT => uri.scheme().is_none() && uri.authority().is_some(),
        http::Method::OPTIONS if uri == "*" => true,
        _ => origin_or_absolute && uri != "*",
    };
    if form_ok {
        Ok(())
    } else if *method == http::Method::CONNECT {
        Err("CONNECT needs an authority-form target (host:port)".into())
    } else {
        Err(format!(
            "the request target {uri:?} is not a path (/...) or an absolute URL; \
             host:port is for CONNECT, * for OPTIONS (RFC 9112 §3.2)"
        ))
    }
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    // An IP address is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Whether an incoming `X-Request-Id` is kept: 1 to 128 characters among letters, digits and
/// `-_.:+/=`.
pub(crate) fn is_valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:+/=".contains(c))
}

/// Makes unique request ids: 32 hex digits, different for every call in this process and,
/// with overwhelming probability, from every other load balancer's.
#[derive(Debug)]
pub(crate) struct RequestIds {
    seeds: (u64, u64),
    counter: AtomicU64,
}

impl RequestIds {
    /// A generator seeded from the OS's randomness (std's `RandomState`), the time and the pid.
    pub fn new() -> RequestIds {
        let seed = |salt: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(salt);
            h.write_u32(std::process::id());
            if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(t.as_nanos());
            }
            h.finish()
        };
        RequestIds {
            seeds: (seed(1), seed(2)),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64's finalizer is a bijection of u64: distinct n give distinct halves.
        let step = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let hi = webfarm_node::hash::mix64(self.seeds.0.wrapping_add(step));
        let lo = webfarm_node::hash::mix64(self.seeds.1.wrapping_add(step));
        let mut hex = [0u8; 32];
        for (i, byte) in hi.to_be_bytes().iter().chain(&lo.to_be_bytes()).enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        // Hex digits are always a valid header value.
        HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }

    /// Keeps a valid incoming `X-Request-Id`, else sets a new one; returns the id in use.
    pub fn ensure(&self, headers: &mut HeaderMap) -> HeaderValue {
        let kept = {
            let mut all = headers.get_all(&X_REQUEST_ID).iter();
            match (all.next(), all.next()) {
                (Some(v), None) if is_valid_request_id(v) => Some(v.clone()),
                _ => None,
            }
        };
        let id = kept.unwrap_or_else(|| self.next());
        headers.insert(X_REQUEST_ID.clone(), id.clone());
        id
    }
}

/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "3"),
            ("host", "www.foobar.com"),
        ]);
        remove_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept"]);
    }

    #[test]
    fn forwarded_for_appends() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        add_forwarded(&mut h, ip, false);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&FORWARDED], "for=127.0.0.1;proto=http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "::1".parse().unwrap(), false);
        assert_eq!(h[&FORWARDED], "for=\"[::1]\";proto=http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, ip, true);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&FORWARDED], "for=127.0.0.1;proto=https");
    }

    #[test]
    fn upgrade_and_host_checks() {
        let h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        assert!(upgrade_protocol(&map(&[("upgrade", "websocket")])).is_none());
        let v11 = http::Version::HTTP_11;
        assert!(check_host(v11, &map(&[("host", "a")])).is_ok());
        assert!(check_host(v11, &HeaderMap::new()).is_err());
        assert!(check_host(http::Version::HTTP_10, &HeaderMap::new()).is_ok());
        assert!(check_host(v11, &map(&[("host", "a"), ("host", "b")])).is_err());
        assert!(check_host(v11, &map(&[("host", "a b")])).is_err());
    }

    /// Found by the `lb_head` fuzz target: `GET - HTTP/1.1` (an authority-form target on a
    /// GET) was forwarded as is, its "authority" becoming the `Host`.
    #[test]
    fn request_targets_must_fit_their_method() {
        use http::{Method, Uri};
        let ok = |m: Method, t: &str| check_target(&m, &t.parse::<Uri>().unwrap());
        assert!(ok(Method::GET, "/").is_ok());
        assert!(ok(Method::GET, "/a?b=c").is_ok());
        assert!(ok(Method::GET, "http://www.foobar.com/x").is_ok());
        assert!(ok(Method::OPTIONS, "*").is_ok());
        assert!(ok(Method::CONNECT, "db-1:4001").is_ok());
        for (m, t) in [
            (Method::GET, "-"),
            (Method::GET, "www.foobar.com"),
            (Method::POST, "evil.example:80"),
            (Method::GET, "*"),
            (Method::CONNECT, "/x"),
            (Method::CONNECT, "http://a/"),
        ] {
            let e = ok(m.clone(), t).unwrap_err();
            assert!(
                e.contains("target") || e.contains("CONNECT"),
                "{m} {t}: {e}"
            );
        }
    }

    #[test]
    fn request_ids_are_unique_and_valid() {
        let ids = RequestIds::new();
        let set: HashSet<_> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(set.len(), 10_000);
        assert!(set.iter().all(|v| is_valid_request_id(v) && v.len() == 32));
    }

    #[test]
    fn valid_incoming_id_is_kept_invalid_replaced() {
        let ids = RequestIds::new();
        let mut h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(ids.ensure(&mut h), "abc-123");
        for bad in ["has space", "quote\"", &"x".repeat(129)] {
            let mut h = map(&[("x-request-id", bad)]);
            let id = ids.ensure(&mut h);
            assert_ne!(id, bad);
            assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
        }
        let mut h = map(&[("x-request-id", "a"), ("x-request-id", "b")]);
        let id = ids.ensure(&mut h);
        assert_eq!(id.len(), 32);
    }
}
