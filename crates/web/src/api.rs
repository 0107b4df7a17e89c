//! The JSON API of the message board.
//!
//! - `GET /api/messages?limit=N`: the N (default 50, at most 500) newest messages, newest first.
//! - `POST /api/messages` `{"author","text"}`: 201, the stored message, `Location`.
//! - `GET /api/messages/{id}`: the message, or 404.
//!
//! Errors are `{"error": "..."}`: 400/413/415 for a body or query axum cannot read, 422 for a
//! field that fails validation, 503 when the database is unavailable (a generic reason; the
//! detail is logged), 500 when it refused.
//!
//! Reads ask for at least the `wf_index` cookie's index and the table's creation index; a
//! cookie the database does not know is dropped (`Set-Cookie` with `Max-Age=0`).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::errors::{no_store, ApiError};
use crate::read_your_writes::{forget, min_index, remember};
use crate::schema::read_index;
use crate::store::MessageStore;
use crate::validate::{self, MessageInput};

/// The query of `GET /api/messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    limit: Option<u32>,
}

/// `GET /api/messages`.
pub(crate) async fn list<S: MessageStore>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let limit = validate::limit(params.limit)?;
    let schema = app.schema.ensure(&app.store).await?;
    let fetched = app
        .store
        .latest(limit, read_index(min_index(&headers), schema))
        .await?;
    let mut resp = json(StatusCode::OK, &fetched.value);
    if fetched.index_reset {
        forget(resp.headers_mut());
    }
    Ok(resp)
}

/// `POST /api/messages`.
pub(crate) async fn create<S: MessageStore>(
    State(app): State<App<S>>,
    body: Result<Json<MessageInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = body?;
    let valid = validate::validate(&input)?;
    app.schema.ensure(&app.store).await?;
    let stored = app.store.insert(&app.new_message(valid)).await?;
    app.posted();
    let mut resp = json(StatusCode::CREATED, &stored.message);
    let location = format!("/api/messages/{}", stored.message.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    remember(resp.headers_mut(), stored.raft_index);
    Ok(resp)
}

/// `GET /api/messages/{id}`.
pub(crate) async fn get_one<S: MessageStore>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let schema = app.schema.ensure(&app.store).await?;
    let fetched = app
        .store
        .get(id, read_index(min_index(&headers), schema))
        .await?;
    let mut resp = match fetched.value {
        Some(message) => json(StatusCode::OK, &message),
        None => ApiError::not_found(format!("no message with id {id}")).into_response(),
    };
    if fetched.index_reset {
        forget(resp.headers_mut());
    }
    Ok(resp)
}

/// A JSON answer that no cache may keep.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut resp = (status, Json(value)).into_response();
    no_store(&mut resp);
    resp
}
