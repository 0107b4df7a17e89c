//! Who may call a node's state-changing routes, and with which credential.
//!
//! [`NodeAuth`] is what a node is given to check its callers and to identify itself: the
//! farm's admin token (used where internal TLS is off), rqlite's users for a db node's API,
//! the db credentials a web node sends. [`NodeAuth::default`] checks nothing and sends
//! nothing: the library default for nodes started inside a test; `webfarm run` always fills
//! it (crates/cli/src/run_node.rs), so a farm is secured by default.
//!
//! A [`Guard`] protects operator-only routes (`/metrics`, the lb's `/lb/...`, the db's
//! membership routes): with internal TLS the caller's client certificate
//! ([`crate::tls::Peer`]) must name one of the guard's subjects (`operator`, the monitor
//! nodes, for membership the db nodes), else 403; without TLS the request must carry the
//! admin token (`Authorization: Bearer <token>`, or as the password of HTTP Basic), else
//! 401 with `WWW-Authenticate`. Every refusal is logged (never the credential) and counted
//! in `webfarm_admin_auth_refusals_total{reason}` on the node's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
pub use webfarm_auth::basic::header as basic_header;
pub use webfarm_auth::{AdminToken, Perm, Refusal, Users};

use crate::tls::Peer;

/// What a node checks its callers with and identifies itself by; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct NodeAuth {
    /// The farm's admin token, required on guarded routes when internal TLS is off and
    /// sent by this node on its own calls to other nodes' guarded routes.
    pub token: Option<AdminToken>,
    /// A db node's rqlite users (`[db] auth`); `None`: the API asks for no credentials.
    pub db_users: Option<Arc<Users>>,
    /// The `Authorization` a web node sends to the db API (`[web] db_user`).
    pub db_credentials: Option<HeaderValue>,
    /// Refusals counted by every guard of the node, written on its `/metrics`.
    pub refusals: Arc<Refusals>,
}

/// Refused calls to guarded routes, by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    no_credentials: AtomicU64,
    bad_token: AtomicU64,
    wrong_peer: AtomicU64,
}

impl Refusals {
    /// Counts one refusal for `reason` (`no_credentials`, `bad_token`, else `wrong_peer`).
    pub fn count(&self, reason: &str) {
        let c = match reason {
            "no_credentials" => &self.no_credentials,
            "bad_token" => &self.bad_token,
            _ => &self.wrong_peer,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for `no_credentials`, `bad_token`, `wrong_peer`.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        [
            (
                "no_credentials",
                self.no_credentials.load(Ordering::Relaxed),
            ),
            ("bad_token", self.bad_token.load(Ordering::Relaxed)),
            ("wrong_peer", self.wrong_peer.load(Ordering::Relaxed)),
        ]
    }
}

/// The check of one set of operator-only routes.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The certificate names accepted with internal TLS (`operator`, node names).
    pub subjects: Vec<String>,
    /// The token accepted without TLS; `None` accepts every caller without TLS.
    pub token: Option<AdminToken>,
    /// Where refusals are counted.
    pub refusals: Arc<Refusals>,
}

impl Guard {
    /// A guard accepting `subjects`' certificates, or `auth`'s token.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(subjects: I, auth: &NodeAuth) -> Guard {
        Guard {
            subjects: subjects.into_iter().map(Into::into).collect(),
            token: auth.token.clone(),
            refusals: auth.refusals.clone(),
        }
    }

    /// `Ok` when `peer` (with `authorization`, the request's header) may call; otherwise the
    /// reason (`no_credentials`, `bad_token`: 401; `wrong_peer`: 403).
    ///
    /// # Errors
    /// The refusal's status and reason.
    pub fn check(
        &self,
        peer: Option<&Peer>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), (StatusCode, &'static str)> {
        if let Some(peer) = peer.filter(|p| !p.names.is_empty()) {
            return if self.subjects.iter().any(|s| peer.is(s)) {
                Ok(())
            } else {
                Err((StatusCode::FORBIDDEN, "wrong_peer"))
            };
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        match authorization {
            None => Err((StatusCode::UNAUTHORIZED, "no_credentials")),
            Some(h) if token.accepts(h) => Ok(()),
            Some(_) => Err((StatusCode::UNAUTHORIZED, "bad_token")),
        }
    }

    /// `router` with every route behind this guard (a router without routes as it is).
    pub fn protect<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        if !router.has_routes() {
            return router;
        }
        router.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(self),
            guard_middleware,
        ))
    }
}

async fn guard_middleware(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| &c.0);
    match guard.check(peer, req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err((status, reason)) => {
            guard.refusals.count(reason);
            let who = peer.map_or_else(|| "unknown".to_string(), |p| p.addr.to_string());
            tracing::warn!(peer = %who, path = %req.uri().path(), reason, "refused an operator-only route");
            refusal(status, reason)
        }
    }
}

/// The answer to a refused call: `{"error": ...}` with `WWW-Authenticate` on a 401.
pub fn refusal(status: StatusCode, reason: &str) -> Response {
    let message = match reason {
        "wrong_peer" => "forbidden: this route takes the operator's certificate",
        "bad_token" => "unauthorized: wrong admin token",
        _ => "unauthorized: this route takes the operator's certificate, or the admin token (Authorization: Bearer ...) without internal TLS",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"webfarm\""),
        );
        resp.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"webfarm\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use webfarm_tls::cert::CertName;

    use super::*;

    fn peer(names: &[&str]) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            names: names
                .iter()
                .map(|n| CertName::Dns((*n).to_string()))
                .collect(),
        }
    }

    #[test]
    fn certificates_decide_with_tls_and_the_token_without() {
        let auth = NodeAuth {
            token: Some(AdminToken::new("t0k")),
            ..NodeAuth::default()
        };
        let g = Guard::new(["operator", "mon-1"], &auth);
        assert!(g.check(Some(&peer(&["operator"])), None).is_ok());
        assert!(g.check(Some(&peer(&["mon-1", "127.0.1.5"])), None).is_ok());
        assert_eq!(
            g.check(
                Some(&peer(&["web-1"])),
                Some(&AdminToken::new("t0k").bearer())
            ),
            Err((StatusCode::FORBIDDEN, "wrong_peer")),
            "with TLS the token does not stand in for the certificate"
        );
        let plain = peer(&[]);
        assert_eq!(
            g.check(Some(&plain), None),
            Err((StatusCode::UNAUTHORIZED, "no_credentials"))
        );
        assert_eq!(
            g.check(Some(&plain), Some(&HeaderValue::from_static("Bearer nope"))),
            Err((StatusCode::UNAUTHORIZED, "bad_token"))
        );
        assert!(g
            .check(Some(&plain), Some(&HeaderValue::from_static("Bearer t0k")))
            .is_ok());
        assert!(Guard::new(["operator"], &NodeAuth::default())
            .check(None, None)
            .is_ok());
    }
}
