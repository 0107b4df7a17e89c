//! What the SQL API answers: one result per statement, in rqlite's JSON shapes.
//!
//! rqlite documents them at <https://rqlite.io/docs/api/api/>: `{"results": [...]}` with, per
//! statement, `last_insert_id` and `rows_affected` for a write, `columns`, `types` and
//! `values` for rows (or, with `associative`, `types` keyed by column and `rows` as objects),
//! `error` when SQLite refused it, and `time` (seconds) with `timings`. webfarm adds
//! `raft_index` to every write's answer, and `sequence_number` to a queued write's.
//!
//! The answer structs declare their fields in alphabetical order, the order in which the
//! answers have always been written (a JSON object's keys sorted), so that clients comparing
//! bytes see the same text.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The rows a query returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Each column's declared type, lowercased (`""` for an expression).
    #[serde(default)]
    pub types: Vec<String>,
    /// One array per row; BLOBs are base64 strings (byte arrays with `blob_array`).
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

/// The outcome of one write statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The rowid of the last row inserted (SQLite's `last_insert_rowid()`).
    #[serde(default)]
    pub last_insert_id: i64,
    /// Rows changed by the statement.
    #[serde(default)]
    pub rows_affected: u64,
}

/// The outcome of one statement, as the applier or a read gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatementResult {
    /// A write (or any statement whose rows were not asked for).
    Write {
        /// SQLite's `last_insert_rowid()` after the statement.
        last_insert_id: i64,
        /// Rows changed by the statement (0 for a read-only statement).
        rows_affected: u64,
    },
    /// The rows of a statement that returns rows.
    Rows(Rows),
    /// SQLite refused the statement.
    Error(String),
}

/// One statement's result and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The result.
    pub result: StatementResult,
    /// Seconds spent on the statement.
    pub time: f64,
}

/// The declared types of an answer's columns: a list, or (`associative`) an object keyed by
/// column name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Types {
    /// One type per column, in order.
    List(Vec<String>),
    /// Column name to type.
    ByColumn(Map<String, Value>),
}

/// One statement's result as the SQL API writes it (rqlite's shape; absent fields are not
/// written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementAnswer {
    /// Column names of rows (not with `associative`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// SQLite's refusal of the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A write's `last_insert_rowid()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_insert_id: Option<i64>,
    /// Rows as objects keyed by column name (`associative`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// Rows a write changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
    /// Seconds spent on the statement (`timings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    /// The columns' declared types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Types>,
    /// Rows as arrays; not written when there is no row (as rqlite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Vec<Value>>>,
}

impl StatementAnswer {
    /// The answer for `o`: rows as objects when `associative`, with its `time` when `timings`
    /// (never on an error).
    pub fn of(o: &Outcome, associative: bool, timings: bool) -> StatementAnswer {
        let mut a = match &o.result {
            StatementResult::Write {
                last_insert_id,
                rows_affected,
            } => StatementAnswer {
                last_insert_id: Some(*last_insert_id),
                rows_affected: Some(*rows_affected),
                ..StatementAnswer::default()
            },
            StatementResult::Rows(rows) if associative => StatementAnswer {
                types: Some(Types::ByColumn(
                    rows.columns
                        .iter()
                        .zip(&rows.types)
                        .map(|(c, t)| (c.clone(), Value::from(t.clone())))
                        .collect(),
                )),
                rows: Some(
                    rows.values
                        .iter()
                        .map(|row| {
                            rows.columns
                                .iter()
                                .cloned()
                                .zip(row.iter().cloned())
                                .collect()
                        })
                        .collect(),
                ),
                ..StatementAnswer::default()
            },
            StatementResult::Rows(rows) => StatementAnswer {
                columns: Some(rows.columns.clone()),
                types: Some(Types::List(rows.types.clone())),
                values: (!rows.values.is_empty()).then(|| rows.values.clone()),
                ..StatementAnswer::default()
            },
            StatementResult::Error(e) => StatementAnswer {
                error: Some(e.clone()),
                ..StatementAnswer::default()
            },
        };
        if timings && a.error.is_none() {
            a.time = Some(o.time);
        }
        a
    }

    /// The rows of a result written without `associative`; `None` for a write or an error.
    pub fn into_rows(self) -> Option<Rows> {
        let columns = self.columns?;
        let types = match self.types {
            Some(Types::List(t)) => t,
            _ => Vec::new(),
        };
        Some(Rows {
            columns,
            types,
            values: self.values.unwrap_or_default(),
        })
    }

    /// What a write changed (zeros for fields not written).
    pub fn write_result(&self) -> WriteResult {
        WriteResult {
            last_insert_id: self.last_insert_id.unwrap_or(0),
            rows_affected: self.rows_affected.unwrap_or(0),
        }
    }
}

