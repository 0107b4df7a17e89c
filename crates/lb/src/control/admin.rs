//! Run-time control on the lb node's admin address (HAProxy's runtime API, over HTTP):
//!
//! - `GET /lb/servers`: the reload `generation` (0 as started, one more with each applied
//!   reload), `reloads_refused` (since the start), and every backend and server: state,
//!   weight, connections, last check.
//! - `POST /lb/servers/{backend}/{server}/weight`, body `N` or `{"weight": N}` (0..=256).
//! - `POST /lb/servers/{backend}/{server}/state`, body `ready|drain|maint` or
//!   `{"state": "drain"}`. Drain: no new balanced requests, in-flight ones finish, sticky
//!   clients still reach it. Maint: no traffic, no checks.
//! - `POST /lb/servers/{backend}/{server}/backup`, body `true|false` or `{"backup": true}`:
//!   a backup server takes traffic only while no active server is usable.
//! - `POST /lb/reload`: re-reads the topology file (as SIGHUP does); answers what changed
//!   and the new generation.
//!
//! Errors answer `{"error": "..."}` with 400 (bad value), 404 (no such backend or server)
//! or 409 (the reload cannot apply).
//!
//! The answers are the types of [`webfarm_node::status`] ([`LbServersAnswer`],
//! [`ReloadAnswer`], [`WeightChange`], [`StateChange`], [`LbErrorAnswer`]), which `webfarm lb`
//! reads back; they are rendered through [`serde_json::Value`], keys sorted, as `/status` is.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use webfarm_node::status::{
    BackupChange, LbErrorAnswer, LbServersAnswer, ReloadAnswer, StateChange, WeightChange,
};

use crate::backend::server::{AdminState, ServerState};
use crate::control::live::LiveConfig;
use crate::control::reload::{ReloadError, ReloadSummary};
use crate::control::status::backends_status;

/// The `/lb/...` routes over `live`.
pub(crate) fn routes(live: Arc<LiveConfig>) -> Router {
    Router::new()
        .route("/lb/servers", get(list))
        .route("/lb/servers/{backend}/{server}/weight", post(set_weight))
        .route("/lb/servers/{backend}/{server}/state", post(set_state))
        .route("/lb/servers/{backend}/{server}/backup", post(set_backup))
        .route("/lb/reload", post(reload))
        .with_state(live)
}

/// An error answer: the status and `{"error": text}`.
type Refusal = (StatusCode, Json<LbErrorAnswer>);

fn refusal(status: StatusCode, text: String) -> Refusal {
    (status, Json(LbErrorAnswer { error: text }))
}

fn error(status: StatusCode, text: String) -> Response {
    refusal(status, text).into_response()
}

/// An answer rendered into a [`Value`] (`serde_json::to_value`, so its objects' keys are
/// sorted), as a 200 JSON body.
fn ok(answer: serde_json::Result<Value>) -> Response {
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the answer: {e}"),
        ),
    }
}

async fn list(State(live): State<Arc<LiveConfig>>) -> Response {
    let snap = live.snapshot();
    ok(serde_json::to_value(LbServersAnswer {
        generation: snap.generation,
        reloads_refused: live.reloads_refused.load(Ordering::Acquire),
        backends: backends_status(&snap.backends),
    }))
}

/// The server `backend/server`, or the 404 answer naming what exists.
fn find(live: &LiveConfig, backend: &str, server: &str) -> Result<Arc<ServerState>, Refusal> {
    let snap = live.snapshot();
    let Some(b) = snap.backend(backend) else {
        let names: Vec<&str> = snap.backends.iter().map(|b| b.name()).collect();
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!("no backend {backend:?}; backends: {}", names.join(", ")),
        ));
    };
    match b.server_by_name(server) {
        Some(srv) => Ok(srv.state.clone()),
        None => {
            let names: Vec<&str> = b.servers.iter().map(|srv| srv.state.name()).collect();
            Err(refusal(
                StatusCode::NOT_FOUND,
                format!(
                    "no server {server:?} in backend {backend:?}; servers: {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The value of `body`: plain text, or the string/number under `field` of a JSON object.
fn value(body: &str, field: &str) -> String {
    let t = body.trim();
    if t.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            return match &v[field] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
        }
    }
    t.trim_matches('"').to_string()
}

async fn set_weight(
    State(live): State<Arc<LiveConfig>>,
    Path((backend, server)): Path<(String, String)>,
    body: String,
) -> Result<Response, Refusal> {
    let s = find(&live, &backend, &server)?;
    let text = value(&body, "weight");
    let weight = match text.parse::<u32>() {
        Ok(w) if w <= 256 => w,
        _ => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                format!("weight {text:?} is not a number in 0..=256"),
            ))
        }
    };
    let old = s.weight();
    s.set_weight(weight);
    tracing::info!(
        "Server {} weight changed from {old} to {weight} (admin)",
        s.id
    );
    Ok(ok(serde_json::to_value(WeightChange {
        server: s.id.clone(),
        weight,
        previous: old,
    })))
}

async fn set_backup(
    State(live): State<Arc<LiveConfig>>,
    Path((backend, server)): Path<(String, String)>,
    body: String,
) -> Result<Response, Refusal> {
    let s = find(&live, &backend, &server)?;
    let text = value(&body, "backup");
    let backup = match text.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                format!("backup {text:?} is not true or false"),
            ))
        }
    };
    let old = s.set_backup(backup);
    let kind = if backup { "a backup" } else { "an active" };
    tracing::warn!("Server {} is now {kind} server (admin)", s.id);
    Ok(ok(serde_json::to_value(BackupChange {
        server: s.id.clone(),
        backup,
        previous: old,
    })))
}

async fn set_state(
    State(live): State<Arc<LiveConfig>>,
    Path((backend, server)): Path<(String, String)>,
    body: String,
) -> Result<Response, Refusal> {
    let s = find(&live, &backend, &server)?;
    let text = value(&body, "state");
    let Some(state) = AdminState::parse(&text) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            format!("state {text:?} is not one of ready, drain, maint"),
        ));
    };
    let old = s.set_admin(state);
    let what = match state {
        AdminState::Ready => "is leaving maintenance/drain: ready",
        AdminState::Drain => "is going into drain mode",
        AdminState::Maint => "is going into maintenance",
    };
    tracing::warn!(
        "Server {} {what} (admin; was {}), {} request(s) in flight.",
        s.id,
        old.as_str(),
        s.current_conns()
    );
    Ok(ok(serde_json::to_value(StateChange {
        server: s.id.clone(),
        state: state.as_str().to_string(),
        previous: old.as_str().to_string(),
    })))
}

async fn reload(State(live): State<Arc<LiveConfig>>) -> Response {
    // Reading and validating a file is blocking work; keep it off the I/O threads.
    let result = tokio::task::spawn_blocking(move || live.reload()).await;
    match result {
        Ok(Ok(summary)) => ok(serde_json::to_value(reload_answer(summary))),
        Ok(Err(e)) => {
            tracing::error!("reload refused: {e}");
            let status = match e {
                ReloadError::Config(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            error(status, e.to_string())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload task failed: {e}"),
        ),
    }
}

/// What `POST /lb/reload` answers for an applied reload.
fn reload_answer(summary: ReloadSummary) -> ReloadAnswer {
    ReloadAnswer {
        reloaded: summary.file.display().to_string(),
        backends_added: summary.backends_added,
        backends_removed: summary.backends_removed,
        servers_added: summary.servers_added,
        servers_removed: summary.servers_removed,
        generation: summary.generation,
        certificates_reloaded: summary.certificates_reloaded,
    }
}
