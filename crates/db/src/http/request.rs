//! Reading an rqlite request: the JSON body of statements and the URL's query flags.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::sqlite::sql::json_to_sql;
use crate::types::{Params, SqlStatement};

/// A request refused as a whole (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest {
    /// The statement at fault, when one is.
    pub index: Option<usize>,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl BadRequest {
    fn at(index: usize, message: impl Into<String>) -> Self {
        BadRequest {
            index: Some(index),
            message: format!("statement {index}: {}", message.into()),
        }
    }

    /// The JSON body of the 400 answer: `{"error": .., "index": ..}`.
    pub(crate) fn to_answer(&self) -> webfarm_db_client::ErrorAnswer {
        webfarm_db_client::ErrorAnswer {
            index: self.index,
            ..webfarm_db_client::ErrorAnswer::new(self.message.clone())
        }
    }
}

/// Parses a body: a JSON array whose items are `"sql"`, `["sql", param...]` or
/// `["sql", {"name": value}]`.
///
/// # Errors
///
/// [`BadRequest`] naming the statement and what is wrong with it.
pub(crate) fn parse_statements(body: &[u8]) -> Result<Vec<SqlStatement>, BadRequest> {
    let v: Value = serde_json::from_slice(body).map_err(|e| BadRequest {
        index: None,
        message: format!(
            "the body is not valid JSON ({e}); send a JSON array of statements, \
             e.g. [\"SELECT 1\"]"
        ),
    })?;
    let Value::Array(items) = v else {
        return Err(BadRequest {
            index: None,
            message: "the body must be a JSON array of statements, e.g. [\"SELECT 1\"]".into(),
        });
    };
    if items.is_empty() {
        return Err(BadRequest {
            index: None,
            message: "the body holds no statement; send at least one".into(),
        });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_statement(i, item))
        .collect()
}

fn parse_statement(i: usize, item: Value) -> Result<SqlStatement, BadRequest> {
    match item {
        Value::String(sql) => Ok(SqlStatement {
            sql: checked_sql(i, sql)?,
            params: Params::None,
        }),
        Value::Array(mut parts) => {
            if parts.is_empty() {
                return Err(BadRequest::at(
                    i,
                    "an empty array; expected [sql, param...]",
                ));
            }
            let rest = parts.split_off(1);
            let sql = match parts.pop() {
                Some(Value::String(s)) => checked_sql(i, s)?,
                _ => {
                    return Err(BadRequest::at(
                        i,
                        "the first item of the array must be the SQL string",
                    ))
                }
            };
            let params = match rest.as_slice() {
                [] => Params::None,
                [Value::Object(map)] => {
                    let mut named = BTreeMap::new();
                    for (k, v) in map {
                        json_to_sql(v)
                            .map_err(|e| BadRequest::at(i, format!("parameter {k}: {e}")))?;
                        named.insert(k.clone(), v.clone());
                    }
                    Params::Named(named)
                }
                values => {
                    for (j, v) in values.iter().enumerate() {
                        json_to_sql(v)
                            .map_err(|e| BadRequest::at(i, format!("parameter {}: {e}", j + 1)))?;
                    }
                    Params::Positional(values.to_vec())
                }
            };
            Ok(SqlStatement { sql, params })
        }
        _ => Err(BadRequest::at(
            i,
            "expected a string or an array [sql, param...]",
        )),
    }
}

fn checked_sql(i: usize, sql: String) -> Result<String, BadRequest> {
    if sql.trim().is_empty() {
        Err(BadRequest::at(i, "the SQL text is empty"))
    } else {
        Ok(sql)
    }
}

/// rqlite-style URL flags: `?transaction&timings&level=weak&min_index=5`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Flags {
    pairs: Vec<(String, String)>,
}

impl Flags {
    /// Parses a raw query string (percent-decoded values, `+` as space).
    pub(crate) fn parse(query: Option<&str>) -> Flags {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(kv), String::new()),
            })
            .collect();
        Flags { pairs }
    }

    /// The value of `key`, if present (`""` for a bare flag).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean flag: present, and not `false` or `0`.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(v) if v != "false" && v != "0")
    }

    /// A duration flag in Go's syntax (`500ms`, `1s`, `1m30s`), as rqlite takes them.
    ///
    /// # Errors
    ///
    /// [`BadFlag::Duration`] when the value is not a duration (rqlite's message: `"{key} is
    /// not a valid duration"`).
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>, BadFlag> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_go_duration(v)
                .map(Some)
                .ok_or_else(|| BadFlag::Duration {
                    key: key.to_string(),
                    value: v.to_string(),
                }),
        }
    }
}

/// A query flag whose value is not valid (a 400 answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadFlag {
    /// Not a duration.
    #[error("{key} is not a valid duration (e.g. 500ms, 1s, 1m30s; got {value:?})")]
    Duration {
        /// The flag.
        key: String,
        /// Its value.
        value: String,
    },
    /// `min_index` is not an unsigned integer.
    #[error("min_index: expected a Raft log index (an unsigned integer)")]
    MinIndex,
    /// `freshness_strict` without `freshness`.
    #[error("freshness_strict requires freshness")]
    StrictWithoutFreshness,
}

/// A duration in Go's `time.ParseDuration` syntax: a sequence of decimal numbers, each with a
/// unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), such as `300ms`, `1.5h` or `2h45m`; `0`
/// alone is zero. Negative durations are refused.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim().strip_prefix('+').unwrap_or(s.trim());
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos_per;
        rest = next;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// Percent-decoding of a query component (`+` is a space); invalid escapes are kept as is.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_three_statement_forms() {
        let body = br#"["CREATE TABLE t (a)", ["INSERT INTO t VALUES (?)", 5], ["SELECT :a", {"a": "x"}]]"#;
        let s = parse_statements(body).unwrap();
        assert_eq!(s[0].params, Params::None);
        assert_eq!(s[1].params, Params::Positional(vec![json!(5)]));
        assert_eq!(
            s[2].params,
            Params::Named([("a".to_string(), json!("x"))].into_iter().collect())
        );
    }

    #[test]
    fn names_the_bad_statement() {
        let e = parse_statements(br#"["SELECT 1", "SELECT 2", 3]"#).unwrap_err();
        assert_eq!(e.index, Some(2));
        assert_eq!(
            e.message,
            "statement 2: expected a string or an array [sql, param...]"
        );
        let e = parse_statements(br#"[["SELECT ?", [1, 300]]]"#).unwrap_err();
        assert!(
            e.message.starts_with("statement 0: parameter 1:"),
            "{}",
            e.message
        );
        assert!(parse_statements(b"{}").is_err());
        assert!(parse_statements(b"[").is_err());
    }

    #[test]
    fn reads_flags() {
        let f = Flags::parse(Some(
            "transaction&level=strong&q=SELECT%20%2A+FROM+t&timings=false",
        ));
        assert!(f.flag("transaction"));
        assert!(!f.flag("timings"));
        assert_eq!(f.get("level"), Some("strong"));
        assert_eq!(f.get("q"), Some("SELECT * FROM t"));
        assert_eq!(decode("100%"), "100%");
    }

    #[test]
    fn reads_go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("300us"), Some(Duration::from_micros(300)));
        for bad in ["", "1", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
        let f = Flags::parse(Some("freshness=1s&timeout=soon"));
        assert_eq!(f.duration("freshness"), Ok(Some(Duration::from_secs(1))));
        assert!(f.duration("timeout").is_err());
        assert_eq!(f.duration("nope"), Ok(None));
    }
}
