//! Phases 4 and 5 of a request: the server's response head made ready for the client, then
//! its body streamed (the access line written when it ends) or, after a `101`, the tunnel.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::body::{Inner, ResponseBody};
use super::headers::{remove_hop_by_hop, X_REQUEST_ID};
use super::request::Plan;
use super::respond::empty;
use super::{sticky, upgrade, Exchange};
use crate::backend::pool::Pooled;
use crate::backend::server::ActiveRequest;
use crate::backend::BackendState;

/// Phase 4, response headers: hop-by-hop headers removed, the sticky cookie set when the
/// request was not already on the cookie's server (`cookie.insert`), `X-Request-Id` added
/// if the server did not send one. Returns the response and, for a `101` answering an
/// upgrade request, the server's side of the tunnel.
pub(super) fn headers(
    mut resp: Response<Incoming>,
    plan: &Plan,
    b: &BackendState,
    index: usize,
    ex: &Exchange,
) -> (Response<Incoming>, Option<OnUpgrade>) {
    let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS && plan.upgrade_to.is_some();
    let server_upgrade = upgraded.then(|| hyper::upgrade::on(&mut resp));
    let h = resp.headers_mut();
    remove_hop_by_hop(h);
    if let Some(c) = b.config.cookie.as_ref() {
        if c.insert && plan.sticky != Some(index) {
            sticky::insert(h, &c.name, b.servers[index].state.name());
        }
    }
    h.entry(&X_REQUEST_ID).or_insert(ex.id.clone());
    if let Some(hsts) = &ex.hsts {
        h.entry(http::header::STRICT_TRANSPORT_SECURITY)
            .or_insert(hsts.clone());
    }
    (resp, server_upgrade)
}

/// Phase 5, body: the server's body streamed to the client, holding the server's `slot`
/// and the connection (back to its pool when the body ends) until it ends; the access
/// line is written then.
pub(super) fn body(
    resp: Response<Incoming>,
    slot: ActiveRequest,
    conn: Option<Pooled>,
    ex: Exchange,
) -> Response<ResponseBody> {
    let (parts, body) = resp.into_parts();
    let (end, guard) = ex.ending(parts.status.as_u16());
    let body = ResponseBody::new(
        Inner::Upstream(body),
        Some(slot),
        Some(end),
        Some(guard),
        conn,
    );
    Response::from_parts(parts, body)
}

/// Phase 5, tunnel: the `101` goes to the client with `Connection: upgrade` and the
/// protocol `proto`; both sides (`ends`: the client's, the server's) are joined once hyper
/// hands them over, the server's `slot` taken while the tunnel lives. The access line is
/// written now.
pub(super) fn tunnel(
    resp: Response<Incoming>,
    proto: HeaderValue,
    ends: (OnUpgrade, OnUpgrade),
    slot: ActiveRequest,
    ex: Exchange,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    drop(body);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, proto);
    let (end, guard) = ex.ending(StatusCode::SWITCHING_PROTOCOLS.as_u16());
    end.finish(Some(slot.server()), 0);
    upgrade::tunnel(ends.0, ends.1, slot, guard);
    Response::from_parts(parts, ResponseBody::local(empty()))
}
