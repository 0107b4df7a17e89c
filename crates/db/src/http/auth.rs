//! Who may call which endpoint of the db API.
//!
//! Three kinds of route:
//!
//! | routes | check |
//! |---|---|
//! | `/db/execute` (`execute`), `/db/query` (`query`), `/db/request` (`execute` and `query`), `/db/backup` (`backup`), `/db/load` (`load`), `/status` and `/nodes` (`status`), `/readyz` (`ready`) | rqlite's auth file ([`Users::authorize`]) |
//! | `/join`, `/cluster/add`, `/cluster/promote` (`join`), `/remove`, `/cluster/remove` (`remove`), `/cluster/step-down`, `/cluster/campaign` (`leader-ops`), `/cluster/nodes` (`status`) | the farm's [`Guard`]: the operator's or a db node's certificate; without internal TLS the admin token, or a user of the auth file holding the permission |
//! | anything else | none: 404 from this layer, no handler runs |
//!
//! A request from another db node (its farm certificate, or the admin token without TLS) is
//! trusted for every route: the leader trusts an authenticated peer's forwarding instead of
//! checking the caller's credentials again. The follower that received the request already
//! checked them against the same auth file, Raft peers can already append anything to the
//! log, and queued writes (`?queue`), whose caller is gone by the time they are flushed,
//! need no credentials of their own to reach the leader.
//!
//! A refusal is 401 with `WWW-Authenticate: Basic realm="webfarm-db"` when credentials are
//! missing or wrong, and 401 without the challenge for a user lacking the permission (as
//! rqlite answers: `http.StatusUnauthorized` for both); the body names the permission. It
//! is logged with the user name and peer, never the password, and counted in
//! `webfarm_db_auth_failures_total{reason}`.
//!
//! bcrypt is slow on purpose, so a flood of guesses (or of unknown users, which pay the same
//! check) could take every core from SQL and Raft. At most [`bcrypt_slots`] checks run at
//! once; a request waits for its turn at most [`BCRYPT_WAIT`], then gets 503 with
//! `Retry-After` (counted as reason `busy`). Credentials already verified take no slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use webfarm_node::access::{Guard, NodeAuth, Perm, Refusal, Users};
use webfarm_node::tls::Peer;

/// The permission(s) a route needs, and whether the farm's guard decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A path the API does not serve: 404 from this layer, no handler runs.
    Unknown,
    Sql(&'static [Perm]),
    Membership(Perm),
}

/// The route of `path`, whatever the method: every path of the API's router is listed (a
/// method a route does not take gets its 405 only after the check), and any other is
/// [`Route::Unknown`], so that a route added to the router but not here is never served
/// without a check.
fn route(path: &str) -> Route {
    match path {
        "/db/execute" => Route::Sql(&[Perm::Execute]),
        "/db/query" => Route::Sql(&[Perm::Query]),
        "/db/request" => Route::Sql(&[Perm::Execute, Perm::Query]),
        "/db/backup" => Route::Sql(&[Perm::Backup]),
        "/db/load" => Route::Sql(&[Perm::Load]),
        "/status" | "/nodes" => Route::Sql(&[Perm::Status]),
        "/readyz" => Route::Sql(&[Perm::Ready]),
        "/join" | "/cluster/add" | "/cluster/promote" => Route::Membership(Perm::Join),
        "/remove" | "/cluster/remove" => Route::Membership(Perm::Remove),
        "/cluster/step-down" | "/cluster/campaign" => Route::Membership(Perm::LeaderOps),
        "/cluster/nodes" => Route::Membership(Perm::Status),
        _ => Route::Unknown,
    }
}

/// Failed authentications on the db API, by [`Refusal::reason`].
#[derive(Debug, Default)]
pub(crate) struct AuthFailures([AtomicU64; 5]);

impl AuthFailures {
    const REASONS: [&'static str; 5] = [
        "no_credentials",
        "unknown_user",
        "bad_password",
        "forbidden",
        "busy",
    ];

    fn count(&self, r: &Refusal) {
        self.count_reason(r.reason());
    }

    fn count_reason(&self, reason: &str) {
        let i = Self::REASONS.iter().position(|x| *x == reason).unwrap_or(0);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for each reason.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::REASONS
            .iter()
            .zip(&self.0)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
    }
}

/// How long a request waits for a bcrypt slot before its 503.
pub const BCRYPT_WAIT: Duration = Duration::from_secs(5);

