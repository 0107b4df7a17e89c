//! The Raft type configuration: node ids, node info, the log entry payload and its response.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Rows;

openraft::declare_raft_types!(
    /// The openraft type configuration of the db cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a db node.
pub type Raft = openraft::Raft<TypeConfig>;

/// What the cluster knows of one db node (openraft's `Node`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name in the farm, such as `db-2`.
    pub name: String,
    /// `ip:port` of its SQL API (rqlite's HTTP API).
    pub api_addr: String,
    /// `ip:port` of its Raft endpoint.
    pub raft_addr: String,
}

/// The Raft node id of the node named `name`: FNV-1a 64 of the name, so it does not depend on
/// the order of the topology file.
pub fn node_id(name: &str) -> u64 {
    webfarm_node::hash::fnv1a64(name.as_bytes())
}

/// The parameters of one statement.
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

/// One SQL statement as it travels in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlStatement {
    /// The SQL text.
    pub sql: String,
    /// Its parameters (JSON scalars).
    #[serde(default)]
    pub params: Params,
}

pub use crate::command::{Command, CommandResponse, LoadRequest, Request, SqlRequest};

/// The outcome of one statement.
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

impl Outcome {
    /// The rqlite JSON form of this result; `timings` adds the `time` field.
    pub fn to_json(&self, timings: bool) -> Value {
        let mut v = match &self.result {
            StatementResult::Write {
                last_insert_id,
                rows_affected,
            } => serde_json::json!({
                "last_insert_id": last_insert_id,
                "rows_affected": rows_affected,
            }),
            StatementResult::Rows(rows) => serde_json::json!({
                "columns": rows.columns,
                "types": rows.types,
                "values": rows.values,
            }),
            StatementResult::Error(e) => serde_json::json!({ "error": e }),
        };
        if timings && !matches!(self.result, StatementResult::Error(_)) {
            if let Value::Object(m) = &mut v {
                m.insert("time".into(), Value::from(self.time));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_fnv1a_of_the_name() {
        // Reference values of FNV-1a 64.
        assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(node_id("db-1"), node_id("db-2"));
    }
}
