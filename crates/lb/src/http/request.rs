//! Phases 1 and 2 of a request: check it, and gather what choosing a server needs (sticky
//! cookie, balancer key) and what the attempts need (can it be sent twice, its kept head,
//! its body's state); rewrite its head for the server.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::sync::watch;
use webfarm_config::{Balance, Frontend, RetryOn};

use super::body::{BodyState, RequestBody};
use super::headers::{self, add_forwarded, remove_hop_by_hop};
use super::respond::{empty, Local};
use super::sticky;
use super::ClientConn;
use crate::backend::balance::RequestKey;
use crate::backend::pool::ProxyBody;
use crate::control::live::{LiveFrontend, Snapshot};
use crate::termination::{EndedBy, Phase, Termination};

/// `PR`: the proxy refused the request.
const REFUSED: Termination = Termination::new(EndedBy::Proxy, Phase::Request);

/// The protocol and the client's side of an upgrade (WebSocket: any HTTP/1.1 `Connection:
/// upgrade`) request, taken before the request is split, to join the tunnel once the
/// server answered `101`.
pub(super) fn take_upgrade(req: &mut Request<Incoming>) -> Option<(HeaderValue, OnUpgrade)> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let proto = headers::upgrade_protocol(req.headers())?;
    Some((proto, hyper::upgrade::on(req)))
}

/// Phase 1, check the request: its target's form (RFC 9112 §3.2: a path or an absolute URL,
/// `host:port` only for CONNECT, `*` only for OPTIONS: 400), `Host` (missing in HTTP/1.1,
/// repeated, invalid: 400) and a declared body over `max_body_size` (413).
///
/// # Errors
///
/// The proxy's answer, ended `PR`.
pub(super) fn check(parts: &Parts, body: &Incoming, fe: &Frontend) -> Result<(), Local> {
    let target = headers::check_target(&parts.method, &parts.uri);
    if let Err(why) = target.and_then(|()| headers::check_host(parts.version, &parts.headers)) {
        let text = format!("400 Bad Request: {why}");
        return Err(Local::new(StatusCode::BAD_REQUEST, text, REFUSED));
    }
    let limit = fe.max_body_size;
    if limit != 0 && body.size_hint().exact().is_some_and(|n| n > limit) {
        let text = format!("413 Content Too Large: the request body is larger than {limit} bytes");
        return Err(Local::new(StatusCode::PAYLOAD_TOO_LARGE, text, REFUSED));
    }
    Ok(())
}

/// The head of a bodiless idempotent request, kept to send it again.
pub(super) struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    /// The request again.
    pub fn request(&self) -> Request<ProxyBody> {
        let mut r = Request::new(empty());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        *r.version_mut() = Version::HTTP_11;
        r
    }
}

/// What a checked request carries into the later phases.
pub(super) struct Plan {
    /// The request may be sent twice (idempotent, no body, no upgrade).
    pub resendable: bool,
    /// Its head, kept only when a retry after sending is possible.
    pub replay: Option<Replay>,
    /// Tells when the body was sent in full (`None`: no body).
    pub body_sent: Option<watch::Receiver<bool>>,
    /// What happened to the body (`None`: no body).
    pub body_state: Option<Arc<BodyState>>,
    /// The protocol of an upgrade (WebSocket) request.
    pub upgrade_to: Option<HeaderValue>,
    client: SocketAddr,
    /// The path, only when the backend balances by `uri` (else empty).
    path: String,
    /// Only the header `hdr(name)` hashes, when the backend balances so.
    hash_headers: Option<HeaderMap>,
    /// The server the sticky cookie names, if usable as an index.
    pub sticky: Option<usize>,
}

