//! Cluster formation at start: a pristine node initializes the cluster, unless the cluster
//! already holds data.
//!
//! Every pristine node calls openraft's `initialize` with the same membership (every db node of
//! the farm as a voter), which openraft documents as safe for a cluster that forms. It is not
//! safe for a voter whose data directory was wiped while the cluster ran: it would come back
//! with no vote and no log, and count in a majority that may then elect a leader without
//! entries it had acknowledged. So before initializing, a pristine node asks every peer's SQL
//! API for `/status`: if any reports that its database holds data (`"has_data"`: a user
//! table exists), this node's data is gone while the cluster exists, and the start fails
//! instead. A peer that does not answer within [`PEER_STATUS_TIMEOUT`] is not counted.
//!
//! The term and the log index are no such sign: openraft elects a leader as soon as two
//! initialized nodes see each other, and that leader appends a blank entry, so when the db
//! nodes start one after the other (as the supervisor and the tests do), the last to start
//! already sees term 1 and log index 1 from a cluster that is only forming. User data only
//! appears once the db nodes are ready and the web tier writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use serde_json::Value;
use webfarm_node::http::HttpClient;

use crate::node::DbError;
use crate::types::{NodeInfo, Raft};

/// How long a pristine node waits for each peer's `/status`.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What a peer's `/status` says of the cluster's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerLog {
    /// The peer's name.
    pub(crate) name: String,
    /// Its current term.
    pub(crate) term: u64,
    /// Its last log index.
    pub(crate) last_log_index: u64,
    /// Whether its database holds a user table.
    pub(crate) has_data: bool,
}

impl PeerLog {
    /// Reads a `/status` answer; `None` when it is not a db node's status.
    pub(crate) fn from_status(name: &str, status: &Value) -> Option<PeerLog> {
        let num = |key: &str| status.get(key).and_then(Value::as_u64);
        Some(PeerLog {
            name: name.to_string(),
            term: num("term")?,
            last_log_index: num("last_log_index")?,
            has_data: status.get("has_data").and_then(Value::as_bool)?,
        })
    }
}

/// The log of every peer that answers `/status` within [`PEER_STATUS_TIMEOUT`].
async fn peer_logs(me: u64, members: &BTreeMap<u64, NodeInfo>, http: &HttpClient) -> Vec<PeerLog> {
    let mut asks = tokio::task::JoinSet::new();
    for (id, node) in members {
        if *id == me {
            continue;
        }
        let (node, http) = (node.clone(), http.clone());
        asks.spawn(async move {
            let url = format!("http://{}/status", node.api_addr);
            let resp = http.get(&url, PEER_STATUS_TIMEOUT).await.ok()?;
            if !resp.status.is_success() {
                return None;
            }
            let status: Value = serde_json::from_slice(&resp.body).ok()?;
            PeerLog::from_status(&node.name, &status)
        });
    }
    let mut logs = Vec::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok(Some(log)) = joined {
            logs.push(log);
        }
    }
    logs.sort_by(|a, b| a.name.cmp(&b.name));
    logs
}

/// Initializes the cluster from a pristine node, or lets a node with Raft state rejoin.
///
/// # Errors
///
/// [`DbError::DataLost`] when this node is pristine but a peer reports a cluster that holds
/// data; [`DbError::Raft`] when openraft fails.
pub(crate) async fn form(
    raft: &Raft,
    me: &NodeInfo,
    id: u64,
    members: &BTreeMap<u64, NodeInfo>,
    http: &HttpClient,
    data_dir: &Path,
) -> Result<(), DbError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| DbError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let peers = peer_logs(id, members, http).await;
    if let Some(p) = peers.iter().find(|p| p.has_data) {
        tracing::error!(
            node = %me.name,
            peer = %p.name,
            term = p.term,
            last_log_index = p.last_log_index,
            "this node has no Raft state but the cluster already holds data: its data is gone \
             while the cluster exists; it will not rejoin as an empty voter"
        );
        return Err(DbError::DataLost {
            node: me.name.clone(),
            peer: p.name.clone(),
            term: p.term,
            last_log_index: p.last_log_index,
            dir: data_dir.to_path_buf(),
        });
    }
    match raft.initialize(members.clone()).await {
        Ok(()) => {
            tracing::info!(node = %me.name, voters = members.len(), "cluster initialized");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::debug!(node = %me.name, "cluster already initialized");
            Ok(())
        }
        Err(e) => Err(DbError::Raft(format!("cannot initialize the cluster: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_peers_status() {
        let forming = json!({"term": 1, "last_log_index": 1, "has_data": false});
        let p = PeerLog::from_status("db-1", &forming).unwrap();
        assert!(!p.has_data, "a leader and a blank entry are no data");
        let formed = json!({"term": 2, "last_log_index": 9, "has_data": true});
        assert!(PeerLog::from_status("db-1", &formed).unwrap().has_data);
        assert_eq!(PeerLog::from_status("x", &json!({"error": "no"})), None);
    }
}
