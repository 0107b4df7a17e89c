//! The JSON answers of the SQL API, shaped as rqlite's: `results` (one object per statement),
//! `time` with `timings`, rows as `columns`/`types`/`values` or, with `associative`, as
//! `types` (column to type) and `rows` (one object per row), and indented output with
//! `pretty` (four spaces, as rqlite's).

use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::http::request::Flags;
use crate::types::{Outcome, StatementResult};

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
    pub(crate) fn json(&self, status: StatusCode, v: &Value) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            to_text(v, self.pretty),
        )
            .into_response()
    }

    /// `{"error": message}` with `status`.
    pub(crate) fn error(&self, status: StatusCode, message: impl Into<String>) -> Response {
        self.json(status, &json!({ "error": message.into() }))
    }

    /// The `results` (and, with timings, `time`) of an answer.
    pub(crate) fn results(&self, outcomes: &[Outcome], started: Instant) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "results".into(),
            Value::Array(outcomes.iter().map(|o| self.outcome(o)).collect()),
        );
        if self.timings {
            m.insert("time".into(), Value::from(started.elapsed().as_secs_f64()));
        }
        m
    }

    /// One statement's result.
    pub(crate) fn outcome(&self, o: &Outcome) -> Value {
        let mut v = match &o.result {
            StatementResult::Write {
                last_insert_id,
                rows_affected,
            } => json!({
                "last_insert_id": last_insert_id,
                "rows_affected": rows_affected,
            }),
            StatementResult::Rows(rows) if self.associative => {
                let types: Map<String, Value> = rows
                    .columns
                    .iter()
                    .zip(&rows.types)
                    .map(|(c, t)| (c.clone(), Value::from(t.clone())))
                    .collect();
                let objects: Vec<Value> = rows
                    .values
                    .iter()
                    .map(|row| {
                        Value::Object(
                            rows.columns
                                .iter()
                                .cloned()
                                .zip(row.iter().cloned())
                                .collect(),
                        )
                    })
                    .collect();
                json!({ "types": types, "rows": objects })
            }
            StatementResult::Rows(rows) => {
                let mut m = Map::new();
                m.insert("columns".into(), json!(rows.columns));
                m.insert("types".into(), json!(rows.types));
                if !rows.values.is_empty() {
                    m.insert("values".into(), json!(rows.values));
                }
                Value::Object(m)
            }
            StatementResult::Error(e) => json!({ "error": e }),
        };
        if self.timings && !matches!(o.result, StatementResult::Error(_)) {
            if let Value::Object(m) = &mut v {
                m.insert("time".into(), Value::from(o.time));
            }
        }
        v
    }
}

/// `v` as JSON text, indented by four spaces when `pretty`.
pub(crate) fn to_text(v: &Value, pretty: bool) -> String {
    if !pretty {
        return v.to_string();
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Rows;

    fn rows() -> Outcome {
        Outcome {
            result: StatementResult::Rows(Rows {
                columns: vec!["id".into(), "name".into()],
                types: vec!["integer".into(), "text".into()],
                values: vec![vec![json!(1), json!("fiona")]],
            }),
            time: 0.5,
        }
    }

    #[test]
    fn renders_rows_as_arrays_or_objects() {
        let plain = Render::default().outcome(&rows());
        assert_eq!(
            plain,
            json!({"columns": ["id", "name"], "types": ["integer", "text"], "values": [[1, "fiona"]]})
        );
        let assoc = Render {
            associative: true,
            timings: true,
            ..Render::default()
        }
        .outcome(&rows());
        assert_eq!(
            assoc,
            json!({"types": {"id": "integer", "name": "text"}, "rows": [{"id": 1, "name": "fiona"}], "time": 0.5})
        );
        assert_eq!(to_text(&json!({"a": 1}), true), "{\n    \"a\": 1\n}");
    }
}
