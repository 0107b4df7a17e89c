//! The dashboard's HTTP side.
//!
//! - `GET /`, `/app.js`, `/style.css`: the page (compiled in; no CDN).
//! - `GET /api/view`: the farm now ([`crate::view::View`]).
//! - `GET /api/history`: every chart series (`{"series": {name: [[at_ms, value]...]}}`).
//! - `GET /api/events`: the timeline kept, oldest first.
//! - `GET /api/stream`: server-sent events, one `frame` event per scrape,
//!   `{"view": View, "events": [events new since the previous frame]}`.
//! - `POST /api/nodes/{node}/{stop|kill|start}` and `POST /api/servers/{backend}/{server}/
//!   {weight|state|backup}` with `{"value": "..."}`: the actions, answered `{"ok": text}` or
//!   `{"error": text}` (400 for a bad request, 502 when the supervisor or an lb refused).
//!
//! Actions must be sent as `application/json`: a form or a `text/plain` body from another
//! site's page (a simple cross-origin request, which needs no CORS preflight) is refused
//! with 415, and a request whose `Origin` is not this dashboard's with 403.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;

use crate::control::{self, Refused};
use crate::Shared;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// The dashboard's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/view", get(view))
        .route("/api/history", get(history))
        .route("/api/events", get(timeline))
        .route("/api/stream", get(stream))
        .route("/api/auth", get(auth))
        .route("/api/nodes/{node}/{verb}", post(node_action))
        .route(
            "/api/servers/{backend}/{server}/{what}",
            post(server_action),
        )
        .with_state(shared)
}

/// The dashboard's actions change the farm: they take the admin token as the password of
/// HTTP Basic (any user name), which a browser asks for once and then sends with every
/// request under `/api/`. Refused: 401 with the challenge, logged.
/// `None` when the request may act; else the refusal.
fn without_token(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.token else {
        return None;
    };
    match headers.get(header::AUTHORIZATION) {
        Some(h) if token.accepts(h) => None,
        given => {
            tracing::warn!(
                credentials = given.is_some(),
                "dashboard: refused an action without the admin token"
            );
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                "the dashboard's actions take the farm's admin token as password \
                 (<data_dir>/secrets/admin.token)\n",
            )
                .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"webfarm dashboard\""),
            );
            Some(resp)
        }
    }
}

/// `GET /api/auth`: 204 once the browser sends the admin token, else 401 with the challenge:
/// opened in a browser, it asks for the token before the first action.
async fn auth(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    without_token(&s, &headers).unwrap_or_else(|| StatusCode::NO_CONTENT.into_response())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn view(State(s): State<Arc<Shared>>) -> Response {
    Json(s.state().view.clone()).into_response()
}

async fn history(State(s): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_string(&s.state().history).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn timeline(State(s): State<Arc<Shared>>) -> Response {
    Json(s.state().timeline.all()).into_response()
}

/// The latest frame at once, then each new one, until the client goes away.
async fn stream(
    State(s): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.frames.subscribe();
    rx.mark_changed();
    let shutdown = s.shutdown.clone();
    let frames = futures_util::stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        // The stream ends with the node, so a graceful shutdown need not wait for browsers.
        tokio::select! {
            changed = rx.changed() => changed.ok()?,
            () = shutdown.wait() => return None,
        }
        let frame = rx.borrow_and_update().clone();
        let event = Event::default().event("frame").data(&*frame);
        Some((Ok(event), (rx, shutdown)))
    });
    Sse::new(frames).keep_alive(KeepAlive::default())
}

/// The body of a server action.
#[derive(Debug, Deserialize)]
struct Value {
    value: String,
}

async fn node_action(
    State(s): State<Arc<Shared>>,
    Path((node, verb)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = same_site_json(&headers) {
        return refused.into_response();
    }
    if let Some(refused) = without_token(&s, &headers) {
        return refused;
    }
    let done = control::node(&s.farm, s.token.as_ref(), &verb, &node).await;
    answer(&s, format!("{verb} {node}"), done)
}

async fn server_action(
    State(s): State<Arc<Shared>>,
    Path((backend, server, what)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = same_site_json(&headers) {
        return refused.into_response();
    }
    if let Some(refused) = without_token(&s, &headers) {
        return refused;
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let error = format!("the body must be {{\"value\": \"...\"}}: {e}");
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
    };
    let target = (backend.as_str(), server.as_str());
    let done = control::server(&s.farm, &s.http, target, &what, &value.value).await;
    answer(
        &s,
        format!("set {what} of {backend}/{server} to {}", value.value),
        done,
    )
}

/// The action's answer, recorded in the timeline unless the request was bad.
fn answer(s: &Shared, what: String, done: Result<String, Refused>) -> Response {
    match done {
        Ok(text) => {
            s.action("info", format!("dashboard: {what}: {text}"));
            Json(json!({ "ok": text })).into_response()
        }
        Err(Refused::BadRequest(error)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
        }
        Err(Refused::Failed(error)) => {
            s.action("warning", format!("dashboard: {what} failed: {error}"));
            (StatusCode::BAD_GATEWAY, Json(json!({ "error": error }))).into_response()
        }
    }
}

/// Refuses requests a page of another site could send: not JSON (415), or from another
/// origin (403).
fn same_site_json(headers: &HeaderMap) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        let error = "actions take Content-Type: application/json";
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({ "error": error })),
        ));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(host)) = (origin, host) {
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host);
        if !same {
            let error = format!("origin {origin} is not this dashboard ({host})");
            return Err((StatusCode::FORBIDDEN, Json(json!({ "error": error }))));
        }
    }
    Ok(())
}