/// A successful answer of `/db/execute`, `/db/query`, `/db/request` and `/db/load`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The Raft log index of a write (also in the `X-Raft-Index` header): pass it as
    /// `min_index` to read your own write on any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    /// One result per statement, in order.
    #[serde(default)]
    pub results: Vec<StatementAnswer>,
    /// A queued write's sequence number (`?queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    /// Seconds spent on the request (`timings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

impl Answer {
    /// The first statement refused, as its index and SQLite's message.
    pub fn first_error(&self) -> Option<(usize, &str)> {
        self.results
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.error.as_deref().map(|e| (i, e)))
    }
}

/// An error answer: `{"error": ...}`, with the details some errors carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// `true` when a read's `min_index` is beyond the cluster's log (400): the index was never
    /// handed out by this cluster.
    #[serde(default, skip_serializing_if = "is_false")]
    pub beyond_log: bool,
    /// With `beyond_log`: the leader's commit index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_index: Option<u64>,
    /// What went wrong.
    pub error: String,
    /// The statement at fault (from 0), when a request was refused because of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The log index of a load that was applied but failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
}

impl ErrorAnswer {
    /// `{"error": message}`.
    pub fn new(message: impl Into<String>) -> ErrorAnswer {
        ErrorAnswer {
            error: message.into(),
            ..ErrorAnswer::default()
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Any answer of the SQL API, as a client reads it: an error (also a `200` "stale read") or a
/// success.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// `{"error": ...}`.
    Error(ErrorAnswer),
    /// `{"results": [...], ...}`.
    Done(Answer),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// The text of `v` equals the text of its JSON value, whose keys are sorted.
    fn sorted<T: Serialize>(v: &T) -> String {
        let text = serde_json::to_string(v).unwrap();
        assert_eq!(text, serde_json::to_value(v).unwrap().to_string());
        text
    }

    #[test]
    fn renders_rows_as_arrays_or_objects() {
        let plain = StatementAnswer::of(&rows(), false, false);
        assert_eq!(
            sorted(&plain),
            r#"{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}"#
        );
        let assoc = StatementAnswer::of(&rows(), true, true);
        assert_eq!(
            sorted(&assoc),
            r#"{"rows":[{"id":1,"name":"fiona"}],"time":0.5,"types":{"id":"integer","name":"text"}}"#
        );
        let timed = StatementAnswer::of(&rows(), false, true);
        assert_eq!(
            sorted(&timed),
            r#"{"columns":["id","name"],"time":0.5,"types":["integer","text"],"values":[[1,"fiona"]]}"#
        );
        let empty = Outcome {
            result: StatementResult::Rows(Rows::default()),
            time: 0.0,
        };
        assert_eq!(
            sorted(&StatementAnswer::of(&empty, false, false)),
            r#"{"columns":[],"types":[]}"#
        );
        assert_eq!(
            plain.into_rows(),
            match rows().result {
                StatementResult::Rows(r) => Some(r),
                _ => None,
            }
        );
    }

    #[test]
    fn writes_and_errors_keep_rqlites_fields() {
        let write = Outcome {
            result: StatementResult::Write {
                last_insert_id: 3,
                rows_affected: 1,
            },
            time: 0.25,
        };
        assert_eq!(
            sorted(&StatementAnswer::of(&write, false, true)),
            r#"{"last_insert_id":3,"rows_affected":1,"time":0.25}"#
        );
        let error = Outcome {
            result: StatementResult::Error("no such table: t".into()),
            time: 0.25,
        };
        assert_eq!(
            sorted(&StatementAnswer::of(&error, false, true)),
            r#"{"error":"no such table: t"}"#
        );
        let answer = Answer {
            raft_index: Some(9),
            results: vec![StatementAnswer::of(&write, false, false)],
            sequence_number: None,
            time: Some(0.5),
        };
        assert_eq!(
            sorted(&answer),
            r#"{"raft_index":9,"results":[{"last_insert_id":3,"rows_affected":1}],"time":0.5}"#
        );
        let beyond = ErrorAnswer {
            beyond_log: true,
            commit_index: Some(7),
            ..ErrorAnswer::new("min_index 99 is beyond the log (commit index 7)")
        };
        assert_eq!(
            sorted(&beyond),
            r#"{"beyond_log":true,"commit_index":7,"error":"min_index 99 is beyond the log (commit index 7)"}"#
        );
        assert_eq!(
            sorted(&ErrorAnswer::new("no leader")),
            r#"{"error":"no leader"}"#
        );
    }

    #[test]
    fn replies_tell_errors_from_results() {
        let stale: Reply = serde_json::from_str(r#"{"error":"stale read"}"#).unwrap();
        assert_eq!(stale, Reply::Error(ErrorAnswer::new("stale read")));
        let done: Reply =
            serde_json::from_str(r#"{"results":[{"error":"x"},{"rows_affected":1}]}"#).unwrap();
        let Reply::Done(a) = done else {
            panic!("{done:?}")
        };
        assert_eq!(a.first_error(), Some((0, "x")));
        assert_eq!(a.results[1].write_result().rows_affected, 1);
    }
}