impl Plan {
    /// Phase 2, choose: the sticky cookie's server (the cookie is removed from the request),
    /// the balancer's key, whether the request can be sent twice; then the head rewritten
    /// for the server and the body wrapped (`max_body_size`, `timeout client`). Returns the
    /// plan and the request to send. `upgrade_to`: the protocol of an upgrade request.
    pub fn new(
        mut parts: Parts,
        body: Incoming,
        client: &ClientConn,
        upgrade_to: Option<HeaderValue>,
        snap: &Snapshot,
        fe: &LiveFrontend,
    ) -> (Plan, Request<ProxyBody>) {
        let backend = &fe.backend;
        let cookie = backend.config.cookie.as_ref();
        let sticky = cookie.and_then(|c| backend.index_of(sticky::find(&parts.headers, &c.name)?));
        if let Some(c) = cookie {
            sticky::strip(&mut parts.headers, &c.name);
        }
        let hash_headers = match &backend.config.balance {
            Balance::Hdr(name) => Some(hash_header(&parts.headers, name)),
            _ => None,
        };
        let path = if matches!(backend.config.balance, Balance::Uri) {
            parts.uri.path().to_string()
        } else {
            String::new()
        };
        prepare_head(&mut parts, client, &snap.site, upgrade_to.as_ref());
        let bodiless = body.is_end_stream();
        let resendable = bodiless && upgrade_to.is_none() && is_idempotent(&parts.method);
        // Cloning the head costs allocations on every request: only when a retry after
        // the request was sent can happen.
        let replay = (resendable && may_resend(&backend.config)).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        });
        let (body, body_sent, body_state) = if bodiless {
            (empty(), None, None)
        } else {
            let limit = fe.config.max_body_size;
            let (body, sent, state) = RequestBody::new(body, limit, fe.config.timeout.client);
            (body.boxed(), Some(sent), Some(state))
        };
        let plan = Plan {
            resendable,
            replay,
            body_sent,
            body_state,
            upgrade_to,
            client: client.peer,
            path,
            hash_headers,
            sticky,
        };
        (plan, Request::from_parts(parts, body))
    }

    /// The balancer's key.
    pub fn key(&self) -> RequestKey<'_> {
        RequestKey {
            client: self.client.ip(),
            path: &self.path,
            headers: self.hash_headers.as_ref(),
        }
    }
}

/// Only header `name` of `headers` (empty when absent), for `balance hdr(name)`.
fn hash_header(headers: &HeaderMap, name: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let (Ok(n), Some(v)) = (HeaderName::from_bytes(name.as_bytes()), headers.get(name)) {
        h.insert(n, v.clone());
    }
    h
}

/// Rewrites the client's request head for the server.
pub(super) fn prepare_head(
    parts: &mut Parts,
    client: &ClientConn,
    site: &HeaderValue,
    upgrade_to: Option<&HeaderValue>,
) {
    remove_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade_to {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto.clone());
    }
    // hyper answers `100 Continue` to the client itself, when the body is first read to go
    // upstream; the server must not hold its answer back waiting for a body.
    parts.headers.remove(header::EXPECT);
    // An absolute-form target (or HTTP/2's :authority) carries the host (RFC 9112 §3.2.2).
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, site.clone());
    }
    if parts.uri.scheme().is_some() {
        // An empty path is "/" in origin form (RFC 9112 §3.2.1): `http://a?q` → `/?q`.
        let pq = parts.uri.path_and_query().map_or("", |pq| pq.as_str());
        let origin = if pq.starts_with('/') {
            pq.parse::<Uri>()
        } else {
            format!("/{pq}").parse::<Uri>()
        };
        if let Ok(origin) = origin {
            parts.uri = origin;
        }
    }
    parts.version = Version::HTTP_11;
    add_forwarded(&mut parts.headers, client.peer.ip(), client.tls.is_some());
}

/// Whether backend `b`'s rules can send a request again after it reached a server.
fn may_resend(b: &webfarm_config::Backend) -> bool {
    b.retries > 0 && b.retry_on.iter().any(|r| *r != RetryOn::ConnFailure)
}

/// The methods RFC 9110 §9.2.2 calls idempotent.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `lb_head` fuzz target: `GET http://a?y=1` (an absolute URL with an empty
    /// path) went to the server in absolute form, as `?y=1` alone is not a valid target.
    #[test]
    fn absolute_targets_become_origin_form() {
        let site = HeaderValue::from_static("www.foobar.com");
        let client = ClientConn::plain("127.0.0.1:5000".parse().unwrap());
        for (target, origin, host) in [
            ("http://ww~,x?y=1", "/?y=1", "ww~,x"),
            ("http://a", "/", "a"),
            ("http://a/b/c?d", "/b/c?d", "a"),
            ("https://a:8443/x", "/x", "a:8443"),
        ] {
            let (mut parts, ()) = Request::get(target).body(()).unwrap().into_parts();
            prepare_head(&mut parts, &client, &site, None);
            assert_eq!(parts.uri, origin, "{target}");
            assert_eq!(parts.headers[header::HOST], host, "{target}");
        }
    }
}