/// How many bcrypt checks run at once: half the cores, at least one, so that guesses
/// never take the cores SQL and Raft need.
pub fn bcrypt_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// What the API's auth layer checks with.
pub(crate) struct ApiAuth {
    users: Option<Arc<Users>>,
    guard: Guard,
    db_nodes: Vec<String>,
    failures: Arc<AuthFailures>,
    /// The bcrypt slots ([`bcrypt_slots`]).
    bcrypt: Arc<Semaphore>,
}

impl ApiAuth {
    /// The check of node `farm`'s db API with `auth`'s users and token.
    pub(crate) fn new(
        farm: &webfarm_config::Farm,
        auth: &NodeAuth,
        failures: Arc<AuthFailures>,
    ) -> ApiAuth {
        let db_nodes: Vec<String> = farm
            .nodes_with_role(webfarm_config::Role::Db)
            .map(|n| n.name.clone())
            .collect();
        let subjects = std::iter::once("operator".to_string()).chain(db_nodes.iter().cloned());
        ApiAuth {
            users: auth.db_users.clone(),
            guard: Guard::new(subjects, auth),
            db_nodes,
            failures,
            bcrypt: Arc::new(Semaphore::new(bcrypt_slots())),
        }
    }

    /// Whether the caller is another db node: its certificate, or the admin token without
    /// TLS.
    fn is_db_peer(&self, peer: Option<&Peer>, authorization: Option<&HeaderValue>) -> bool {
        match peer.filter(|p| !p.names.is_empty()) {
            Some(p) => self.db_nodes.iter().any(|n| p.is(n)),
            None => match (&self.guard.token, authorization) {
                (Some(t), Some(h)) => t.accepts(h),
                _ => false,
            },
        }
    }
}

/// What the check decided.
enum Verdict {
    Pass,
    /// Refused by the farm's guard: its status and reason.
    Guard(StatusCode, &'static str),
    /// Refused by the auth file.
    Db(Refusal),
    /// The check itself failed (bcrypt panicked): 500, not a refusal of the credentials.
    Internal,
    /// Every bcrypt slot stayed taken for [`BCRYPT_WAIT`]: 503.
    Busy,
}

/// The layer's function: passes the request on, or answers the refusal.
pub(crate) async fn check(State(auth): State<Arc<ApiAuth>>, req: Request, next: Next) -> Response {
    let route = route(req.uri().path());
    if route == Route::Unknown {
        return StatusCode::NOT_FOUND.into_response();
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone());
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let verdict = if auth.is_db_peer(peer.as_ref(), authorization.as_ref()) {
        Verdict::Pass
    } else {
        auth.decide(route, peer.as_ref(), authorization).await
    };
    let who = peer.map_or_else(|| "unknown".into(), |p| p.addr.to_string());
    let path = req.uri().path().to_string();
    match verdict {
        Verdict::Pass => next.run(req).await,
        Verdict::Guard(status, reason) => {
            auth.guard.refusals.count(reason);
            tracing::warn!(peer = %who, path = %path, reason, "refused a membership route");
            webfarm_node::access::refusal(status, reason)
        }
        Verdict::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error": "the credentials could not be checked"}"#,
        )
            .into_response(),
        Verdict::Busy => {
            auth.failures.count_reason("busy");
            tracing::warn!(peer = %who, path = %path, "db API: too many password checks in progress");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::RETRY_AFTER, "1"),
                ],
                r#"{"error": "too many password checks in progress; retry"}"#,
            )
                .into_response()
        }
        Verdict::Db(refusal) => {
            auth.failures.count(&refusal);
            let user = refusal.user().unwrap_or("");
            tracing::warn!(peer = %who, path = %path, reason = refusal.reason(), "db API: {refusal} (user {user:?})");
            refused(&refusal)
        }
    }
}

impl ApiAuth {
    /// The verdict on a caller that is not a db peer.
    async fn decide(
        &self,
        route: Route,
        peer: Option<&Peer>,
        authorization: Option<HeaderValue>,
    ) -> Verdict {
        match route {
            Route::Unknown => Verdict::Guard(StatusCode::NOT_FOUND, "unknown_route"),
            Route::Sql(perms) => self.by_file(authorization, perms.to_vec()).await,
            Route::Membership(perm) => match self.guard.check(peer, authorization.as_ref()) {
                Ok(()) => Verdict::Pass,
                // Without TLS, a user named in the auth file, whose password the request
                // carries and who holds the permission, may too; never `"*"`, which would
                // let any `Authorization` header (even `Bearer junk`) in.
                Err((StatusCode::UNAUTHORIZED, reason)) if authorization.is_some() => {
                    match &self.users {
                        Some(users) => {
                            let check = Check {
                                users,
                                slots: &self.bcrypt,
                                named: true,
                            };
                            check.run(authorization, vec![perm]).await
                        }
                        None => Verdict::Guard(StatusCode::UNAUTHORIZED, reason),
                    }
                }
                Err((status, reason)) => Verdict::Guard(status, reason),
            },
        }
    }

