//! The Raft type configuration: node ids, node info, the log entry payload and its response.
//!
//! The statements and results the log carries are the API's wire types, defined in
//! `webfarm-db-client` and re-exported here.

use serde::{Deserialize, Serialize};

pub use webfarm_db_client::{Outcome, Params, Rows, Statement as SqlStatement, StatementResult};

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

pub use crate::command::{Command, CommandResponse, LoadRequest, Request, SqlRequest};

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
