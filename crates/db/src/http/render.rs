//! The JSON answers of the SQL API, shaped as rqlite's: `results` (one object per statement),
//! `time` with `timings`, rows as `columns`/`types`/`values` or, with `associative`, as
//! `types` (column to type) and `rows` (one object per row), and indented output with
//! `pretty` (four spaces, as rqlite's).

use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use webfarm_db_client::{Answer, ErrorAnswer, StatementAnswer};

use crate::http::request::Flags;
use crate::types::Outcome;

/// How an answer is written, from the request's flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Render {
    /// Indent the JSON.
    pub(crate) pretty: bool,
    /// Add `time` to the answer and to each result.
    pub(crate) timings: bool,
    /// Rows as objects keyed by column name.
    pub(crate) associative: bool,
}

impl Render {
    /// The rendering the request's flags ask for.
    pub(crate) fn of(flags: &Flags) -> Render {
        Render {
            pretty: flags.flag("pretty"),
            timings: flags.flag("timings"),
            associative: flags.flag("associative"),
        }
    }

    /// `v` as the JSON body of a `status` answer.
    pub(crate) fn json<T: Serialize + ?Sized>(&self, status: StatusCode, v: &T) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            to_text(v, self.pretty),
        )
            .into_response()
    }

    /// `{"error": message}` with `status`.
    pub(crate) fn error(&self, status: StatusCode, message: impl Into<String>) -> Response {
        self.json(status, &ErrorAnswer::new(message))
    }

    /// The `results` (and, with timings, `time`) of an answer.
    pub(crate) fn results(&self, outcomes: &[Outcome], started: Instant) -> Answer {
        Answer {
            results: outcomes.iter().map(|o| self.outcome(o)).collect(),
            time: self.timings.then(|| started.elapsed().as_secs_f64()),
            ..Answer::default()
        }
    }

    /// One statement's result.
    pub(crate) fn outcome(&self, o: &Outcome) -> StatementAnswer {
        StatementAnswer::of(o, self.associative, self.timings)
    }
}

/// `v` as JSON text, indented by four spaces when `pretty`.
pub(crate) fn to_text<T: Serialize + ?Sized>(v: &T, pretty: bool) -> String {
    if !pretty {
        // Plain structs, maps with string keys and JSON values always serialize.
        return serde_json::to_string(v).unwrap_or_default();
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => serde_json::to_string(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The shapes of each result are tested with `StatementAnswer::of` in webfarm-db-client.
    #[test]
    fn pretty_answers_are_indented_by_four_spaces() {
        assert_eq!(to_text(&json!({"a": 1}), true), "{\n    \"a\": 1\n}");
        assert_eq!(to_text(&json!({"a": 1}), false), "{\"a\":1}");
    }
}