    /// The auth file's verdict (none asks for nothing).
    async fn by_file(&self, authorization: Option<HeaderValue>, perms: Vec<Perm>) -> Verdict {
        match &self.users {
            None => Verdict::Pass,
            Some(users) => {
                let check = Check {
                    users,
                    slots: &self.bcrypt,
                    named: false,
                };
                check.run(authorization, perms).await
            }
        }
    }
}

/// One credentials check against the auth file.
struct Check<'a> {
    users: &'a Arc<Users>,
    /// The bcrypt slots.
    slots: &'a Arc<Semaphore>,
    /// [`Users::authorize_user`] (`"*"` does not count) instead of [`Users::authorize`].
    named: bool,
}

impl Check<'_> {
    /// Checks `authorization` for every permission of `perms`; bcrypt, when it must run,
    /// runs off the async runtime in one of the slots.
    async fn run(&self, authorization: Option<HeaderValue>, perms: Vec<Perm>) -> Verdict {
        let slow = self.users.needs_bcrypt(authorization.as_ref());
        let (users, named) = (Arc::clone(self.users), self.named);
        let check = move || {
            perms.iter().try_for_each(|p| {
                let h = authorization.as_ref();
                let verdict = if named {
                    users.authorize_user(h, *p)
                } else {
                    users.authorize(h, *p)
                };
                verdict.map(|_| ())
            })
        };
        let result = if slow {
            let slot = Arc::clone(self.slots).acquire_owned();
            let Ok(Ok(slot)) = tokio::time::timeout(BCRYPT_WAIT, slot).await else {
                return Verdict::Busy;
            };
            // The slot goes with the check: a caller that leaves does not free it while
            // bcrypt still runs.
            let check = move || {
                let _slot = slot;
                check()
            };
            match tokio::task::spawn_blocking(check).await {
                Ok(r) => r,
                // bcrypt panicked, or the runtime is shutting down: the server's fault, not
                // the caller's credentials.
                Err(e) => {
                    tracing::error!("db API: the credentials check failed: {e}");
                    return Verdict::Internal;
                }
            }
        } else {
            check()
        };
        match result {
            Ok(()) => Verdict::Pass,
            Err(r) => Verdict::Db(r),
        }
    }
}

/// The 401 of a refusal, with rqlite's JSON error.
fn refused(r: &Refusal) -> Response {
    let body = serde_json::json!({ "error": r.to_string() }).to_string();
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if r.challenge() {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"webfarm-db\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_needs_rqlites_permission() {
        assert_eq!(route("/db/execute"), Route::Sql(&[Perm::Execute]));
        assert_eq!(route("/db/query"), Route::Sql(&[Perm::Query]));
        assert_eq!(route("/db/backup"), Route::Sql(&[Perm::Backup]));
        assert_eq!(route("/db/load"), Route::Sql(&[Perm::Load]));
        assert_eq!(route("/readyz"), Route::Sql(&[Perm::Ready]));
        assert_eq!(route("/nodes"), Route::Sql(&[Perm::Status]));
        assert_eq!(route("/remove"), Route::Membership(Perm::Remove));
        assert_eq!(route("/join"), Route::Membership(Perm::Join));
        assert_eq!(route("/cluster/nodes"), Route::Membership(Perm::Status));
        assert_eq!(route("/nowhere"), Route::Unknown);
        assert_eq!(route("/db/query/"), Route::Unknown);
        // Any path the API's router serves is listed.
        for path in [
            "/db/execute",
            "/db/query",
            "/db/request",
            "/db/backup",
            "/db/load",
            "/status",
            "/nodes",
            "/readyz",
            "/join",
            "/remove",
            "/cluster/add",
            "/cluster/remove",
            "/cluster/promote",
            "/cluster/step-down",
            "/cluster/campaign",
            "/cluster/nodes",
        ] {
            assert_ne!(route(path), Route::Unknown, "{path}");
        }
    }
}
