//! The browser side of the message board: `GET /` (the page) and `POST /messages` (the form).

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Form;
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::app::App;
use crate::errors::{html_response, no_store, public_detail, store_status};
use crate::html;
use crate::read_your_writes::{forget, min_index, remember};
use crate::schema::read_index;
use crate::store::MessageStore;
use crate::validate::{self, MessageInput, LIMIT_DEFAULT};

/// `GET /`: the form and the latest 50 messages, newest first.
pub(crate) async fn board<S: MessageStore>(
    State(app): State<App<S>>,
    headers: HeaderMap,
) -> Response {
    let messages = async {
        let schema = app.schema.ensure(&app.store).await?;
        app.store
            .latest(LIMIT_DEFAULT, read_index(min_index(&headers), schema))
            .await
    }
    .await;
    match messages {
        Ok(fetched) => {
            let mut resp =
                html_response(StatusCode::OK, html::board_page(&app.name, &fetched.value));
            if fetched.index_reset {
                forget(resp.headers_mut());
            }
            resp
        }
        Err(e) => crate::errors::store_error_page(&app.name, &e),
    }
}

/// `POST /messages` (form): 303 to `/` with the read-your-writes cookie; a refused message
/// comes back in the form with the reason.
pub(crate) async fn post_form<S: MessageStore>(
    State(app): State<App<S>>,
    form: Result<Form<MessageInput>, FormRejection>,
) -> Response {
    let input = match form {
        Ok(Form(input)) => input,
        Err(r) => {
            let page = html::error_page(&app.name, "Bad request", &r.body_text());
            return html_response(r.status(), page);
        }
    };
    let refused = |status: StatusCode, problem: &str| {
        let page = html::form_error_page(
            &app.name,
            problem,
            input.author.as_deref().unwrap_or(""),
            input.text.as_deref().unwrap_or(""),
        );
        html_response(status, page)
    };
    let valid = match validate::validate(&input) {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    let stored = async {
        app.schema.ensure(&app.store).await?;
        app.store.insert(&app.new_message(valid)).await
    }
    .await;
    match stored {
        Ok(stored) => {
            app.posted();
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/"));
            remember(resp.headers_mut(), stored.raft_index);
            no_store(&mut resp);
            resp
        }
        Err(e) => refused(store_status(&e), &public_detail(&e)),
    }
}
