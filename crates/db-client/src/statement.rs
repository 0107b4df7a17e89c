//! SQL statements and their parameters, in the Raft log's form and in rqlite's wire form.

use std::collections::BTreeMap;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The parameters of one statement (JSON scalars: integers bind as INTEGER, other numbers as
/// REAL, strings as TEXT, booleans as 0/1, null as NULL).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Params {
    /// No parameter.
    #[default]
    None,
    /// Positional parameters: `?`, `?NNN`.
    Positional(Vec<Value>),
    /// Named parameters: `:name`, `@name`, `$name`; keys are written without the prefix.
    Named(BTreeMap<String, Value>),
}

/// One SQL statement and its parameters.
///
/// Its serde form (`{"sql": .., "params": ..}`) is the one the Raft log stores; rqlite's wire
/// form is [`Statement::wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            params: Params::None,
        }
    }

    /// A statement with positional parameters (`?` or `?NNN` placeholders); none when
    /// `params` is empty.
    pub fn with_params(sql: impl Into<String>, params: Vec<Value>) -> Self {
        Statement {
            sql: sql.into(),
            params: if params.is_empty() {
                Params::None
            } else {
                Params::Positional(params)
            },
        }
    }

    /// The statement in rqlite's wire form, to serialize: `"sql"`, `["sql", p...]` or
    /// `["sql", {"name": v}]`.
    pub fn wire(&self) -> Wire<'_> {
        Wire(self)
    }
}

/// A [`Statement`] serialized in rqlite's wire form ([`Statement::wire`]).
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a>(&'a Statement);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Statement { sql, params } = self.0;
        match params {
            Params::None => s.serialize_str(sql),
            Params::Positional(p) => {
                let mut seq = s.serialize_seq(Some(p.len() + 1))?;
                seq.serialize_element(sql)?;
                for v in p {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Params::Named(m) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element(sql)?;
                seq.serialize_element(m)?;
                seq.end()
            }
        }
    }
}

/// The JSON body of `/db/execute`, `/db/query` and `/db/request`: the statements' wire forms
/// in one array.
pub fn request_body(statements: &[Statement]) -> Vec<u8> {
    let wire: Vec<Wire<'_>> = statements.iter().map(Statement::wire).collect();
    // Serializing strings and JSON values into a Vec cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_use_the_rqlite_wire_form() {
        let wire = |s: &Statement| serde_json::to_value(s.wire()).unwrap();
        assert_eq!(wire(&Statement::new("SELECT 1")), json!("SELECT 1"));
        assert_eq!(
            wire(&Statement::with_params(
                "SELECT ?, ?",
                vec![json!(1), json!("a")]
            )),
            json!(["SELECT ?, ?", 1, "a"])
        );
        assert_eq!(
            wire(&Statement::with_params("SELECT 1", vec![])),
            json!("SELECT 1")
        );
        let named = Statement {
            sql: "SELECT :a".into(),
            params: Params::Named([("a".to_string(), json!(2))].into_iter().collect()),
        };
        assert_eq!(wire(&named), json!(["SELECT :a", {"a": 2}]));
        assert_eq!(
            request_body(&[Statement::new("A"), named]),
            br#"["A",["SELECT :a",{"a":2}]]"#
        );
    }

    /// Found by the `rqlite_body` fuzz target: a number past i64 (read as a float) came
    /// back one ulp off after the wire form was written and read again.
    #[test]
    fn float_parameters_survive_the_wire_form() {
        for text in [
            "-9223372036887839515",
            "1e308",
            "0.1",
            "-9.22337203688784e18",
            "5e-324",
        ] {
            let body = format!("[[\"SELECT ?\", {text}]]");
            let v: Vec<Value> = serde_json::from_str(&body).unwrap();
            let Value::Array(first) = &v[0] else {
                panic!("{v:?}")
            };
            let s = Statement::with_params("SELECT ?", vec![first[1].clone()]);
            let again: Vec<Value> =
                serde_json::from_slice(&request_body(std::slice::from_ref(&s))).unwrap();
            let Value::Array(second) = &again[0] else {
                panic!("{again:?}")
            };
            assert_eq!(second[1], first[1], "{text}");
            let exact: f64 = text.parse().unwrap();
            assert_eq!(
                first[1].as_f64(),
                Some(exact),
                "{text} is read correctly rounded"
            );
        }
    }

    #[test]
    fn the_log_form_is_unchanged() {
        let s = Statement::with_params("SELECT ?", vec![json!(5)]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"sql":"SELECT ?","params":{"positional":[5]}}"#
        );
        let old: Statement = serde_json::from_str(r#"{"sql":"SELECT 1"}"#).unwrap();
        assert_eq!(old, Statement::new("SELECT 1"));
    }
}
