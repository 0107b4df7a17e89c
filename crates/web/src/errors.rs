//! Error responses: JSON `{"error": "..."}` for the API, short HTML pages for the browser
//! routes. axum's own rejections (bad JSON, wrong content type, body too large, bad query or
//! path) are turned into these too, keeping their status code and message.

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::html;
use crate::store::StoreError;
use crate::validate::Invalid;

/// An API error: a status and the message of the JSON body `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        no_store(&mut resp);
        resp
    }
}

/// 422 with the field's problem.
impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    }
}

/// 503 when the database is unavailable, 500 when it refused a statement; the detail is
/// logged, the answer carries [`StoreError::public_message`].
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(store_status(&e), e.public_message())
    }
}

/// The status for a store error, logging it on the way.
pub(crate) fn store_status(e: &StoreError) -> StatusCode {
    if e.is_unavailable() {
        tracing::warn!("{e}");
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        tracing::error!("{e}");
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        /// axum's rejection, with its status code and message, as a JSON error.
        impl From<$rejection> for ApiError {
            fn from(r: $rejection) -> Self {
                ApiError::new(r.status(), r.body_text())
            }
        }
    )*};
}

from_rejection!(JsonRejection, QueryRejection, PathRejection, FormRejection);

/// `Cache-Control: no-store`: dynamic answers must not be reused by any cache.
pub(crate) fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML page with `status`, not cacheable.
pub(crate) fn html_response(status: StatusCode, page: String) -> Response {
    let mut resp = (status, Html(page)).into_response();
    no_store(&mut resp);
    resp
}

/// What a page tells a visitor about a store error: no node address, no SQL (the detail is
/// logged by [`store_status`]).
pub(crate) fn public_detail(e: &StoreError) -> String {
    if e.is_unavailable() {
        "The database is unavailable; try again in a few seconds.".into()
    } else {
        "The database could not answer this request; the error was logged.".into()
    }
}

/// The HTML page for a store error: a short 503 page, or a 500 page.
pub(crate) fn store_error_page(served_by: &str, e: &StoreError) -> Response {
    let status = store_status(e);
    let title = if status == StatusCode::SERVICE_UNAVAILABLE {
        "Service unavailable"
    } else {
        "Internal error"
    };
    html_response(
        status,
        html::error_page(served_by, title, &public_detail(e)),
    )
}

/// 404 for `path`: JSON under `/api/`, an HTML page elsewhere.
pub(crate) fn not_found(served_by: &str, path: &str) -> Response {
    if is_api(path) {
        ApiError::not_found(format!("no such resource: {path}")).into_response()
    } else {
        html_response(
            StatusCode::NOT_FOUND,
            html::error_page(
                served_by,
                "Not found",
                &format!("There is no page at {path}."),
            ),
        )
    }
}

/// 405 for `method` on `path`, in the same two forms. axum adds `Allow` on its routes.
pub(crate) fn method_not_allowed(served_by: &str, method: &str, path: &str) -> Response {
    let detail = format!("method {method} is not allowed on {path}");
    if is_api(path) {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, detail).into_response()
    } else {
        html_response(
            StatusCode::METHOD_NOT_ALLOWED,
            html::error_page(served_by, "Method not allowed", &detail),
        )
    }
}

/// Whether `path` belongs to the JSON API.
pub(crate) fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}
